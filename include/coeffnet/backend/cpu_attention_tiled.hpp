// coeffnet/backend/cpu_attention_tiled.hpp: the CPU table's fused coefficient attention, forward
// and backward (Ops<T>::coeff_attention_forward / _backward), tiled, never storing the B*H*N*M
// maps. Not part of cpu.hpp (see backend/cpu_attention.hpp): ops/attention_tiled_impl.hpp includes
// it and register_tiled_kernels<T>() below points the CPU table at it; include
// <coeffnet/ops/attention_tiled.hpp> to add it to a program.
//
// What it computes: exactly what coeff_attention / attention (ops/attention.hpp) compute, as
// their `tiled` backend (AttentionOptions::backend):
//     P_i = softmax(scale Q_i K_i^T + mask),  alpha' = I + Dropout_p(alpha),
//     Phat_h = sum_i alpha'[h, i] P_i,  Phat_h <- Dropout_q(Phat_h),  O_h = Phat_h V_h
// with the same masks (additive, key padding, bottom-right causal; a row with no visible key
// gives zeros), the same alpha-dropout mask (one H x H draw) and the same Phat dropout: element
// [b, h, n, m] uses word ((b*H + h)*N + n)*M + m of the same Philox draw, and the generator
// advances as in the materialised path. Plain attention is the same op without alpha (no mixing).
//
// Algorithm. One task per (batch item b, block of Bq query rows), tasks spread over the
// OpenMP threads (thread j takes tasks j, j + T, ...), Eigen single-threaded inside.
//   forward:  S_i = Q_i K_i^T for every head into one tile [H][Bq][M] (Eigen GEMMs); then per
//             query row, all heads at once (H x M floats, cache-resident): scale + mask, the
//             exact softmax (the whole key row is in the tile: no online rescaling, no second
//             pass over the keys), its log-sum-exp saved (lse [B, H, N]), Phat = alpha' P (an
//             [H, H] x [H, M] GEMM), dropout; then O_h = Phat_h V_h (GEMMs).
//   backward: S_i again, P_i = exp(S_i - lse_i) (nothing of size N^2 is saved); per row Phat
//             (dropout decisions kept for the tile); dV_h += Phat_h^T dO_h; dPhat_h = dO_h V_h^T,
//             then per row: * dropout mask, dalpha' += dPhat P^T, dP = alpha'^T dPhat,
//             dS_i = scale P_i (dP_i - rowsum(dP_i P_i)) -- the rowsum docs/method.md says a
//             fused kernel needs an extra pass for is direct here, since the full row is in the
//             tile; dQ_i = dS_i K_i; dK_i += dS_i^T Q_i. dK, dV and dalpha accumulate per
//             thread and are summed in thread order (results do not depend on timing).
//   Keys no query of a block can see (causal, trailing padding) are skipped per block.
//   Memory: out, lse and the gradients (O(B*H*N*d)); per thread one tile (forward) or two
//   (backward) of H x Bq x M, H x Bq x M bytes of dropout decisions, and, on threads after
//   the first, dK/dV accumulators of B*H*M*d. Bq (tiled_block_q): <= 64 rows, fewer when a
//   tile would pass 16 MiB, split evenly (197 -> 4 x 50).
//
// Measured (bench/attention_cpu_bench.cpp; 2026-11-29, AMD EPYC Zen 5 KVM guest, 2 cores,
// AVX-512, GCC 12.2 -O3 -march=native, Eigen 3.4.0, 2 OpenMP threads, machine idle >= 98 %
// before each run; float32, coeff_attention, no mask; ms per call, median; `--quick`):
//                               vit197 B8 H12 d64   sd1024 B1 H8 d40   sd4096 B1 H8 d40
//                               fwd     fwd+bwd     fwd     fwd+bwd    fwd     fwd+bwd
//   materialised (reference)    18.3    35.9        75.4    156.7      1186    2347
//   tiled, full rows, Bq = 16    6.2    23.7         8.5     29.4       137     499
//   tiled, full rows, Bq = 32    5.6    22.3         7.6     28.1       129     503
//   tiled, full rows, Bq = 64    6.7    25.7         7.1     27.2       132     521
//   tiled, full rows, Bq = 128   6.5    24.8         6.9     28.2       140     502
//   tiled, Bq = 50 (197 = 4 x 50) 5.9   22.3   (the default rule; 64 at 1024 and 4096)
//   key-tiled two-pass forward,  7.3     -           9.8       -        159       -
//     Bq 64, Bk 128 (the GPU design: pass 1 streams keys for each row's lse; pass 2
//     recomputes S, P = exp(S - lse), mixes, accumulates O)
// A second run moved each number by up to ~8 %; Bq between 32 and 128 is within that noise
// except that 16 loses at N = 1024 and that an uneven last block (197 = 3 x 64 + 5) costs ~10 %.
// The full-row design wins on the CPU: the two-pass variant pays the score GEMM and the exps
// twice and gains nothing, since H x Bq x M (8 MiB at H 8, Bq 64, M 4096) streams through
// L2/L3 fine; its only advantage, tiles independent of M, matters for M in the 10^5s.
// What mattered more than the design: Eigen 3.4 evaluates `.select()` one scalar at a time,
// so exp-with-mask went through libm expf (40 % of the forward): a packet functor (below)
// made the forward 2.2x faster. Command:
//     ./build/bench/attention_cpu_bench --quick --variants
// The table of record (default reps, peak memory) is in bench/README.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../ops/coeff_spec.hpp"
#include "../tensor/tensor.hpp"
#include "backend.hpp"
#include "cpu_attention.hpp"
#include "cpu_gemm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace coeffnet::backend::cpu_impl {

