// kernels/softmax.cuh: softmax over the last axis, forward and backward.
//
// What it does: y = softmax(scale * x + mask) row by row, max-subtracted, with an optional
// additive fp32 mask that broadcasts over the leading axes (described by sizes and strides,
// so [B, 1, 1, M] key masks and [1, 1, N, M] causal masks are read in place, never expanded).
// A row whose every entry is -inf gives zeros (ops/softmax.hpp does the same).
// Backward: dx = scale * y * (dy - rowsum(dy * y)).
//
// How it is parallelised (the launcher picks with row_launch() in src/cuda/launchers.cu):
//   1. cached, PER_WARP (cols <= 1024): blockDim (32, 4); a warp owns a row and each lane keeps
//      its <= 32 elements in fp32 registers, so x is read once and y written once; max and
//      sum by warp shuffles. Rows walk grid-stride (int64), any row count.
//   2. cached, block per row (1024 < cols <= 8192): the same with the row spread over a
//      block (128..512 threads, <= 16 elements each: __launch_bounds__(512) leaves 128
//      registers), reductions by shuffles + 32 floats of shared memory.
//   3. streaming (cols > 8192): a block per row, one pass of online (max, sum-of-exp)
//      statistics, then a second read that writes y (3 row transfers instead of 2).
// Each variant has VEC = 1 (any width) and VEC = 16 bytes / sizeof(T) (cols a multiple and
// pointers 16-byte aligned: one 16-byte load per access). The mask is read with scalar fp32
// loads (it is broadcast over heads, so it mostly hits L2).
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs             | stack  | spill st/ld | sm_80 regs       | sm_80 stack | sm_80 spill st/ld
//   softmax_bwd_cached (8)  | 47-128 -> 47-128 | 0 -> 0 | 0/0 -> 0/0  | 47-91 -> 47-91   | 0 -> 0      | 0/0 -> 0/0
//   softmax_bwd_stream (4)  | 18-28 -> 18-28   | 0 -> 0 | 0/0 -> 0/0  | 20-31 -> 20-31   | 0 -> 0      | 0/0 -> 0/0
//   softmax_fwd_cached (8)  | 90-168 -> 90-168 | 0 -> 0 | 0/0 -> 0/0  | 92-168 -> 92-168 | 0 -> 0      | 0/0 -> 0/0
//   softmax_fwd_stream (4)  | 24-32 -> 24-32   | 0 -> 0 | 0/0 -> 0/0  | 26-32 -> 26-32   | 0 -> 0      | 0/0 -> 0/0
//   Issue 10 (2026-12-06) took softmax_fwd_* from 120-byte stack frames to 0 (sm_90a regs 98-193 ->
//   90-168 and 30-32 -> 24-32): the frames were MaskView copied to local memory (its arrays indexed by
//   a run-time axis).
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

// An fp32 additive mask broadcast to x: row r (the flattened leading index) starts at
// row_offset(r); element j of the row is at + j * col_stride (col_stride 0: broadcast).
// Leading axis d of x has lead_size[d] entries and the mask advances lead_stride[d] per entry;
// axes d >= lead_rank are unused. The loop below runs over the 6 slots with constant indices
// (unrolled, each slot guarded by d < lead_rank): indexing the arrays by a run-time d made ptxas
// copy the kernel parameter to a 120-byte local-memory stack frame (2026-12-06, sm_80/sm_90a).
struct MaskView {
    static constexpr int max_lead = 6;
    const float* ptr = nullptr;
    int lead_rank = 0;
    int64_t lead_size[max_lead] = {1, 1, 1, 1, 1, 1};
    int64_t lead_stride[max_lead] = {0, 0, 0, 0, 0, 0};
    int64_t col_stride = 0;

