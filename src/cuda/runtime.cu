// src/cuda/runtime.cu: status(), Context and CachingAllocator (declared in coeffnet/cuda/runtime.hpp).
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "coeffnet/cuda/runtime.hpp"

#ifndef COEFFNET_CUDA_ARCHS_STRING
#define COEFFNET_CUDA_ARCHS_STRING "unknown"
#endif

namespace coeffnet::cuda {

namespace {

// Exists only so that status() can ask whether this build has code the device can run.
__global__ void probe_kernel(int* p) {
    if (p != nullptr) *p = 1;
}

std::string error_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

Status compute_status() {
    Status s;
    s.built_for = COEFFNET_CUDA_ARCHS_STRING;
    cudaRuntimeGetVersion(&s.runtime_version);
    cudaDriverGetVersion(&s.driver_version);
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        s.reason = "cudaGetDeviceCount: " + error_text(e);
        return s;
    }
    s.device_count = count;
    if (count == 0) {
        s.reason = "no CUDA device found";
        return s;
    }
    cudaDeviceProp prop{};
    const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
    if (pe != cudaSuccess) {
        (void)cudaGetLastError();
        s.reason = "cudaGetDeviceProperties(0): " + error_text(pe);
        return s;
    }
    s.name = prop.name;
    s.cc_major = prop.major;
    s.cc_minor = prop.minor;
    s.total_memory = prop.totalGlobalMem;
    if (prop.major < 8) {
        s.reason = "device 0 (" + s.name + ") has compute capability " + std::to_string(prop.major) + "." +
                   std::to_string(prop.minor) + "; coeffnet's CUDA backend needs 8.0 or newer";
        return s;
    }
    cudaFuncAttributes attr{};
    const cudaError_t fe = cudaFuncGetAttributes(&attr, probe_kernel);
    if (fe != cudaSuccess) {
        (void)cudaGetLastError();
        s.reason = "this build has no code for device 0 (" + s.name + ", sm_" + std::to_string(prop.major) +
                   std::to_string(prop.minor) + "; built for " + s.built_for +
                   "; rebuild with -DCOEFFNET_CUDA_ARCHS=...): " + error_text(fe);
        return s;
    }
    s.usable = true;
    return s;
}

}  // namespace

const Status& status() {
    static const Status s = [] {
        try {
            return compute_status();
        } catch (const std::exception& ex) {
            Status f;
            f.reason = std::string("status() failed: ") + ex.what();
            return f;
        }
    }();
    return s;
}

void require(const std::string& what) {
    const Status& s = status();
    if (!s.usable) fail(what, ": no usable CUDA device (", s.reason, ")");
}

std::string describe() {
    const Status& s = status();
    std::ostringstream os;
    auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
    if (!s.usable) {
        os << "no usable CUDA device: " << s.reason;
    } else {
        os << s.name << " (sm_" << s.cc_major << s.cc_minor << ", " << static_cast<double>(s.total_memory) / (1 << 30)
           << " GiB, " << s.device_count << " device" << (s.device_count == 1 ? "" : "s") << ", driver "
           << ver(s.driver_version) << ", runtime " << ver(s.runtime_version) << ", built for " << s.built_for << ")";
    }
    return os.str();
}

// ---- CachingAllocator ------------------------------------------------------------------------

namespace {

// A failed call also clears the runtime's last error, so that it is not reported again by the
// next launch check.
class CudaRawMemory final : public RawDeviceMemory {
public:
    cudaError_t device_malloc(void** ptr, size_t bytes) override { return cleared(cudaMalloc(ptr, bytes)); }
    cudaError_t device_free(void* ptr) override { return cleared(cudaFree(ptr)); }
    cudaError_t synchronize() override { return cleared(cudaDeviceSynchronize()); }
    const char* error_name(cudaError_t e) override { return cudaGetErrorName(e); }

private:
    static cudaError_t cleared(cudaError_t e) {
        if (e != cudaSuccess) (void)cudaGetLastError();
        return e;
    }
};

}  // namespace