using detail::contiguous_copy;
using detail::gemm;
using detail::MatRef;
using detail::rows_ref;

// Query rows per tile: at most 64, fewer where one tile (heads x rows x keys) would pass
// 16 MiB (but not under 16), with the queries split into blocks of equal size (197 rows are
// 4 x 50, not 3 x 64 + 5: a 5-row block re-packs K and V for little work) and into at least
// two blocks per thread where the batch alone does not feed the threads (see the measurements
// above).
inline int64_t tiled_block_q(int64_t B, int64_t H, int64_t N, int64_t M, int64_t elem_bytes, int64_t requested,
                             int threads) {
    if (N <= 0) return 1;
    if (requested > 0) return std::min(requested, N);
    constexpr int64_t budget = int64_t{16} << 20;
    const int64_t cap = std::clamp<int64_t>(budget / std::max<int64_t>(1, H * M * elem_bytes), 16, 64);
    int64_t blocks = (N + cap - 1) / cap;
    if (B * blocks < 2 * threads) blocks = std::max(blocks, std::min((2 * threads + B - 1) / B, (N + 15) / 16));
    return (N + blocks - 1) / blocks;
}

// Everything a forward or backward sweep reads: the inputs (views whose rows have unit stride),
// the masks, alpha', and the dropout stream, built alike by the forward and the backward from the
// table's arguments (tiled_problem).
template <class T>
struct TiledProblem {
    int64_t B = 0, H = 0, N = 0, M = 0, d = 0, dv = 0, block_q = 1;
    T scale = T(1);
    Tensor<T> q, k, v;                 // detached; element [b, h, n, e] at data + b*s[0] + h*s[1] + n*s[2] + e
    bool causal = false;               // query n sees keys m <= n + (M - N)
    std::vector<T> key_add;            // [B * M]: 0 for a token, -inf for padding; empty when no key mask
    std::vector<int64_t> key_len;      // [B]: one past the last unpadded key (M without a key mask)
    Tensor<T> attn_mask;               // additive, broadcast to [B, H, N, M] by attn_strides; may be undefined
    Shape attn_strides;
    bool mix = false;                  // coefficient attention (else plain attention: Phat = P)
    std::vector<T> alpha_prime;        // [H * H], row = target head, column = source head
    DropoutDraw<T> drop;               // attention-probability dropout on Phat: B*H*N*M words

    int64_t blocks() const { return (N + block_q - 1) / block_q; }
    // Keys a query block [n0, n0 + rows) can see at all: past it every score is -inf.
    int64_t key_extent(int64_t b, int64_t n0, int64_t rows) const {
        int64_t e = key_len[static_cast<size_t>(b)];
        if (causal) e = std::min(e, coeff::causal_key_end(n0 + rows - 1, N, M));
        return std::max<int64_t>(e, 0);
    }
};

template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

