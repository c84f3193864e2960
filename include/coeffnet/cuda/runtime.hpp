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
#include <string>

#include "../core/caching_allocator.hpp"
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

// The caching allocator (core/caching_allocator.hpp, shared with the host) over cudaMalloc /
// cudaFree / cudaDeviceSynchronize; its raw error codes are cudaError_t values.
using coeffnet::AllocatorStats;
using coeffnet::CachingAllocator;
using coeffnet::RawMemory;
// cudaMalloc, cudaFree, cudaDeviceSynchronize; one process-wide instance.
RawMemory& cuda_raw_memory();

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
    CachingAllocator allocator_{cuda_raw_memory()};
};

// Raw copies on Context::get().stream(). The host-side ones synchronise the stream before returning,
// so `host` may be reused at once. bytes == 0 is a no-op (but still requires a usable device).
void copy_host_to_device(void* device, const void* host, size_t bytes);
void copy_device_to_host(void* host, const void* device, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);  // asynchronous
void memset_zero(void* device, size_t bytes);                          // asynchronous

}  // namespace coeffnet::cuda
