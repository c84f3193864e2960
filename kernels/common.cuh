// kernels/common.cuh: the pieces every hand-written coeffnet kernel shares.
//
// What it does: converts storage types (float, __nv_bfloat16, __half) to and from fp32
// registers, loads and stores short vectors (16 bytes where the caller proved alignment),
// reduces over a warp or a block (sum, max, and the online-softmax pair (max, sum of exp)),
// and maps coeffnet's host storage types (bfloat16_t, half_t) onto CUDA's bit-identical ones.
//
// How it is parallelised: nothing here launches. The reductions assume the caller's
// control flow is uniform over the group being reduced: a warp (shuffles only, no
// __syncthreads) or the whole block (shuffles, then 32 floats of shared memory).
//
// Variants: none. The row kernels choose "a warp per row" or "a block per row" at compile
// time (template flag PER_WARP) and call warp_* or block_* through group_*.
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack  | spill st/ld | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   colsum_final (3)        | 24-26 -> 24-26 | 0 -> 0 | 0/0 -> 0/0  | 21-24 -> 21-24 | 0 -> 0      | 0/0 -> 0/0
//   colsum_partial (6)      | 28-32 -> 28-32 | 0 -> 0 | 0/0 -> 0/0  | 26-32 -> 26-32 | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "coeffnet/core/dtype.hpp"

namespace coeffnet::cuda::kern {

// ---- host storage type -> device storage type -------------------------------------------
template <class T>
struct device_type {
    using type = T;
};
template <>
struct device_type<coeffnet::bfloat16_t> {
    using type = __nv_bfloat16;
};
template <>
struct device_type<coeffnet::half_t> {
    using type = __half;
};
template <class T>
using device_t = typename device_type<T>::type;

static_assert(sizeof(coeffnet::bfloat16_t) == sizeof(__nv_bfloat16), "bfloat16 storage must be 2 bytes");
static_assert(sizeof(coeffnet::half_t) == sizeof(__half), "half storage must be 2 bytes");

// ---- scalar conversion -------------------------------------------------------------------
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
    return __float2half_rn(v);
}

// ---- vectors ------------------------------------------------------------------------------
// Elements per 16-byte access.
template <class T>
inline constexpr int vec16 = static_cast<int>(16 / sizeof(T));

template <class T, int N>
struct alignas(sizeof(T) * N) Vec {
    T v[N];
};

// Loads N consecutive elements at p (p aligned to N * sizeof(T)) into fp32 registers.
template <int N, class T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[N]) {
    if constexpr (N == 1) {
        out[0] = to_float(p[0]);
    } else {
        const Vec<T, N> x = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
        for (int i = 0; i < N; ++i) out[i] = to_float(x.v[i]);
    }
}

template <int N, class T>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[N]) {
    if constexpr (N == 1) {
        p[0] = from_float<T>(in[0]);
    } else {
        Vec<T, N> x;
#pragma unroll
        for (int i = 0; i < N; ++i) x.v[i] = from_float<T>(in[i]);
        *reinterpret_cast<Vec<T, N>*>(p) = x;
    }
}

// ---- reductions ---------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of v over the block's threads, returned to every thread. Each warp reduces by shuffles,
// lane 0 of each warp writes its partial to red[warp], and after a barrier every warp reads the
// (at most 32) partials back and reduces them again by shuffles, so all threads get the same sum
// (added in the same order: the result does not depend on scheduling).
// red: >= 32 floats of shared memory. Every thread of the block must call it (two barriers).
// The barrier before the write (not one after the read) is what lets red be reused by the next
// call: a warp still reading the previous call's partials finishes before anyone overwrites them.
// blockDim.x must be a multiple of 32 (a partial warp's shuffles would read inactive lanes).
__device__ __forceinline__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? red[lane] : 0.f;
    r = warp_sum(r);
    return r;
}

// As block_sum, with max (inactive warps' slots read as -inf).
__device__ __forceinline__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? red[lane] : -INFINITY;
    r = warp_max(r);
    return r;
}

template <bool PER_WARP>
__device__ __forceinline__ float group_sum(float v, float* red) {
    if constexpr (PER_WARP) return warp_sum(v);
    else return block_sum(v, red);
}

template <bool PER_WARP>
__device__ __forceinline__ float group_max(float v, float* red) {
    if constexpr (PER_WARP) return warp_max(v);
    else return block_max(v, red);
}

// Online softmax statistics: (m, s) = (max, sum of exp(x - m)); m = -inf means "empty".
struct MaxSum {
    float m, s;
};

