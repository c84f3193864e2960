// src/cuda/gemm.cu: gemm() and linear() on cuBLAS (declared in coeffnet/cuda/gemm.hpp).
//
// Every product is one cublasGemmEx call, or for a batch one cublasGemmStridedBatchedEx call
// (chunked only past INT_MAX matrices), with the row-major operands swapped: cuBLAS computes the
// column-major C^T = op(B)^T op(A)^T, which is the row-major C. The bias of linear() is broadcast
// into y by a grid-stride kernel before the GEMM accumulates into it with beta = 1.
//
// ptxas, broadcast_rows_kernel (2 instantiations), before (329d3b2) -> after the block emulator
// change (launch<kernel>(...) for <<<...>>>): 26 -> 26 registers on sm_90a, 30 -> 30 on sm_80, no
// stack frame and no spills either way (nvcc 13.0, -O3, 2026-12-07; the command in
// tools/ptxas_table.py, with the CMake flags and --generate-code for sm_90a and sm_80).
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "coeffnet/cuda/gemm.hpp"
#include "kernels/launch.cuh"

namespace coeffnet::cuda {

static_assert(sizeof(bfloat16_t) == 2 && sizeof(half_t) == 2, "16-bit storage types must be 2 bytes");

const char* precision_name(GemmPrecision p) {
    switch (p) {
        case GemmPrecision::fp32: return "fp32";
        case GemmPrecision::tf32: return "tf32";
        case GemmPrecision::bf16: return "bf16";
    }
    return "unknown";
}

namespace {

template <class T>
cudaDataType_t data_type() {
    if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
    else if constexpr (std::is_same_v<T, bfloat16_t>) return CUDA_R_16BF;
    else return CUDA_R_16F;
}

template <class T>
cublasComputeType_t compute_type(GemmPrecision p) {
    if constexpr (std::is_same_v<T, float>) {
        switch (p) {
            case GemmPrecision::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
            case GemmPrecision::bf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
            case GemmPrecision::fp32: break;
        }
        return CUBLAS_COMPUTE_32F;
    } else {
        (void)p;
        return CUBLAS_COMPUTE_32F;  // 16-bit inputs: fp32 accumulation whatever p says
    }
}

int64_t prod(const Shape& s, size_t first, size_t last) {
    int64_t n = 1;
    for (size_t i = first; i < last; ++i) n *= s[i];
    return n;
}

int to_int(int64_t v, const char* what, const char* op) {
    if (v > INT_MAX) fail(op, ": ", what, " = ", v, " exceeds cuBLAS's int range");
    return static_cast<int>(v);
}

// Batch stride of an operand of shape `s` in a product whose batch shape is `batch`:
// 0 when the operand has a single matrix, else its matrix size (its leading axes must equal `batch`).
int64_t batch_stride(const Shape& s, const Shape& batch, const char* name, const char* op) {
    const size_t lead = s.size() - 2;
    const int64_t count = prod(s, 0, lead);
    const int64_t mat = s[lead] * s[lead + 1];
    if (count == 1) return 0;
    Shape padded(batch.size() - std::min(batch.size(), lead), 1);
    padded.insert(padded.end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(lead));
    if (padded != batch)
        fail(op, ": the batch axes of ", name, " ", shape_str(s), " are neither all 1 nor the output's batch ",
             shape_str(batch), " (only a single-matrix operand is broadcast)");
    return mat;
}

// Column-major cuBLAS call for the row-major C[M,N] = alpha op(A) op(B) + beta C.
template <class T>
void gemm_raw(const T* A, const T* B, T* C, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
              int64_t stride_a, int64_t stride_b, int64_t stride_c, int64_t batch, float alpha, float beta,
              GemmPrecision p, const char* op) {
    if (M == 0 || N == 0 || batch == 0) return;
    Context& ctx = Context::get();
    const int m = to_int(N, "N", op), n = to_int(M, "M", op), k = to_int(K, "K", op);
    const int lda = to_int(std::max<int64_t>(1, trans_b ? K : N), "ld(B)", op);
    const int ldb = to_int(std::max<int64_t>(1, trans_a ? M : K), "ld(A)", op);
    const int ldc = std::max(1, m);
    const cublasOperation_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cudaDataType_t dt = data_type<T>();
    const cublasComputeType_t ct = compute_type<T>(p);
    if (batch == 1) {  // what a caller of cuBLAS would write for one product
        COEFFNET_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), opa, opb, m, n, k, &alpha, B, dt, lda, A, dt, ldb, &beta, C,
                                           dt, ldc, ct, CUBLAS_GEMM_DEFAULT));
        return;
    }
    for (int64_t b0 = 0; b0 < batch; b0 += INT_MAX) {
        const int count = static_cast<int>(std::min<int64_t>(batch - b0, INT_MAX));
        COEFFNET_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            ctx.cublas(), opa, opb, m, n, k, &alpha, B + b0 * stride_b, dt, lda, stride_b, A + b0 * stride_a, dt, ldb,
            stride_a, &beta, C + b0 * stride_c, dt, ldc, stride_c, count, ct, CUBLAS_GEMM_DEFAULT));
    }
}

// y[r, n] = bias[n] for every row r: W is a same-size word type (float or uint16_t).
template <class W>
__global__ void broadcast_rows_kernel(W* __restrict__ y, const W* __restrict__ bias, int64_t rows, int64_t n) {
    const int64_t total = rows * n;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
        y[i] = bias[i % n];
}