// x itself when its last axis has unit stride and its rows do not overlap, else a contiguous copy.
template <class T>
Tensor<T> with_unit_rows(const Tensor<T>& x) {
    const Shape &s = x.shape(), &st = x.strides();
    const bool ok = (st[3] == 1 || s[3] <= 1) && (st[2] >= s[3] || s[2] <= 1);
    return ok ? x.detach() : contiguous_copy(x);
}

// rows [n0, n0 + r) of x[b, h] as an r x cols matrix.
template <class T>
MatRef<T> rows_of(const Tensor<T>& x, int64_t b, int64_t h, int64_t n0, int64_t r) {
    const Shape &s = x.shape(), &st = x.strides();
    const int64_t rs = s[2] <= 1 ? s[3] : st[2];
    return rows_ref<T>(x.data() + b * st[0] + h * st[1] + n0 * rs, r, s[3], rs);
}

// Scores of query n of head h, in place: row = scale * row + mask, -inf where masked.
template <class T>
void mask_scores(const TiledProblem<T>& p, int64_t b, int64_t h, int64_t n, T* row, int64_t len) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const int64_t vis = p.causal ? std::clamp<int64_t>(coeff::causal_key_end(n, p.N, p.M), 0, len) : len;
    ArrayMap<T> x(row, vis);
    x *= p.scale;
    if (p.attn_mask.defined()) {
        const Shape& s = p.attn_strides;
        const T* am = p.attn_mask.data() + b * s[0] + h * s[1] + n * s[2];
        if (s[3] == 1) x += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(am, vis);
        else if (s[3] == 0) x += am[0];
        else
            for (int64_t m = 0; m < vis; ++m) row[m] += am[m * s[3]];
    }
    if (!p.key_add.empty())
        x += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p.key_add.data() + b * p.M, vis);
    std::fill(row + vis, row + len, neg_inf);
}

// exp(x), exactly 0 at x = -inf. Eigen's vectorised exp clamps its argument and returns a
// denormal there, and Eigen 3.4 evaluates .select() one scalar at a time (libm expf: it was
// 40 % of the forward), so the masking is a bitwise and with the comparison's lane mask.
template <class T>
struct exp_or_zero_op {
    T operator()(const T& x) const { return std::exp(x); }
    template <class Packet>
    Packet packetOp(const Packet& x) const {
        using namespace Eigen::internal;
        return pand(pexp(x), pcmp_lt(pset1<Packet>(-std::numeric_limits<T>::infinity()), x));
    }
};

// row = exp(row - shift), 0 where row = -inf.
template <class T>
void exp_shifted(T* row, int64_t len, T shift) {
    ArrayMap<T> x(row, len);
    x = (x - shift).unaryExpr(exp_or_zero_op<T>());
}

// Applies attention dropout to row[0, len) of Phat[b, h, n, :]: element m uses word
// ((b*H + h)*N + n)*M + m (coeff::phat_word) of the draw reserved by the forward, exactly as dropout() on the
// [B, H, N, M] tensor would. keep[m] records the decision when keep is not null.
template <class T>
void dropout_row(const TiledProblem<T>& p, int64_t b, int64_t h, int64_t n, T* row, int64_t len, uint8_t* keep) {
    const uint64_t f0 = coeff::phat_word(b, h, n, 0, p.H, p.N, p.M);
    int64_t m = 0;
    while (m < len) {
        const uint64_t f = f0 + static_cast<uint64_t>(m);
        const Philox4 w = philox_block(p.drop.seed, p.drop.first_block + f / 4);
        for (uint64_t j = f % 4; j < 4 && m < len; ++j, ++m) {
            const bool kept = p.drop.keeps(w[j]);
            row[m] *= kept ? p.drop.keep : T(0);
            if (keep) keep[m] = kept ? 1 : 0;
        }
    }
}

// Uninitialised scratch, 64-byte aligned: Eigen's GEMM rounds differently for differently
// aligned operands, so a fixed alignment keeps results independent of the heap's state.
template <class T>
class ScratchBuffer {
public:
    T* get(int64_t n) {
        if (n > capacity_) {
            data_ = Storage::allocate_host(static_cast<size_t>(n) * sizeof(T));
            capacity_ = n;
        }
        return static_cast<T*>(data_.data());
    }

private:
    Storage data_;
    int64_t capacity_ = 0;
};

