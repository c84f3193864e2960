// kernels/coeff_attention.cuh: fused coefficient attention (Coeff-Tuning), forward and backward,
// never storing the [B, H, N, M] maps.
//
// What it computes (the semantics of coeffnet::coeff_attention, include/coeffnet/ops/attention.hpp):
//     P_i    = softmax(scale Q_i K_i^T + mask)             source head i, mask: bottom-right causal
//                                                          and/or key padding; a row with no
//                                                          visible key is all zeros
//     Phat_h = Drop_q( sum_i alpha'[h, i] P_i )            element [b,h,n,m] uses Philox word
//                                                          ((b*H + h)*N + n)*M + m of the draw
//     O_h    = Phat_h V_h                                  alpha' = I + Drop_p(alpha) (launcher)
// The mask rules, the dropout words and alpha' are include/coeffnet/ops/coeff_spec.hpp's (the CPU
// ops use the same functions).
// Storage T in {float, __nv_bfloat16, __half}; every sum in fp32; lse [B, H, N] saved in fp32.
//
// Why two passes. Mixing needs every source head's *normalised* row, so FlashAttention's
// online rescaling of one head's accumulator does not apply (a Phat_h row mixes rows whose
// running maxima differ and are only known at the end). Pass 1 gets each row's log-sum-exp,
// pass 2 recomputes S_i, forms P_i = exp(S_i - lse_i) exactly normalised, mixes, accumulates.
//
// Kernels (one CTA = one "block" function below; 1-D grids, so no 65535 limit on y/z; int64
// offsets throughout). Each exists as a SIMT kernel (any T) and, for bf16 / half, a tensor-core
// kernel (*_tc) with the same decomposition:
//   fwd_lse  CTA (b, h, query tile): stream key tiles, online max / sum per row -> lse (fp32).
//   fwd_out  CTA (b, target-head group g, query tile): per key tile, for every source head i:
//            S_i, P_i = exp(S_i - lse_i), Phat[h in g] += alpha'[h, i] P_i (fp32, shared memory);
//            dropout on Phat; O_h += Phat_h V_h (fp32 accumulators in shared memory). G target
//            heads per CTA: all H when G x Bq x dv accumulators fit, else ceil(H/G) groups, each
//            recomputing all H score tiles (the plan balances them: 12 heads -> 2 x 6).
//   bwd_pre  CTA (b, query tile), all heads: per key tile P_i (all i) and dPhat_h = (dO_h V_h^T)
//            o dropout (all h); then D_i[n] += sum_m P_i dP_i with dP_i = sum_h alpha'[h,i] dPhat_h,
//            and dalpha'[h,i] += <dPhat_h, P_i> (per-CTA partials, reduced in CTA order).
//   bwd_kv   CTA (b, head group g, key tile), over the query tiles that can see it: P_i and
//            dPhat_h for all heads again; dV_h += Phat_h^T dO_h (h in g); dS_i = scale P_i o
//            (dP_i - D_i) (i in g); dK_i += dS_i^T Q_i (shared accumulators); dQ_i += dS_i K_i by
//            fp32 atomicAdd (the only non-deterministic sum), converted to T at the end.
//   Keys past a query tile's causal horizon are skipped per tile, and query tiles before a key
//   tile's (bwd_kv). Launch plans (tiles, groups, shared memory, grids) come from
//   plan_coeff_attention (coeff_attention_plan.cuh), a host function with tests.
//
// The backward identity. FlashAttention takes D = rowsum(dP o P) = rowsum(dO o O) because
// O = P V. With mixing, D_i[n] = sum_h alpha'[h,i] dO_h[n] . (P_i V_h)[n]: it needs every
// P_i V_h pair (H^2 products), not O_h = sum_i alpha'[h,i] P_i V_h (a sum over i). With Phat
// dropout the products become sum_m P_i (dO_h V_h^T o mask_h): still no O identity. So D gets
// its own pass (bwd_pre), which also yields dalpha' = sum dPhat_h o P_i at no extra score work.
// (dQ alone could be had in one query-major sweep from sum_m P dP K - D sum_m P K, but dK needs
// D before the sweep, so the pass stays.)
// Cost in per-head score-tile products over all (n, m) (QK^T or dO V^T; one = 2*N*M*d FLOPs):
//   forward  H (pass 1) + groups*H (pass 2) + H (PV)        flash: 2H  -> 2/3 at groups = 1
//   backward 2H (bwd_pre) + groups*2H (bwd_kv) + 3H (dV, dK, dQ)   flash: 5H (incl. recomputing S)
// plus H x G mixing FMAs per (n, m) per pass in SIMT fp32 (not a GEMM here), and the exps twice.
// Bounds on the ratio to SDPA flash from this count alone: forward 2/3 at groups = 1, 1/2 at 2;
// backward 5/7 at 1, 5/9 at 2 (counting flash's backward as 5H: S, dP, dV, dK, dQ). What the plan
// picks on an H200 (227 KiB per block; bf16, tensor-core kernels; computed by plan_coeff_attention,
// not measured): the forward's pass 2 fits all target heads in one CTA at every bench shape (ViT-B/16
// 141.6 KiB, SD-1.5 87.5, SDXL 119.8, long 202.8 with Bk 32), i.e. 3H products, the 2/3 bound; the backward's
// dK/dV accumulators do not: groups 2 / 1 / 2 / 6 -> 9H / 7H / 9H / 17H. On top of the count:
// fp32 accumulators in shared memory (H x Bq x dv per CTA, so one CTA of 4 warps per SM at these
// sizes) instead of FlashAttention's registers, Bq = 16 query rows per CTA, operand tiles reloaded
// per source head, and the SIMT mix and exps; they make the real ratio lower, by how much is what
// the bench must tell.
//
// Variants (numbered; the file's history):
//   1. SIMT fp32: every operand tile staged in shared memory as fp32, strided loops (any d, dv,
//      N, M; head dims at run time, no instantiation per d), 256 threads. T = float always uses it.
//   2. Tensor cores (T = bf16 / half, the default there): S, dPhat, O, dV, dK and dQ products as
//      16x16x16 warp MMAs (nvcuda::wmma; on sm_80+ the same HMMA instructions mma.sync m16n8k16
//      issues, two per 16x16x16 -- not inspected here, no cuobjdump in this toolkit) with
//      fp32 accumulation; operand tiles in shared memory in T with head dims zero-padded to a
//      multiple of 16 (40 -> 48); 4 warps; Phat and dS rounded to T once before their products
//      (as FlashAttention rounds P and dS). AttentionConfig::tensor_cores = false selects 1.
//      fwd_out_tc's mix was first written as variant 1's (Phat accumulated in fp32 shared memory
//      one source head at a time: 2 H G shared accesses per (n, m), by estimate more time than
//      the MMAs) and replaced, before any measurement, by all H S_i tiles first and each
//      element's H probabilities in registers (H reads + G writes per (n, m); H > 16 falls back
//      to reading them from shared memory).
//   Dropout on Phat (both variants, 2026-12-06): a thread that applies it owns 4 consecutive
//   columns of a tile row (for_each_tile_element, or fwd_out_tc's quad loop) and draws their
//   4 words from one Philox4x32-10 block, two when the row's first word is not a multiple of 4
//   (Params::drop_keep4), where it used to compute a whole block (10 rounds) per element and keep
//   one word of it. The words and the keep rule are DropoutDraw::multiplier's, so the values are
//   the CPU's (tests/cuda/test_attention_cuda.cpp checks every word of three row lengths). Without
//   dropout the loops are as before (element e to thread e mod nthreads).
//   Next (not written): register-resident accumulators and fragments (mma.sync directly,
//   ldmatrix), cp.async double-buffered K/V tiles, the H x G mix as an MMA, Bq = 64 with more
//   warps, wgmma on sm_90a.
// Both variants are written as "block functions" over a Block (tid, nthreads, warp, nwarps,
// sync, atomic_add). Without a GPU they run under the block emulator (src/emulator/), launched
// by the real launchers of src/cuda/attention.cu with their real thread counts, barriers, warp
// collectives (the wmma calls) and shadow-checked shared memory (tests/cuda, ctest "emulated/").
//
// ptxas, per kernel template (ranges over its instantiations), before (329d3b2) -> after the block
// emulator change (launch<kernel>(...) for <<<...>>>, COEFFNET_DEVICE_CODE guards): registers, stack
// frame bytes, spill store/load bytes; sm_90a, then sm_80 (nvcc 13.0, -O3, 2026-12-07; the command
// in tools/ptxas_table.py: nvcc -Xptxas -v on src/cuda/launchers.cu, attention.cu and gemm.cu with
// the CMake flags and --generate-code for both architectures). Every instantiation is identical,
// static shared memory included:
//   kernel (instantiations)  | regs               | stack  | spill st/ld | sm_80 regs         | sm_80 stack | sm_80 spill st/ld
//   bwd_kv_block (3)         | 117-121 -> 117-121 | 0 -> 0 | 0/0 -> 0/0  | 116-117 -> 116-117 | 0 -> 0      | 0/0 -> 0/0
//   bwd_kv_tc_block (2)      | 158-221 -> 158-221 | 0 -> 0 | 0/0 -> 0/0  | 144-204 -> 144-204 | 0 -> 0      | 0/0 -> 0/0
//   bwd_pre_block (3)        | 111 -> 111         | 0 -> 0 | 0/0 -> 0/0  | 109 -> 109         | 0 -> 0      | 0/0 -> 0/0
//   bwd_pre_tc_block (2)     | 106-152 -> 106-152 | 0 -> 0 | 0/0 -> 0/0  | 96-140 -> 96-140   | 0 -> 0      | 0/0 -> 0/0
//   dalpha_reduce_kernel (1) | 28 -> 28           | 0 -> 0 | 0/0 -> 0/0  | 24 -> 24           | 0 -> 0      | 0/0 -> 0/0
//   f32_to_kernel (2)        | 13 -> 13           | 0 -> 0 | 0/0 -> 0/0  | 10 -> 10           | 0 -> 0      | 0/0 -> 0/0
//   fwd_lse_block (3)        | 47-58 -> 47-58     | 0 -> 0 | 0/0 -> 0/0  | 40-48 -> 40-48     | 0 -> 0      | 0/0 -> 0/0
//   fwd_lse_tc_block (2)     | 72-96 -> 72-96     | 0 -> 0 | 0/0 -> 0/0  | 72-96 -> 72-96     | 0 -> 0      | 0/0 -> 0/0
//   fwd_out_block (3)        | 112-114 -> 112-114 | 0 -> 0 | 0/0 -> 0/0  | 112-113 -> 112-113 | 0 -> 0      | 0/0 -> 0/0
//   fwd_out_tc_block (2)     | 118-180 -> 118-180 | 0 -> 0 | 0/0 -> 0/0  | 108-168 -> 108-168 | 0 -> 0      | 0/0 -> 0/0
//   Issue 10 (2026-12-06) cleared the fwd_out, bwd_pre and bwd_kv passes' 16-40-byte stack frames
//   and the tc passes' sm_80 spills (up to 16/56 bytes). The 16-byte frames went with drop_mult
//   (core/rng.hpp's draw_bits: philox_block(...)[i % 4], a run-time index into a 4-word array);
//   drop_keep4 picks words by compares. block_kernel's MinBlocks = 1 is what keeps sm_80 from
//   spilling after that change (see there).
//   Then the barrier sweep (tests/mutations.sh, the block emulator) found 8 barriers no test needed,
//   and a ninth at the end of bwd_kv_tc_block, each shown unnecessary by where the shared data is
//   last read (comments at fwd_lse_block, bwd_kv_block, bwd_tiles_tc, bwd_kv_tc_block), and they
//   went: 2 per key tile in fwd_lse_block and fwd_lse_tc_block, 1 per source head and 1 per target
//   head in bwd_tiles_tc, 1 per query tile in bwd_kv_block and bwd_kv_tc_block, 1 per CTA in
//   bwd_kv_tc_block. ptxas on attention.cu before -> after (same command): every
//   figure unchanged except sm_80 registers, fwd_lse_tc_block<__half> 72 -> 64 and bwd_kv_block<float>
//   117 -> 114.
//
// Measured: not yet (no GPU lent, 2026-11-29); measure with
//     ./build/bench/cuda/attention_bench --json attention_bench.json   (bench/cuda/attention_bench.cpp)
//     python3 bench/torch_reference.py --json torch_reference.json      (PyTorch eager + SDPA flash/cuDNN)
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "coeff_attention_plan.cuh"
#include "launch.cuh"
#include "coeffnet/core/dtype.hpp"
#include "coeffnet/core/rng.hpp"
#include "coeffnet/ops/coeff_spec.hpp"

