// kernels/activations.cuh: GELU (erf and tanh), SiLU, bias add and residual add.
//
// What it does: y = act(x + bias) with bias [C] broadcast over the last axis (optional;
// act = identity is the plain bias add), its backward dx = dy * act'(x + bias), and
// y = a + b. Formulas are ops/elementwise.hpp's, evaluated in fp32:
//   gelu_erf  0.5 v (1 + erf(v / sqrt 2)),   d = Phi(v) + v phi(v)
//   gelu_tanh 0.5 v (1 + tanh(k (v + 0.044715 v^3))), k = sqrt(2 / pi)
//   silu      v / (1 + exp(-v)),              d = s (1 + v (1 - s))
// The bias gradient is a column sum (colsum_partial/final in common.cuh).
//
// How it is parallelised: one flat grid-stride loop over VEC-element vectors (int64 index),
// VEC = 16 bytes / sizeof(T) when every pointer is 16-byte aligned and n and C are multiples
// of VEC, else 1. The activation is a runtime switch (uniform over the grid, so no
// divergence) to keep the number of instantiations small. Grid: enough blocks of 256 threads
// to cover n once, capped at 65535 * 16 (then the loop strides).
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack  | spill st/ld | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   activation_bwd (6)      | 25-40 -> 25-40 | 0 -> 0 | 0/0 -> 0/0  | 21-40 -> 21-40 | 0 -> 0      | 0/0 -> 0/0
//   activation_fwd (6)      | 24-39 -> 24-39 | 0 -> 0 | 0/0 -> 0/0  | 19-32 -> 19-32 | 0 -> 0      | 0/0 -> 0/0
//   residual_add_kernel (6) | 16-28 -> 16-28 | 0 -> 0 | 0/0 -> 0/0  | 12-26 -> 12-26 | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

enum ActKind : int { act_gelu_erf = 0, act_gelu_tanh = 1, act_silu = 2, act_identity = 3 };

__device__ __forceinline__ float act_value(int kind, float v) {
    switch (kind) {
        case act_gelu_erf: return 0.5f * v * (1.f + erff(v * 0.70710678118654752440f));
        case act_gelu_tanh: {
            const float k = 0.79788456080286535588f;
            return 0.5f * v * (1.f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
        case act_silu: return v / (1.f + expf(-v));
        default: return v;
    }
}

__device__ __forceinline__ float act_derivative(int kind, float v) {
    switch (kind) {
        case act_gelu_erf: {
            const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752440f));
            const float pdf = 0.39894228040143267794f * expf(-0.5f * v * v);
            return cdf + v * pdf;
        }
        case act_gelu_tanh: {
            const float k = 0.79788456080286535588f;
            const float t = tanhf(k * (v + 0.044715f * v * v * v));
            return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * v * v);
        }
        case act_silu: {
            const float s = 1.f / (1.f + expf(-v));
            return s * (1.f + v * (1.f - s));
        }
        default: return 1.f;
    }
}

// v[j] += bias[(at + j) % cols] where there is a bias (the vector of VEC elements from flat index `at`).
template <int VEC, class T>
__device__ __forceinline__ void add_bias(const T* __restrict__ bias, int64_t at, int64_t cols, float (&v)[VEC]) {
    if (bias) {
        float b[VEC];
        load_vec<VEC>(bias + at % cols, b);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] += b[j];
    }
}

// y = act(x + bias[c]); y may alias x (each thread reads its vector, then writes it).
template <class T, int VEC>
__global__ void activation_fwd(int kind, const T* x, const T* __restrict__ bias, T* y, int64_t n, int64_t cols) {
    const int64_t nvec = n / VEC;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float v[VEC];
        load_vec<VEC>(x + i * VEC, v);
        add_bias<VEC>(bias, i * VEC, cols, v);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = act_value(kind, v[j]);
        store_vec<VEC>(y + i * VEC, v);
    }
}

// dx = dy * act'(x + bias[c]); dx may alias dy.
template <class T, int VEC>
__global__ void activation_bwd(int kind, const T* __restrict__ x, const T* __restrict__ bias, const T* dy, T* dx,
                               int64_t n, int64_t cols) {
    const int64_t nvec = n / VEC;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float v[VEC], g[VEC];
        load_vec<VEC>(x + i * VEC, v);
        load_vec<VEC>(dy + i * VEC, g);
        add_bias<VEC>(bias, i * VEC, cols, v);
#pragma unroll
        for (int j = 0; j < VEC; ++j) g[j] *= act_derivative(kind, v[j]);
        store_vec<VEC>(dx + i * VEC, g);
    }
}

// y = a + b; y may alias a or b.
template <class T, int VEC>
__global__ void residual_add_kernel(const T* a, const T* b, T* y, int64_t n) {
    const int64_t nvec = n / VEC;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float u[VEC], w[VEC];
        load_vec<VEC>(a + i * VEC, u);
        load_vec<VEC>(b + i * VEC, w);
#pragma unroll
        for (int j = 0; j < VEC; ++j) u[j] += w[j];
        store_vec<VEC>(y + i * VEC, u);
    }
}

}  // namespace coeffnet::cuda::kern