// Per-thread scratch: the tile of all heads' rows (H x R x Mb, head-major), a second one for
// the backward, one mixed query row (H x Mb), the dropout decisions of a tile, and the
// accumulators of the key-side gradients (thread 0 writes into the results directly).
template <class T>
struct TiledScratch {
    ScratchBuffer<T> a, b, row;
    ScratchBuffer<uint8_t> keep;
    std::vector<T> dk, dv, dalpha;
};

// alpha' [H, H] as a matrix (row = target head).
template <class T>
MatRef<T> alpha_matrix(const TiledProblem<T>& p) {
    return rows_ref<T>(p.alpha_prime.data(), p.H, p.H, p.H);
}

// Runs task(t, thread) for t in [0, tasks) on up to `threads` OpenMP threads; thread j takes
// tasks j, j + threads, ... (a fixed assignment, so float sums do not depend on timing; the
// interleaving balances causal masks, whose later query blocks see more keys).
template <class F>
void run_tasks(int64_t tasks, int threads, F&& task) {
    auto worker = [&](int j) {
        for (int64_t t = j; t < tasks; t += threads) task(t, j);
    };
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            const int got = omp_get_num_threads();
            for (int j = omp_get_thread_num(); j < threads; j += got) worker(j);
        }
        return;
    }
#endif
    for (int j = 0; j < threads; ++j) worker(j);
}

template <class T>
int tiled_threads(const TiledProblem<T>& p) {
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), p.B * p.blocks())));
}

// Forward: out [B, H, N, dv] (contiguous), lse [B, H, N] (log-sum-exp of each masked score row,
// -inf for a row with no visible key).
template <class T>
void tiled_forward(const TiledProblem<T>& p, T* out, T* lse) {
    const int64_t H = p.H, N = p.N, dv = p.dv, Bq = p.block_q;
    const int threads = tiled_threads(p);
    std::vector<TiledScratch<T>> scratch(static_cast<size_t>(threads));
    const MatRef<T> A = alpha_matrix(p);
    run_tasks(p.B * p.blocks(), threads, [&](int64_t task, int j) {
        TiledScratch<T>& s = scratch[static_cast<size_t>(j)];
        const int64_t b = task / p.blocks(), n0 = (task % p.blocks()) * Bq, R = std::min(Bq, N - n0);
        const int64_t Mb = p.key_extent(b, n0, R);
        if (Mb == 0) {
            for (int64_t h = 0; h < H; ++h) {
                std::fill_n(out + ((b * H + h) * N + n0) * dv, R * dv, T(0));
                std::fill_n(lse + (b * H + h) * N + n0, R, -std::numeric_limits<T>::infinity());
            }
            return;
        }
        T* tile = s.a.get(H * Bq * p.M);
        for (int64_t h = 0; h < H; ++h)
            gemm(rows_of(p.q, b, h, n0, R), rows_of(p.k, b, h, 0, Mb).t(), tile + h * R * Mb, Mb, false);
        // One query row of all heads at a time (H x Mb, cache-resident): S_i = scale Q_i K_i^T +
        // mask, the exact softmax (the whole key row is here), Phat = alpha' P, dropout on Phat.
        T* tmp = p.mix ? s.row.get(H * p.M) : nullptr;
        for (int64_t r = 0; r < R; ++r) {
            for (int64_t h = 0; h < H; ++h) {
                T* row = tile + (h * R + r) * Mb;
                mask_scores(p, b, h, n0 + r, row, Mb);
                const T mx = ArrayMap<T>(row, Mb).maxCoeff();
                T& l = lse[(b * H + h) * N + n0 + r];
                if (mx == -std::numeric_limits<T>::infinity()) {
                    std::fill_n(row, Mb, T(0));
                    l = mx;
                    continue;
                }
                exp_shifted(row, Mb, mx);
                const T sum = ArrayMap<T>(row, Mb).sum();
                ArrayMap<T>(row, Mb) *= T(1) / sum;
                l = mx + std::log(sum);
            }
            if (p.mix) {  // the H rows of query r, R * Mb apart: P <- alpha' P
                gemm(A, rows_ref<T>(tile + r * Mb, H, Mb, R * Mb), tmp, Mb, false);
                for (int64_t h = 0; h < H; ++h) std::copy_n(tmp + h * Mb, Mb, tile + (h * R + r) * Mb);
            }
            if (p.drop.on)
                for (int64_t h = 0; h < H; ++h) dropout_row(p, b, h, n0 + r, tile + (h * R + r) * Mb, Mb, nullptr);
        }
        for (int64_t h = 0; h < H; ++h)
            gemm(rows_ref<T>(tile + h * R * Mb, R, Mb, Mb), rows_of(p.v, b, h, 0, Mb), out + ((b * H + h) * N + n0) * dv,
                 dv, false);
    });
}