#if COEFFNET_DEVICE_CODE
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#define COEFFNET_ATTN_FN __device__ __forceinline__
#define COEFFNET_ATTN_UNROLL _Pragma("unroll")
#define COEFFNET_ATTN_NO_UNROLL _Pragma("unroll 1")
#else
#define COEFFNET_ATTN_FN inline
#define COEFFNET_ATTN_UNROLL
#define COEFFNET_ATTN_NO_UNROLL
#endif

namespace coeffnet::cuda::attn {

// ---- element conversion (fp32 compute for every storage type) ------------------------------
COEFFNET_ATTN_FN float to_f(float x) { return x; }
#if COEFFNET_DEVICE_CODE
COEFFNET_ATTN_FN float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
COEFFNET_ATTN_FN float to_f(__half x) { return __half2float(x); }
#else
inline float to_f(coeffnet::bfloat16_t x) { return static_cast<float>(x); }
inline float to_f(coeffnet::half_t x) { return static_cast<float>(x); }
#endif

template <class T>
COEFFNET_ATTN_FN T from_f(float x) {
#if COEFFNET_DEVICE_CODE
    if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16(x);
    else if constexpr (std::is_same_v<T, __half>) return __float2half(x);
    else return x;
#else
    if constexpr (std::is_same_v<T, float>) return x;
    else return T(x);
#endif
}

COEFFNET_ATTN_FN float exp_f(float x) {
#if defined(__CUDA_ARCH__)
    return expf(x);
#else
    return std::exp(x);
#endif
}
COEFFNET_ATTN_FN float log_f(float x) {
#if defined(__CUDA_ARCH__)
    return logf(x);
#else
    return std::log(x);
#endif
}
COEFFNET_ATTN_FN float max_f(float a, float b) { return a > b ? a : b; }
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---- the problem -------------------------------------------------------------------------
// Contiguous row-major tensors: q [B,H,N,d], k [B,H,M,d], v [B,H,M,dv], out/dout [B,H,N,dv].
template <class T>
struct Params {
    const T *q = nullptr, *k = nullptr, *v = nullptr;
    T* out = nullptr;
    const T* dout = nullptr;
    float* lse = nullptr;              // [B, H, N]
    float* D = nullptr;                // [B, H, N] rowsum(dP_i o P_i), backward
    const float* alpha_p = nullptr;    // [H, H] alpha' (row = target head)
    const uint8_t* key_mask = nullptr; // [B, M], nonzero = token; null = none
    float* dq_acc = nullptr;           // [B, H, N, d] fp32, zeroed before bwd_kv
    T *dk = nullptr, *dvv = nullptr;   // dK [B, H, M, d], dV [B, H, M, dv]
    float* dalpha_part = nullptr;      // [B * query tiles, H * H] per-CTA partials of dalpha'
    int64_t B = 0, H = 0, N = 0, M = 0, d = 0, dv = 0;
    float scale = 1.0f;
    bool causal = false;
    DropoutDraw<float> drop;           // dropout on Phat (drop.on)
    int64_t bq = 16, bk = 32;          // query / key rows per tile
    int64_t group = 1;                 // target heads per CTA (fwd_out, bwd_kv)

    COEFFNET_ATTN_FN int64_t q_tiles() const { return (N + bq - 1) / bq; }
    COEFFNET_ATTN_FN int64_t k_tiles() const { return (M + bk - 1) / bk; }
    COEFFNET_ATTN_FN int64_t groups() const { return (H + group - 1) / group; }
    // One past the last key any query of [n0, n0 + rows) may see (causal skips whole tiles).
    COEFFNET_ATTN_FN int64_t key_end(int64_t n0, int64_t rows) const {
        int64_t e = M;
        if (causal) {
            const int64_t c = coeff::causal_key_end(n0 + rows - 1, N, M);
            e = c < M ? c : M;
        }
        return e > 0 ? e : 0;
    }
    // First query that may see key m0 (causal: n + (M - N) >= m0).
    COEFFNET_ATTN_FN int64_t query_begin(int64_t m0) const {
        if (!causal) return 0;
        const int64_t n = coeff::causal_first_query(m0, N, M);
        return n > 0 ? n : 0;
    }
    COEFFNET_ATTN_FN bool visible(int64_t b, int64_t n, int64_t m) const {
        if (n >= N || m >= M) return false;
        if (causal && m >= coeff::causal_key_end(n, N, M)) return false;
        if (key_mask && !coeff::key_is_token(key_mask[b * M + m])) return false;
        return true;
    }
    // Which of the elements [b, h, n, m + j], j = 0..3, the Phat dropout keeps (bit j of the result;
    // a kept element is scaled by drop.keep, the others become 0): DropoutDraw::multiplier's words and
    // rule (ops/coeff_spec.hpp, the CPU's definition), so the outcome is the same, from one Philox
    // block when the first word is a multiple of 4 and two otherwise (one after the other, so only
    // one block's state is live), instead of a block per element. Past the row's end (m + j >= M)
    // the words are the next row's: callers ignore those bits.
    COEFFNET_ATTN_FN unsigned drop_keep4(int64_t b, int64_t h, int64_t n, int64_t m) const {
        const uint64_t w = coeff::phat_word(b, h, n, m, H, N, M);
        const int s = static_cast<int>(w % 4);
        unsigned mask = 0;
        {
            const Philox4 lo = philox_block(drop.seed, drop.first_block + w / 4);  // words w - s .. w - s + 3
COEFFNET_ATTN_UNROLL
            for (int k = 0; k < 4; ++k)
                if (k >= s && drop.keeps(lo[k])) mask |= 1u << (k - s);
        }
        if (s != 0) {
            const Philox4 hi = philox_block(drop.seed, drop.first_block + w / 4 + 1);  // the words after
COEFFNET_ATTN_UNROLL
            for (int k = 0; k < 4; ++k)
                if (k < s && drop.keeps(hi[k])) mask |= 1u << (k + 4 - s);
        }
        return mask;
    }
    // The same as multipliers (drop.keep or 0).
    COEFFNET_ATTN_FN void drop_mult4(int64_t b, int64_t h, int64_t n, int64_t m, float (&out)[4]) const {
        const unsigned keep = drop_keep4(b, h, n, m);
COEFFNET_ATTN_UNROLL
        for (int j = 0; j < 4; ++j) out[j] = (keep >> j) & 1u ? drop.keep : 0.0f;
    }
};

// Calls f(r, c, mult) once for every element (r, c) of a bq x bk tile of target head h at (n0, m0),
// mult being the Phat dropout multiplier of [b, h, n0 + r, m0 + c] where that element exists
// (n < N, m < M; elsewhere it means nothing and f must not rely on it) and 1 without dropout.
// Without dropout the elements go round-robin as in every tile loop here (e = tid, tid + nthreads,
// ...). With dropout a thread takes 4 consecutive columns of a row at a time and gets their
// multipliers from drop_keep4 (1 or 2 Philox blocks for 4 elements, not 4).
template <class T, class Block, class F>
COEFFNET_ATTN_FN void for_each_tile_element(Block& blk, const Params<T>& p, int64_t b, int64_t h, int64_t n0, int64_t m0,
                                            F&& f) {
    if (!p.drop.on) {
        for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) f(e / p.bk, e % p.bk, 1.0f);
        return;
    }
    const int64_t quads = (p.bk + 3) / 4;
    for (int64_t e = blk.tid; e < p.bq * quads; e += blk.nthreads) {
        const int64_t r = e / quads, c0 = (e % quads) * 4;
        const unsigned keep = n0 + r < p.N && m0 + c0 < p.M ? p.drop_keep4(b, h, n0 + r, m0 + c0) : 0u;
COEFFNET_ATTN_NO_UNROLL  // f's body once, not four copies (fewer registers; sm_80's ptxas spilled)
        for (int j = 0; j < 4; ++j)
            if (c0 + j < p.bk) f(r, c0 + j, (keep >> j) & 1u ? p.drop.keep : 0.0f);
    }
}

