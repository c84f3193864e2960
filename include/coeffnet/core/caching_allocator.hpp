// coeffnet/core/caching_allocator.hpp: the caching allocator every device's memory goes through
// (the CUDA backend's device memory, cuda/runtime.hpp; the host's large buffers, core/storage.hpp),
// over a RawMemory that does the real malloc and free.
//
// Why: a training step allocates its activations and gradients afresh each time. On a GPU a
// cudaMalloc/cudaFree per op would serialise the stream; on the host, buffers above glibc's mmap
// threshold come back as fresh pages, each one faulted in and cleared by the kernel (7 % of a
// one-thread ViT-B/16 alpha step, bench/README.md). Cached, a step in steady state allocates nothing
// new (tests/test_caching_allocator.cpp asserts it for a training loop).
//
// Sizes are rounded up (to 512 B below 1 MiB; above, to an eighth of the enclosing power of two, so
// at most 12.5% is lost). Memory comes from segments (one raw malloc each) in two pools: requests of
// at most 1 MiB ("small") share 2 MiB segments; larger ones get a segment of their rounded size.
// A segment is a chain of blocks in address order. A request takes the best fit: the smallest free
// block of its pool and stream that is large enough; the block is split when the remainder is at
// least 512 B (small pool) or 1 MiB (large pool), else handed out whole. A released block merges with
// its free neighbours in the same segment, so a segment whose blocks are all released is one free
// block again, usable by any request of its pool up to its size. Blocks are aligned as the raw
// memory's segments are (CUDA 256 B, host 64 B): every block size is a multiple of 512.
// When no free block fits a large request (a miss), every large segment that is wholly free is given
// back (after synchronize()) before the raw malloc, so memory cached for old shapes is not kept beside
// the new one; when the raw malloc fails, every wholly free segment of both pools is given back and
// the malloc retried once; if it fails again, an Error names the request and the statistics.
// Worst-case overhead:
//   - per block: the rounding (< 512 B, or <= 12.5% above 1 MiB) plus an unsplit remainder
//     (< 512 B small, < 1 MiB large);
//   - reserved: at every raw malloc of a large segment, each other large segment holds a block in
//     use, so large-pool reserved <= (large blocks in use + 1) x the largest large segment, and the
//     small pool holds <= (small blocks in use + 1) 2 MiB segments. Memory cached after a workload
//     shrinks stays until the next miss (or empty_cache()). For a loop whose steps release all their
//     blocks by the end (a training step) and whose largest shape only grows, reserved after each
//     step's first miss is that step's own segments: nothing accumulates from earlier shapes
//     (tests/test_caching_allocator.cpp asserts this and a bound for a random-shape loop).
// Streams (a device's queues; the host has one, nullptr): a released block is reusable at once by
// later work *on the stream it was allocated for*: stream order guarantees that the kernels that
// used it run first. Memory used on another stream than its allocation stream must not be released
// before that stream is synchronised (the library uses one stream).
// A raw free that fails is logged, counted (num_free_failures), and its segment kept in
// bytes_reserved and bytes_unfreed (never handed out again); empty_cache() retries it and throws an
// Error naming the failure if memory it should have freed is still held.
// Thread-safe (one mutex). Header-only: the class has no device code of its own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "error.hpp"

