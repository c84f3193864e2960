// kernels/layernorm.cuh: layer normalisation over the last axis, forward and backward.
//
// What it does: y = (x - mean) * rstd * weight + bias (weight, bias optional), with the
// statistics computed in fp32 in two passes over registers (mean, then the centred variance:
// a constant row gives exactly 0 variance, as ops/layernorm.hpp); saves mean and rstd per
// row in fp32. Backward, with xhat = (x - mean) * rstd and d = dy * weight:
//   dx = rstd * (d - mean(d) - xhat * mean(d * xhat))       (row kernel below)
//   d_weight = sum_rows(dy * xhat), d_bias = sum_rows(dy)   (colsum_partial/final, common.cuh)
//
// How it is parallelised: as kernels/softmax.cuh (row_launch): 1. warp per row with the row
// in registers (cols <= 1024), 2. block per row with the row in registers (<= 8192),
// 3. streaming block per row (longer rows: forward reads x three times, backward twice);
// VEC 1 or 16 bytes. The weight gradients are a separate deterministic two-stage column
// reduction (re-reads dy and x once) rather than per-block atomics.
// Variants not tried yet: fusing the column partial sums into the dx kernel (Apex does not
// either); Welford single-pass statistics for the streaming variant.
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations)  | regs             | stack  | spill st/ld | sm_80 regs       | sm_80 stack | sm_80 spill st/ld
//   layernorm_bwd_cached (8) | 53-128 -> 53-128 | 0 -> 0 | 0/0 -> 0/0  | 55-128 -> 55-128 | 0 -> 0      | 0/0 -> 0/0
//   layernorm_bwd_stream (4) | 27-32 -> 27-32   | 0 -> 0 | 0/0 -> 0/0  | 28-32 -> 28-32   | 0 -> 0      | 0/0 -> 0/0
//   layernorm_fwd_cached (8) | 56-93 -> 56-93   | 0 -> 0 | 0/0 -> 0/0  | 55-93 -> 55-93   | 0 -> 0      | 0/0 -> 0/0
//   layernorm_fwd_stream (4) | 24-40 -> 24-40   | 0 -> 0 | 0/0 -> 0/0  | 23-39 -> 23-39   | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    layernorm_fwd_cached(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                         float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int cols, float eps) {
    constexpr int MAXV = (PER_WARP ? row_warp_elems : row_block_elems) / VEC;
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size(), nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const T* xr = x + row * cols;
        float v[MAXV][VEC];
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
                load_vec<VEC>(xr + static_cast<int64_t>(vi) * VEC, v[k]);
#pragma unroll
                for (int j = 0; j < VEC; ++j) s += v[k][j];
            }
        }
        const float mu = group_sum<PER_WARP>(s, red) / static_cast<float>(cols);
        float q = 0.f;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            if (t + k * nt < nvec) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    const float d = v[k][j] - mu;
                    q += d * d;
                }
            }
        }
        const float var = group_sum<PER_WARP>(q, red) / static_cast<float>(cols);
        const float rs = 1.f / sqrtf(var + eps);
        if (t == 0) {
            mean[row] = mu;
            rstd[row] = rs;
        }
        T* yr = y + row * cols;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
                float wv[VEC], bv[VEC];
                if (w) load_vec<VEC>(w + vi * VEC, wv);
                if (b) load_vec<VEC>(b + vi * VEC, bv);
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    const float h = (v[k][j] - mu) * rs;
                    v[k][j] = (w ? h * wv[j] : h) + (b ? bv[j] : 0.f);
                }
                store_vec<VEC>(yr + static_cast<int64_t>(vi) * VEC, v[k]);
            }
        }
    }
}