// Shared-memory sizes in floats, per kernel (the launcher multiplies by 4). ld = width + 1
// (odd strides: column walks hit different banks).
template <class T>
COEFFNET_HD inline int64_t smem_fwd_lse(const Params<T>& p) {
    return p.bq * (p.d + 1) + p.bk * (p.d + 1) + p.bq * (p.bk + 1) + 2 * p.bq;
}
template <class T>
COEFFNET_HD inline int64_t wide(const Params<T>& p) {
    return p.d > p.dv ? p.d : p.dv;
}
template <class T>
COEFFNET_HD inline int64_t smem_fwd_out(const Params<T>& p) {
    return p.bq * (wide(p) + 1) + p.bk * (wide(p) + 1) + p.group * p.bq * (p.bk + 1) + p.group * p.bq * p.dv +
           p.H * p.bq;
}
template <class T>
COEFFNET_HD inline int64_t smem_bwd_pre(const Params<T>& p) {
    return p.bq * (wide(p) + 1) + p.bk * (wide(p) + 1) + 2 * p.H * p.bq * (p.bk + 1) + 2 * p.H * p.bq + p.H * p.H;
}
template <class T>
COEFFNET_HD inline int64_t smem_bwd_kv(const Params<T>& p) {
    return p.bq * (wide(p) + 1) + p.bk * (wide(p) + 1) + (2 * p.H + 1) * p.bq * (p.bk + 1) + p.group * p.bk * p.d +
           p.group * p.bk * p.dv + 2 * p.H * p.bq;
}

// ---- the block functions ------------------------------------------------------------------
// Block is the CTA: tid, nthreads, sync(), atomic_add(). DeviceBlock below; the host emulation
// passes a block of one thread whose sync() does nothing. Every loop is `for (e = tid; e < n;
// e += nthreads)` with a fixed owner per element, and every sync() is reached by all threads.

// rows [r0, r0 + rows) of x[bh] (width w) -> dst[r * (w + 1) + c], zeros past `valid` rows.
template <class T, class Block>
COEFFNET_ATTN_FN void load_tile(Block& blk, float* dst, const T* x, int64_t bh, int64_t len, int64_t r0, int64_t rows,
                                int64_t w) {
    const int64_t ld = w + 1;
    const T* base = x + (bh * len) * w;
    for (int64_t e = blk.tid; e < rows * w; e += blk.nthreads) {
        const int64_t r = e / w, c = e % w;
        dst[r * ld + c] = r0 + r < len ? to_f(base[(r0 + r) * w + c]) : 0.0f;
    }
}

// P tile of source head i for queries [n0, n0 + bq) x keys [m0, m0 + bk): exp(scale q.k - lse),
// 0 where masked, out of range, or the row has no visible key (lse = -inf). Needs Qs, Ks loaded.
template <class T, class Block>
COEFFNET_ATTN_FN void probs_tile(Block& blk, const Params<T>& p, int64_t b, int64_t n0, int64_t m0, const float* Qs,
                                 const float* Ks, const float* lse_rows, float* P) {
    const int64_t ld = p.d + 1, ldp = p.bk + 1;
    for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
        const int64_t r = e / p.bk, c = e % p.bk;
        float val = 0.0f;
        const float l = lse_rows[r];
        if (l != kNegInf && p.visible(b, n0 + r, m0 + c)) {
            float s = 0.0f;
            for (int64_t x = 0; x < p.d; ++x) s += Qs[r * ld + x] * Ks[c * ld + x];
            val = exp_f(p.scale * s - l);
        }
        P[r * ldp + c] = val;
    }
}

// dPhat tile of head h: (dO_h V_h^T) o dropout multiplier; 0 out of range. Needs dOs, Vs loaded.
template <class T, class Block>
COEFFNET_ATTN_FN void dphat_tile(Block& blk, const Params<T>& p, int64_t b, int64_t h, int64_t n0, int64_t m0,
                                 const float* dOs, const float* Vs, float* G) {
    const int64_t ld = p.dv + 1, ldp = p.bk + 1;
    for_each_tile_element(blk, p, b, h, n0, m0, [&](int64_t r, int64_t c, float mult) {
        float val = 0.0f;
        if (n0 + r < p.N && m0 + c < p.M) {
            for (int64_t x = 0; x < p.dv; ++x) val += dOs[r * ld + x] * Vs[c * ld + x];
            if (p.drop.on) val *= mult;
        }
        G[r * ldp + c] = val;
    });
}

// Pass 1: CTA (b*H + h, query tile). Online max / sum of the masked, scaled scores per row.
template <class T, class Block>
COEFFNET_ATTN_FN void fwd_lse_block(Block& blk, const Params<T>& p, int64_t cta, float* smem) {
    const int64_t qt = cta % p.q_tiles(), bh = cta / p.q_tiles(), b = bh / p.H;
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const int64_t ld = p.d + 1, ldp = p.bk + 1;
    float* Qs = smem;
    float* Ks = Qs + p.bq * ld;
    float* S = Ks + p.bk * ld;
    float* rmax = S + p.bq * ldp;
    float* rsum = rmax + p.bq;
    load_tile(blk, Qs, p.q, bh, p.N, n0, p.bq, p.d);
    for (int64_t r = blk.tid; r < p.bq; r += blk.nthreads) rmax[r] = kNegInf, rsum[r] = 0.0f;
    const int64_t kend = p.key_end(n0, rows);
    // Barriers: the one after the S tile orders this tile's Ks reads before the next tile's load,
    // the one after the load orders Qs, Ks and the previous tile's S reads before the S writes;
    // each row's max / sum, and its lse below, belong to one thread (the block emulator's barrier
    // sweep, tests/mutations.sh, found the two more this loop had unnecessary).
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {
        load_tile(blk, Ks, p.k, bh, p.M, m0, p.bk, p.d);
        blk.sync();
        for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
            const int64_t r = e / p.bk, c = e % p.bk;
            float s = kNegInf;
            if (m0 + c < kend && p.visible(b, n0 + r, m0 + c)) {
                float acc = 0.0f;
                for (int64_t x = 0; x < p.d; ++x) acc += Qs[r * ld + x] * Ks[c * ld + x];
                s = p.scale * acc;
            }
            S[r * ldp + c] = s;
        }
        blk.sync();
        for (int64_t r = blk.tid; r < p.bq; r += blk.nthreads) {
            float mx = kNegInf;
            for (int64_t c = 0; c < p.bk; ++c) mx = max_f(mx, S[r * ldp + c]);
            if (mx == kNegInf) continue;
            const float m_new = max_f(rmax[r], mx);
            float sum = rsum[r] * exp_f(rmax[r] - m_new);  // rmax = -inf -> 0
            for (int64_t c = 0; c < p.bk; ++c) sum += S[r * ldp + c] == kNegInf ? 0.0f : exp_f(S[r * ldp + c] - m_new);
            rmax[r] = m_new;
            rsum[r] = sum;
        }
    }
    for (int64_t r = blk.tid; r < rows; r += blk.nthreads)
        p.lse[bh * p.N + n0 + r] = rmax[r] == kNegInf ? kNegInf : rmax[r] + log_f(rsum[r]);
}