template <class T>
void broadcast_rows(T* y, const T* bias, int64_t rows, int64_t n) {
    using W = std::conditional_t<sizeof(T) == 4, float, uint16_t>;
    const int64_t total = rows * n;
    if (total == 0) return;
    constexpr int threads = 256;
    const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 20);
    launch<broadcast_rows_kernel<W>>(static_cast<unsigned>(blocks), threads, 0, Context::get().stream())(
        reinterpret_cast<W*>(y), reinterpret_cast<const W*>(bias), rows, n);
    COEFFNET_LAUNCH_CHECK("broadcast_rows_kernel");
}

}  // namespace

Shape gemm_output_shape(const Shape& a, const Shape& b, bool trans_a, bool trans_b) {
    const char* op = "cuda::gemm";
    check(a.size() >= 2 && b.size() >= 2, op, ": operands need at least 2 axes, got A ", shape_str(a), " and B ",
          shape_str(b));
    const size_t ra = a.size(), rb = b.size();
    const int64_t M = trans_a ? a[ra - 1] : a[ra - 2], Ka = trans_a ? a[ra - 2] : a[ra - 1];
    const int64_t Kb = trans_b ? b[rb - 1] : b[rb - 2], N = trans_b ? b[rb - 2] : b[rb - 1];
    check(Ka == Kb, op, ": inner dimensions differ: A ", shape_str(a), (trans_a ? " (transposed)" : ""), " and B ",
          shape_str(b), (trans_b ? " (transposed)" : ""), " give K = ", Ka, " vs ", Kb);
    Shape out = broadcast_shapes(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2), "cuda::gemm: batch axes");
    const size_t r = out.size();
    out.resize(r + 2);
    out[r] = M;
    out[r + 1] = N;
    return out;
}

template <class T>
void gemm(const DeviceTensor<T>& A, const DeviceTensor<T>& B, DeviceTensor<T>& C, bool trans_a, bool trans_b,
          float alpha, float beta, GemmPrecision p) {
    const char* op = "cuda::gemm";
    A.require_defined(op);
    B.require_defined(op);
    C.require_defined(op);
    const Shape want = gemm_output_shape(A.shape(), B.shape(), trans_a, trans_b);
    check(C.shape() == want, op, ": C is ", shape_str(C.shape()), " but A ", shape_str(A.shape()), " and B ",
          shape_str(B.shape()), " give ", shape_str(want));
    const size_t r = want.size();
    const Shape batch(want.begin(), want.end() - 2);
    const int64_t count = prod(want, 0, r - 2);
    const int64_t M = want[r - 2], N = want[r - 1];
    const int64_t K = trans_a ? A.shape()[A.shape().size() - 2] : A.shape().back();
    const int64_t sa = batch_stride(A.shape(), batch, "A", op);
    const int64_t sb = batch_stride(B.shape(), batch, "B", op);
    if (K == 0 && count * M * N > 0 && (beta == 0.0f || beta == 1.0f)) {  // an empty sum: C = beta C
        if (beta == 0.0f) memset_zero(C.data(), C.bytes());
        return;
    }
    gemm_raw(A.data(), B.data(), C.data(), M, N, K, trans_a, trans_b, sa, sb, M * N, count, alpha, beta, p, op);
}

template <class T>
void linear(const DeviceTensor<T>& x, const DeviceTensor<T>& W, const DeviceTensor<T>& bias, DeviceTensor<T>& y,
            GemmPrecision p) {
    const char* op = "cuda::linear";
    x.require_defined(op);
    W.require_defined(op);
    y.require_defined(op);
    check(x.dim() >= 1 && W.dim() == 2, op, ": x ", shape_str(x.shape()), " must have >= 1 axis and W ",
          shape_str(W.shape()), " must be [N, K]");
    const int64_t K = x.shape().back(), N = W.shape()[0];
    check(W.shape()[1] == K, op, ": x ", shape_str(x.shape()), " has K = ", K, " but W is ", shape_str(W.shape()));
    Shape want = x.shape();
    want.back() = N;
    check(y.shape() == want, op, ": y is ", shape_str(y.shape()), ", expected ", shape_str(want));
    const bool has_bias = bias.defined();
    if (has_bias)
        check(bias.shape() == Shape{N}, op, ": bias is ", shape_str(bias.shape()), ", expected [", N, "]");
    const int64_t R = prod(x.shape(), 0, x.shape().size() - 1);
    if (R == 0 || N == 0) return;
    if (has_bias) broadcast_rows(y.data(), bias.data(), R, N);
    if (K == 0) {  // an empty sum: y = bias (or 0)
        if (!has_bias) memset_zero(y.data(), y.bytes());
        return;
    }
    gemm_raw(x.data(), W.data(), y.data(), R, N, K, false, true, 0, 0, 0, 1, 1.0f, has_bias ? 1.0f : 0.0f, p, op);
}

template void gemm<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<float>&, bool, bool,
                          float, float, GemmPrecision);
template void gemm<bfloat16_t>(const DeviceTensor<bfloat16_t>&, const DeviceTensor<bfloat16_t>&,
                               DeviceTensor<bfloat16_t>&, bool, bool, float, float, GemmPrecision);
template void gemm<half_t>(const DeviceTensor<half_t>&, const DeviceTensor<half_t>&, DeviceTensor<half_t>&, bool,
                           bool, float, float, GemmPrecision);
template void linear<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                            DeviceTensor<float>&, GemmPrecision);
template void linear<bfloat16_t>(const DeviceTensor<bfloat16_t>&, const DeviceTensor<bfloat16_t>&,
                                 const DeviceTensor<bfloat16_t>&, DeviceTensor<bfloat16_t>&, GemmPrecision);
template void linear<half_t>(const DeviceTensor<half_t>&, const DeviceTensor<half_t>&, const DeviceTensor<half_t>&,
                             DeviceTensor<half_t>&, GemmPrecision);

}  // namespace coeffnet::cuda