    __device__ __forceinline__ int64_t row_offset(int64_t row) const {
        int64_t off = 0;
#pragma unroll
        for (int d = max_lead - 1; d >= 0; --d) {
            if (d < lead_rank) {  // innermost used axis first, as the flattened index has it
                const int64_t i = row % lead_size[d];
                row /= lead_size[d];
                off += i * lead_stride[d];
            }
        }
        return off;
    }
};

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    softmax_fwd_cached(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int cols, float scale, MaskView mask) {
    constexpr int MAXV = (PER_WARP ? row_warp_elems : row_block_elems) / VEC;
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size(), nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        const float* mr = mask.ptr ? mask.ptr + mask.row_offset(row) : nullptr;
        float v[MAXV][VEC];
        float mx = -INFINITY;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
                load_vec<VEC>(xr + static_cast<int64_t>(vi) * VEC, v[k]);
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    float a = v[k][j] * scale;
                    if (mr) a += mr[static_cast<int64_t>(vi * VEC + j) * mask.col_stride];
                    v[k][j] = a;
                    mx = fmaxf(mx, a);
                }
            }
        }
        mx = group_max<PER_WARP>(mx, red);
        float s = 0.f;
        if (mx != -INFINITY) {
#pragma unroll
            for (int k = 0; k < MAXV; ++k) {
                if (t + k * nt < nvec) {
#pragma unroll
                    for (int j = 0; j < VEC; ++j) {
                        v[k][j] = expf(v[k][j] - mx);
                        s += v[k][j];
                    }
                }
            }
        }
        s = group_sum<PER_WARP>(s, red);  // every thread of the group reaches this (uniform)
        const float inv = mx == -INFINITY ? 0.f : 1.f / s;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) v[k][j] = mx == -INFINITY ? 0.f : v[k][j] * inv;
                store_vec<VEC>(yr + static_cast<int64_t>(vi) * VEC, v[k]);
            }
        }
    }
}

// Block per row, rows too long for registers.
template <class T, int VEC>
__global__ void __launch_bounds__(512)
    softmax_fwd_stream(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols, float scale, MaskView mask) {
    __shared__ float red[64];
    const int64_t nvec = cols / VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        const float* mr = mask.ptr ? mask.ptr + mask.row_offset(row) : nullptr;
        MaxSum ms{-INFINITY, 0.f};
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                float a = v[j] * scale;
                if (mr) a += mr[(vi * VEC + j) * mask.col_stride];
                ms = maxsum_add(ms, a);
            }
        }
        ms = block_maxsum(ms, red);
        const bool empty = ms.m == -INFINITY;
        const float inv = empty ? 0.f : 1.f / ms.s;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                float a = v[j] * scale;
                if (mr) a += mr[(vi * VEC + j) * mask.col_stride];
                v[j] = empty ? 0.f : expf(a - ms.m) * inv;
            }
            store_vec<VEC>(yr + vi * VEC, v);
        }
    }
}

// dx may alias dy: every thread reads its elements before writing the same ones.
template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    softmax_bwd_cached(const T* __restrict__ y, const T* dy, T* dx, int64_t rows, int cols, float scale) {
    constexpr int MAXV = (PER_WARP ? row_warp_elems : row_block_elems) / VEC;
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size(), nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const int64_t base = row * cols;
        float yv[MAXV][VEC], gv[MAXV][VEC];
        float dot = 0.f;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
                load_vec<VEC>(y + base + static_cast<int64_t>(vi) * VEC, yv[k]);
                load_vec<VEC>(dy + base + static_cast<int64_t>(vi) * VEC, gv[k]);
#pragma unroll
                for (int j = 0; j < VEC; ++j) dot += yv[k][j] * gv[k][j];
            }
        }
        dot = group_sum<PER_WARP>(dot, red);
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) gv[k][j] = scale * yv[k][j] * (gv[k][j] - dot);
                store_vec<VEC>(dx + base + static_cast<int64_t>(vi) * VEC, gv[k]);
            }
        }
    }
}

template <class T, int VEC>
__global__ void __launch_bounds__(512)
    softmax_bwd_stream(const T* __restrict__ y, const T* dy, T* dx, int64_t rows, int64_t cols, float scale) {
    __shared__ float red[64];
    const int64_t nvec = cols / VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const int64_t base = row * cols;
        float dot = 0.f;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float a[VEC], b[VEC];
            load_vec<VEC>(y + base + vi * VEC, a);
            load_vec<VEC>(dy + base + vi * VEC, b);
#pragma unroll
            for (int j = 0; j < VEC; ++j) dot += a[j] * b[j];
        }
        dot = block_sum(dot, red);
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float a[VEC], b[VEC];
            load_vec<VEC>(y + base + vi * VEC, a);
            load_vec<VEC>(dy + base + vi * VEC, b);
#pragma unroll
            for (int j = 0; j < VEC; ++j) b[j] = scale * a[j] * (b[j] - dot);
            store_vec<VEC>(dx + base + vi * VEC, b);
        }
    }
}

}  // namespace coeffnet::cuda::kern
