// kernels/adamw.cuh: one AdamW step over a flat parameter (train/optim.hpp AdamW::step).
//
// What it does, per element, in fp32 with the CPU's order of operations (PyTorch's rule):
//   w *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;
//   w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc_k = 1 - beta_k^step
// w, m, v are fp32 (master weights and moments); g is the storage type T; optionally the
// updated weight is also written rounded to T (the model's bf16/half copy), saving a
// separate conversion pass. The host computes the step constants in double and rounds them
// to float exactly as the CPU does.
//
// How it is parallelised: flat grid-stride loop (int64) over VEC = 4 elements (16-byte fp32
// accesses) when n % 4 == 0 and all pointers are 16-byte aligned, else VEC = 1. Traffic per
// element: read w, m, v, g; write w, m, v (+ the T copy).
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack  | spill st/ld | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   adamw_kernel (6)        | 32-44 -> 32-44 | 0 -> 0 | 0/0 -> 0/0  | 27-42 -> 27-42 | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

struct AdamWConsts {
    float decay, b1, b2, one_minus_b1, one_minus_b2, step_size, bc2_sqrt, eps;
};

template <class T, int VEC>
__global__ void adamw_kernel(float* __restrict__ w, const T* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                             T* __restrict__ copy, int64_t n, AdamWConsts c) {
    const int64_t nvec = n / VEC;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float wv[VEC], gv[VEC], mv[VEC], vv[VEC];
        load_vec<VEC>(w + i * VEC, wv);
        load_vec<VEC>(g + i * VEC, gv);
        load_vec<VEC>(m + i * VEC, mv);
        load_vec<VEC>(v + i * VEC, vv);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            wv[j] *= c.decay;
            mv[j] = c.b1 * mv[j] + c.one_minus_b1 * gv[j];
            vv[j] = c.b2 * vv[j] + c.one_minus_b2 * gv[j] * gv[j];
            wv[j] -= c.step_size * mv[j] / (sqrtf(vv[j]) / c.bc2_sqrt + c.eps);
        }
        store_vec<VEC>(w + i * VEC, wv);
        store_vec<VEC>(m + i * VEC, mv);
        store_vec<VEC>(v + i * VEC, vv);
        if (copy) store_vec<VEC>(copy + i * VEC, wv);
    }
}

}  // namespace coeffnet::cuda::kern
