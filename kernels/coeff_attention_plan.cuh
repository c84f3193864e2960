// kernels/coeff_attention_plan.cuh: the launch plan of the fused coefficient attention
// (coeff_attention.cuh): each kernel's tiles, target-head group, shared memory and grid, as pure
// host functions (COEFFNET_HD where the kernels carve their shared memory with them), so the
// launchers (src/cuda/attention.cu) and the tests (tests/cuda/test_attention_cuda.cpp, without a
// GPU) compute the same plan. A layout of the kernels, so it lives with them: g++ and nvcc both
// compile it, it needs no CUDA header, and it is not part of the installed API (the public
// include/coeffnet/cuda/attention.hpp needs none of it).
#pragma once

#include <algorithm>
#include <cstdint>

#include "coeffnet/core/error.hpp"
#include "coeffnet/core/rng.hpp"

namespace coeffnet::cuda {

// Each kernel's tile sizes, target-head group, shared memory and grid. The shared-memory
// formulas mirror the layouts in coeff_attention.cuh (smem_* there; the tests check that both
// agree).
struct AttentionKernelPlan {
    int64_t bq = 16, bk = 32;  // query / key rows per tile
    int64_t group = 1;         // heads per CTA (fwd_out, bwd_kv); 1 elsewhere
    int64_t groups = 1;        // ceil(H / group)
    int64_t smem_bytes = 0;    // dynamic shared memory
    int64_t grid = 0;          // CTAs (a 1-D grid: x allows 2^31 - 1)
};
struct AttentionPlan {
    int threads = 256;     // SIMT kernels
    int tc_threads = 128;  // the tensor-core kernels (4 warps)
    AttentionKernelPlan fwd_lse, fwd_out, bwd_pre, bwd_kv;
    bool use_tc = false;          // the tensor-core kernels (16-bit storage)
    AttentionKernelPlan fwd_out_tc;  // its tiles (bq 16, bk 64), when use_tc
    AttentionKernelPlan fwd_lse_tc, bwd_pre_tc, bwd_kv_tc;  // the other tensor-core kernels, when use_tc
    // Score-tile products per (n, m) in units of one head's QK^T (the recompute cost of grouping):
    // forward H + groups * H (+ H for PV), backward 2H + groups * 2H (+ 3H).
    int64_t fwd_score_products = 0, bwd_score_products = 0;
};

namespace attention_plan {
inline constexpr int64_t kMaxHeads = 64;
inline constexpr int64_t kMaxGrid = 2147483647;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t wide(int64_t d, int64_t dv) { return std::max(d, dv); }
// In floats, as smem_fwd_lse / smem_fwd_out / smem_bwd_pre / smem_bwd_kv in the kernel file.
inline int64_t fwd_lse_floats(int64_t bq, int64_t bk, int64_t d) { return bq * (d + 1) + bk * (d + 1) + bq * (bk + 1) + 2 * bq; }
inline int64_t fwd_out_floats(int64_t bq, int64_t bk, int64_t G, int64_t H, int64_t d, int64_t dv) {
    return bq * (wide(d, dv) + 1) + bk * (wide(d, dv) + 1) + G * bq * (bk + 1) + G * bq * dv + H * bq;
}
inline int64_t bwd_pre_floats(int64_t bq, int64_t bk, int64_t H, int64_t d, int64_t dv) {
    return bq * (wide(d, dv) + 1) + bk * (wide(d, dv) + 1) + 2 * H * bq * (bk + 1) + 2 * H * bq + H * H;
}
inline int64_t bwd_kv_floats(int64_t bq, int64_t bk, int64_t G, int64_t H, int64_t d, int64_t dv) {
    return bq * (wide(d, dv) + 1) + bk * (wide(d, dv) + 1) + (2 * H + 1) * bq * (bk + 1) + G * bk * d + G * bk * dv +
           2 * H * bq;
}
// fwd_out_tc's layout in bytes (TcLayout in the kernel file): 16-bit tiles padded to a multiple of 16
// columns plus 8, fp32 rows plus 4, every buffer rounded up to 32 bytes.
inline int64_t pad16(int64_t x) { return (x + 15) / 16 * 16; }
inline int64_t align32(int64_t b) { return (b + 31) / 32 * 32; }
inline int64_t fwd_out_tc_bytes(int64_t bq, int64_t bk, int64_t G, int64_t H, int64_t d, int64_t dv, int64_t eb) {
    const int64_t Dp = pad16(d), Dvp = pad16(dv);
    return align32(bq * (Dp + 8) * eb) + align32(bk * (std::max(Dp, Dvp) + 8) * eb) + align32(H * bq * (bk + 4) * 4) +
           align32(G * bq * (bk + 8) * eb) + align32(G * bq * (Dvp + 4) * 4) + align32(H * bq * 4) + align32(H * H * 4);
}
// The other tensor-core kernels' shared-memory layouts (byte offsets, each rounded up to 32 B, the
// wmma pointer alignment). 16-bit rows hold max(pad16(d), pad16(dv)) + 8 elements, fp32 rows
// width + 4 (wmma's ldm rules: multiples of 8 and 4 elements). The kernel file carves its shared
// memory with these very functions.
struct TcLseLayout {
    int64_t ldx, lds, off_q, off_k, off_s, off_stats, bytes;
};
COEFFNET_HD inline TcLseLayout tc_lse_layout(int64_t bq, int64_t bk, int64_t d, int64_t eb) {
    TcLseLayout L{};
    L.ldx = (d + 15) / 16 * 16 + 8;
    L.lds = bk + 4;
    int64_t o = 0;
    auto take = [&](int64_t& off, int64_t bytes) { off = o; o += (bytes + 31) / 32 * 32; };
    take(L.off_q, bq * L.ldx * eb);
    take(L.off_k, bk * L.ldx * eb);
    take(L.off_s, bq * L.lds * 4);
    take(L.off_stats, 2 * bq * 4);
    L.bytes = o;
    return L;
}
struct TcBwdLayout {
    int64_t Dp, Dvp, ldx, ldp, ldw, ldf, ldk, ldv;
    int64_t off_x, off_y, off_p, off_g, off_w, off_f, off_dk, off_dv, off_lse, off_d, off_da, bytes;
};
// kv = false: bwd_pre_tc (no W, F, dK, dV; D accumulators and dalpha' partials instead);
// kv = true: bwd_kv_tc with G heads' dK / dV accumulators.
COEFFNET_HD inline TcBwdLayout tc_bwd_layout(bool kv, int64_t bq, int64_t bk, int64_t G, int64_t H, int64_t d,
                                             int64_t dv, int64_t eb) {
    TcBwdLayout L{};
    L.Dp = (d + 15) / 16 * 16;
    L.Dvp = (dv + 15) / 16 * 16;
    L.ldx = (L.Dp > L.Dvp ? L.Dp : L.Dvp) + 8;
    L.ldp = bk + 4;
    L.ldw = bk + 8;
    L.ldf = (L.Dp > L.Dvp ? L.Dp : L.Dvp) + 4;
    L.ldk = L.Dp + 4;
    L.ldv = L.Dvp + 4;
    int64_t o = 0;
    auto take = [&](int64_t& off, int64_t bytes) { off = o; o += (bytes + 31) / 32 * 32; };
    take(L.off_x, bq * L.ldx * eb);
    take(L.off_y, bk * L.ldx * eb);
    take(L.off_p, H * bq * L.ldp * 4);
    take(L.off_g, H * bq * L.ldp * 4);
    take(L.off_lse, H * bq * 4);
    take(L.off_d, H * bq * 4);  // D accumulators (pre) / D rows (kv)
    if (kv) {
        take(L.off_w, bq * L.ldw * eb);
        take(L.off_f, bq * L.ldf * 4);
        take(L.off_dk, G * bk * L.ldk * 4);
        take(L.off_dv, G * bk * L.ldv * 4);
    } else {
        take(L.off_da, H * H * 4);
    }
    L.bytes = o;
    return L;
}

// The largest group G <= H whose layout fits `budget` bytes, then balanced: groups =
// ceil(H / G), G = ceil(H / groups) (12 heads under a cap of 8 -> 2 groups of 6, not 8 + 4).
template <class F>
inline bool pick_group(int64_t H, int64_t budget, F&& floats_for, AttentionKernelPlan& k) {
    int64_t g = H;
    while (g >= 1 && floats_for(g) * 4 > budget) --g;
    if (g < 1) return false;
    k.groups = ceil_div(H, g);
    k.group = ceil_div(H, k.groups);
    k.smem_bytes = floats_for(k.group) * 4;
    return true;
}
}  // namespace attention_plan

// smem_limit: the device's shared memory per block with opt-in (cudaDevAttrMaxSharedMemoryPerBlockOptin:
// 227 KiB on H100/H200, 163 KiB on A100). elem_bytes: 4 (float: SIMT only) or 2 (bf16 / half: the
// forward's pass 2 on tensor cores). Throws coeffnet::Error when nothing fits or the grid is too big.
inline AttentionPlan plan_coeff_attention(int64_t B, int64_t H, int64_t N, int64_t M, int64_t d, int64_t dv,
                                          int64_t smem_limit, int64_t elem_bytes = 4) {
    using namespace attention_plan;
    const char* op = "cuda::coeff_attention";
    check(B >= 0 && H >= 1 && N >= 0 && M >= 0 && d >= 1 && dv >= 1, op, ": bad sizes B=", B, " H=", H, " N=", N,
          " M=", M, " d=", d, " dv=", dv);
    check(H <= kMaxHeads, op, ": at most ", kMaxHeads, " heads, got ", H);
    AttentionPlan p;
    // Pass 1: per head, 32 x 32 tiles.
    p.fwd_lse.bq = 32, p.fwd_lse.bk = 32;
    p.fwd_lse.smem_bytes = fwd_lse_floats(32, 32, d) * 4;
    p.fwd_lse.grid = B * H * ceil_div(N, 32);
    // Pass 2: as many target heads per CTA as fit (fewest groups: each extra group recomputes all H
    // score tiles; one CTA per SM is the price, and which costs more is for a GPU to tell).
    for (int64_t bk : {int64_t{32}, int64_t{16}}) {
        AttentionKernelPlan k;
        k.bq = 16, k.bk = bk;
        auto fl = [&](int64_t g) { return fwd_out_floats(16, bk, g, H, d, dv); };
        if (pick_group(H, smem_limit, fl, k)) {
            p.fwd_out = k;
            break;
        }
    }
    // Pass 2 on tensor cores (16-bit storage): bq 16, bk 64 or 32 (whichever needs fewer head
    // groups; 64 on a tie), as many target heads as fit.
    if (elem_bytes == 2) {
        AttentionKernelPlan k;
        k.bq = 16, k.bk = 64;
        for (int64_t bk : {int64_t{64}, int64_t{32}}) {
            AttentionKernelPlan t;
            t.bq = 16, t.bk = bk;
            if (pick_group(H, smem_limit, [&](int64_t g) { return fwd_out_tc_bytes(16, bk, g, H, d, dv, 2) / 4; }, t) &&
                (k.smem_bytes == 0 || t.groups < k.groups))
                k = t;
        }
        const int64_t kbk = k.bk;
        auto fb = [&](int64_t g) { return fwd_out_tc_bytes(16, kbk, g, H, d, dv, 2) / 4; };  // pick_group counts floats
        AttentionKernelPlan pre, kv;
        bool kv_ok = false;
        for (int64_t bk : {int64_t{32}, int64_t{16}}) {
            if (kv_ok) break;
            kv = AttentionKernelPlan{};
            kv.bq = 16, kv.bk = bk;
            kv_ok = pick_group(H, smem_limit, [&](int64_t g) { return tc_bwd_layout(true, 16, bk, g, H, d, dv, 2).bytes / 4; }, kv);
        }
        for (int64_t bk : {int64_t{64}, int64_t{32}, int64_t{16}})
            if (pre.smem_bytes == 0 && tc_bwd_layout(false, 16, bk, 1, H, d, dv, 2).bytes <= smem_limit) {
                pre.bq = 16, pre.bk = bk;
                pre.smem_bytes = tc_bwd_layout(false, 16, bk, 1, H, d, dv, 2).bytes;
            }
        const int64_t lse_bytes = tc_lse_layout(64, 64, d, 2).bytes;
        if (pick_group(H, smem_limit, fb, k) && kv_ok && pre.smem_bytes > 0 &&
            lse_bytes <= smem_limit) {
            k.smem_bytes = fwd_out_tc_bytes(16, kbk, k.group, H, d, dv, 2);
            k.grid = B * k.groups * ceil_div(N, 16);
            p.fwd_out_tc = k;
            kv.smem_bytes = tc_bwd_layout(true, 16, kv.bk, kv.group, H, d, dv, 2).bytes;
            kv.grid = B * kv.groups * ceil_div(M, kv.bk);
            p.bwd_kv_tc = kv;
            pre.grid = B * ceil_div(N, 16);
            p.bwd_pre_tc = pre;
            p.fwd_lse_tc.bq = 64, p.fwd_lse_tc.bk = 64;
            p.fwd_lse_tc.smem_bytes = lse_bytes;
            p.fwd_lse_tc.grid = B * H * ceil_div(N, 64);
            p.use_tc = true;
        }
    }
    // Backward pass A: all heads' P and dPhat tiles of one query tile.
    for (int64_t bq : {int64_t{16}, int64_t{8}})
        for (int64_t bk : {int64_t{32}, int64_t{16}}) {
            if (p.bwd_pre.smem_bytes > 0) break;
            if (bwd_pre_floats(bq, bk, H, d, dv) * 4 <= smem_limit) {
                p.bwd_pre.bq = bq, p.bwd_pre.bk = bk;
                p.bwd_pre.smem_bytes = bwd_pre_floats(bq, bk, H, d, dv) * 4;
            }
        }
    // Backward pass B: the key-side accumulators of as many heads as fit.
    for (int64_t bq : {int64_t{16}, int64_t{8}})
        for (int64_t bk : {int64_t{32}, int64_t{16}}) {
            if (p.bwd_kv.smem_bytes > 0) break;
            AttentionKernelPlan k;
            k.bq = bq, k.bk = bk;
            if (pick_group(H, smem_limit, [&](int64_t g) { return bwd_kv_floats(bq, bk, g, H, d, dv); }, k)) p.bwd_kv = k;
        }
    check(p.fwd_lse.smem_bytes <= smem_limit && p.fwd_out.smem_bytes > 0 && p.bwd_pre.smem_bytes > 0 &&
              p.bwd_kv.smem_bytes > 0,
          op, ": H=", H, " d=", d, " dv=", dv, " needs more shared memory per block than the device's ", smem_limit,
          " bytes");
    p.fwd_out.grid = B * p.fwd_out.groups * ceil_div(N, p.fwd_out.bq);
    p.bwd_pre.grid = B * ceil_div(N, p.bwd_pre.bq);
    p.bwd_kv.grid = B * p.bwd_kv.groups * ceil_div(M, p.bwd_kv.bk);
    for (const AttentionKernelPlan* k : {&p.fwd_lse, &p.fwd_out, &p.bwd_pre, &p.bwd_kv, &p.fwd_out_tc, &p.fwd_lse_tc,
                                         &p.bwd_pre_tc, &p.bwd_kv_tc})
        check(k->grid <= kMaxGrid, op, ": grid of ", k->grid, " blocks exceeds 2^31 - 1 (B=", B, " H=", H, " N=", N,
              " M=", M, ")");
    p.fwd_score_products = H + (p.use_tc ? p.fwd_out_tc.groups : p.fwd_out.groups) * H + H;
    p.bwd_score_products = 2 * H + (p.use_tc ? p.bwd_kv_tc.groups : p.bwd_kv.groups) * 2 * H + 3 * H;
    return p;
}

}  // namespace coeffnet::cuda