RawDeviceMemory& cuda_raw_memory() {
    static CudaRawMemory raw;
    return raw;
}

size_t CachingAllocator::round_size(size_t bytes) {
    constexpr size_t small = 512, mib = size_t{1} << 20;
    if (bytes == 0) return small;
    if (bytes < mib) return (bytes + small - 1) / small * small;
    size_t p = mib;
    while (p <= bytes / 2) p *= 2;  // p = the largest power of two <= bytes
    const size_t step = p / 8;
    return (bytes + step - 1) / step * step;
}

// Hands out the free block at `it` for `size` bytes: split when the remainder is worth keeping.
char* CachingAllocator::take_locked(std::map<char*, Block>::iterator it, size_t size, bool large) {
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
    return ptr;
}

void* CachingAllocator::allocate(size_t bytes, cudaStream_t stream) {
    const size_t size = round_size(bytes);
    const bool large = size > small_request;
    const uintptr_t key = reinterpret_cast<uintptr_t>(stream);
    std::lock_guard<std::mutex> lock(mutex_);
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
    cudaError_t e = raw_->device_malloc(&raw, seg);
    if (e == cudaErrorMemoryAllocation) {
        free_errors += free_segments_locked(true);
        e = raw_->device_malloc(&raw, seg);
    }
    if (e != cudaSuccess) {
        fail("CachingAllocator: cudaMalloc of ", seg, " bytes (", bytes, " requested) failed: ", raw_->error_name(e),
             "; in use ", stats_.bytes_in_use, " bytes, reserved ", stats_.bytes_reserved, " bytes, cached ",
             stats_.bytes_cached, " bytes", free_errors.empty() ? "" : "; ", free_errors);
    }
    ++stats_.num_cuda_malloc;
    ++stats_.num_segments;
    stats_.bytes_reserved += seg;
    stats_.bytes_cached += seg;
    char* base = static_cast<char*>(raw);
    segments_.emplace(base, Segment{seg, large});
    const auto it = blocks_.emplace(base, Block{seg, key, base, false}).first;
    free_.insert(FreeKey{large, key, seg, base});
    return take_locked(it, size, large);
}

void CachingAllocator::release(void* ptr) noexcept {
    if (ptr == nullptr) return;
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = blocks_.find(static_cast<char*>(ptr));
        if (it == blocks_.end() || !it->second.in_use) {
            std::fprintf(stderr, "coeffnet: CachingAllocator::release: %p was not allocated here (ignored)\n", ptr);
            return;
        }
        const bool large = segments_.at(it->second.segment).large;
        it->second.in_use = false;
        stats_.bytes_in_use -= it->second.size;
        stats_.bytes_cached += it->second.size;
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

std::shared_ptr<void> CachingAllocator::allocate_shared(size_t bytes, cudaStream_t stream) {
    void* p = allocate(bytes, stream);
    try {
        return std::shared_ptr<void>(p, [this](void* q) { release(q); });
    } catch (...) {
        release(p);
        throw;
    }
}

AllocatorStats CachingAllocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void CachingAllocator::reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_in_use = stats_.bytes_in_use;
}