namespace coeffnet {

struct AllocatorStats {
    size_t bytes_in_use = 0;    // bytes of blocks handed out and not yet released (block sizes: rounded,
                                // plus any remainder too small to split off)
    size_t bytes_reserved = 0;  // bytes obtained from the raw allocator and not yet given back
                                // (= bytes_in_use + bytes_cached + bytes_unfreed, always)
    size_t bytes_cached = 0;    // free bytes in live segments, ready for reuse
    size_t bytes_unfreed = 0;   // bytes of segments whose free failed: still reserved, never reused
    size_t peak_in_use = 0;     // high-water mark of bytes_in_use since construction or reset_peak()
    int64_t num_raw_malloc = 0;    // successful raw mallocs (segments created)
    int64_t num_raw_free = 0;      // successful raw frees (segments given back)
    int64_t num_free_failures = 0; // raw frees that failed (each logged to stderr)
    int64_t num_segments = 0;      // live segments (unfreed ones included)
    int64_t num_allocs = 0;        // allocate() calls
    int64_t num_cache_hits = 0;    // allocate() calls served from cached memory, no raw malloc
    int64_t num_splits = 0;        // blocks split to serve a smaller request
};

// The raw memory calls the caching allocator makes, and nothing else: cudaMalloc / cudaFree /
// cudaDeviceSynchronize on a GPU (cuda::cuda_raw_memory()), aligned operator new / delete on the
// host (host_raw_memory() below); tests pass a fake (addresses that are never dereferenced) to check
// the bookkeeping, including a free that fails.
class RawMemory {
public:
    virtual ~RawMemory() = default;
    // 0 on success, else the raw layer's own error code (a cudaError_t's value), named by error_name().
    virtual int raw_malloc(void** ptr, size_t bytes) = 0;
    virtual int raw_free(void* ptr) = 0;
    // Waits for queued work (a released block may still be read by kernels queued before its release).
    virtual int synchronize() = 0;
    virtual bool out_of_memory(int error) const = 0;
    virtual std::string error_name(int error) const = 0;
    virtual const char* malloc_name() const = 0;  // for messages: "cudaMalloc", "operator new"
    virtual const char* free_name() const = 0;
    // A block entering the cache (released) and leaving it (handed out, or its segment freed): the
    // host poisons cached blocks for AddressSanitizer, so a use after release is still reported.
    virtual void enter_cache(void* /*ptr*/, size_t /*bytes*/) {}
    virtual void leave_cache(void* /*ptr*/, size_t /*bytes*/) {}
};

// A template only so that coeffnet::compiled can compile it once (an `extern template` of
// instantiations.hpp); every use is CachingAllocator, below, with std::mutex.
template <class Mutex>
class BasicCachingAllocator {
public:
    static constexpr size_t small_request = size_t{1} << 20;  // <= this: the small pool
    static constexpr size_t small_segment = size_t{2} << 20;  // the small pool's segment size
    static constexpr size_t min_split_small = 512;
    static constexpr size_t min_split_large = size_t{1} << 20;

    explicit BasicCachingAllocator(RawMemory& raw) : raw_(&raw) {}
    BasicCachingAllocator(const BasicCachingAllocator&) = delete;
    BasicCachingAllocator& operator=(const BasicCachingAllocator&) = delete;
    // Gives back the wholly free segments (blocks still in use are left to the raw layer).
    ~BasicCachingAllocator();

    // bytes > 0 (0 is served as 512); aligned as the raw memory's segments.
    void* allocate(size_t bytes, const void* stream = nullptr);
    void release(void* ptr) noexcept;  // back to the cache; never throws
    // allocate() wrapped in a shared_ptr whose deleter calls release().
    std::shared_ptr<void> allocate_shared(size_t bytes, const void* stream = nullptr) {
        void* p = allocate(bytes, stream);
        try {
            return std::shared_ptr<void>(p, [this](void* q) { release(q); });
        } catch (...) {
            release(p);
            throw;
        }
    }

    AllocatorStats stats() const {
        std::lock_guard<Mutex> lock(mutex_);
        return stats_;
    }
    void reset_peak() {
        std::lock_guard<Mutex> lock(mutex_);
        stats_.peak_in_use = stats_.bytes_in_use;
    }
    // Synchronises, then gives back every wholly free segment (and retries the frees that failed
    // before); throws Error when a free fails, after the books are brought up to date.
    void empty_cache();

    static size_t round_size(size_t bytes) {
        constexpr size_t small = 512, mib = size_t{1} << 20;
        if (bytes == 0) return small;
        if (bytes < mib) return (bytes + small - 1) / small * small;
        size_t p = mib;
        while (p <= bytes / 2) p *= 2;  // p = the largest power of two <= bytes
        const size_t step = p / 8;
        return (bytes + step - 1) / step * step;
    }

private:
    struct Block {
        size_t size = 0;
        uintptr_t stream = 0;
        char* segment = nullptr;  // base of the segment it belongs to
        bool in_use = false;
    };
    struct Segment {
        size_t size = 0;
        bool large = false;
    };
    // Free-block index: (pool, stream, size, address); lower_bound gives the best fit.
    using FreeKey = std::tuple<bool, uintptr_t, size_t, char*>;

