// coeffnet/core/host_allocator.hpp: where host tensors' memory comes from.
//
// Requests above CachingAllocator::small_request (1 MiB: a ViT-B/16 activation at batch 8 is 4.8 MB,
// an attention map 15 MB) go through the process's host caching allocator, the same allocator
// the CUDA backend uses for device memory (core/caching_allocator.hpp) over aligned operator new;
// smaller ones go to operator new directly (glibc keeps those in its arenas and reuses them
// without system calls; caching them too would put a lock and a map lookup on every small op of
// the tune's little models). So a training step in steady state takes its large buffers from the
// cache: no fresh pages to fault in and clear.
//
// COEFFNET_HOST_CACHING=0 (read once, at the first large allocation) sends every request to
// operator new (for memory checkers other than AddressSanitizer, or to measure the difference).
// Under AddressSanitizer, cached blocks are poisoned: a use after release is reported as a
// use-after-poison instead of silently reading the next owner's data.
// host_allocator().stats() reports what is in use, cached and reserved; empty_cache() gives the
// cached memory back to the system.
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "caching_allocator.hpp"
#include "sanitizers.hpp"

#if COEFFNET_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace coeffnet {

inline constexpr size_t host_alignment = 64;  // a cache line, and an AVX-512 register

// Gives back what ::operator new[](bytes, std::align_val_t{host_alignment}) returned (both the
// cache's segments and the small buffers below are made that way).
inline void host_delete(void* p) { ::operator delete[](p, std::align_val_t{host_alignment}); }

// Aligned operator new / delete; out of memory is error 1.
class HostRawMemory final : public RawMemory {
public:
    int raw_malloc(void** ptr, size_t bytes) override {
        *ptr = ::operator new[](bytes, std::align_val_t{host_alignment}, std::nothrow);
        return *ptr == nullptr ? 1 : 0;
    }
    int raw_free(void* ptr) override {
        host_delete(ptr);
        return 0;
    }
    int synchronize() override { return 0; }
    bool out_of_memory(int error) const override { return error == 1; }
    std::string error_name(int error) const override { return error == 1 ? "out of memory" : "unknown error"; }
    const char* malloc_name() const override { return "operator new"; }
    const char* free_name() const override { return "operator delete"; }
#if COEFFNET_ASAN
    void enter_cache(void* ptr, size_t bytes) override { ASAN_POISON_MEMORY_REGION(ptr, bytes); }
    void leave_cache(void* ptr, size_t bytes) override { ASAN_UNPOISON_MEMORY_REGION(ptr, bytes); }
#endif
};

// The process's host caching allocator. Never destroyed: tensors held by static objects may be
// released after every other static is gone.
inline CachingAllocator& host_allocator() {
    static CachingAllocator* allocator = new CachingAllocator(*new HostRawMemory());
    return *allocator;
}

// False when COEFFNET_HOST_CACHING is "0" (read once).
inline bool host_caching_enabled() {
    static const bool enabled = [] {
        const char* s = std::getenv("COEFFNET_HOST_CACHING");
        return s == nullptr || std::strcmp(s, "0") != 0;
    }();
    return enabled;
}

// host_alignment-aligned host memory of at least one byte, owned by the returned handle.
inline std::shared_ptr<void> allocate_host_memory(size_t nbytes) {
    if (nbytes > CachingAllocator::small_request && host_caching_enabled())
        return host_allocator().allocate_shared(nbytes);
    void* p = ::operator new[](nbytes == 0 ? 1 : nbytes, std::align_val_t{host_alignment});
    return std::shared_ptr<void>(p, host_delete);
}

}  // namespace coeffnet