std::string CachingAllocator::free_segments_locked(bool small_too) {
    std::vector<char*> whole;
    for (const auto& [base, seg] : segments_) {
        if (!seg.large && !small_too) continue;
        const Block& b = blocks_.at(base);
        if (!b.in_use && b.size == seg.size) whole.push_back(base);
    }
    if (whole.empty()) return {};
    std::string errors;
    // A cached block may still be read by kernels queued before its release: wait for them.
    const cudaError_t se = raw_->synchronize();
    if (se != cudaSuccess) {
        std::fprintf(stderr, "coeffnet: CachingAllocator: synchronize before freeing failed: %s (nothing freed)\n",
                     raw_->error_name(se));
        return std::string("synchronize before freeing failed: ") + raw_->error_name(se);
    }
    for (char* base : whole) {
        const Segment seg = segments_.at(base);
        const Block b = blocks_.at(base);
        free_.erase(FreeKey{seg.large, b.stream, b.size, base});
        blocks_.erase(base);
        segments_.erase(base);
        stats_.bytes_cached -= seg.size;
        const cudaError_t e = raw_->device_free(base);
        if (e == cudaSuccess) {
            stats_.bytes_reserved -= seg.size;
            --stats_.num_segments;
            ++stats_.num_cuda_free;
        } else {
            // The memory may still be held: it stays reserved (never handed out again) until a free succeeds.
                ++stats_.num_free_failures;
            stats_.bytes_unfreed += seg.size;
            unfreed_.emplace(base, seg.size);
            std::fprintf(stderr, "coeffnet: CachingAllocator: cudaFree of a %zu-byte segment failed: %s (kept as reserved)\n",
                         seg.size, raw_->error_name(e));
            errors += (errors.empty() ? "" : "; ") + std::string("cudaFree of ") + std::to_string(seg.size) +
                      " bytes failed: " + raw_->error_name(e);
        }
    }
    return errors;
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string errors;
    for (auto it = unfreed_.begin(); it != unfreed_.end();) {  // first retry the frees that failed before
        const cudaError_t e = raw_->device_free(it->first);
        if (e == cudaSuccess) {
            stats_.bytes_reserved -= it->second;
            stats_.bytes_unfreed -= it->second;
            --stats_.num_segments;
            ++stats_.num_cuda_free;
            it = unfreed_.erase(it);
        } else {
                ++stats_.num_free_failures;
            errors += (errors.empty() ? "" : "; ") + std::string("cudaFree of ") + std::to_string(it->second) +
                      " bytes failed again: " + raw_->error_name(e);
            ++it;
        }
    }
    const std::string now = free_segments_locked(true);
    if (!now.empty()) errors += (errors.empty() ? "" : "; ") + now;
    if (!errors.empty())
        fail("CachingAllocator::empty_cache: ", errors, "; still reserved ", stats_.bytes_reserved, " bytes (",
             stats_.bytes_unfreed, " of them unfreed)");
}

CachingAllocator::~CachingAllocator() {
    std::lock_guard<std::mutex> lock(mutex_);
    (void)free_segments_locked(true);
}

// ---- Context -----------------------------------------------------------------------------------

Context::Context() {
    COEFFNET_CUDA_CHECK(cudaSetDevice(device_));
    COEFFNET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    COEFFNET_CUBLAS_CHECK(cublasCreate(&cublas_));
    COEFFNET_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // cuBLAS recommends 32 MiB of workspace on Hopper (4 MiB before); giving it our own buffer keeps
    // it from allocating per stream behind the allocator's back.
    workspace_bytes_ = size_t{32} << 20;
    COEFFNET_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
    COEFFNET_CUBLAS_CHECK(cublasSetWorkspace(cublas_, workspace_, workspace_bytes_));
    // TF32 only where a caller asks for it (CUBLAS_COMPUTE_32F_FAST_TF32), never implicitly.
    COEFFNET_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
}

Context& Context::get() {
    require("coeffnet::cuda::Context");
    // Never destroyed: see the header. A throwing constructor leaves it unset, and the next call retries.
    static Context* ctx = new Context();
    return *ctx;
}

void Context::synchronize() { COEFFNET_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

// ---- raw copies --------------------------------------------------------------------------------

void copy_host_to_device(void* device, const void* host, size_t bytes) {
    Context& ctx = Context::get();
    if (bytes == 0) return;
    COEFFNET_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, ctx.stream()));
    COEFFNET_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

void copy_device_to_host(void* host, const void* device, size_t bytes) {
    Context& ctx = Context::get();
    if (bytes == 0) return;
    COEFFNET_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, ctx.stream()));
    COEFFNET_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
    Context& ctx = Context::get();
    if (bytes == 0) return;
    COEFFNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
}

void memset_zero(void* device, size_t bytes) {
    Context& ctx = Context::get();
    if (bytes == 0) return;
    COEFFNET_CUDA_CHECK(cudaMemsetAsync(device, 0, bytes, ctx.stream()));
}

}  // namespace coeffnet::cuda
