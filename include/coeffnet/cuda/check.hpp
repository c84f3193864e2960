// coeffnet/cuda/check.hpp: every CUDA runtime call, cuBLAS call and kernel launch is checked.
//
//   COEFFNET_CUDA_CHECK(cudaMemcpyAsync(...));   // a cudaError_t other than cudaSuccess throws
//   COEFFNET_CUBLAS_CHECK(cublasGemmEx(...));    // a cublasStatus_t other than SUCCESS throws
//   kernel<<<grid, block, smem, stream>>>(...);
//   COEFFNET_LAUNCH_CHECK("softmax_forward");    // cudaGetLastError() after the launch
//
// The coeffnet::Error names the call as written, the error's name and string, the function and
// file:line. A launch check only sees launch errors (bad configuration, no kernel image); a fault
// inside the kernel surfaces at the next synchronising call. Set COEFFNET_CUDA_SYNC=1 in the
// environment to synchronise after every checked launch, so such a fault names its kernel.
//
// Destructors must not throw: they call the non-throwing cuda_log_error() instead.
// Plain C++ header (g++ and nvcc); needs the CUDA runtime and cuBLAS headers.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "../core/error.hpp"

namespace coeffnet::cuda::detail {

inline std::string where(const char* func, const char* file, int line) {
    return std::string(" in ") + func + " at " + file + ":" + std::to_string(line);
}

inline void check_cuda(cudaError_t err, const char* call, const char* func, const char* file, int line) {
    if (err == cudaSuccess) return;
    (void)cudaGetLastError();  // clear a non-sticky error so the next check does not report it again
    fail("CUDA error: ", call, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")",
         where(func, file, line));
}

inline void check_cublas(cublasStatus_t st, const char* call, const char* func, const char* file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fail("cuBLAS error: ", call, " failed: ", cublasGetStatusName(st), " (", cublasGetStatusString(st), ")",
         where(func, file, line));
}

// True when COEFFNET_CUDA_SYNC is set to something other than "" or "0" (read once).
inline bool sync_after_launch() {
    static const bool on = [] {
        const char* v = std::getenv("COEFFNET_CUDA_SYNC");
        return v != nullptr && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
    }();
    return on;
}

inline void check_launch(const char* kernel, const char* func, const char* file, int line) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess && sync_after_launch()) err = cudaDeviceSynchronize();
    if (err == cudaSuccess) return;
    fail("CUDA error: launch of ", kernel, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")",
         where(func, file, line));
}

// For destructors and other places that must not throw: logs to stderr, returns whether it succeeded.
inline bool cuda_log_error(cudaError_t err, const char* call, const char* file, int line) noexcept {
    if (err == cudaSuccess) return true;
    std::fprintf(stderr, "coeffnet: CUDA error (ignored): %s failed: %s (%s) at %s:%d\n", call, cudaGetErrorName(err),
                 cudaGetErrorString(err), file, line);
    return false;
}

}  // namespace coeffnet::cuda::detail

#define COEFFNET_CUDA_CHECK(call) ::coeffnet::cuda::detail::check_cuda((call), #call, __func__, __FILE__, __LINE__)
#define COEFFNET_CUBLAS_CHECK(call) ::coeffnet::cuda::detail::check_cublas((call), #call, __func__, __FILE__, __LINE__)
#define COEFFNET_LAUNCH_CHECK(name) ::coeffnet::cuda::detail::check_launch((name), __func__, __FILE__, __LINE__)
#define COEFFNET_CUDA_LOG(call) ::coeffnet::cuda::detail::cuda_log_error((call), #call, __FILE__, __LINE__)
