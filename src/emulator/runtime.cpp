// src/emulator/runtime.cpp: the CUDA runtime calls, cuBLAS's GEMMs and the warp collectives
// (shuffles, wmma) of the block emulator (see emulator.hpp). Not instrumented: the collectives
// report their lanes' shared-memory accesses through check_access().
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "emulator.hpp"
#include "include/cublas_api.h"
#include "include/cuda_runtime.h"
#include "include/mma.h"

namespace {

cudaError_t g_last = cudaSuccess;
int g_device = 0;

cudaError_t record(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}

coeffnet::emu::Target target() { return coeffnet::emu::options().target; }

}  // namespace

namespace coeffnet::emu::detail {

void set_last_error(cudaError_t e) { record(e); }

cudaError_t func_get_attributes(cudaFuncAttributes* attr, const void* kernel) {
    if (attr == nullptr || kernel == nullptr) return record(cudaErrorInvalidValue);
    *attr = cudaFuncAttributes{};
    attr->maxThreadsPerBlock = 1024;
    attr->maxDynamicSharedSizeBytes = static_cast<int>(max_dynamic_shared(kernel));
    return cudaSuccess;
}

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
    if (kernel == nullptr || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        value > max_shared_per_block(target()))
        return record(cudaErrorInvalidValue);
    set_max_dynamic_shared(kernel, value);
    return cudaSuccess;
}

// ---- warp shuffles ----------------------------------------------------------------------------
void shfl_complete(void** payloads, unsigned mask, void*) {
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        auto* s = static_cast<ShflSlot*>(payloads[l]);
        const int width = s->width;
        if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
            throw KernelError("__shfl_sync: width " + std::to_string(width) + " is not a power of two <= 32");
        const int base = l / width * width, pos = l % width;
        int src = l;
        switch (s->kind) {
            case Shfl::idx: src = base + s->arg % width; break;
            case Shfl::up: src = pos - s->arg >= 0 ? l - s->arg : l; break;
            case Shfl::down: src = pos + s->arg < width ? l + s->arg : l; break;
            case Shfl::bfly: src = (l ^ s->arg) < base + width ? (l ^ s->arg) : l; break;
        }
        if (!(mask >> src & 1u))
            throw KernelError("__shfl_sync: lane " + std::to_string(l) + " reads lane " + std::to_string(src) +
                              ", which is not in the mask 0x" + [&] {
                                  char b[16];
                                  std::snprintf(b, sizeof b, "%x", mask);
                                  return std::string(b);
                              }() + " (its value is undefined on a device)");
        s->result = static_cast<ShflSlot*>(payloads[src])->value;
    }
}

}  // namespace coeffnet::emu::detail