// Pass 2: CTA (b, head group g, query tile). O_h for the group's target heads.
template <class T, class Block>
COEFFNET_ATTN_FN void fwd_out_block(Block& blk, const Params<T>& p, int64_t cta, float* smem) {
    const int64_t qt = cta % p.q_tiles(), g = (cta / p.q_tiles()) % p.groups(), b = cta / (p.q_tiles() * p.groups());
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const int64_t h0 = g * p.group, hg = p.H - h0 < p.group ? p.H - h0 : p.group;
    const int64_t ldw = wide(p) + 1, ldp = p.bk + 1, ldv = p.dv + 1;
    float* Xs = smem;                    // Q_i tile (ld d+1)
    float* Ys = Xs + p.bq * ldw;         // K_i or V_h tile
    float* Ph = Ys + p.bk * ldw;         // Phat [group][bq][bk+1]
    float* Oacc = Ph + p.group * p.bq * ldp;  // [group][bq][dv]
    float* lse_s = Oacc + p.group * p.bq * p.dv;  // [H][bq]
    for (int64_t e = blk.tid; e < hg * p.bq * p.dv; e += blk.nthreads) Oacc[e] = 0.0f;
    for (int64_t e = blk.tid; e < p.H * p.bq; e += blk.nthreads) {
        const int64_t i = e / p.bq, r = e % p.bq;
        lse_s[e] = r < rows ? p.lse[(b * p.H + i) * p.N + n0 + r] : kNegInf;
    }
    const int64_t kend = p.key_end(n0, rows);
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {
        blk.sync();  // the previous tile's Phat and V no longer read
        for (int64_t e = blk.tid; e < hg * p.bq * ldp; e += blk.nthreads) Ph[e] = 0.0f;
        for (int64_t i = 0; i < p.H; ++i) {
            blk.sync();  // Xs / Ys free
            load_tile(blk, Xs, p.q, b * p.H + i, p.N, n0, p.bq, p.d);
            load_tile(blk, Ys, p.k, b * p.H + i, p.M, m0, p.bk, p.d);
            blk.sync();
            // The score and its mix into every target head of the group; one owner per (r, c)
            // across the source heads, so the += needs no barrier between heads.
            const int64_t ld = p.d + 1;
            for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
                const int64_t r = e / p.bk, c = e % p.bk;
                const float l = lse_s[i * p.bq + r];
                if (l == kNegInf || m0 + c >= kend || !p.visible(b, n0 + r, m0 + c)) continue;
                float s = 0.0f;
                for (int64_t x = 0; x < p.d; ++x) s += Xs[r * ld + x] * Ys[c * ld + x];
                const float pr = exp_f(p.scale * s - l);
                for (int64_t j = 0; j < hg; ++j) Ph[(j * p.bq + r) * ldp + c] += p.alpha_p[(h0 + j) * p.H + i] * pr;
            }
        }
        if (p.drop.on) {
            blk.sync();  // other owners below
            for (int64_t j = 0; j < hg; ++j)
                for_each_tile_element(blk, p, b, h0 + j, n0, m0, [&](int64_t r, int64_t c, float mult) {
                    if (n0 + r < p.N && m0 + c < p.M) Ph[(j * p.bq + r) * ldp + c] *= mult;
                });
        }
        for (int64_t j = 0; j < hg; ++j) {
            blk.sync();  // Phat complete; Ys free
            load_tile(blk, Ys, p.v, b * p.H + h0 + j, p.M, m0, p.bk, p.dv);
            blk.sync();
            const int64_t kn = kend - m0 < p.bk ? kend - m0 : p.bk;
            for (int64_t e = blk.tid; e < p.bq * p.dv; e += blk.nthreads) {
                const int64_t r = e / p.dv, x = e % p.dv;
                float acc = 0.0f;
                for (int64_t c = 0; c < kn; ++c) acc += Ph[(j * p.bq + r) * ldp + c] * Ys[c * ldv + x];
                Oacc[(j * p.bq + r) * p.dv + x] += acc;
            }
        }
    }
    blk.sync();
    for (int64_t e = blk.tid; e < hg * rows * p.dv; e += blk.nthreads) {
        const int64_t j = e / (rows * p.dv), r = (e / p.dv) % rows, x = e % p.dv;
        p.out[((b * p.H + h0 + j) * p.N + n0 + r) * p.dv + x] = from_f<T>(Oacc[(j * p.bq + r) * p.dv + x]);
    }
}

// Backward pass A: CTA (b, query tile). D_i = rowsum(dP_i o P_i) and this CTA's dalpha' partial.
template <class T, class Block>
COEFFNET_ATTN_FN void bwd_pre_block(Block& blk, const Params<T>& p, int64_t cta, float* smem) {
    const int64_t qt = cta % p.q_tiles(), b = cta / p.q_tiles();
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const int64_t H = p.H, ldw = wide(p) + 1, ldp = p.bk + 1, tile = p.bq * ldp;
    float* Xs = smem;
    float* Ys = Xs + p.bq * ldw;
    float* P = Ys + p.bk * ldw;  // [H][bq][bk+1]
    float* G = P + H * tile;     // dPhat [H][bq][bk+1]
    float* Dacc = G + H * tile;  // [H][bq]
    float* lse_s = Dacc + H * p.bq;
    float* da = lse_s + H * p.bq;  // [H][H]
    for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
        const int64_t i = e / p.bq, r = e % p.bq;
        Dacc[e] = 0.0f;
        lse_s[e] = r < rows ? p.lse[(b * H + i) * p.N + n0 + r] : kNegInf;
    }
    for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) da[e] = 0.0f;
    const int64_t kend = p.key_end(n0, rows);
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {
        for (int64_t i = 0; i < H; ++i) {
            blk.sync();
            load_tile(blk, Xs, p.q, b * H + i, p.N, n0, p.bq, p.d);
            load_tile(blk, Ys, p.k, b * H + i, p.M, m0, p.bk, p.d);
            blk.sync();
            probs_tile(blk, p, b, n0, m0, Xs, Ys, lse_s + i * p.bq, P + i * tile);
        }
        for (int64_t h = 0; h < H; ++h) {
            blk.sync();
            load_tile(blk, Xs, p.dout, b * H + h, p.N, n0, p.bq, p.dv);
            load_tile(blk, Ys, p.v, b * H + h, p.M, m0, p.bk, p.dv);
            blk.sync();
            dphat_tile(blk, p, b, h, n0, m0, Xs, Ys, G + h * tile);
        }
        blk.sync();
        // dalpha'[h, i] += <dPhat_h, P_i> over the tile (one owner per pair).
        for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) {
            const float* gh = G + (e / H) * tile;
            const float* pi = P + (e % H) * tile;
            float acc = 0.0f;
            for (int64_t r = 0; r < p.bq; ++r)
                for (int64_t c = 0; c < p.bk; ++c) acc += gh[r * ldp + c] * pi[r * ldp + c];
            da[e] += acc;
        }
        // D_i[r] += sum_c P_i[r, c] sum_h alpha'[h, i] dPhat_h[r, c] (one owner per (i, r)).
        for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
            const int64_t i = e / p.bq, r = e % p.bq;
            float acc = 0.0f;
            for (int64_t c = 0; c < p.bk; ++c) {
                const float pr = P[i * tile + r * ldp + c];
                if (pr == 0.0f) continue;
                float dp = 0.0f;
                for (int64_t h = 0; h < H; ++h) dp += p.alpha_p[h * H + i] * G[h * tile + r * ldp + c];
                acc += pr * dp;
            }
            Dacc[e] += acc;
        }
    }
    blk.sync();
    for (int64_t e = blk.tid; e < H * rows; e += blk.nthreads) {
        const int64_t i = e / rows, r = e % rows;
        p.D[(b * H + i) * p.N + n0 + r] = Dacc[i * p.bq + r];
    }
    for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) p.dalpha_part[cta * H * H + e] = da[e];
}

// Backward pass B: CTA (b, head group g, key tile). dK_i, dV_h for the group; dQ_i by atomics.
template <class T, class Block>
COEFFNET_ATTN_FN void bwd_kv_block(Block& blk, const Params<T>& p, int64_t cta, float* smem) {
    const int64_t kt = cta % p.k_tiles(), g = (cta / p.k_tiles()) % p.groups(), b = cta / (p.k_tiles() * p.groups());
    const int64_t m0 = kt * p.bk, krows = p.M - m0 < p.bk ? p.M - m0 : p.bk;
    const int64_t H = p.H, h0 = g * p.group, hg = H - h0 < p.group ? H - h0 : p.group;
    const int64_t ldw = wide(p) + 1, ldp = p.bk + 1, tile = p.bq * ldp, ld = p.d + 1, ldv = p.dv + 1;
    float* Xs = smem;
    float* Ys = Xs + p.bq * ldw;
    float* P = Ys + p.bk * ldw;   // [H][bq][bk+1]
    float* G = P + H * tile;      // dPhat [H][bq][bk+1]
    float* W = G + H * tile;      // one scratch tile: Phat_h, then dS_i
    float* dKacc = W + tile;      // [group][bk][d]
    float* dVacc = dKacc + p.group * p.bk * p.d;  // [group][bk][dv]
    float* lse_s = dVacc + p.group * p.bk * p.dv; // [H][bq]
    float* D_s = lse_s + H * p.bq;                // [H][bq]
    for (int64_t e = blk.tid; e < hg * p.bk * p.d; e += blk.nthreads) dKacc[e] = 0.0f;
    for (int64_t e = blk.tid; e < hg * p.bk * p.dv; e += blk.nthreads) dVacc[e] = 0.0f;
    for (int64_t qt = p.query_begin(m0) / p.bq; qt < p.q_tiles(); ++qt) {
        const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
        // No barrier first: the previous tile read lse_s before its dPhat barriers and D_s before
        // the barrier after its last dS tile (the barrier sweep of tests/mutations.sh checks it).
        for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
            const int64_t i = e / p.bq, r = e % p.bq;
            const bool in = r < rows;
            lse_s[e] = in ? p.lse[(b * H + i) * p.N + n0 + r] : kNegInf;
            D_s[e] = in ? p.D[(b * H + i) * p.N + n0 + r] : 0.0f;
        }
        for (int64_t i = 0; i < H; ++i) {
            blk.sync();
            load_tile(blk, Xs, p.q, b * H + i, p.N, n0, p.bq, p.d);
            load_tile(blk, Ys, p.k, b * H + i, p.M, m0, p.bk, p.d);
            blk.sync();
            probs_tile(blk, p, b, n0, m0, Xs, Ys, lse_s + i * p.bq, P + i * tile);
        }
        for (int64_t h = 0; h < H; ++h) {
            blk.sync();
            load_tile(blk, Xs, p.dout, b * H + h, p.N, n0, p.bq, p.dv);
            load_tile(blk, Ys, p.v, b * H + h, p.M, m0, p.bk, p.dv);
            blk.sync();
            dphat_tile(blk, p, b, h, n0, m0, Xs, Ys, G + h * tile);
        }
        // dV_h += Phat_h^T dO_h, Phat_h = drop(sum_i alpha'[h, i] P_i).
        for (int64_t j = 0; j < hg; ++j) {
            const int64_t h = h0 + j;
            blk.sync();  // W and Xs free
            load_tile(blk, Xs, p.dout, b * H + h, p.N, n0, p.bq, p.dv);
            for_each_tile_element(blk, p, b, h, n0, m0, [&](int64_t r, int64_t c, float mult) {
                float s = 0.0f;
                for (int64_t i = 0; i < H; ++i) s += p.alpha_p[h * H + i] * P[i * tile + r * ldp + c];
                if (p.drop.on && s != 0.0f) s *= mult;  // s != 0 only where P is: inside the tile
                W[r * ldp + c] = s;
            });
            blk.sync();
            for (int64_t e = blk.tid; e < p.bk * p.dv; e += blk.nthreads) {
                const int64_t c = e / p.dv, x = e % p.dv;
                float acc = 0.0f;
                for (int64_t r = 0; r < rows; ++r) acc += W[r * ldp + c] * Xs[r * ldv + x];
                dVacc[j * p.bk * p.dv + e] += acc;
            }
        }
        // dS_i = scale P_i o (dP_i - D_i), dP_i = sum_h alpha'[h, i] dPhat_h; dK_i += dS_i^T Q_i;
        // dQ_i += dS_i K_i.
        for (int64_t j = 0; j < hg; ++j) {
            const int64_t i = h0 + j;
            blk.sync();  // W, Xs, Ys free
            load_tile(blk, Xs, p.q, b * H + i, p.N, n0, p.bq, p.d);
            load_tile(blk, Ys, p.k, b * H + i, p.M, m0, p.bk, p.d);
            for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
                const int64_t r = e / p.bk, c = e % p.bk;
                const float pr = P[i * tile + r * ldp + c];
                float ds = 0.0f;
                if (pr != 0.0f) {
                    float dp = 0.0f;
                    for (int64_t h = 0; h < H; ++h) dp += p.alpha_p[h * H + i] * G[h * tile + r * ldp + c];
                    ds = p.scale * pr * (dp - D_s[i * p.bq + r]);
                }
                W[r * ldp + c] = ds;
            }
            blk.sync();
            for (int64_t e = blk.tid; e < p.bk * p.d; e += blk.nthreads) {
                const int64_t c = e / p.d, x = e % p.d;
                float acc = 0.0f;
                for (int64_t r = 0; r < rows; ++r) acc += W[r * ldp + c] * Xs[r * ld + x];
                dKacc[j * p.bk * p.d + e] += acc;
            }
            for (int64_t e = blk.tid; e < rows * p.d; e += blk.nthreads) {
                const int64_t r = e / p.d, x = e % p.d;
                float acc = 0.0f;
                for (int64_t c = 0; c < krows; ++c) acc += W[r * ldp + c] * Ys[c * ld + x];
                if (acc != 0.0f) blk.atomic_add(p.dq_acc + ((b * H + i) * p.N + n0 + r) * p.d + x, acc);
            }
        }
    }
    blk.sync();
    for (int64_t e = blk.tid; e < hg * krows * p.d; e += blk.nthreads) {
        const int64_t j = e / (krows * p.d), c = (e / p.d) % krows, x = e % p.d;
        p.dk[((b * H + h0 + j) * p.M + m0 + c) * p.d + x] = from_f<T>(dKacc[(j * p.bk + c) * p.d + x]);
    }
    for (int64_t e = blk.tid; e < hg * krows * p.dv; e += blk.nthreads) {
        const int64_t j = e / (krows * p.dv), c = (e / p.dv) % krows, x = e % p.dv;
        p.dvv[((b * H + h0 + j) * p.M + m0 + c) * p.dv + x] = from_f<T>(dVacc[(j * p.bk + c) * p.dv + x]);
    }
}