__device__ __forceinline__ MaxSum maxsum_combine(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return {m, 0.f};
    return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// Adds one element: one exp per element (two only when the maximum moves).
__device__ __forceinline__ MaxSum maxsum_add(MaxSum a, float x) {
    if (x == -INFINITY) return a;
    if (x <= a.m) return {a.m, a.s + expf(x - a.m)};
    return {x, a.s * expf(a.m - x) + 1.f};  // a.m = -inf: expf(-inf) = 0
}

__device__ __forceinline__ MaxSum warp_maxsum(MaxSum v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
        v = maxsum_combine(v, w);
    }
    return v;
}

// red: >= 64 floats of shared memory.
__device__ __forceinline__ MaxSum block_maxsum(MaxSum v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_maxsum(v);
    __syncthreads();
    if (lane == 0) {
        red[warp] = v.m;
        red[32 + warp] = v.s;
    }
    __syncthreads();
    MaxSum r = lane < nwarps ? MaxSum{red[lane], red[32 + lane]} : MaxSum{-INFINITY, 0.f};
    return warp_maxsum(r);
}

template <bool PER_WARP>
__device__ __forceinline__ MaxSum group_maxsum(MaxSum v, float* red) {
    if constexpr (PER_WARP) return warp_maxsum(v);
    else return block_maxsum(v, red);
}

// ---- row bookkeeping ---------------------------------------------------------------------
// Elements of a cached row per thread: a warp-per-row kernel (__launch_bounds__(128), up to
// 255 registers) holds 32, a block-per-row kernel (__launch_bounds__(512), 128 registers)
// 16 -- with 32 the unrolled row plus its addresses spilled (ptxas -warn-spills).
// launchers.hpp's row_launch() uses the same numbers.
inline constexpr int row_warp_elems = 32;
inline constexpr int row_block_elems = 16;

// A row kernel runs either a warp per row (blockDim = (32, rows_per_block)) or a block per
// row (blockDim = (threads, 1)); both walk the rows grid-stride with int64 indices.
template <bool PER_WARP>
struct RowGroup {
    __device__ __forceinline__ static int lane() { return static_cast<int>(threadIdx.x); }
    __device__ __forceinline__ static int size() { return PER_WARP ? 32 : static_cast<int>(blockDim.x); }
    __device__ __forceinline__ static int64_t first_row() {
        return PER_WARP ? static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y : static_cast<int64_t>(blockIdx.x);
    }
    __device__ __forceinline__ static int64_t row_step() {
        return PER_WARP ? static_cast<int64_t>(gridDim.x) * blockDim.y : static_cast<int64_t>(gridDim.x);
    }
};

// ---- column sums (bias and layer-norm weight gradients) --------------------------------
// Stage 1: blockDim (32, 8), grid (ceil(cols / 32), chunks); block (x, y) sums columns
// [32x, 32x + 32) over rows [y * rows_per_chunk, ...) into part_g[y, c] (and, WITH_XHAT,
// part_gx[y, c] = sum g * (x - mean) * rstd). Warps read 32 consecutive columns of a row
// (coalesced); the 8 row-partials meet in padded shared memory (no bank conflicts).
// Stage 2 adds the chunks in a fixed order: the result does not depend on scheduling.
template <class T, bool WITH_XHAT>
__global__ void __launch_bounds__(256) colsum_partial(const T* __restrict__ g, const T* __restrict__ x,
                                                      const float* __restrict__ mean, const float* __restrict__ rstd,
                                                      float* __restrict__ part_g, float* __restrict__ part_gx,
                                                      int64_t rows, int64_t cols, int64_t rows_per_chunk) {
    __shared__ float sg[8][33];
    __shared__ float sx[8][33];
    const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
    const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
    const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float ag = 0.f, ax = 0.f;
    if (c < cols) {
#pragma unroll 4
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            const float gv = to_float(g[r * cols + c]);
            ag += gv;
            if constexpr (WITH_XHAT) ax += gv * ((to_float(x[r * cols + c]) - mean[r]) * rstd[r]);
        }
    }
    sg[threadIdx.y][threadIdx.x] = ag;
    sx[threadIdx.y][threadIdx.x] = ax;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float tg = 0.f, tx = 0.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            tg += sg[k][threadIdx.x];
            tx += sx[k][threadIdx.x];
        }
        part_g[static_cast<int64_t>(blockIdx.y) * cols + c] = tg;
        if constexpr (WITH_XHAT) part_gx[static_cast<int64_t>(blockIdx.y) * cols + c] = tx;
    }
}

template <class T>
__global__ void colsum_final(const float* __restrict__ part, int64_t chunks, int64_t cols, T* __restrict__ out) {
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float s = 0.f;
        for (int64_t k = 0; k < chunks; ++k) s += part[k * cols + c];
        out[c] = from_float<T>(s);
    }
}

}  // namespace coeffnet::cuda::kern
