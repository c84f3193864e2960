// kernels/cross_entropy.cuh: fused log-softmax + cross-entropy (mean over non-ignored targets),
// forward and backward, and sums / means over the last axis.
//
// What it does (ops/softmax.hpp cross_entropy with Reduction::mean, ops/reduce.hpp sum):
//   ce_fwd_rows:  lse[r] = log sum_j exp(x[r, j]); row loss lse[r] - x[r, t[r]] (0 if ignored)
//   ce_reduce:    loss = {sum of row losses / count, count} (NaN when count = 0, as PyTorch)
//   ce_bwd:       dx[r, j] = (exp(x[r, j] - lse[r]) - [j == t[r]]) * dloss / count; 0 rows if ignored
//   sum_rows:     y[r] = sum_j x[r, j] (times 1/C for the mean);  sum_bwd: dx[r, j] = dy[r] (/ C)
// A target outside [0, C) that is not ignore_index makes its row loss NaN (the CPU throws).
//
// How it is parallelised: a row group (a warp for C <= 1024, else a block of up to 1024
// threads; row_launch) reads its row once with online (max, sum-of-exp) statistics kept per
// thread and merged by shuffles, so the forward is one read of the logits; the backward
// is one read and one write. VEC 1 or 16 bytes. ce_reduce is one block of 1024 threads
// adding the row losses in a fixed order (deterministic). Rows walk grid-stride (int64).
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack      | spill st/ld        | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   ce_bwd (8)              | 21-40 -> 21-40 | 0 -> 0     | 0/0 -> 0/0         | 23-40 -> 23-40 | 0 -> 0      | 0/0 -> 0/0
//   ce_fwd_rows (8)         | 20-32 -> 20-32 | 0 -> 0     | 0/0 -> 0/0         | 21-32 -> 21-32 | 0 -> 0      | 0/0 -> 0/0
//   ce_reduce (1)           | 16 -> 16       | 0 -> 0     | 0/0 -> 0/0         | 15 -> 15       | 0 -> 0      | 0/0 -> 0/0
//   sum_bwd (3)             | 20-26 -> 20-26 | 0 -> 0     | 0/0 -> 0/0         | 16-30 -> 16-30 | 0 -> 0      | 0/0 -> 0/0
//   sum_rows (8)            | 20-32 -> 20-32 | 0-8 -> 0-8 | 0-8/0-8 -> 0-8/0-8 | 20-40 -> 20-40 | 0 -> 0      | 0/0 -> 0/0
//   The only nonzero stack/spill, sum_rows<float, 4, true>'s 8 bytes on sm_90a, predates issue 10
//   (2026-12-06), whose CUDA fixes left this file's figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    ce_fwd_rows(const T* __restrict__ x, const int64_t* __restrict__ targets, int64_t ignore_index, float* __restrict__ lse,
                float* __restrict__ row_loss, float* __restrict__ row_valid, int64_t rows, int64_t cols) {
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size();
    const int64_t nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const T* xr = x + row * cols;
        MaxSum ms{-INFINITY, 0.f};
        for (int64_t vi = t; vi < nvec; vi += nt) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) ms = maxsum_add(ms, v[j]);
        }
        ms = group_maxsum<PER_WARP>(ms, red);
        if (t == 0) {
            const float l = ms.m == -INFINITY ? -INFINITY : ms.m + logf(ms.s);
            lse[row] = l;
            const int64_t tg = targets[row];
            if (tg == ignore_index) {
                row_loss[row] = 0.f;
                row_valid[row] = 0.f;
            } else if (tg < 0 || tg >= cols) {
                row_loss[row] = NAN;
                row_valid[row] = 1.f;
            } else {
                row_loss[row] = l - to_float(xr[tg]);
                row_valid[row] = 1.f;
            }
        }
    }
}

// One block of 1024 threads. loss[0] = sum(row_loss) / sum(row_valid), loss[1] = sum(row_valid).
__global__ void __launch_bounds__(1024)
    ce_reduce(const float* __restrict__ row_loss, const float* __restrict__ row_valid, int64_t rows, float* __restrict__ loss) {
    __shared__ float red[64];
    float s = 0.f, c = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
        s += row_loss[r];
        c += row_valid[r];
    }
    s = block_sum(s, red);
    c = block_sum(c, red);
    if (threadIdx.x == 0) {
        loss[0] = s / c;  // 0 / 0 = NaN when every target is ignored
        loss[1] = c;
    }
}

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    ce_bwd(const T* __restrict__ x, const int64_t* __restrict__ targets, int64_t ignore_index, const float* __restrict__ lse,
           const float* __restrict__ loss, const float* __restrict__ dloss, T* __restrict__ dx, int64_t rows, int64_t cols) {
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size();
    const int64_t nvec = cols / VEC;
    const float count = loss[1];
    const float scale = count > 0.f ? (dloss ? dloss[0] : 1.f) / count : 0.f;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const T* xr = x + row * cols;
        T* dr = dx + row * cols;
        const int64_t tg = targets[row];
        const bool ignored = tg == ignore_index || tg < 0 || tg >= cols;
        const float l = lse[row];
        for (int64_t vi = t; vi < nvec; vi += nt) {
            float v[VEC];
            if (ignored) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) v[j] = 0.f;
            } else {
                load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    const float p = l == -INFINITY ? 0.f : expf(v[j] - l);
                    v[j] = (p - (vi * VEC + j == tg ? 1.f : 0.f)) * scale;
                }
            }
            store_vec<VEC>(dr + vi * VEC, v);
        }
    }
}

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    sum_rows(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols, float factor) {
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size();
    const int64_t nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const T* xr = x + row * cols;
        float s = 0.f;
        for (int64_t vi = t; vi < nvec; vi += nt) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) s += v[j];
        }
        s = group_sum<PER_WARP>(s, red);
        if (t == 0) y[row] = from_float<T>(s * factor);
    }
}

// dx[r, j] = dy[r] * factor; grid-stride over all elements.
template <class T>
__global__ void sum_bwd(const T* __restrict__ dy, T* __restrict__ dx, int64_t rows, int64_t cols, float factor) {
    const int64_t n = rows * cols;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dx[e] = from_float<T>(to_float(dy[e / cols]) * factor);
}

}  // namespace coeffnet::cuda::kern