// dalpha[j] = (sum over CTAs of the partials, in CTA order: deterministic) * alpha's dropout
// multiplier j (alpha' = I + alpha o multipliers; the identity has no gradient).
COEFFNET_ATTN_FN void dalpha_reduce_element(int64_t j, int64_t HH, int64_t ctas, const float* part,
                                            const DropoutDraw<float>& alpha_draw, float* dalpha) {
    float s = 0.0f;
    for (int64_t c = 0; c < ctas; ++c) s += part[c * HH + j];
    dalpha[j] = s * alpha_draw.multiplier(static_cast<uint64_t>(j));
}

// ---- variant 2 (forward pass 2 on tensor cores, bf16 / half only) ---------------------------------
// fwd_out_tc: the same CTA decomposition as fwd_out, with S_i = Q_i K_i^T and O_h += Phat_h V_h
// as 16x16x16 warp MMAs (nvcuda::wmma) with fp32 accumulation; operand tiles in shared memory in
// T (head dims padded with zeros to a multiple of 16: 40 -> 48, 80 -> 80), S and the O
// accumulators in fp32 shared memory, the exp and the H x G mix in SIMT fp32. Phat is rounded to
// T once before the PV product (as FlashAttention rounds P); that is the only rounding this
// variant adds. Tiles: Bq = 16 query rows, Bk = 64 (or 32) keys, 4 warps (S and O tiles of
// 16 x 16 spread over the warps).
// Shared-memory layout (byte offsets rounded up to 32 B, the wmma pointer alignment):
//   Qs T[bq][Dp+8] | Ks T[bk][max(Dp,Dvp)+8] (K_i, then V_h) | S f32[H][bq][bk+4] |
//   PhT T[G][bq][bk+8] | Oacc f32[G][bq][Dvp+4] | lse f32[H][bq] | alpha' f32[H][H]
// (+8 elements per row of a 16-bit tile and +4 per fp32 row keep wmma's ldm rules: a multiple of
// 8 elements for 16-bit types, of 4 for fp32, and shift rows across banks.)
COEFFNET_HD inline int64_t pad16(int64_t x) { return (x + 15) / 16 * 16; }
COEFFNET_HD inline int64_t align32(int64_t bytes) { return (bytes + 31) / 32 * 32; }

struct TcLayout {
    int64_t Dp, Dvp, ldq, ldk, lds, ldph, ldo;
    int64_t off_q, off_k, off_s, off_pht, off_o, off_lse, off_a, bytes;
};
template <class T>
COEFFNET_HD inline TcLayout tc_layout(const Params<T>& p, int64_t elem_bytes) {
    TcLayout L{};
    L.Dp = pad16(p.d);
    L.Dvp = pad16(p.dv);
    L.ldq = L.Dp + 8;
    L.ldk = (L.Dp > L.Dvp ? L.Dp : L.Dvp) + 8;
    L.lds = p.bk + 4;
    L.ldph = p.bk + 8;
    L.ldo = L.Dvp + 4;
    int64_t o = 0;
    L.off_q = o, o = align32(o + p.bq * L.ldq * elem_bytes);
    L.off_k = o, o = align32(o + p.bk * L.ldk * elem_bytes);
    L.off_s = o, o = align32(o + p.H * p.bq * L.lds * 4);
    L.off_pht = o, o = align32(o + p.group * p.bq * L.ldph * elem_bytes);
    L.off_o = o, o = align32(o + p.group * p.bq * L.ldo * 4);
    L.off_lse = o, o = align32(o + p.H * p.bq * 4);
    L.off_a = o, o = align32(o + p.H * p.H * 4);
    L.bytes = o;
    return L;
}


// C[16 x 16] (fp32, row-major, ldc) = (accumulate ? C : 0) + sum over ksteps of
// A[16 x 16k] (row-major, lda) * B[16k x 16] (row-major: B[k * ldb + n]; col-major: B[n * ldb + k]).
// A col-major: A[m][k] at A[k * lda + m] (a transposed row-major tile, e.g. Phat^T).
#if COEFFNET_DEVICE_CODE
template <class T, class LA, class LB>
__device__ __forceinline__ void tile_mma_frag(const T* A, int64_t lda, const T* B, int64_t ldb, int64_t ksteps,
                                              int64_t a_step, int64_t b_step, nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>& acc) {
    namespace w = nvcuda::wmma;
    w::fragment<w::matrix_a, 16, 16, 16, T, LA> a;
    w::fragment<w::matrix_b, 16, 16, 16, T, LB> b;
    for (int64_t k = 0; k < ksteps; ++k) {
        w::load_matrix_sync(a, A + k * a_step, static_cast<unsigned>(lda));
        w::load_matrix_sync(b, B + k * b_step, static_cast<unsigned>(ldb));
        w::mma_sync(acc, a, b, acc);
    }
}
template <class T, class Block>
COEFFNET_ATTN_FN void tile_mma(Block& blk, const T* A, int64_t lda, const T* B, int64_t ldb, bool b_col_major,
                               int64_t ksteps, float* C, int64_t ldc, bool accumulate, bool a_col_major = false) {
    // The k-th 16-wide step: along a row of a row-major A / down a column-major B, or 16 rows on.
    const int64_t a_step = a_col_major ? 16 * lda : 16, b_step = b_col_major ? 16 : 16 * ldb;
    (void)blk;
    namespace w = nvcuda::wmma;
    w::fragment<w::accumulator, 16, 16, 16, float> acc;
    if (accumulate) w::load_matrix_sync(acc, C, static_cast<unsigned>(ldc), w::mem_row_major);
    else w::fill_fragment(acc, 0.0f);
    if (!a_col_major && b_col_major) tile_mma_frag<T, w::row_major, w::col_major>(A, lda, B, ldb, ksteps, a_step, b_step, acc);
    else if (!a_col_major) tile_mma_frag<T, w::row_major, w::row_major>(A, lda, B, ldb, ksteps, a_step, b_step, acc);
    else if (b_col_major) tile_mma_frag<T, w::col_major, w::col_major>(A, lda, B, ldb, ksteps, a_step, b_step, acc);
    else tile_mma_frag<T, w::col_major, w::row_major>(A, lda, B, ldb, ksteps, a_step, b_step, acc);
    w::store_matrix_sync(C, acc, static_cast<unsigned>(ldc), w::mem_row_major);
}
#endif

// rows [r0, r0 + rows) of x[bh] (width w) -> dst[r * ld + c] in T, zeros past `len` rows and `w` columns
// (up to wp, the padded width).
template <class T, class Block>
COEFFNET_ATTN_FN void load_tile_t(Block& blk, T* dst, int64_t ld, const T* x, int64_t bh, int64_t len, int64_t r0,
                                  int64_t rows, int64_t w, int64_t wp) {
    const T* base = x + (bh * len) * w;
    for (int64_t e = blk.tid; e < rows * wp; e += blk.nthreads) {
        const int64_t r = e / wp, c = e % wp;
        dst[r * ld + c] = (r0 + r < len && c < w) ? base[(r0 + r) * w + c] : from_f<T>(0.0f);
    }
}

