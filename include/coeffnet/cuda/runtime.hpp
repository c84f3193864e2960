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
#include <set>
#include <string>
#include <tuple>

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
    size_t bytes_in_use = 0;    // bytes of blocks handed out and not yet released (block sizes: rounded,
                                // plus any remainder too small to split off)
    size_t bytes_reserved = 0;  // bytes obtained from the raw allocator and not yet given back
                                // (= bytes_in_use + bytes_cached + bytes_unfreed, always)
    size_t bytes_cached = 0;    // free bytes in live segments, ready for reuse
    size_t bytes_unfreed = 0;   // bytes of segments whose free failed: still reserved, never reused
    size_t peak_in_use = 0;     // high-water mark of bytes_in_use since construction or reset_peak()
    int64_t num_cuda_malloc = 0;   // successful raw mallocs (segments created)
    int64_t num_cuda_free = 0;     // successful raw frees (segments given back)
    int64_t num_free_failures = 0; // raw frees that failed (each logged to stderr)
    int64_t num_segments = 0;      // live segments (unfreed ones included)
    int64_t num_allocs = 0;        // allocate() calls
    int64_t num_cache_hits = 0;    // allocate() calls served from cached memory, no raw malloc
    int64_t num_splits = 0;        // blocks split to serve a smaller request
};

// The raw device-memory calls the caching allocator makes, and nothing else: CachingAllocator's
// default is cudaMalloc / cudaFree / cudaDeviceSynchronize; tests pass a fake (host addresses that
// are never dereferenced) to check the bookkeeping without a GPU, including a free that fails.
class RawDeviceMemory {
public:
    virtual ~RawDeviceMemory() = default;
    virtual cudaError_t device_malloc(void** ptr, size_t bytes) = 0;
    virtual cudaError_t device_free(void* ptr) = 0;
    // Waits for queued work (a released block may still be read by kernels queued before its release).
    virtual cudaError_t synchronize() = 0;
    virtual const char* error_name(cudaError_t e) = 0;
};
// cudaMalloc, cudaFree, cudaDeviceSynchronize; one process-wide instance.
RawDeviceMemory& cuda_raw_memory();

// Caches device memory so that steady-state training does no cudaMalloc/cudaFree per op, and keeps
// what it reserves bounded when shapes vary.
//
// Sizes are rounded up (to 512 B below 1 MiB; above, to an eighth of the enclosing power of two, so
// at most 12.5% is lost). Memory comes from segments (one raw malloc each) in two pools: requests of
// at most 1 MiB ("small") share 2 MiB segments; larger ones get a segment of their rounded size.
// A segment is a chain of blocks in address order. A request takes the best fit: the smallest free
// block of its pool and stream that is large enough; the block is split when the remainder is at
// least 512 B (small pool) or 1 MiB (large pool), else handed out whole. A released block merges with
// its free neighbours in the same segment, so a segment whose blocks are all released is one free
// block again, usable by any request of its pool up to its size.
// When no free block fits a large request (a miss), every large segment that is wholly free is given
// back (after synchronize()) before the raw malloc, so memory cached for old shapes is not kept beside the new
// one; when the raw malloc fails, every wholly free segment of both pools is given back and the
// malloc retried once; if it fails again, an Error names the request and the statistics.
// Worst-case overhead:
//   - per block: the rounding (< 512 B, or <= 12.5% above 1 MiB) plus an unsplit remainder
//     (< 512 B small, < 1 MiB large);
//   - reserved: at every raw malloc of a large segment, each other large segment holds a block in
//     use, so large-pool reserved <= (large blocks in use + 1) x the largest large segment, and the
//     small pool holds <= (small blocks in use + 1) 2 MiB segments. Memory cached after a workload
//     shrinks stays until the next miss (or empty_cache()). For a loop whose steps release all their
//     blocks by the end (a training step) and whose largest shape only grows, reserved after each
//     step's first miss is that step's own segments: nothing accumulates from earlier shapes
//     (tests/cuda/test_runtime.cpp asserts this and a bound for a random-shape loop).
// A released block is reusable at once by later work *on the stream it was allocated for*: stream
// order guarantees that the kernels that used it run first. Memory used on another stream than its
// allocation stream must not be released before that stream is synchronised (the library uses one
// stream).
// A raw free that fails is logged, counted (num_free_failures), and its segment kept in
// bytes_reserved and bytes_unfreed (never handed out again); empty_cache() retries it and throws an
// Error naming the failure if memory it should have freed is still held.
class CachingAllocator {
public:
    static constexpr size_t small_request = size_t{1} << 20;  // <= this: the small pool
    static constexpr size_t small_segment = size_t{2} << 20;  // the small pool's segment size
    static constexpr size_t min_split_small = 512;
    static constexpr size_t min_split_large = size_t{1} << 20;

    CachingAllocator() : CachingAllocator(cuda_raw_memory()) {}
    explicit CachingAllocator(RawDeviceMemory& raw) : raw_(&raw) {}
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;
    ~CachingAllocator();  // gives back the wholly free segments (blocks still in use are left to the driver)

    void* allocate(size_t bytes, cudaStream_t stream);  // bytes > 0; 256-byte aligned
    void release(void* ptr) noexcept;                   // back to the cache; never throws
    // allocate() wrapped in a shared_ptr whose deleter calls release().
    std::shared_ptr<void> allocate_shared(size_t bytes, cudaStream_t stream);

    AllocatorStats stats() const;
    void reset_peak();
    // Synchronises, then gives back every wholly free segment (and retries the frees that failed
    // before); throws Error when a free fails, after the books are brought up to date.
    void empty_cache();

    static size_t round_size(size_t bytes);

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

    char* take_locked(std::map<char*, Block>::iterator it, size_t size, bool large);
    // Gives back the wholly free segments (large only, or both pools); returns the failures' text.
    std::string free_segments_locked(bool small_too);

    RawDeviceMemory* raw_;
    mutable std::mutex mutex_;
    std::map<char*, Block> blocks_;      // every block of every live segment, by address
    std::map<char*, Segment> segments_;  // live segments by base (unfreed ones in unfreed_ instead)
    std::set<FreeKey> free_;
    std::map<char*, size_t> unfreed_;    // segments whose raw free failed: base -> size
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