    char* take_locked(typename std::map<char*, Block>::iterator it, size_t size, bool large);
    // Gives back the wholly free segments (large only, or both pools); returns the failures' text.
    std::string free_segments_locked(bool small_too);
    std::string free_failed(size_t bytes, int e, const char* again) const {
        return std::string(raw_->free_name()) + " of " + std::to_string(bytes) + " bytes failed" + again + ": " +
               raw_->error_name(e);
    }

    RawMemory* raw_;
    mutable Mutex mutex_;
    std::map<char*, Block> blocks_;      // every block of every live segment, by address
    std::map<char*, Segment> segments_;  // live segments by base (unfreed ones in unfreed_ instead)
    std::set<FreeKey> free_;
    std::map<char*, size_t> unfreed_;    // segments whose raw free failed: base -> size
    AllocatorStats stats_;
};

// Hands out the free block at `it` for `size` bytes: split when the remainder is worth keeping.
template <class Mutex>
char* BasicCachingAllocator<Mutex>::take_locked(typename std::map<char*, Block>::iterator it, size_t size, bool large) {
    Block& b = it->second;
    char* ptr = it->first;
    free_.erase(FreeKey{large, b.stream, b.size, ptr});
    const size_t rest = b.size - size;
    if (rest >= (large ? min_split_large : min_split_small)) {
        Block tail{rest, b.stream, b.segment, false};
        b.size = size;
        blocks_.emplace(ptr + size, tail);
        free_.insert(FreeKey{large, tail.stream, rest, ptr + size});
        ++stats_.num_splits;
    }
    b.in_use = true;
    stats_.bytes_cached -= b.size;
    stats_.bytes_in_use += b.size;
    stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.bytes_in_use);
    raw_->leave_cache(ptr, b.size);
    return ptr;
}

template <class Mutex>
void* BasicCachingAllocator<Mutex>::allocate(size_t bytes, const void* stream) {
    const size_t size = round_size(bytes);
    const bool large = size > small_request;
    const auto key = reinterpret_cast<uintptr_t>(stream);
    std::lock_guard<Mutex> lock(mutex_);
    ++stats_.num_allocs;
    auto fit = free_.lower_bound(FreeKey{large, key, size, nullptr});
    if (fit != free_.end() && std::get<0>(*fit) == large && std::get<1>(*fit) == key) {
        ++stats_.num_cache_hits;
        return take_locked(blocks_.find(std::get<3>(*fit)), size, large);
    }
    // A miss: memory cached for other (older) large shapes goes back before more is reserved.
    std::string free_errors;
    if (large) free_errors = free_segments_locked(false);
    const size_t seg = large ? size : small_segment;
    void* raw = nullptr;
    int e = raw_->raw_malloc(&raw, seg);
    if (e != 0 && raw_->out_of_memory(e)) {
        free_errors += free_segments_locked(true);
        e = raw_->raw_malloc(&raw, seg);
    }
    if (e != 0) {
        fail("CachingAllocator: ", raw_->malloc_name(), " of ", seg, " bytes (", bytes,
             " requested) failed: ", raw_->error_name(e), "; in use ", stats_.bytes_in_use, " bytes, reserved ",
             stats_.bytes_reserved, " bytes, cached ", stats_.bytes_cached, " bytes", free_errors.empty() ? "" : "; ",
             free_errors);
    }
    ++stats_.num_raw_malloc;
    ++stats_.num_segments;
    stats_.bytes_reserved += seg;
    stats_.bytes_cached += seg;
    char* base = static_cast<char*>(raw);
    segments_.emplace(base, Segment{seg, large});
    const auto it = blocks_.emplace(base, Block{seg, key, base, false}).first;
    free_.insert(FreeKey{large, key, seg, base});
    raw_->enter_cache(base, seg);
    return take_locked(it, size, large);
}

