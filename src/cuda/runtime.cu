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

// ---- the raw device memory under the caching allocator ----------------------------------------

namespace {

// A failed call also clears the runtime's last error, so that it is not reported again by the
// next launch check.
class CudaRawMemory final : public RawMemory {
public:
    int raw_malloc(void** ptr, size_t bytes) override { return cleared(cudaMalloc(ptr, bytes)); }
    int raw_free(void* ptr) override { return cleared(cudaFree(ptr)); }
    int synchronize() override { return cleared(cudaDeviceSynchronize()); }
    bool out_of_memory(int e) const override { return e == cudaErrorMemoryAllocation; }
    std::string error_name(int e) const override { return cudaGetErrorName(static_cast<cudaError_t>(e)); }
    const char* malloc_name() const override { return "cudaMalloc"; }
    const char* free_name() const override { return "cudaFree"; }

private:
    static int cleared(cudaError_t e) {
        if (e != cudaSuccess) (void)cudaGetLastError();
        return static_cast<int>(e);
    }
};

}  // namespace

RawMemory& cuda_raw_memory() {
    static CudaRawMemory raw;
    return raw;
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