// ---- wmma -------------------------------------------------------------------------------------
namespace nvcuda::wmma::emu_detail {

namespace {
int warp_base() { return coeffnet::emu::thread_linear_id() / 32 * 32; }

// Every lane must pass the same pointer and ldm; the device also needs 256-bit aligned pointers
// and ldm a multiple of 16 bytes.
const Tile& uniform_tile(void** payloads, const char* what) {
    const Tile& t0 = *static_cast<Tile*>(payloads[0]);
    for (int l = 1; l < 32; ++l) {
        const Tile& t = *static_cast<Tile*>(payloads[l]);
        if (t.ptr != t0.ptr || t.ldm != t0.ldm || t.col_major != t0.col_major)
            throw coeffnet::emu::KernelError(std::string(what) + ": lanes 0 and " + std::to_string(l) +
                                             " pass different pointers, ldm or layouts");
    }
    if (t0.ptr != nullptr) {
        if (reinterpret_cast<uintptr_t>(t0.ptr) % 32 != 0)
            throw coeffnet::emu::KernelError(std::string(what) + ": pointer " + std::to_string(reinterpret_cast<uintptr_t>(t0.ptr)) +
                                             " is not 32-byte aligned");
        if ((static_cast<size_t>(t0.ldm) * static_cast<size_t>(t0.elem_bytes)) % 16 != 0)
            throw coeffnet::emu::KernelError(std::string(what) + ": ldm " + std::to_string(t0.ldm) +
                                             " is not a multiple of 16 bytes");
    }
    return t0;
}

int64_t offset(const Tile& t, int r, int c) {
    return t.col_major ? static_cast<int64_t>(c) * t.ldm + r : static_cast<int64_t>(r) * t.ldm + c;
}
}  // namespace

void load_complete(void** payloads, unsigned, void*) {
    const Tile& t = uniform_tile(payloads, "wmma::load_matrix_sync");
    const int base = warp_base();
    std::vector<float> tile(static_cast<size_t>(t.rows * t.cols));
    for (int r = 0; r < t.rows; ++r)
        for (int c = 0; c < t.cols; ++c) {
            const int e = r * t.cols + c;
            const int64_t o = offset(t, r, c);
            const void* addr = static_cast<const char*>(t.ptr) + o * t.elem_bytes;
            coeffnet::emu::check_access(addr, static_cast<size_t>(t.elem_bytes), false, base + e % 32, "wmma load");
            tile[static_cast<size_t>(e)] = t.load(t.ptr, o);
        }
    for (int l = 0; l < 32; ++l) std::copy(tile.begin(), tile.end(), static_cast<Tile*>(payloads[l])->x);
}

void store_complete(void** payloads, unsigned, void*) {
    const Tile& t = uniform_tile(payloads, "wmma::store_matrix_sync");
    const int base = warp_base();
    for (int r = 0; r < t.rows; ++r)
        for (int c = 0; c < t.cols; ++c) {
            const int e = r * t.cols + c;
            const int64_t o = offset(t, r, c);
            void* addr = const_cast<char*>(static_cast<const char*>(t.ptr)) + o * t.elem_bytes;
            coeffnet::emu::check_access(addr, static_cast<size_t>(t.elem_bytes), true, base + e % 32, "wmma store");
            t.store(const_cast<void*>(t.ptr), o, t.x[e]);
        }
}

void fill_complete(void** payloads, unsigned, void*) {
    for (int l = 0; l < 32; ++l) {
        Tile& t = *static_cast<Tile*>(payloads[l]);
        std::fill(t.x, t.x + t.rows * t.cols, t.fill);
    }
}

void mma_complete(void** payloads, unsigned, void*) {
    const Tile& t0 = *static_cast<Tile*>(payloads[0]);
    float d[16 * 16];
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) {
            float acc = t0.c[i * 16 + j];
            for (int k = 0; k < 16; ++k) acc = std::fma(t0.a[i * 16 + k], t0.b[k * 16 + j], acc);
            d[i * 16 + j] = acc;
        }
    for (int l = 0; l < 32; ++l) std::copy(d, d + 256, static_cast<Tile*>(payloads[l])->x);
}

}  // namespace nvcuda::wmma::emu_detail

// ---- the runtime --------------------------------------------------------------------------------
cudaError_t cudaGetLastError() {
    const cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        default: return "emulated CUDA error";
    }
}
cudaError_t cudaRuntimeGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device != 0) return record(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    const bool a100 = target() == coeffnet::emu::Target::a100;
    std::snprintf(p->name, sizeof p->name, "coeffnet block emulator (%s limits)", a100 ? "A100" : "H100");
    p->totalGlobalMem = size_t{16} << 30;
    p->sharedMemPerBlock = size_t{48} << 10;
    p->sharedMemPerBlockOptin = static_cast<size_t>(coeffnet::emu::max_shared_per_block(target()));
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->multiProcessorCount = a100 ? 108 : 132;
    p->major = a100 ? 8 : 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
    *device = g_device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (device != 0) return record(cudaErrorInvalidDevice);
    g_device = device;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    if (device != 0) return record(cudaErrorInvalidDevice);
    switch (attr) {
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 << 10; return cudaSuccess;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin:
            *value = static_cast<int>(coeffnet::emu::max_shared_per_block(target()));
            return cudaSuccess;
        case cudaDevAttrMultiProcessorCount: *value = target() == coeffnet::emu::Target::a100 ? 108 : 132; return cudaSuccess;
    }
    return record(cudaErrorInvalidValue);
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
    if (ptr == nullptr) return record(cudaErrorInvalidValue);
    *ptr = coeffnet::emu::device_alloc(bytes);
    return *ptr == nullptr ? record(cudaErrorMemoryAllocation) : cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
    if (ptr == nullptr) return cudaSuccess;
    return coeffnet::emu::device_free(ptr) ? cudaSuccess : record(cudaErrorInvalidDevicePointer);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    if (bytes == 0) return cudaSuccess;
    using coeffnet::emu::is_device_pointer;
    const bool dd = is_device_pointer(dst, bytes), sd = is_device_pointer(src, bytes);
    bool ok = false;
    switch (kind) {
        case cudaMemcpyHostToHost: ok = !dd && !sd; break;
        case cudaMemcpyHostToDevice: ok = dd && !is_device_pointer(src); break;
        case cudaMemcpyDeviceToHost: ok = sd && !is_device_pointer(dst); break;
        case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
        case cudaMemcpyDefault: ok = true; break;
    }
    if (!ok) return record(cudaErrorInvalidValue);
    std::memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
    if (bytes == 0) return cudaSuccess;
    if (!coeffnet::emu::is_device_pointer(dst, bytes)) return record(cudaErrorInvalidValue);
    std::memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }

struct CUstream_st {
    unsigned flags = 0;
};
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
    *s = new CUstream_st{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// ---- cuBLAS -----------------------------------------------------------------------------------
struct cublasContext {
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new cublasContext{};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void* w, size_t bytes) {
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes > 0 && !coeffnet::emu::is_device_pointer(w, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "success" : "emulated cuBLAS error";
}

namespace {

int elem_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }
float load(const void* p, cudaDataType_t t, int64_t i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(p)[i];
        case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    }
    return 0.f;
}
void store(void* p, cudaDataType_t t, int64_t i, float v) {
    switch (t) {
        case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
        case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
        case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    }
}
// What the fast compute types do to fp32 inputs: round them to TF32 (10-bit mantissa) or bf16.
float round_input(float v, cublasComputeType_t ct, cudaDataType_t t) {
    if (t != CUDA_R_32F) return v;
    if (ct == CUBLAS_COMPUTE_32F_FAST_16BF) return __bfloat162float(__float2bfloat16_rn(v));
    if (ct == CUBLAS_COMPUTE_32F_FAST_TF32) {
        uint32_t b;
        std::memcpy(&b, &v, 4);
        if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0xfffu + ((b >> 13) & 1u)) & ~0x1fffu;
        std::memcpy(&v, &b, 4);
    }
    return v;
}

// The extent (in elements) a column-major rows x cols matrix with leading dimension ld covers.
int64_t extent(int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (cols - 1) * ld + rows; }

void require_device(const void* p, int64_t first, int64_t elems, int bytes, const char* what) {
    if (elems == 0) return;
    const auto* c = static_cast<const char*>(p) + first * bytes;
    if (!coeffnet::emu::is_device_pointer(c, static_cast<size_t>(elems * bytes)))
        throw coeffnet::emu::KernelError(std::string("emulated cuBLAS GEMM: ") + what +
                                         " reaches outside its device allocation (an illegal address on a device)");
}

cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const void* alpha, const void* A, cudaDataType_t at, int lda, long long sa, const void* B,
                    cudaDataType_t bt, int ldb, long long sb, const void* beta, void* C, cudaDataType_t ct_, int ldc,
                    long long sc, int batch, cublasComputeType_t compute) {
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    const int64_t a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    const int64_t b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    if (lda < std::max<int64_t>(1, a_rows) || ldb < std::max<int64_t>(1, b_rows) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (at != bt || at != ct_ || (at != CUDA_R_32F && at != CUDA_R_16BF && at != CUDA_R_16F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16BF && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    const int eb = elem_bytes(at);
    const int64_t ea = extent(a_rows, a_cols, lda), ebb = extent(b_rows, b_cols, ldb), ec = extent(m, n, ldc);
    for (int64_t b = 0; b < batch; ++b) {
        if (k > 0) {
            require_device(A, b * sa, ea, eb, "A");
            require_device(B, b * sb, ebb, eb, "B");
        }
        require_device(C, b * sc, ec, eb, "C");
    }
    std::vector<float> out(static_cast<size_t>(m) * static_cast<size_t>(n));
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < n; ++j)
            for (int64_t i = 0; i < m; ++i) {
                float acc = 0.f;
                for (int64_t p = 0; p < k; ++p) {
                    const int64_t ia = ta == CUBLAS_OP_N ? i + p * lda : p + i * lda;
                    const int64_t ib = tb == CUBLAS_OP_N ? p + j * ldb : j + p * ldb;
                    acc = std::fma(round_input(load(A, at, b * sa + ia), compute, at),
                                   round_input(load(B, bt, b * sb + ib), compute, bt), acc);
                }
                const int64_t ic = b * sc + i + j * ldc;
                // beta = 0: C is not read (it may hold NaN), as cuBLAS documents.
                out[static_cast<size_t>(i + j * m)] = be == 0.f ? al * acc : al * acc + be * load(C, ct_, ic);
            }
        for (int64_t j = 0; j < n; ++j)
            for (int64_t i = 0; i < m; ++i) store(C, ct_, b * sc + i + j * ldc, out[static_cast<size_t>(i + j * m)]);
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType_t at, int lda, const void* B,
                            cudaDataType_t bt, int ldb, const void* beta, void* C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
    return gemm(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, compute);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType_t at, int lda,
                                          long long sa, const void* B, cudaDataType_t bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType_t ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
    return gemm(h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, batch, compute);
}
