// kernels/copy.cuh: strided copies (permute, concat, split, patchify), type conversion,
// and embedding gather / scatter-add.
//
// What it does:
//   strided_copy: dst[idx . dst_stride] = src[idx . src_stride] over a shape of rank <= 6,
//     the one kernel behind permute, concat (each part into its slice), split (each slice
//     out) and patchify ([B, C, H, W] viewed as [B, hp, wp, C, ph, pw]) and their backwards.
//     The host (plan_copy) first drops size-1 dims and merges dims contiguous in both src and
//     dst, so e.g. a head split [B, N, H, d] -> [B, H, N, d] copies rows of d elements.
//   convert: y = T2(x) elementwise.
//   embedding_fwd: out[r, :] = weight[idx[r], :] (NaN row for an index outside [0, V)).
//   embedding_bwd: dW[idx[r], :] += dout[r, :] with fp32 atomicAdd (bad indices skipped).
//
// How it is parallelised:
//   strided_copy: grid-stride (int64) over output vectors of VEC elements along the innermost
//     (merged) dim: VEC = 16 bytes / sizeof(T) when that dim has stride 1 in both tensors, its
//     length and every outer stride are multiples of VEC and both bases are 16-byte aligned,
//     else 1; each thread decomposes its index with int64 div/mod over the <= 5 outer dims.
//   embedding: a warp per output row (blockDim (32, 8)), VEC-wide row copies.
// Variants not tried yet: a shared-memory tiled transpose for permutes that move the
// innermost dim (those fall back to VEC = 1 with strided reads); 32-bit index math when
// numel < 2^31.
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack  | spill st/ld | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   convert_kernel (4)      | 13-14 -> 13-14 | 0 -> 0 | 0/0 -> 0/0  | 10-12 -> 10-12 | 0 -> 0      | 0/0 -> 0/0
//   embedding_bwd (6)       | 32-44 -> 32-44 | 0 -> 0 | 0/0 -> 0/0  | 28-40 -> 28-40 | 0 -> 0      | 0/0 -> 0/0
//   embedding_fwd (6)       | 32-40 -> 32-40 | 0 -> 0 | 0/0 -> 0/0  | 32-52 -> 32-52 | 0 -> 0      | 0/0 -> 0/0
//   strided_copy (6)        | 32 -> 32       | 0 -> 0 | 0/0 -> 0/0  | 28 -> 28       | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "common.cuh"

namespace coeffnet::cuda::kern {

struct CopyDims {
    int rank;
    int64_t shape[6];
    int64_t src_stride[6];
    int64_t dst_stride[6];
};

// d.shape[rank-1] is counted in vectors (the host divided it by VEC).
template <class T, int VEC>
__global__ void strided_copy(const T* __restrict__ src, T* __restrict__ dst, int64_t nvec, CopyDims d) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        int64_t rem = i, so = 0, doff = 0;
#pragma unroll
        for (int k = 5; k >= 0; --k) {
            if (k < d.rank) {
                const int64_t c = rem % d.shape[k];
                rem /= d.shape[k];
                const int64_t mult = k == d.rank - 1 ? VEC : 1;
                so += c * mult * d.src_stride[k];
                doff += c * mult * d.dst_stride[k];
            }
        }
        if constexpr (VEC == 1) {
            dst[doff] = src[so];
        } else {
            *reinterpret_cast<Vec<T, VEC>*>(dst + doff) = *reinterpret_cast<const Vec<T, VEC>*>(src + so);
        }
    }
}

template <class From, class To>
__global__ void convert_kernel(const From* __restrict__ x, To* __restrict__ y, int64_t n) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        y[i] = from_float<To>(to_float(x[i]));
}

template <class T, int VEC>
__global__ void embedding_fwd(const int64_t* __restrict__ idx, const T* __restrict__ w, T* __restrict__ out, int64_t rows,
                              int64_t V, int64_t D) {
    const int64_t nvec = D / VEC;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < rows;
         r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
        const int64_t k = idx[r];
        const bool ok = k >= 0 && k < V;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += 32) {
            float v[VEC];
            if (ok) {
                load_vec<VEC>(w + k * D + vi * VEC, v);
            } else {
#pragma unroll
                for (int j = 0; j < VEC; ++j) v[j] = NAN;
            }
            store_vec<VEC>(out + r * D + vi * VEC, v);
        }
    }
}

template <class T, int VEC>
__global__ void embedding_bwd(const int64_t* __restrict__ idx, const T* __restrict__ dout, float* __restrict__ dw,
                              int64_t rows, int64_t V, int64_t D) {
    const int64_t nvec = D / VEC;
    for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < rows;
         r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
        const int64_t k = idx[r];
        if (k < 0 || k >= V) continue;
        for (int64_t vi = threadIdx.x; vi < nvec; vi += 32) {
            float v[VEC];
            load_vec<VEC>(dout + r * D + vi * VEC, v);
#pragma unroll
            for (int j = 0; j < VEC; ++j) atomicAdd(dw + k * D + vi * VEC + j, v[j]);
        }
    }
}

}  // namespace coeffnet::cuda::kern
