// coeffnet/cuda/gemm.hpp: matrix products on cuBLAS (cublasGemmStridedBatchedEx), row-major.
//
// gemm:   C = alpha * op(A) op(B) + beta * C, op(X) = X or X^T (the last two axes), batched over every
//         leading axis. A is [..., M, K] ([..., K, M] when trans_a), B is [..., K, N] ([..., N, K] when
//         trans_b), C is [..., M, N] and must already have the broadcast batch shape. An operand whose
//         batch has one matrix (rank 2, or leading axes all 1) is broadcast with batch stride 0; any other
//         operand must have exactly C's leading axes (after left-padding with 1s). beta == 0 ignores C's
//         contents (NaN included).
// linear: y = x W^T + b with x [..., K], W [N, K], b [N] (or an undefined DeviceTensor: no bias),
//         y [..., N] preallocated; one GEMM over all rows of x. The bias is broadcast into y first and
//         the GEMM adds to it (beta = 1), so a 16-bit y is rounded once.
//
// Precision (accumulation is always fp32):
//   T = float:      fp32 -> CUBLAS_COMPUTE_32F (full fp32, the default), tf32 -> CUBLAS_COMPUTE_32F_FAST_TF32,
//                   bf16 -> CUBLAS_COMPUTE_32F_FAST_16BF (inputs rounded to bf16 inside cuBLAS).
//   T = bfloat16_t, half_t: CUDA_R_16BF / CUDA_R_16F inputs and output, CUBLAS_COMPUTE_32F whatever `p` says.
// Row-major through cuBLAS's column-major interface: C^T = op(B)^T op(A)^T, i.e. the operands swapped.
// Runs on Context::get().stream(); asynchronous. Instantiated for float, bfloat16_t and half_t
// (src/cuda/gemm.cu). Shape mistakes throw coeffnet::Error naming the function and the shapes.
#pragma once

#include "../core/dtype.hpp"
#include "tensor.hpp"

namespace coeffnet::cuda {

enum class GemmPrecision { fp32, tf32, bf16 };

const char* precision_name(GemmPrecision p);

template <class T>
void gemm(const DeviceTensor<T>& A, const DeviceTensor<T>& B, DeviceTensor<T>& C, bool trans_a, bool trans_b,
          float alpha = 1.0f, float beta = 0.0f, GemmPrecision p = GemmPrecision::fp32);

template <class T>
void linear(const DeviceTensor<T>& x, const DeviceTensor<T>& W, const DeviceTensor<T>& bias, DeviceTensor<T>& y,
            GemmPrecision p = GemmPrecision::fp32);

// The shape gemm() expects for C (the broadcast batch of A and B, then [M, N]); throws on a mismatch.
Shape gemm_output_shape(const Shape& a, const Shape& b, bool trans_a, bool trans_b);

extern template void gemm<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, DeviceTensor<float>&, bool,
                                 bool, float, float, GemmPrecision);
extern template void gemm<bfloat16_t>(const DeviceTensor<bfloat16_t>&, const DeviceTensor<bfloat16_t>&,
                                      DeviceTensor<bfloat16_t>&, bool, bool, float, float, GemmPrecision);
extern template void gemm<half_t>(const DeviceTensor<half_t>&, const DeviceTensor<half_t>&, DeviceTensor<half_t>&,
                                  bool, bool, float, float, GemmPrecision);
extern template void linear<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                   DeviceTensor<float>&, GemmPrecision);
extern template void linear<bfloat16_t>(const DeviceTensor<bfloat16_t>&, const DeviceTensor<bfloat16_t>&,
                                        const DeviceTensor<bfloat16_t>&, DeviceTensor<bfloat16_t>&, GemmPrecision);
extern template void linear<half_t>(const DeviceTensor<half_t>&, const DeviceTensor<half_t>&,
                                    const DeviceTensor<half_t>&, DeviceTensor<half_t>&, GemmPrecision);

}  // namespace coeffnet::cuda
