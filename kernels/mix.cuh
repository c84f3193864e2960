// kernels/mix.cuh: coefficient mixing of attention maps (Coeff-Tuning) and alpha'.
//
// What it does:
//   alpha' = I + Dropout_p(alpha)                 (alpha_prime_fwd: coeff::alpha_prime_element,
//                                                  include/coeffnet/ops/coeff_spec.hpp)
//   Phat[b, h] = sum_i alpha'[h, i] P[b, i]       (mix_fwd; P, Phat [B, H, N, M])
//   dP[b, i] = sum_h alpha'[h, i] dPhat[b, h]     (mix_bwd, fused with the next line)
//   dalpha'[h, i] = sum_{b, n, m} dPhat[b, h, n, m] P[b, i, n, m]   (mix_bwd partials + mix_reduce)
//   dalpha = dalpha' * dropout multiplier         (alpha_prime_bwd)
// ops/attention.hpp does the same with a GEMM (alpha' [H, H] @ P [B, H, N*M]); with alpha = 0
// Phat = P exactly here too (one FMA by 1, the rest by 0).
//
// How it is parallelised:
//   mix_fwd: a thread owns VEC consecutive positions (n, m) of one batch b and keeps the H
//     source values in registers (MAXH x VEC floats), so P is read once and Phat written once;
//     alpha' sits in shared memory (every read a broadcast). Variants <MAXH=16, VEC=4>
//     (H <= 16, N*M % 4 == 0, aligned), <16, 1>, <64, 1> (H <= 64). Grid-stride over B*N*M/VEC.
//   mix_bwd: a block of 256 threads walks tiles of TILE positions (64, or 32 when H > 32)
//     of one batch; it stages dPhat and P tiles [H, TILE] in shared memory (row pitch
//     TILE + 4 floats: 16-byte aligned rows, and float4 reads by 8 consecutive rows hit 8
//     distinct bank groups), then computes dP (each thread 4 positions of one source head,
//     float4 reads) and accumulates its (h, i) pairs of dalpha' in registers across tiles.
//     Each block writes its H*H partial sums; mix_reduce adds the blocks' partials in a fixed
//     order (deterministic, no atomics).
//   alpha_prime_fwd/bwd: one thread per element of the H x H matrix (tiny).
// Variants not tried yet: register-blocked (2x2 pairs per thread) dalpha' accumulation; the
// fused attention kernel (kernels/coeff_attention.cuh) avoids materialising P at all.
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations) | regs           | stack        | spill st/ld            | sm_80 regs     | sm_80 stack | sm_80 spill st/ld
//   alpha_prime_bwd (1)     | 32 -> 32       | 0 -> 0       | 0/0 -> 0/0             | 32 -> 32       | 0 -> 0      | 0/0 -> 0/0
//   alpha_prime_fwd (1)     | 32 -> 32       | 16 -> 16     | 0/0 -> 0/0             | 32 -> 32       | 16 -> 16    | 0/0 -> 0/0
//   mix_bwd (4)             | 48-64 -> 48-64 | 0-24 -> 0-24 | 0-24/0-36 -> 0-24/0-36 | 64-76 -> 64-76 | 0 -> 0      | 0/0 -> 0/0
//   mix_fwd (6)             | 59-96 -> 59-96 | 0 -> 0       | 0/0 -> 0/0             | 40-98 -> 40-98 | 0 -> 0      | 0/0 -> 0/0
//   mix_reduce (1)          | 26 -> 26       | 0 -> 0       | 0/0 -> 0/0             | 24 -> 24       | 0 -> 0      | 0/0 -> 0/0
//   Issue 10's CUDA fixes (2026-12-06) left these figures unchanged. mix_bwd's stack/spills are
//   mix_bwd<bf16, 64> and mix_bwd<float, 64> on sm_90a only (they predate issue 10).
//   alpha_prime_fwd's 16-byte frame is most likely core/rng.hpp's draw_bits (philox_block(...)[i % 4],
//   the pattern whose removal cleared coeff_attention's frames), left as is: one tiny H x H launch.
//   alpha' is rounded product then sum: the sm_90a PTX of alpha_prime_fwd has mul.rn.f32 then add.f32,
//   no fma (checked 2026-12-06 with nvcc -ptx); mul.rn is never contracted.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
#pragma once

#include "coeffnet/cuda/launchers.hpp"
#include "common.cuh"

namespace coeffnet::cuda::kern {

__global__ void alpha_prime_fwd(const float* __restrict__ alpha, float* __restrict__ out, int64_t H,
                                DropoutDraw<float> d, bool residual) {
    const int64_t n = H * H;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[e] = coeff::alpha_prime_element(d, H, e / H, e % H, alpha[e], residual);
}

__global__ void alpha_prime_bwd(const float* __restrict__ g, float* __restrict__ out, int64_t H, DropoutDraw<float> d) {
    const int64_t n = H * H;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[e] = g[e] * d.multiplier(static_cast<uint64_t>(e));
}

// transpose = false: out[b, h] = sum_i a[h, i] in[b, i]; true: out[b, i] = sum_h a[h, i] in[b, h].
template <class T, int MAXH, int VEC>
__global__ void __launch_bounds__(256) mix_fwd(const T* __restrict__ in, const float* __restrict__ ap, T* __restrict__ out,
                                               int64_t B, int H, int64_t NM, bool transpose) {
    __shared__ float a[MAXH * MAXH];
    for (int e = threadIdx.x; e < H * H; e += blockDim.x) {
        const int r = e / H, c = e % H;
        a[e] = transpose ? ap[c * H + r] : ap[e];
    }
    __syncthreads();
    const int64_t per_b = NM / VEC, total = B * per_b;
    for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < total;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t b = p / per_b, q = (p - b * per_b) * VEC;
        const T* src = in + b * H * NM + q;
        float v[MAXH][VEC];
#pragma unroll
        for (int i = 0; i < MAXH; ++i)
            if (i < H) load_vec<VEC>(src + i * NM, v[i]);
        T* dst = out + b * H * NM + q;
        for (int h = 0; h < H; ++h) {
            float acc[VEC];
#pragma unroll
            for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
#pragma unroll
            for (int i = 0; i < MAXH; ++i) {
                if (i < H) {
                    const float c = a[h * H + i];
#pragma unroll
                    for (int j = 0; j < VEC; ++j) acc[j] = fmaf(c, v[i][j], acc[j]);
                }
            }
            store_vec<VEC>(dst + h * NM, acc);
        }
    }
}