// Pass 2 on tensor cores: CTA (b, head group g, query tile), as fwd_out_block, in another order:
// per key tile, first every source head's S_i tile (MMAs into fp32 shared memory), then per
// element all H probabilities at once, kept in registers (H <= kRegHeads), mixed into the
// group's Phat rows and written once, in T, for the PV MMAs. Each (n, m) then costs H shared
// reads and G writes for the mix, not the 2 H G of accumulating Phat in shared memory head by
// head (the first version of this kernel), which would have cost more than the MMAs themselves.
inline constexpr int kRegHeads = 16;
template <class T, class Block>
COEFFNET_ATTN_FN void fwd_out_tc_block(Block& blk, const Params<T>& p, int64_t cta, unsigned char* smem) {
    const int64_t qt = cta % p.q_tiles(), g = (cta / p.q_tiles()) % p.groups(), b = cta / (p.q_tiles() * p.groups());
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const int64_t H = p.H, h0 = g * p.group, hg = H - h0 < p.group ? H - h0 : p.group;
    const TcLayout L = tc_layout(p, static_cast<int64_t>(sizeof(T)));
    T* Qs = reinterpret_cast<T*>(smem + L.off_q);
    T* Ks = reinterpret_cast<T*>(smem + L.off_k);
    float* S = reinterpret_cast<float*>(smem + L.off_s);       // [H][bq][lds]
    T* PhT = reinterpret_cast<T*>(smem + L.off_pht);           // [G][bq][ldph]
    float* Oacc = reinterpret_cast<float*>(smem + L.off_o);    // [G][bq][ldo]
    float* lse_s = reinterpret_cast<float*>(smem + L.off_lse); // [H][bq]
    float* A = reinterpret_cast<float*>(smem + L.off_a);       // alpha' [H][H]
    const int64_t tq = p.bq / 16, tk = p.bk / 16, tv = L.Dvp / 16, stile = p.bq * L.lds;
    for (int64_t e = blk.tid; e < hg * p.bq * L.ldo; e += blk.nthreads) Oacc[e] = 0.0f;
    for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
        const int64_t i = e / p.bq, r = e % p.bq;
        lse_s[e] = r < rows ? p.lse[(b * H + i) * p.N + n0 + r] : kNegInf;
    }
    for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) A[e] = p.alpha_p[e];
    const int64_t kend = p.key_end(n0, rows);
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {
        for (int64_t i = 0; i < H; ++i) {
            blk.sync();  // Qs, Ks free (and, for i = 0, the previous tile's PhT and V no longer read)
            load_tile_t(blk, Qs, L.ldq, p.q, b * H + i, p.N, n0, p.bq, p.d, L.Dp);
            load_tile_t(blk, Ks, L.ldk, p.k, b * H + i, p.M, m0, p.bk, p.d, L.Dp);
            blk.sync();
            for (int64_t t = blk.warp; t < tq * tk; t += blk.nwarps) {
                const int64_t rb = t / tk, cb = t % tk;
                tile_mma(blk, Qs + rb * 16 * L.ldq, L.ldq, Ks + cb * 16 * L.ldk, L.ldk, true, L.Dp / 16,
                         S + i * stile + rb * 16 * L.lds + cb * 16, L.lds, false);
            }
        }
        blk.sync();  // every S_i tile complete
        auto prob = [&](int64_t i, int64_t r, int64_t c, bool vis) {
            const float l = lse_s[i * p.bq + r];
            return vis && l != kNegInf ? exp_f(p.scale * S[i * stile + r * L.lds + c] - l) : 0.0f;
        };
        // H <= kRegHeads: column c's H probabilities into registers, then each target head j of the
        // group gets x = sum_i alpha'[h0 + j, i] P_i through put(j, x). Every P_i of the column is
        // read before put writes, so put may overwrite S in place.
        auto mix_column = [&](int64_t r, int64_t c, bool vis, auto&& put) {
            float pr[kRegHeads];
COEFFNET_ATTN_UNROLL
            for (int i = 0; i < kRegHeads; ++i) pr[i] = i < H ? prob(i, r, c, vis) : 0.0f;
            for (int64_t j = 0; j < hg; ++j) {
                const float* a = A + (h0 + j) * H;
                float x = 0.0f;
COEFFNET_ATTN_UNROLL
                for (int i = 0; i < kRegHeads; ++i)
                    if (i < H) x += a[i] * pr[i];
                put(j, x);
            }
        };
        if (!p.drop.on) {
            for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
                const int64_t r = e / p.bk, c = e % p.bk;
                const bool vis = m0 + c < kend && p.visible(b, n0 + r, m0 + c);
                if (H <= kRegHeads) {
                    mix_column(r, c, vis, [&](int64_t j, float x) { PhT[(j * p.bq + r) * L.ldph + c] = from_f<T>(x); });
                } else {
                    for (int64_t i = 0; i < H; ++i) S[i * stile + r * L.lds + c] = prob(i, r, c, vis);  // in place, same owner
                    for (int64_t j = 0; j < hg; ++j) {
                        const float* a = A + (h0 + j) * H;
                        float x = 0.0f;
                        for (int64_t i = 0; i < H; ++i) x += a[i] * S[i * stile + r * L.lds + c];
                        PhT[(j * p.bq + r) * L.ldph + c] = from_f<T>(x);
                    }
                }
            }
        } else {
            // With dropout a thread owns 4 consecutive columns of a row, so that each target head's 4
            // multipliers come from one or two Philox blocks (drop_keep4). First the 4 columns' mixed
            // values (H <= kRegHeads: written over S_j in place, fp32, once this owner has read column c
            // of every S_i) or probabilities (else: S_i in place); then per target head the multipliers,
            // and Phat rounded to T once, as without dropout.
            const int64_t quads = p.bk / 4;  // bk is a multiple of 16
            for (int64_t e = blk.tid; e < p.bq * quads; e += blk.nthreads) {
                const int64_t r = e / quads, c0 = (e % quads) * 4;
                for (int64_t c = c0; c < c0 + 4; ++c) {
                    const bool vis = m0 + c < kend && p.visible(b, n0 + r, m0 + c);
                    if (H <= kRegHeads) {
                        mix_column(r, c, vis, [&](int64_t j, float x) { S[j * stile + r * L.lds + c] = x; });
                    } else {
                        for (int64_t i = 0; i < H; ++i) S[i * stile + r * L.lds + c] = prob(i, r, c, vis);
                    }
                }
                for (int64_t j = 0; j < hg; ++j) {
                    const unsigned keep = p.drop_keep4(b, h0 + j, n0 + r, m0 + c0);
                    const float* a = A + (h0 + j) * H;
COEFFNET_ATTN_NO_UNROLL
                    for (int q = 0; q < 4; ++q) {
                        const int64_t c = c0 + q;
                        float x = 0.0f;
                        if (H <= kRegHeads) {
                            x = S[j * stile + r * L.lds + c];
                        } else {
                            for (int64_t i = 0; i < H; ++i) x += a[i] * S[i * stile + r * L.lds + c];
                        }
                        if (x != 0.0f) x *= (keep >> q) & 1u ? p.drop.keep : 0.0f;
                        PhT[(j * p.bq + r) * L.ldph + c] = from_f<T>(x);
                    }
                }
            }
        }
        for (int64_t j = 0; j < hg; ++j) {
            blk.sync();  // PhT complete; Ks free
            load_tile_t(blk, Ks, L.ldk, p.v, b * H + h0 + j, p.M, m0, p.bk, p.dv, L.Dvp);
            blk.sync();
            for (int64_t t = blk.warp; t < tq * tv; t += blk.nwarps) {
                const int64_t rb = t / tv, cb = t % tv;
                tile_mma(blk, PhT + (j * p.bq + rb * 16) * L.ldph, L.ldph, Ks + cb * 16, L.ldk, false, tk,
                         Oacc + (j * p.bq + rb * 16) * L.ldo + cb * 16, L.ldo, true);
            }
        }
    }
    blk.sync();
    for (int64_t e = blk.tid; e < hg * rows * p.dv; e += blk.nthreads) {
        const int64_t j = e / (rows * p.dv), r = (e / p.dv) % rows, x = e % p.dv;
        p.out[((b * H + h0 + j) * p.N + n0 + r) * p.dv + x] = from_f<T>(Oacc[(j * p.bq + r) * L.ldo + x]);
    }
}

// Pass 1 on tensor cores: CTA (b*H + h, query tile of 64), S = Q K^T by warp MMAs into fp32
// shared memory, then the online max / sum per row as fwd_lse_block.
template <class T, class Block>
COEFFNET_ATTN_FN void fwd_lse_tc_block(Block& blk, const Params<T>& p, int64_t cta, unsigned char* smem) {
    const int64_t qt = cta % p.q_tiles(), bh = cta / p.q_tiles(), b = bh / p.H;
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const attention_plan::TcLseLayout L = attention_plan::tc_lse_layout(p.bq, p.bk, p.d, static_cast<int64_t>(sizeof(T)));
    T* Qs = reinterpret_cast<T*>(smem + L.off_q);
    T* Ks = reinterpret_cast<T*>(smem + L.off_k);
    float* S = reinterpret_cast<float*>(smem + L.off_s);
    float* rmax = reinterpret_cast<float*>(smem + L.off_stats);
    float* rsum = rmax + p.bq;
    const int64_t Dp = pad16(p.d), tq = p.bq / 16, tk = p.bk / 16;
    load_tile_t(blk, Qs, L.ldx, p.q, bh, p.N, n0, p.bq, p.d, Dp);
    for (int64_t r = blk.tid; r < p.bq; r += blk.nthreads) rmax[r] = kNegInf, rsum[r] = 0.0f;
    const int64_t kend = p.key_end(n0, rows);
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {  // barriers as in fwd_lse_block
        load_tile_t(blk, Ks, L.ldx, p.k, bh, p.M, m0, p.bk, p.d, Dp);
        blk.sync();
        for (int64_t t = blk.warp; t < tq * tk; t += blk.nwarps) {
            const int64_t rb = t / tk, cb = t % tk;
            tile_mma(blk, Qs + rb * 16 * L.ldx, L.ldx, Ks + cb * 16 * L.ldx, L.ldx, true, Dp / 16,
                     S + rb * 16 * L.lds + cb * 16, L.lds, false);
        }
        blk.sync();
        for (int64_t r = blk.tid; r < p.bq; r += blk.nthreads) {
            float mx = kNegInf;
            for (int64_t c = 0; c < p.bk; ++c)
                if (m0 + c < kend && p.visible(b, n0 + r, m0 + c)) mx = max_f(mx, p.scale * S[r * L.lds + c]);
            if (mx == kNegInf) continue;
            const float m_new = max_f(rmax[r], mx);
            float sum = rsum[r] * exp_f(rmax[r] - m_new);
            for (int64_t c = 0; c < p.bk; ++c)
                if (m0 + c < kend && p.visible(b, n0 + r, m0 + c)) sum += exp_f(p.scale * S[r * L.lds + c] - m_new);
            rmax[r] = m_new;
            rsum[r] = sum;
        }
    }
    for (int64_t r = blk.tid; r < rows; r += blk.nthreads)
        p.lse[bh * p.N + n0 + r] = rmax[r] == kNegInf ? kNegInf : rmax[r] + log_f(rsum[r]);
}