template <class Mutex>
void BasicCachingAllocator<Mutex>::release(void* ptr) noexcept {
    if (ptr == nullptr) return;
    try {
        std::lock_guard<Mutex> lock(mutex_);
        auto it = blocks_.find(static_cast<char*>(ptr));
        if (it == blocks_.end() || !it->second.in_use) {
            std::fprintf(stderr, "coeffnet: CachingAllocator::release: %p was not allocated here (ignored)\n", ptr);
            return;
        }
        const bool large = segments_.at(it->second.segment).large;
        it->second.in_use = false;
        stats_.bytes_in_use -= it->second.size;
        stats_.bytes_cached += it->second.size;
        raw_->enter_cache(it->first, it->second.size);
        // Merge with the free neighbours of the same segment (address-adjacent blocks of another
        // segment are never merged: they are separate raw allocations).
        auto next = std::next(it);
        if (next != blocks_.end() && !next->second.in_use && next->second.segment == it->second.segment) {
            free_.erase(FreeKey{large, next->second.stream, next->second.size, next->first});
            it->second.size += next->second.size;
            blocks_.erase(next);
        }
        if (it != blocks_.begin()) {
            auto prev = std::prev(it);
            if (!prev->second.in_use && prev->second.segment == it->second.segment) {
                free_.erase(FreeKey{large, prev->second.stream, prev->second.size, prev->first});
                prev->second.size += it->second.size;
                blocks_.erase(it);
                it = prev;
            }
        }
        free_.insert(FreeKey{large, it->second.stream, it->second.size, it->first});
    } catch (...) {
        std::fprintf(stderr, "coeffnet: CachingAllocator::release: unexpected exception (block leaked)\n");
    }
}

template <class Mutex>
std::string BasicCachingAllocator<Mutex>::free_segments_locked(bool small_too) {
    std::vector<char*> whole;
    for (const auto& [base, seg] : segments_) {
        if (!seg.large && !small_too) continue;
        const Block& b = blocks_.at(base);
        if (!b.in_use && b.size == seg.size) whole.push_back(base);
    }
    if (whole.empty()) return {};
    std::string errors;
    // A cached block may still be read by kernels queued before its release: wait for them.
    const int se = raw_->synchronize();
    if (se != 0) {
        std::fprintf(stderr, "coeffnet: CachingAllocator: synchronize before freeing failed: %s (nothing freed)\n",
                     raw_->error_name(se).c_str());
        return "synchronize before freeing failed: " + raw_->error_name(se);
    }
    for (char* base : whole) {
        const Segment seg = segments_.at(base);
        const Block b = blocks_.at(base);
        free_.erase(FreeKey{seg.large, b.stream, b.size, base});
        blocks_.erase(base);
        segments_.erase(base);
        stats_.bytes_cached -= seg.size;
        raw_->leave_cache(base, seg.size);
        const int e = raw_->raw_free(base);
        if (e == 0) {
            stats_.bytes_reserved -= seg.size;
            --stats_.num_segments;
            ++stats_.num_raw_free;
        } else {
            // The memory may still be held: it stays reserved (never handed out again) until a free succeeds.
            ++stats_.num_free_failures;
            stats_.bytes_unfreed += seg.size;
            unfreed_.emplace(base, seg.size);
            std::fprintf(stderr, "coeffnet: CachingAllocator: %s of a %zu-byte segment failed: %s (kept as reserved)\n",
                         raw_->free_name(), seg.size, raw_->error_name(e).c_str());
            errors += (errors.empty() ? "" : "; ") + free_failed(seg.size, e, "");
        }
    }
    return errors;
}

template <class Mutex>
void BasicCachingAllocator<Mutex>::empty_cache() {
    std::lock_guard<Mutex> lock(mutex_);
    std::string errors;
    for (auto it = unfreed_.begin(); it != unfreed_.end();) {  // first retry the frees that failed before
        const int e = raw_->raw_free(it->first);
        if (e == 0) {
            stats_.bytes_reserved -= it->second;
            stats_.bytes_unfreed -= it->second;
            --stats_.num_segments;
            ++stats_.num_raw_free;
            it = unfreed_.erase(it);
        } else {
            ++stats_.num_free_failures;
            errors += (errors.empty() ? "" : "; ") + free_failed(it->second, e, " again");
            ++it;
        }
    }
    const std::string now = free_segments_locked(true);
    if (!now.empty()) errors += (errors.empty() ? "" : "; ") + now;
    if (!errors.empty())
        fail("CachingAllocator::empty_cache: ", errors, "; still reserved ", stats_.bytes_reserved, " bytes (",
             stats_.bytes_unfreed, " of them unfreed)");
}

template <class Mutex>
BasicCachingAllocator<Mutex>::~BasicCachingAllocator() {
    std::lock_guard<Mutex> lock(mutex_);
    (void)free_segments_locked(true);
}

using CachingAllocator = BasicCachingAllocator<std::mutex>;

}  // namespace coeffnet