// Backward. dout [B, H, N, dv] contiguous; writes dq [B, H, N, d], dk [B, H, M, d],
// dv [B, H, M, dv] (contiguous, zero where untouched) and dalpha_prime [H * H], each only when
// its pointer is not null.
template <class T>
void tiled_backward(const TiledProblem<T>& p, const T* lse, const T* dout, T* dq, T* dk, T* dvout, T* dalpha) {
    const int64_t B = p.B, H = p.H, N = p.N, M = p.M, d = p.d, dv = p.dv, Bq = p.block_q;
    const int threads = tiled_threads(p);
    std::vector<TiledScratch<T>> scratch(static_cast<size_t>(threads));
    for (int j = 1; j < threads; ++j) {
        TiledScratch<T>& s = scratch[static_cast<size_t>(j)];
        if (dk) s.dk.assign(static_cast<size_t>(B * H * M * d), T(0));
        if (dvout) s.dv.assign(static_cast<size_t>(B * H * M * dv), T(0));
    }
    for (auto& s : scratch)
        if (dalpha) s.dalpha.assign(static_cast<size_t>(H * H), T(0));
    if (dk) std::fill_n(dk, B * H * M * d, T(0));
    if (dvout) std::fill_n(dvout, B * H * M * dv, T(0));
    const MatRef<T> A = alpha_matrix(p);
    const bool need_ds = dq || dk;
    run_tasks(B * p.blocks(), threads, [&](int64_t task, int j) {
        TiledScratch<T>& s = scratch[static_cast<size_t>(j)];
        T* dk_acc = j == 0 ? dk : s.dk.data();
        T* dv_acc = j == 0 ? dvout : s.dv.data();
        const int64_t b = task / p.blocks(), n0 = (task % p.blocks()) * Bq, R = std::min(Bq, N - n0);
        const int64_t Mb = p.key_extent(b, n0, R);
        if (Mb == 0) {
            if (dq)
                for (int64_t h = 0; h < H; ++h) std::fill_n(dq + ((b * H + h) * N + n0) * d, R * d, T(0));
            return;
        }
        T *ta = s.a.get(H * Bq * M), *tb = s.b.get(H * Bq * M);
        uint8_t* keep = p.drop.on ? s.keep.get(H * Bq * M) : nullptr;
        auto tile = [&](const T* base, int64_t h) { return rows_ref<T>(base + h * R * Mb, R, Mb, Mb); };
        auto dO = [&](int64_t h) { return rows_ref<T>(dout + ((b * H + h) * N + n0) * dv, R, dv, dv); };
        auto head_rows = [&](const T* base, int64_t r) { return rows_ref<T>(base + r * Mb, H, Mb, R * Mb); };
        for (int64_t h = 0; h < H; ++h)
            gemm(rows_of(p.q, b, h, n0, R), rows_of(p.k, b, h, 0, Mb).t(), ta + h * R * Mb, Mb, false);
        // Per query row (all heads, cache-resident): P_i recomputed from the saved log-sum-exp,
        // and for dV the Phat the forward used (mixed, dropped; the decisions kept in `keep`).
        const bool phat_tile = dv_acc && (p.mix || p.drop.on);
        for (int64_t r = 0; r < R; ++r) {
            for (int64_t h = 0; h < H; ++h) {
                T* row = ta + (h * R + r) * Mb;
                const T l = lse[(b * H + h) * N + n0 + r];
                if (l == -std::numeric_limits<T>::infinity()) {
                    std::fill_n(row, Mb, T(0));
                    continue;
                }
                mask_scores(p, b, h, n0 + r, row, Mb);
                exp_shifted(row, Mb, l);
            }
            if (!phat_tile) continue;
            if (p.mix) gemm(A, head_rows(ta, r), tb + r * Mb, R * Mb, false);
            else
                for (int64_t h = 0; h < H; ++h) std::copy_n(ta + (h * R + r) * Mb, Mb, tb + (h * R + r) * Mb);
            if (p.drop.on)
                for (int64_t h = 0; h < H; ++h)
                    dropout_row(p, b, h, n0 + r, tb + (h * R + r) * Mb, Mb, keep + (h * R + r) * Mb);
        }
        // dV_h += Phat_h^T dO_h.
        if (dv_acc)
            for (int64_t h = 0; h < H; ++h)
                gemm(tile(phat_tile ? tb : ta, h).t(), dO(h), dv_acc + (b * H + h) * M * dv, dv, true);
        if (!need_ds && !dalpha) return;
        // Per query row: dPhat_h = (dO_h V_h^T) * dropout mask; dalpha'[h, i] += sum dPhat_h P_i;
        // dP_i = sum_h alpha'[h, i] dPhat_h; dS_i = scale P_i (dP_i - rowsum(dP_i P_i)) (the whole
        // key row is here, so the rowsum is direct).
        for (int64_t h = 0; h < H; ++h) gemm(dO(h), rows_of(p.v, b, h, 0, Mb).t(), tb + h * R * Mb, Mb, false);
        T* tmp = p.mix && need_ds ? s.row.get(H * M) : nullptr;
        for (int64_t r = 0; r < R; ++r) {
            const MatRef<T> g = head_rows(tb, r);
            if (p.drop.on)
                for (int64_t h = 0; h < H; ++h) {
                    T* row = tb + (h * R + r) * Mb;
                    if (phat_tile) {  // the decisions are in `keep`
                        const uint8_t* kr = keep + (h * R + r) * Mb;
                        for (int64_t m = 0; m < Mb; ++m) row[m] = kr[m] ? row[m] * p.drop.keep : T(0);
                    } else {
                        dropout_row(p, b, h, n0 + r, row, Mb, nullptr);
                    }
                }
            if (dalpha) gemm(g, head_rows(ta, r).t(), s.dalpha.data(), H, true);
            if (!need_ds) continue;
            if (p.mix) {  // dP = alpha'^T dPhat
                gemm(A.t(), g, tmp, Mb, false);
                for (int64_t h = 0; h < H; ++h) std::copy_n(tmp + h * Mb, Mb, tb + (h * R + r) * Mb);
            }
            for (int64_t h = 0; h < H; ++h) {
                ArrayMap<T> gp(tb + (h * R + r) * Mb, Mb);
                const ArrayMap<T> pp(ta + (h * R + r) * Mb, Mb);
                const T dot = (gp * pp).sum();
                gp = p.scale * pp * (gp - dot);
            }
        }
        if (!need_ds) return;
        for (int64_t h = 0; h < H; ++h) {
            const MatRef<T> dS = tile(tb, h);
            if (dq) gemm(dS, rows_of(p.k, b, h, 0, Mb), dq + ((b * H + h) * N + n0) * d, d, false);
            if (dk_acc) gemm(dS.t(), rows_of(p.q, b, h, n0, R), dk_acc + (b * H + h) * M * d, d, true);
        }
    });
    // Reduce the per-thread accumulators in thread order.
    auto reduce = [&](T* dst, std::vector<T> TiledScratch<T>::*field, int64_t n) {
        parallel_for(n, threads, [&](int64_t i0, int64_t i1) {
            for (int j = 1; j < threads; ++j) {
                const T* src = (scratch[static_cast<size_t>(j)].*field).data();
                for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
            }
        });
    };
    if (dk) reduce(dk, &TiledScratch<T>::dk, B * H * M * d);
    if (dvout) reduce(dvout, &TiledScratch<T>::dv, B * H * M * dv);
    if (dalpha) {
        std::fill_n(dalpha, H * H, T(0));
        for (const auto& s : scratch)
            for (int64_t i = 0; i < H * H; ++i) dalpha[i] += s.dalpha[static_cast<size_t>(i)];
    }
}