// The P_i (all source heads) and dPhat_h (all target heads) tiles of query rows [n0, n0 + bq) x
// keys [m0, m0 + bk), fp32 in shared memory (ld L.ldp), by warp MMAs; shared by both backward
// tensor-core kernels. Ends with a barrier. Starts with none: every read of Xs and Ys (its own
// MMAs, the callers') is followed by a barrier before the next load, and the first barrier below
// orders the callers' reads of P and G before the MMAs rewrite them.
template <class T, class Block>
COEFFNET_ATTN_FN void bwd_tiles_tc(Block& blk, const Params<T>& p, const attention_plan::TcBwdLayout& L, int64_t b,
                                   int64_t n0, int64_t m0, T* Xs, T* Ys, const float* lse_s, float* P, float* G) {
    const int64_t H = p.H, tq = p.bq / 16, tk = p.bk / 16, tile = p.bq * L.ldp;
    for (int64_t i = 0; i < H; ++i) {
        load_tile_t(blk, Xs, L.ldx, p.q, b * H + i, p.N, n0, p.bq, p.d, L.Dp);
        load_tile_t(blk, Ys, L.ldx, p.k, b * H + i, p.M, m0, p.bk, p.d, L.Dp);
        blk.sync();
        for (int64_t t = blk.warp; t < tq * tk; t += blk.nwarps) {
            const int64_t rb = t / tk, cb = t % tk;
            tile_mma(blk, Xs + rb * 16 * L.ldx, L.ldx, Ys + cb * 16 * L.ldx, L.ldx, true, L.Dp / 16,
                     P + i * tile + rb * 16 * L.ldp + cb * 16, L.ldp, false);
        }
        blk.sync();
        for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
            const int64_t r = e / p.bk, c = e % p.bk;
            float* x = P + i * tile + r * L.ldp + c;
            const float l = lse_s[i * p.bq + r];
            *x = (l != kNegInf && p.visible(b, n0 + r, m0 + c)) ? exp_f(p.scale * *x - l) : 0.0f;
        }
    }
    for (int64_t h = 0; h < H; ++h) {
        load_tile_t(blk, Xs, L.ldx, p.dout, b * H + h, p.N, n0, p.bq, p.dv, L.Dvp);
        load_tile_t(blk, Ys, L.ldx, p.v, b * H + h, p.M, m0, p.bk, p.dv, L.Dvp);
        blk.sync();
        for (int64_t t = blk.warp; t < tq * tk; t += blk.nwarps) {
            const int64_t rb = t / tk, cb = t % tk;
            tile_mma(blk, Xs + rb * 16 * L.ldx, L.ldx, Ys + cb * 16 * L.ldx, L.ldx, true, L.Dvp / 16,
                     G + h * tile + rb * 16 * L.ldp + cb * 16, L.ldp, false);
        }
        blk.sync();
        if (p.drop.on)
            for_each_tile_element(blk, p, b, h, n0, m0, [&](int64_t r, int64_t c, float mult) {
                if (n0 + r < p.N && m0 + c < p.M) G[h * tile + r * L.ldp + c] *= mult;
            });
    }
    blk.sync();
}

// Backward pass A on tensor cores: as bwd_pre_block (D_i and the dalpha' partial of a query tile).
template <class T, class Block>
COEFFNET_ATTN_FN void bwd_pre_tc_block(Block& blk, const Params<T>& p, int64_t cta, unsigned char* smem) {
    const int64_t qt = cta % p.q_tiles(), b = cta / p.q_tiles();
    const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
    const int64_t H = p.H;
    const attention_plan::TcBwdLayout L =
        attention_plan::tc_bwd_layout(false, p.bq, p.bk, 1, H, p.d, p.dv, static_cast<int64_t>(sizeof(T)));
    T* Xs = reinterpret_cast<T*>(smem + L.off_x);
    T* Ys = reinterpret_cast<T*>(smem + L.off_y);
    float* P = reinterpret_cast<float*>(smem + L.off_p);
    float* G = reinterpret_cast<float*>(smem + L.off_g);
    float* lse_s = reinterpret_cast<float*>(smem + L.off_lse);
    float* Dacc = reinterpret_cast<float*>(smem + L.off_d);
    float* da = reinterpret_cast<float*>(smem + L.off_da);
    const int64_t tile = p.bq * L.ldp;
    for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
        const int64_t i = e / p.bq, r = e % p.bq;
        Dacc[e] = 0.0f;
        lse_s[e] = r < rows ? p.lse[(b * H + i) * p.N + n0 + r] : kNegInf;
    }
    for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) da[e] = 0.0f;
    const int64_t kend = p.key_end(n0, rows);
    for (int64_t m0 = 0; m0 < kend; m0 += p.bk) {
        bwd_tiles_tc(blk, p, L, b, n0, m0, Xs, Ys, lse_s, P, G);
        for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) {
            const float* gh = G + (e / H) * tile;
            const float* pi = P + (e % H) * tile;
            float acc = 0.0f;
            for (int64_t r = 0; r < p.bq; ++r)
                for (int64_t c = 0; c < p.bk; ++c) acc += gh[r * L.ldp + c] * pi[r * L.ldp + c];
            da[e] += acc;
        }
        for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
            const int64_t i = e / p.bq, r = e % p.bq;
            float acc = 0.0f;
            for (int64_t c = 0; c < p.bk; ++c) {
                const float pr = P[i * tile + r * L.ldp + c];
                if (pr == 0.0f) continue;
                float dp = 0.0f;
                for (int64_t h = 0; h < H; ++h) dp += p.alpha_p[h * H + i] * G[h * tile + r * L.ldp + c];
                acc += pr * dp;
            }
            Dacc[e] += acc;
        }
    }
    blk.sync();
    for (int64_t e = blk.tid; e < H * rows; e += blk.nthreads) {
        const int64_t i = e / rows, r = e % rows;
        p.D[(b * H + i) * p.N + n0 + r] = Dacc[i * p.bq + r];
    }
    for (int64_t e = blk.tid; e < H * H; e += blk.nthreads) p.dalpha_part[cta * H * H + e] = da[e];
}