template <class T, int VEC>
__global__ void __launch_bounds__(512)
    layernorm_fwd_stream(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                         float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int64_t cols, float eps) {
    __shared__ float red[64];
    const int64_t nvec = cols / VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        float s = 0.f;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) s += v[j];
        }
        const float mu = block_sum(s, red) / static_cast<float>(cols);
        float q = 0.f;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float v[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) q += (v[j] - mu) * (v[j] - mu);
        }
        const float rs = 1.f / sqrtf(block_sum(q, red) / static_cast<float>(cols) + eps);
        if (threadIdx.x == 0) {
            mean[row] = mu;
            rstd[row] = rs;
        }
        T* yr = y + row * cols;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float v[VEC], wv[VEC], bv[VEC];
            load_vec<VEC>(xr + vi * VEC, v);
            if (w) load_vec<VEC>(w + vi * VEC, wv);
            if (b) load_vec<VEC>(b + vi * VEC, bv);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float h = (v[j] - mu) * rs;
                v[j] = (w ? h * wv[j] : h) + (b ? bv[j] : 0.f);
            }
            store_vec<VEC>(yr + vi * VEC, v);
        }
    }
}

template <class T, int VEC, bool PER_WARP>
__global__ void __launch_bounds__(PER_WARP ? 128 : 512)
    layernorm_bwd_cached(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                         const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx, int64_t rows,
                         int cols) {
    constexpr int MAXV = (PER_WARP ? row_warp_elems : row_block_elems) / VEC;
    __shared__ float red[64];
    using G = RowGroup<PER_WARP>;
    const int t = G::lane(), nt = G::size(), nvec = cols / VEC;
    for (int64_t row = G::first_row(); row < rows; row += G::row_step()) {
        const int64_t base = row * cols;
        const float mu = mean[row], rs = rstd[row];
        float dv[MAXV][VEC], hv[MAXV][VEC];
        float m1 = 0.f, m2 = 0.f;
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
                float wv[VEC];
                load_vec<VEC>(dy + base + static_cast<int64_t>(vi) * VEC, dv[k]);
                load_vec<VEC>(x + base + static_cast<int64_t>(vi) * VEC, hv[k]);
                if (w) load_vec<VEC>(w + vi * VEC, wv);
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    hv[k][j] = (hv[k][j] - mu) * rs;
                    if (w) dv[k][j] *= wv[j];
                    m1 += dv[k][j];
                    m2 += dv[k][j] * hv[k][j];
                }
            }
        }
        const float a = group_sum<PER_WARP>(m1, red) / static_cast<float>(cols);
        const float c = group_sum<PER_WARP>(m2, red) / static_cast<float>(cols);
#pragma unroll
        for (int k = 0; k < MAXV; ++k) {
            const int vi = t + k * nt;
            if (vi < nvec) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) dv[k][j] = rs * (dv[k][j] - a - hv[k][j] * c);
                store_vec<VEC>(dx + base + static_cast<int64_t>(vi) * VEC, dv[k]);
            }
        }
    }
}

template <class T, int VEC>
__global__ void __launch_bounds__(512)
    layernorm_bwd_stream(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                         const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx, int64_t rows,
                         int64_t cols) {
    __shared__ float red[64];
    const int64_t nvec = cols / VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const int64_t base = row * cols;
        const float mu = mean[row], rs = rstd[row];
        float m1 = 0.f, m2 = 0.f;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float d[VEC], h[VEC], wv[VEC];
            load_vec<VEC>(dy + base + vi * VEC, d);
            load_vec<VEC>(x + base + vi * VEC, h);
            if (w) load_vec<VEC>(w + vi * VEC, wv);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float dd = w ? d[j] * wv[j] : d[j];
                m1 += dd;
                m2 += dd * ((h[j] - mu) * rs);
            }
        }
        const float a = block_sum(m1, red) / static_cast<float>(cols);
        const float c = block_sum(m2, red) / static_cast<float>(cols);
        for (int64_t vi = threadIdx.x; vi < nvec; vi += blockDim.x) {
            float d[VEC], h[VEC], wv[VEC];
            load_vec<VEC>(dy + base + vi * VEC, d);
            load_vec<VEC>(x + base + vi * VEC, h);
            if (w) load_vec<VEC>(w + vi * VEC, wv);
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float dd = w ? d[j] * wv[j] : d[j];
                d[j] = rs * (dd - a - ((h[j] - mu) * rs) * c);
            }
            store_vec<VEC>(dx + base + vi * VEC, d);
        }
    }
}

}  // namespace coeffnet::cuda::kern
