// coeffnet/cuda/runtime.hpp: device discovery, the execution context and the caching allocator.
//
// Mixed-precision policy of the CUDA backend (every launcher follows it):
//   - Activations and weights used in matmuls are stored in bf16 (or fp16, or fp32 when asked);
//     every matmul accumulates in fp32 (cuBLAS CUBLAS_COMPUTE_32F; fp32 inputs may opt into TF32
//     with GemmPrecision::tf32, never by default).
//   - Master weights, gradients that are accumulated across steps, and optimiser state (AdamW's
//     m and v) are fp32; the bf16 copy of a weight is made from the fp32 master after each step.
//   - Softmax and layernorm compute their statistics (row max, sum of exponentials, log-sum-exp,
//     mean, rstd) in fp32 whatever the storage type, and save them in fp32 for the backward.
//   - Every kernel loads storage-type values, computes in fp32 and rounds once when it stores.
//
// Execution model: one Context per process (device 0), owning one non-blocking stream, a cuBLAS
// handle bound to that stream with its own workspace, and a CachingAllocator. Everything the
// library launches goes to Context::get().stream() in order; host copies synchronise that stream.
// A Context (its cuBLAS handle) is meant for one host thread at a time; the allocator is thread-safe.
//
// Without a usable GPU, status() says why (never throws) and every entry point that needs the
// device throws coeffnet::Error("<what>: no usable CUDA device (<reason>)") through require().
// Plain C++ header (g++ and nvcc); the definitions are in src/cuda/runtime.cu (coeffnet::cuda).
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "check.hpp"

namespace coeffnet::cuda {

// What the machine offers. Cached after the first call.
struct Status {
    bool usable = false;
    std::string reason;        // why not usable ("" when usable)
    int device_count = 0;
    std::string name;          // device 0
    int cc_major = 0, cc_minor = 0;
    size_t total_memory = 0;   // bytes
    int driver_version = 0;    // cudaDriverGetVersion (0 when there is no driver)
    int runtime_version = 0;   // cudaRuntimeGetVersion
    std::string built_for;     // the CUDA architectures this build has code for, e.g. "80;90a"
};

// Never throws; computed once (thread-safe), then returned from the cache.
const Status& status();

// Throws coeffnet::Error("<what>: no usable CUDA device (<reason>)") when status() is not usable.
void require(const std::string& what);

// A one-line description: "NVIDIA H200 (sm_90, 139.8 GiB, driver 13.0, runtime 13.0)" or the reason.
std::string describe();

struct AllocatorStats {
    size_t bytes_in_use = 0;    // bytes of blocks handed out and not yet released (rounded sizes)
    size_t bytes_reserved = 0;  // bytes obtained with cudaMalloc and not yet freed (in use + cached)
    size_t peak_in_use = 0;     // high-water mark of bytes_in_use since construction or reset_peak()
    int64_t num_cuda_malloc = 0;
    int64_t num_cuda_free = 0;
    int64_t num_allocs = 0;      // allocate() calls
    int64_t num_cache_hits = 0;  // allocate() calls served from the cache
};

// Caches device blocks so that steady-state training does no cudaMalloc/cudaFree per op.
//
// Sizes are rounded up (to 512 B below 1 MiB; above, to an eighth of the enclosing power of two, so
// at most 12.5% is lost) and cached blocks are binned by (stream, rounded size). A released block is
// reusable at once by later work *on the stream it was allocated for*: stream order guarantees that
// the kernels that used it run first. Memory used on another stream than its allocation stream must
// not be released before that stream is synchronised (the library uses one stream).
// A request served from the cache takes the smallest cached block of at least the rounded size and at
// most 1.25 times it. When cudaMalloc fails, the cache is emptied and the call retried once; if it
// fails again, an Error names the request and the allocator's statistics.
class CachingAllocator {
public:
    CachingAllocator() = default;
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;
    ~CachingAllocator();  // frees the cached blocks (blocks still in use are left to the driver)

    void* allocate(size_t bytes, cudaStream_t stream);  // bytes > 0; 256-byte aligned
    void release(void* ptr) noexcept;                   // back to the cache; never throws
    // allocate() wrapped in a shared_ptr whose deleter calls release().
    std::shared_ptr<void> allocate_shared(size_t bytes, cudaStream_t stream);

    AllocatorStats stats() const;
    void reset_peak();
    // Synchronises the device, then cudaFree()s every cached (released) block.
    void empty_cache();

    static size_t round_size(size_t bytes);

private:
    struct Block {
        size_t size;
        cudaStream_t stream;
    };
    void free_cached_locked();

    mutable std::mutex mutex_;
    std::unordered_map<void*, Block> in_use_;
    // (stream as an integer: pointers to unrelated objects have no guaranteed order, size) -> block
    std::multimap<std::pair<uintptr_t, size_t>, void*> cached_;
    AllocatorStats stats_;
};

// The process's CUDA context (device 0). get() calls require() first; the object is created on the
// first successful call and never destroyed (kernels and cuBLAS may still be referenced by static
// DeviceTensors at exit, when the CUDA runtime is already being torn down).
class Context {
public:
    static Context& get();

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    CachingAllocator& allocator() { return allocator_; }
    void* cublas_workspace() const { return workspace_; }
    size_t cublas_workspace_bytes() const { return workspace_bytes_; }
    void synchronize();  // cudaStreamSynchronize(stream()), checked

    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

private:
    Context();
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    void* workspace_ = nullptr;
    size_t workspace_bytes_ = 0;
    CachingAllocator allocator_;
};

// Raw copies on Context::get().stream(). The host-side ones synchronise the stream before returning,
// so `host` may be reused at once. bytes == 0 is a no-op (but still requires a usable device).
void copy_host_to_device(void* device, const void* host, size_t bytes);
void copy_device_to_host(void* host, const void* device, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);  // asynchronous
void memset_zero(void* device, size_t bytes);                          // asynchronous

}  // namespace coeffnet::cuda