template <int MAXH>
struct MixBwdTile {
    static constexpr int tile = MAXH <= 32 ? 64 : 32;
    static constexpr int ld = tile + 4;
    static constexpr int pairs = (MAXH * MAXH + 255) / 256;
};

// blockDim.x must be 256. part: [gridDim.x, H*H] partial sums of dalpha' (when want_da).
template <class T, int MAXH>
__global__ void __launch_bounds__(256)
    mix_bwd(const T* __restrict__ dout, const T* __restrict__ P, const float* __restrict__ ap, T* __restrict__ dP,
            float* __restrict__ part, int64_t B, int H, int64_t NM) {
    using C = MixBwdTile<MAXH>;
    constexpr int TILE = C::tile, LD = C::ld, PAIRS = C::pairs;
    __shared__ __align__(16) float sg[MAXH * LD];
    __shared__ __align__(16) float sp[MAXH * LD];
    __shared__ float sa[MAXH * MAXH];
    const bool want_dp = dP != nullptr, want_da = part != nullptr;
    const int tid = threadIdx.x, HH = H * H;
    for (int e = tid; e < HH; e += 256) sa[e] = ap[e];
    float acc[PAIRS];
#pragma unroll
    for (int k = 0; k < PAIRS; ++k) acc[k] = 0.f;
    const int64_t tiles_per_b = (NM + TILE - 1) / TILE, total = B * tiles_per_b;
    for (int64_t tile = blockIdx.x; tile < total; tile += gridDim.x) {  // uniform over the block
        const int64_t b = tile / tiles_per_b, q0 = (tile - b * tiles_per_b) * TILE;
        __syncthreads();  // the previous tile's readers are done (and sa is loaded)
        for (int e = tid; e < H * TILE; e += 256) {
            const int h = e / TILE, k = e % TILE;
            const int64_t pos = q0 + k, off = (b * H + h) * NM + pos;
            const bool ok = pos < NM;
            sg[h * LD + k] = ok ? to_float(dout[off]) : 0.f;
            if (want_da) sp[h * LD + k] = ok ? to_float(P[off]) : 0.f;
        }
        __syncthreads();
        if (want_dp) {
            constexpr int Q = TILE / 4;
            for (int e = tid; e < H * Q; e += 256) {
                const int i = e / Q, k = (e % Q) * 4;
                float r0 = 0.f, r1 = 0.f, r2 = 0.f, r3 = 0.f;
                for (int h = 0; h < H; ++h) {
                    const float c = sa[h * H + i];
                    const float4 g = *reinterpret_cast<const float4*>(&sg[h * LD + k]);
                    r0 = fmaf(c, g.x, r0);
                    r1 = fmaf(c, g.y, r1);
                    r2 = fmaf(c, g.z, r2);
                    r3 = fmaf(c, g.w, r3);
                }
                T* dst = dP + (b * H + i) * NM + q0 + k;
                const int64_t left = NM - (q0 + k);
                if (left > 0) dst[0] = from_float<T>(r0);
                if (left > 1) dst[1] = from_float<T>(r1);
                if (left > 2) dst[2] = from_float<T>(r2);
                if (left > 3) dst[3] = from_float<T>(r3);
            }
        }
        if (want_da) {
#pragma unroll
            for (int pi = 0; pi < PAIRS; ++pi) {
                const int pair = tid + pi * 256;
                if (pair < HH) {
                    const int h = pair / H, i = pair % H;
                    const float* gr = &sg[h * LD];
                    const float* pr = &sp[i * LD];
                    float s = 0.f;
#pragma unroll 4
                    for (int k = 0; k < TILE; k += 4) {
                        const float4 g = *reinterpret_cast<const float4*>(gr + k);
                        const float4 p = *reinterpret_cast<const float4*>(pr + k);
                        s = fmaf(g.x, p.x, s);
                        s = fmaf(g.y, p.y, s);
                        s = fmaf(g.z, p.z, s);
                        s = fmaf(g.w, p.w, s);
                    }
                    acc[pi] += s;
                }
            }
        }
    }
    if (want_da) {
#pragma unroll
        for (int pi = 0; pi < PAIRS; ++pi) {
            const int pair = tid + pi * 256;
            if (pair < HH) part[static_cast<int64_t>(blockIdx.x) * HH + pair] = acc[pi];
        }
    }
}

// out[e] = sum over blocks of part[block, e], in block order.
__global__ void mix_reduce(const float* __restrict__ part, int64_t blocks, int64_t HH, float* __restrict__ out) {
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < HH;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float s = 0.f;
        for (int64_t k = 0; k < blocks; ++k) s += part[k * HH + e];
        out[e] = s;
    }
}

}  // namespace coeffnet::cuda::kern