// The sweeps' problem from the table's arguments (Ops<T>::AttentionArgs: shapes and devices
// checked by the op), with block_q query rows per tile.
template <class T>
TiledProblem<T> tiled_problem(const typename Ops<T>::AttentionArgs& a, int64_t block_q) {
    TiledProblem<T> p;
    const int64_t B = a.q.shape()[0], H = a.q.shape()[1], N = a.q.shape()[2], d = a.q.shape()[3], M = a.k.shape()[2],
                  dv = a.v.shape()[3];
    p.B = B, p.H = H, p.N = N, p.M = M, p.d = d, p.dv = dv;
    p.scale = a.scale;
    p.causal = a.causal;
    p.key_len.assign(static_cast<size_t>(B), M);
    if (a.key_mask.defined()) {
        const std::vector<T> kv = a.key_mask.to_vector();
        p.key_add.resize(static_cast<size_t>(B * M));
        for (int64_t b = 0; b < B; ++b) {
            int64_t len = 0;
            for (int64_t m = 0; m < M; ++m) {
                const bool token = coeff::key_is_token(kv[static_cast<size_t>(b * M + m)]);
                p.key_add[static_cast<size_t>(b * M + m)] = token ? T(0) : -std::numeric_limits<T>::infinity();
                if (token) len = m + 1;
            }
            p.key_len[static_cast<size_t>(b)] = len;
        }
    }
    if (a.attn_mask.defined()) {
        p.attn_mask = a.attn_mask.detach();
        p.attn_strides = broadcast_strides(a.attn_mask.shape(), a.attn_mask.strides(), Shape{B, H, N, M});
    }
    if (a.alpha_prime.defined()) {
        p.mix = true;
        p.alpha_prime = a.alpha_prime.to_vector();
    }
    p.drop = a.drop;
    p.q = with_unit_rows(a.q);
    p.k = with_unit_rows(a.k);
    p.v = with_unit_rows(a.v);
    p.block_q = block_q;
    return p;
}