// Backward pass B on tensor cores: as bwd_kv_block. Phat_h and dS_i are rounded to T once for
// their MMAs (dV_h += Phat_h^T dO_h, dK_i += dS_i^T Q_i, dQ_i += dS_i K_i), as FlashAttention does.
template <class T, class Block>
COEFFNET_ATTN_FN void bwd_kv_tc_block(Block& blk, const Params<T>& p, int64_t cta, unsigned char* smem) {
    const int64_t kt = cta % p.k_tiles(), g = (cta / p.k_tiles()) % p.groups(), b = cta / (p.k_tiles() * p.groups());
    const int64_t m0 = kt * p.bk, krows = p.M - m0 < p.bk ? p.M - m0 : p.bk;
    const int64_t H = p.H, h0 = g * p.group, hg = H - h0 < p.group ? H - h0 : p.group;
    const attention_plan::TcBwdLayout L =
        attention_plan::tc_bwd_layout(true, p.bq, p.bk, p.group, H, p.d, p.dv, static_cast<int64_t>(sizeof(T)));
    T* Xs = reinterpret_cast<T*>(smem + L.off_x);
    T* Ys = reinterpret_cast<T*>(smem + L.off_y);
    float* P = reinterpret_cast<float*>(smem + L.off_p);
    float* G = reinterpret_cast<float*>(smem + L.off_g);
    float* lse_s = reinterpret_cast<float*>(smem + L.off_lse);
    float* D_s = reinterpret_cast<float*>(smem + L.off_d);
    T* W = reinterpret_cast<T*>(smem + L.off_w);
    float* F = reinterpret_cast<float*>(smem + L.off_f);
    float* dKacc = reinterpret_cast<float*>(smem + L.off_dk);
    float* dVacc = reinterpret_cast<float*>(smem + L.off_dv);
    const int64_t tile = p.bq * L.ldp, tq = p.bq / 16, tk = p.bk / 16, tdk = L.Dp / 16, tdv = L.Dvp / 16;
    for (int64_t e = blk.tid; e < hg * p.bk * L.ldk; e += blk.nthreads) dKacc[e] = 0.0f;
    for (int64_t e = blk.tid; e < hg * p.bk * L.ldv; e += blk.nthreads) dVacc[e] = 0.0f;
    for (int64_t qt = p.query_begin(m0) / p.bq; qt < p.q_tiles(); ++qt) {
        const int64_t n0 = qt * p.bq, rows = p.N - n0 < p.bq ? p.N - n0 : p.bq;
        // No barrier first: the previous tile read lse_s before its dPhat barriers and D_s before
        // the barrier after its last dS tile (the barrier sweep of tests/mutations.sh checks it).
        for (int64_t e = blk.tid; e < H * p.bq; e += blk.nthreads) {
            const int64_t i = e / p.bq, r = e % p.bq;
            const bool in = r < rows;
            lse_s[e] = in ? p.lse[(b * H + i) * p.N + n0 + r] : kNegInf;
            D_s[e] = in ? p.D[(b * H + i) * p.N + n0 + r] : 0.0f;
        }
        bwd_tiles_tc(blk, p, L, b, n0, m0, Xs, Ys, lse_s, P, G);
        // dV_h += Phat_h^T dO_h (h in the group).
        for (int64_t j = 0; j < hg; ++j) {
            const int64_t h = h0 + j;
            blk.sync();  // W and Xs free
            load_tile_t(blk, Xs, L.ldx, p.dout, b * H + h, p.N, n0, p.bq, p.dv, L.Dvp);
            for_each_tile_element(blk, p, b, h, n0, m0, [&](int64_t r, int64_t c, float mult) {
                float s = 0.0f;
                for (int64_t i = 0; i < H; ++i) s += p.alpha_p[h * H + i] * P[i * tile + r * L.ldp + c];
                if (p.drop.on && s != 0.0f) s *= mult;  // s != 0 only where P is: inside the tile
                W[r * L.ldw + c] = from_f<T>(s);
            });
            blk.sync();
            for (int64_t t = blk.warp; t < tk * tdv; t += blk.nwarps) {
                const int64_t rb = t / tdv, cb = t % tdv;  // key block, feature block
                tile_mma(blk, W + rb * 16, L.ldw, Xs + cb * 16, L.ldx, false, tq,
                         dVacc + (j * p.bk + rb * 16) * L.ldv + cb * 16, L.ldv, true, true);
            }
        }
        // dS_i = scale P_i o (dP_i - D_i); dK_i += dS_i^T Q_i; dQ_i += dS_i K_i (i in the group).
        for (int64_t j = 0; j < hg; ++j) {
            const int64_t i = h0 + j;
            blk.sync();  // W, Xs, Ys, F free
            load_tile_t(blk, Xs, L.ldx, p.q, b * H + i, p.N, n0, p.bq, p.d, L.Dp);
            load_tile_t(blk, Ys, L.ldx, p.k, b * H + i, p.M, m0, p.bk, p.d, L.Dp);
            for (int64_t e = blk.tid; e < p.bq * p.bk; e += blk.nthreads) {
                const int64_t r = e / p.bk, c = e % p.bk;
                const float pr = P[i * tile + r * L.ldp + c];
                float ds = 0.0f;
                if (pr != 0.0f) {
                    float dp = 0.0f;
                    for (int64_t h = 0; h < H; ++h) dp += p.alpha_p[h * H + i] * G[h * tile + r * L.ldp + c];
                    ds = p.scale * pr * (dp - D_s[i * p.bq + r]);
                }
                W[r * L.ldw + c] = from_f<T>(ds);
            }
            blk.sync();
            for (int64_t t = blk.warp; t < tk * tdk + tq * tdk; t += blk.nwarps) {
                if (t < tk * tdk) {  // dK tile (key block, feature block)
                    const int64_t rb = t / tdk, cb = t % tdk;
                    tile_mma(blk, W + rb * 16, L.ldw, Xs + cb * 16, L.ldx, false, tq,
                             dKacc + (j * p.bk + rb * 16) * L.ldk + cb * 16, L.ldk, true, true);
                } else {  // dQ tile (query block, feature block) into F
                    const int64_t u = t - tk * tdk, rb = u / tdk, cb = u % tdk;
                    tile_mma(blk, W + rb * 16 * L.ldw, L.ldw, Ys + cb * 16, L.ldx, false, tk,
                             F + rb * 16 * L.ldf + cb * 16, L.ldf, false);
                }
            }
            blk.sync();
            for (int64_t e = blk.tid; e < rows * p.d; e += blk.nthreads) {
                const int64_t r = e / p.d, x = e % p.d;
                const float v = F[r * L.ldf + x];
                if (v != 0.0f) blk.atomic_add(p.dq_acc + ((b * H + i) * p.N + n0 + r) * p.d + x, v);
            }
        }
    }
    // No barrier here: the last MMAs into dKacc / dVacc are followed by the barrier before the F
    // reads, and the query loop runs at least once (the last query row sees every key).
    for (int64_t e = blk.tid; e < hg * krows * p.d; e += blk.nthreads) {
        const int64_t j = e / (krows * p.d), c = (e / p.d) % krows, x = e % p.d;
        p.dk[((b * H + h0 + j) * p.M + m0 + c) * p.d + x] = from_f<T>(dKacc[(j * p.bk + c) * L.ldk + x]);
    }
    for (int64_t e = blk.tid; e < hg * krows * p.dv; e += blk.nthreads) {
        const int64_t j = e / (krows * p.dv), c = (e / p.dv) % krows, x = e % p.dv;
        p.dvv[((b * H + h0 + j) * p.M + m0 + c) * p.dv + x] = from_f<T>(dVacc[(j * p.bk + c) * L.ldv + x]);
    }
}

#if COEFFNET_DEVICE_CODE
struct DeviceBlock {
    int64_t tid, nthreads, warp, nwarps;
    __device__ DeviceBlock() : tid(threadIdx.x), nthreads(blockDim.x), warp(threadIdx.x / 32), nwarps(blockDim.x / 32) {}
#if defined(COEFFNET_EMULATED)
    // The emulator names a barrier by its call site: the block function's line, not this one.
    void sync(std::source_location where = std::source_location::current()) const { __syncthreads(where); }
#else
    __device__ __forceinline__ void sync() const { __syncthreads(); }
#endif
    __device__ __forceinline__ void atomic_add(float* a, float v) const { atomicAdd(a, v); }
};

// One CTA of a pass: the block function Run on CTA blockIdx.x, with the dynamic shared memory seen
// as Smem (float for the SIMT passes, bytes for the tensor-core ones); launched with Threads threads.
// MinBlocks: the launch bounds' minimum CTAs per SM. 1 for the passes whose shared memory allows
// only 1-2 CTAs per SM anyway (fwd_out, bwd_pre, bwd_kv): without it sm_80's ptxas capped some of
// them at 64 or 80 registers and spilled (2026-12-06); 0 (not given) for fwd_lse, whose small
// tiles let more CTAs share an SM, so its register count stays ptxas's choice.
template <class T, int Threads, int MinBlocks, class Smem, void (*Run)(DeviceBlock&, const Params<T>&, int64_t, Smem*)>
__global__ void __launch_bounds__(Threads, MinBlocks) block_kernel(Params<T> p) {
#if defined(COEFFNET_EMULATED)
    unsigned char* smem_dynamic = ::coeffnet::emu::dynamic_shared();  // 128-byte aligned, poisoned per CTA
#else
    extern __shared__ __align__(128) unsigned char smem_dynamic[];
#endif
    DeviceBlock blk;
    Run(blk, p, static_cast<int64_t>(blockIdx.x), reinterpret_cast<Smem*>(smem_dynamic));
}

// The kernels the launchers start (src/cuda/attention.cu): the SIMT passes with 256 threads, the
// tensor-core ones with 128.
template <class T>
constexpr auto fwd_lse_kernel = block_kernel<T, 256, 0, float, fwd_lse_block<T, DeviceBlock>>;
template <class T>
constexpr auto fwd_out_kernel = block_kernel<T, 256, 1, float, fwd_out_block<T, DeviceBlock>>;
template <class T>
constexpr auto bwd_pre_kernel = block_kernel<T, 256, 1, float, bwd_pre_block<T, DeviceBlock>>;
template <class T>
constexpr auto bwd_kv_kernel = block_kernel<T, 256, 1, float, bwd_kv_block<T, DeviceBlock>>;
template <class T>
constexpr auto fwd_lse_tc_kernel = block_kernel<T, 128, 0, unsigned char, fwd_lse_tc_block<T, DeviceBlock>>;
template <class T>
constexpr auto fwd_out_tc_kernel = block_kernel<T, 128, 1, unsigned char, fwd_out_tc_block<T, DeviceBlock>>;
template <class T>
constexpr auto bwd_pre_tc_kernel = block_kernel<T, 128, 1, unsigned char, bwd_pre_tc_block<T, DeviceBlock>>;
template <class T>
constexpr auto bwd_kv_tc_kernel = block_kernel<T, 128, 1, unsigned char, bwd_kv_tc_block<T, DeviceBlock>>;
template <class = void>
__global__ void dalpha_reduce_kernel(int64_t HH, int64_t ctas, const float* part, DropoutDraw<float> alpha_draw,
                                     float* dalpha) {
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j < HH) dalpha_reduce_element(j, HH, ctas, part, alpha_draw, dalpha);
}
// For tests (cuda::tile_mma_for_testing, src/cuda/attention.cu): one warp computes the 16 x 16 tile
// C = A B with tile_mma, straight from global memory, in any of the four operand layouts (the
// attention kernels use three: A column-major with B column-major is only reached here).
template <class T>
__global__ void tile_mma_test_kernel(const T* A, int64_t lda, bool a_col_major, const T* B, int64_t ldb,
                                     bool b_col_major, int64_t ksteps, float* C) {
    DeviceBlock blk;
    tile_mma(blk, A, lda, B, ldb, b_col_major, ksteps, C, 16, false, a_col_major);
}
template <class T>
__global__ void f32_to_kernel(const float* src, T* dst, int64_t n) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = from_f<T>(src[i]);
}
#endif

// The Params of one kernel of the plan (tile sizes and head group differ per kernel).
template <class T>
COEFFNET_HD inline Params<T> with_plan(Params<T> p, const AttentionKernelPlan& k) {
    p.bq = k.bq;
    p.bk = k.bk;
    p.group = k.group;
    return p;
}


}  // namespace coeffnet::cuda::attn