// Ops<T>::coeff_attention_forward on the CPU: out (contiguous) and the saved lse, with the tile
// height chosen here (tiled_block_q: the asked-for a.block_q, or the rule) saved for the backward.
template <class T>
typename Ops<T>::AttentionSaved tiled_attention_forward(const Tensor<T>& out, const typename Ops<T>::AttentionArgs& a) {
    const int64_t B = a.q.shape()[0], H = a.q.shape()[1], N = a.q.shape()[2], M = a.k.shape()[2];
    const TiledProblem<T> p =
        tiled_problem<T>(a, tiled_block_q(B, H, N, M, static_cast<int64_t>(sizeof(T)), a.block_q, num_threads()));
    typename Ops<T>::AttentionSaved saved;
    saved.lse = Tensor<T>::empty({B, H, N});
    saved.block_q = p.block_q;
    if (out.numel() > 0 || saved.lse.numel() > 0) tiled_forward(p, out.data(), saved.lse.data());
    return saved;
}

// Ops<T>::coeff_attention_backward on the CPU: the forward's problem rebuilt from the same
// arguments and tile height (the same arithmetic in the same order; an input whose rows do not
// have unit stride is copied again, as in the forward), then tiled_backward.
template <class T>
void tiled_attention_backward(const typename Ops<T>::AttentionGrads& g, const Tensor<T>& dout,
                              const typename Ops<T>::AttentionArgs& a, const typename Ops<T>::AttentionSaved& saved) {
    const TiledProblem<T> p = tiled_problem<T>(a, saved.block_q);
    auto ptr = [](const Tensor<T>& t) { return t.defined() ? t.data() : nullptr; };
    tiled_backward(p, saved.lse.data(), dout.data(), ptr(g.dq), ptr(g.dk), ptr(g.dv),
                   p.mix ? ptr(g.dalpha_prime) : nullptr);
}

// Points the CPU table's fused attention (backend/cpu_attention.hpp) at these kernels for element
// type T, compiling them into the calling file.
template <class T>
void register_tiled_kernels() {
    tiled_attention_kernels<T> = {&tiled_attention_forward<T>, &tiled_attention_backward<T>};
}

}  // namespace coeffnet::backend::cpu_impl

template <class T>
struct Eigen::internal::functor_traits<coeffnet::backend::cpu_impl::exp_or_zero_op<T>> {
    enum { Cost = 20 * NumTraits<T>::MulCost, PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasCmp };
};
