// coeffnet/ops/attention.hpp: multi-head attention and coefficient attention (Coeff-Tuning).
//
// Each head's map P_i = softmax(scale * Q_i K_i^T + mask) is a graph filter over the tokens.
// Coefficient attention mixes the H filters of a layer with one H x H matrix before they
// touch the values:
//
//     alpha' = I + Dropout_p(alpha)        alpha: [target head h, source head i], init 0
//     Phat_h = sum_i alpha'[h, i] P_i      (one GEMM: alpha' [H, H] @ P [B, H, N*M])
//     O_h    = Phat_h V_h
//
// This is the materialised reference path: it stores B*H*N*M maps, and is built from ops that
// each have their own checked backward (matmul, softmax, dropout, add), so its gradient is
// the composition of theirs. With alpha = 0 the mixing GEMM still runs and reproduces
// P_h exactly (1 * p + 0 * q is exact in IEEE arithmetic), so the output equals plain
// attention bit for bit. The alpha-dropout mask is one H x H draw per call, shared by the
// whole batch; attention-probability dropout, where a model has it, acts on Phat. alpha', the
// mask rules, the default scale and the order of the draws are ops/coeff_spec.hpp's, which the
// tiled and CUDA paths use too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "attention_shapes.hpp"
#include "coeff_spec.hpp"
#include "dropout.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "softmax.hpp"

namespace coeffnet {

// Which implementation runs: materialised (this file) stores the B*H*N*M maps and can return
// them; tiled (ops/attention_tiled.hpp) never forms them. automatic picks tiled when the maps
// would hold more than tiled_attention_min_elements elements, return_maps is off and the tiled
// backend is in the program: including ops/attention_tiled.hpp in any one file of a program
// registers it, and so does building a model (models/vit.hpp, for the model's element type).
// The umbrella header does not, since its code is a fifth of what a small program compiles;
// without it, automatic materialises large maps too and says so once on stderr, and asking for
// tiled throws.
enum class AttentionBackend { automatic, materialised, tiled };
inline constexpr double tiled_attention_min_elements = 16777216.0;  // 2^24: 64 MiB of float maps

struct AttentionOptions {
    double scale = 0.0;           // 0 means 1/sqrt(head_dim) (coeff::score_scale)
    bool causal = false;          // query n sees keys m <= n + (M - N) (coeff::causal_key_end)
    CoeffSpec coeff;              // alpha's dropout and parameterisation (ops/coeff_spec.hpp)
    double attn_dropout = 0.0;    // p of Dropout on the (mixed) maps (training only)
    bool training = false;
    bool return_maps = false;     // fill AttentionResult::maps and ::mixed_maps
    Generator* generator = nullptr;  // required when training with a dropout p > 0
    AttentionBackend backend = AttentionBackend::automatic;  // tiled + return_maps throws
};

template <class T>
struct AttentionResult {
    Tensor<T> out;         // [B, H, N, dv]
    Tensor<T> maps;        // P, [B, H, N, M] (return_maps), part of the graph
    Tensor<T> mixed_maps;  // Phat (return_maps); equals maps for plain attention
};

// Knobs of the tiled backend that a benchmark or test turns; the op's default is TiledConfig{}.
struct TiledConfig {
    int64_t block_q = 0;  // query rows per tile; 0 = tiled_block_q's rule (backend/cpu_attention_tiled.hpp)
};

// The tiled backend (ops/attention_tiled_impl.hpp: detail::fused_attention below over the CPU
// table's tiled kernels); alpha undefined means plain attention.
template <class T>
AttentionResult<T> coeff_attention_tiled(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                         const Tensor<T>& alpha, const AttentionOptions& o, const Tensor<T>& attn_mask,
                                         const Tensor<T>& key_mask, const TiledConfig& cfg = {});

// Where the dispatch finds the tiled backend: null until ops/attention_tiled.hpp, included
// anywhere in the program, sets it during static initialisation, or register_tiled_backend<T>()
// (ops/attention_tiled_impl.hpp; a model's constructor calls it) sets it; a program may also point
// it at its own implementation with the same contract.
template <class T>
using TiledAttentionFn = AttentionResult<T> (*)(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,
                                                const Tensor<T>&, const AttentionOptions&, const Tensor<T>&,
                                                const Tensor<T>&, const TiledConfig&);
template <class T>
inline TiledAttentionFn<T> tiled_attention_backend = nullptr;

namespace detail {

// The tiled backend, or the error that says how to get it.
template <class T>
AttentionResult<T> run_tiled_backend(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, const Tensor<T>& alpha,
                                     const AttentionOptions& o, const Tensor<T>& attn_mask, const Tensor<T>& key_mask) {
    check(tiled_attention_backend<T> != nullptr, "attention: AttentionBackend::tiled asked for, but the tiled backend is not in "
          "this program: #include <coeffnet/ops/attention_tiled.hpp> in any one of its files");
    return tiled_attention_backend<T>(q, k, v, alpha, o, attn_mask, key_mask, TiledConfig{});
}

// Says once per process that automatic dispatch materialised maps it would have tiled.
inline void note_materialised_large_maps(double elements) {
    static bool said = false;
    if (said) return;
    said = true;
    std::fprintf(stderr,
                 "coeffnet: attention materialises maps of %.0f elements (over tiled_attention_min_elements); "
                 "#include <coeffnet/ops/attention_tiled.hpp> in any one file of the program for the tiled "
                 "backend, which never forms them\n",
                 elements);
}

template <class T>
void check_attention_shapes(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, const char* op) {
    check(q.defined() && k.defined() && v.defined(), op, ": undefined q, k or v");
    coeffnet::check_attention_shapes(q.shape(), k.shape(), v.shape(), op);
}

// One additive mask (broadcastable to [B, H, N, M]) on `dev` from the causal flag, a key mask [B, M]
// (1 = token, 0 = padding, the Hugging Face attention_mask convention) and a user additive mask; the
// rules are ops/coeff_spec.hpp's. The causal and key-padding parts are built on the host, then moved.
template <class T>
Tensor<T> combined_mask(int64_t B, int64_t H, int64_t N, int64_t M, bool causal, const Tensor<T>& attn_mask,
                        const Tensor<T>& key_mask, Device dev, const char* op) {
    const T neg_inf = -std::numeric_limits<T>::infinity();
    Tensor<T> mask;
    if (causal) {
        mask = Tensor<T>::zeros({1, 1, N, M});
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = std::max<int64_t>(coeff::causal_key_end(n, N, M), 0); m < M; ++m)
                mask.data()[n * M + m] = neg_inf;
    }
    if (key_mask.defined()) {
        check(key_mask.shape() == Shape{B, M}, op, ": key mask ", shape_str(key_mask.shape()), " must be [batch, keys] = [",
              B, ", ", M, "]");
        Tensor<T> km = Tensor<T>::empty({B, 1, 1, M});
        const std::vector<T> kv = key_mask.to_vector();
        for (int64_t i = 0; i < B * M; ++i) km.data()[i] = coeff::key_is_token(kv[static_cast<size_t>(i)]) ? T(0) : neg_inf;
        mask = mask.defined() ? binary(backend::BinaryOp::add, mask, km, op) : km;
    }
    if (mask.defined()) mask = mask.to(dev);
    if (attn_mask.defined()) {
        check(broadcasts_to(attn_mask.shape(), Shape{B, H, N, M}), op, ": additive mask ", shape_str(attn_mask.shape()),
              " does not broadcast to [batch, heads, queries, keys] = ", shape_str({B, H, N, M}));
        const Tensor<T> am = attn_mask.detach();
        mask = mask.defined() ? binary(backend::BinaryOp::add, mask, am, op) : am;
    }
    return mask;
}

template <class T>
Tensor<T> attention_probs(const Tensor<T>& q, const Tensor<T>& k, const AttentionOptions& o, const Tensor<T>& attn_mask,
                          const Tensor<T>& key_mask, const char* op) {
    const int64_t B = q.shape()[0], H = q.shape()[1], N = q.shape()[2], M = k.shape()[2], d = q.shape()[3];
    const double s = coeff::score_scale(o.scale, d);
    const Tensor<T> mask = combined_mask(B, H, N, M, o.causal, attn_mask, key_mask, q.device(), op);
    return softmax(scale(matmul(q, k.mT()), s), mask);
}

// The dropout draws of one call (ops/coeff_spec.hpp's order); mix: coefficient attention.
template <class T>
coeff::Draws<T> attention_draws(const Tensor<T>& q, const Tensor<T>& k, const AttentionOptions& o, bool mix,
                                const char* op) {
    return coeff::reserve_draws<T>(o.coeff, mix, o.attn_dropout, o.training, o.generator, q.shape()[0], q.shape()[1],
                                   q.shape()[2], k.shape()[2], op, "AttentionOptions::generator");
}

// x times the draw's multipliers, as the dropout op (ops/dropout.hpp) computes and differentiates
// it, from the words the draw reserved.
template <class T>
Tensor<T> apply_dropout(const Tensor<T>& x, const DropoutDraw<T>& d) {
    if (!d.on) return x;
    Generator at(d.seed, d.first_block);
    return dropout(x, d.p, at, true);
}

}  // namespace detail

// True when AttentionOptions o sends attention over q, k to the tiled backend: asked for, or
// automatic with maps of more than tiled_attention_min_elements elements and no maps to return.
template <class T>
bool use_tiled_backend(const Tensor<T>& q, const Tensor<T>& k, const AttentionOptions& o) {
    if (o.backend != AttentionBackend::automatic) return o.backend == AttentionBackend::tiled;
    const double maps = static_cast<double>(q.shape()[0]) * static_cast<double>(q.shape()[1]) *
                        static_cast<double>(q.shape()[2]) * static_cast<double>(k.shape()[2]);
    if (o.return_maps || maps <= tiled_attention_min_elements) return false;
    if (tiled_attention_backend<T> == nullptr) detail::note_materialised_large_maps(maps);
    return tiled_attention_backend<T> != nullptr;
}

// Phat[b, h] = sum_i alpha_prime[h, i] P[b, i] for P [B, H, N, M] and alpha_prime [H, H].
template <class T>
Tensor<T> mix_heads(const Tensor<T>& maps, const Tensor<T>& alpha_prime) {
    check(maps.defined() && alpha_prime.defined(), "mix_heads: undefined operand");
    check(maps.dim() == 4, "mix_heads: maps must be [batch, heads, queries, keys], got ", shape_str(maps.shape()));
    const int64_t B = maps.shape()[0], H = maps.shape()[1], N = maps.shape()[2], M = maps.shape()[3];
    check(alpha_prime.shape() == Shape{H, H}, "mix_heads: coefficients ", shape_str(alpha_prime.shape()),
          " must be [heads, heads] = [", H, ", ", H, "] for maps ", shape_str(maps.shape()));
    return matmul(alpha_prime, maps.reshape({B, H, N * M})).reshape({B, H, N, M});
}

// alpha' = I + Dropout_p(alpha): the residual parameterisation (alpha = 0 is the pretrained
// model); with residual off, alpha' = Dropout_p(alpha) (the paper's ablation). Each entry is
// coeff::alpha_prime_element (ops/coeff_spec.hpp) of the given alpha draw; the gradient is
// dalpha = dalpha' * multiplier (the identity has none).
template <class T>
Tensor<T> alpha_prime(const Tensor<T>& alpha, const DropoutDraw<T>& draw, bool residual) {
    check(alpha.defined() && alpha.dim() == 2 && alpha.shape()[0] == alpha.shape()[1],
          "coeff_attention: alpha must be square [heads, heads], got ",
          alpha.defined() ? shape_str(alpha.shape()) : std::string("undefined"));
    const int64_t H = alpha.shape()[0];
    const Device dev = alpha.device();
    Tensor<T> out = Tensor<T>::empty({H, H}, dev);
    backend::ops<T>(dev).alpha_prime(out, alpha, draw, residual);
    return record<T>(out, "alpha_prime", {alpha}, [draw, H](const Tensor<T>& g, const std::vector<bool>&) {
        if (!draw.on) return std::vector<Tensor<T>>{g};
        Tensor<T> dalpha = Tensor<T>::empty({H, H}, g.device());
        backend::ops<T>(g.device()).alpha_prime_backward(dalpha, g, draw);
        return std::vector<Tensor<T>>{dalpha};
    });
}

// The same, drawing alpha's mask from o.generator (when training with o.coeff.alpha_dropout > 0).
template <class T>
Tensor<T> alpha_prime(const Tensor<T>& alpha, const AttentionOptions& o) {
    check(alpha.defined() && alpha.dim() == 2, "coeff_attention: alpha must be square [heads, heads], got ",
          alpha.defined() ? shape_str(alpha.shape()) : std::string("undefined"));
    const DropoutDraw<T> d =
        coeff::reserve_dropout<T>(o.coeff.alpha_dropout, o.training, o.generator,
                                  static_cast<uint64_t>(alpha.numel()), "coeff_attention", "AttentionOptions::generator");
    return alpha_prime(alpha, d, o.coeff.alpha_residual);
}

namespace detail {

// The fused path (AttentionBackend::tiled) of attention (alpha undefined) and coeff_attention
// (alpha [H, H]), on the inputs' device: the options checked and resolved as on the materialised
// path, the generator drawn in its order, alpha' from the alpha_prime op (its own node: dalpha =
// dalpha' * multiplier is that op's backward), then the table's fused forward, and its fused
// backward recorded. On the CPU the table runs the tiled kernels (backend/cpu_attention_tiled.hpp),
// which only files that include ops/attention_tiled_impl.hpp compile: coeff_attention_tiled there
// is this function with them registered, and the dispatch reaches it through
// tiled_attention_backend<T>.
template <class T>
AttentionResult<T> fused_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, const Tensor<T>& alpha,
                                   const AttentionOptions& o, const Tensor<T>& attn_mask, const Tensor<T>& key_mask,
                                   const TiledConfig& cfg) {
    const bool mix = alpha.defined();
    const char* op = mix ? "coeff_attention (tiled)" : "attention (tiled)";
    check_attention_shapes(q, k, v, op);
    check(!o.return_maps, op,
          ": return_maps needs the materialised backend (the tiled backend never forms the [batch, heads, queries, "
          "keys] maps); set AttentionOptions::backend to AttentionBackend::materialised or automatic");
    const int64_t B = q.shape()[0], H = q.shape()[1], N = q.shape()[2], d = q.shape()[3], M = k.shape()[2],
                  dv = v.shape()[3];
    if (mix)
        check(alpha.shape() == Shape{H, H}, op, ": alpha ", shape_str(alpha.shape()), " must be [heads, heads] = [", H,
              ", ", H, "] for q ", shape_str(q.shape()));
    if (key_mask.defined())
        check(key_mask.shape() == Shape{B, M}, op, ": key mask ", shape_str(key_mask.shape()),
              " must be [batch, keys] = [", B, ", ", M, "]");
    if (attn_mask.defined())
        check(broadcasts_to(attn_mask.shape(), Shape{B, H, N, M}), op, ": additive mask ", shape_str(attn_mask.shape()),
              " does not broadcast to [batch, heads, queries, keys] = ", shape_str({B, H, N, M}));
    const Device dev = same_device(op, q, k, v, alpha, key_mask, attn_mask);
    // The generator draws as on the materialised path (ops/coeff_spec.hpp's order).
    const coeff::Draws<T> draws = attention_draws(q, k, o, mix, mix ? "coeff_attention" : "attention");
    typename backend::Ops<T>::AttentionArgs a;
    a.q = q.detach();
    a.k = k.detach();
    a.v = v.detach();
    Tensor<T> ap;
    if (mix) {
        ap = alpha_prime(alpha, draws.alpha, o.coeff.alpha_residual);
        a.alpha_prime = ap.detach();
    }
    if (key_mask.defined()) a.key_mask = key_mask.detach();
    if (attn_mask.defined()) a.attn_mask = attn_mask.detach();
    a.scale = static_cast<T>(coeff::score_scale(o.scale, d));
    a.causal = o.causal;
    a.drop = draws.phat;
    a.block_q = cfg.block_q;

    Tensor<T> out = Tensor<T>::empty({B, H, N, dv}, dev);
    const typename backend::Ops<T>::AttentionSaved saved = backend::ops<T>(dev).coeff_attention_forward(out, a);
    std::vector<Tensor<T>> inputs{q, k, v};
    if (mix) inputs.push_back(ap);
    out = record<T>(out, mix ? "coeff_attention_tiled" : "attention_tiled", inputs,
                    [a, saved](const Tensor<T>& g, const std::vector<bool>& needs) {
                        const Tensor<T> gc = as_contiguous(g);
                        const Device at = gc.device();
                        typename backend::Ops<T>::AttentionGrads r;
                        if (needs[0]) r.dq = Tensor<T>::empty(a.q.shape(), at);
                        if (needs[1]) r.dk = Tensor<T>::empty(a.k.shape(), at);
                        if (needs[2]) r.dv = Tensor<T>::empty(a.v.shape(), at);
                        const bool mixed = a.alpha_prime.defined();
                        if (mixed && needs[3]) r.dalpha_prime = Tensor<T>::empty(a.alpha_prime.shape(), at);
                        backend::ops<T>(at).coeff_attention_backward(r, gc, a, saved);
                        std::vector<Tensor<T>> grads{r.dq, r.dk, r.dv};
                        if (mixed) grads.push_back(r.dalpha_prime);
                        return grads;
                    });
    return AttentionResult<T>{out, {}, {}};
}

}  // namespace detail

// Plain multi-head attention: out_h = softmax(scale q_h k_h^T + mask) v_h.
// q [B, H, N, d], k [B, H, M, d], v [B, H, M, dv]; attn_mask additive, broadcastable to
// [B, H, N, M]; key_mask [B, M] with 1 for tokens and 0 for padding.
template <class T>
AttentionResult<T> attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                             const AttentionOptions& o = {}, const Tensor<T>& attn_mask = Tensor<T>(),
                             const Tensor<T>& key_mask = Tensor<T>()) {
    detail::check_attention_shapes(q, k, v, "attention");
    if (use_tiled_backend(q, k, o)) return detail::run_tiled_backend(q, k, v, Tensor<T>(), o, attn_mask, key_mask);
    const Tensor<T> p = detail::attention_probs(q, k, o, attn_mask, key_mask, "attention");
    const coeff::Draws<T> draws = detail::attention_draws(q, k, o, false, "attention");
    const Tensor<T> pd = detail::apply_dropout(p, draws.phat);
    AttentionResult<T> r{matmul(pd, v), {}, {}};
    if (o.return_maps) r.maps = r.mixed_maps = p;
    return r;
}

// Coefficient attention (Coeff-Tuning): the maps of all heads are mixed by I + Dropout(alpha)
// before they weight the values; alpha is [H, H], row = target head, column = source head.
template <class T>
AttentionResult<T> coeff_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, const Tensor<T>& alpha,
                                   const AttentionOptions& o = {}, const Tensor<T>& attn_mask = Tensor<T>(),
                                   const Tensor<T>& key_mask = Tensor<T>()) {
    detail::check_attention_shapes(q, k, v, "coeff_attention");
    check(alpha.defined() && alpha.shape() == Shape{q.shape()[1], q.shape()[1]}, "coeff_attention: alpha ",
          alpha.defined() ? shape_str(alpha.shape()) : std::string("undefined"), " must be [heads, heads] = [",
          q.shape()[1], ", ", q.shape()[1], "] for q ", shape_str(q.shape()));
    if (use_tiled_backend(q, k, o)) return detail::run_tiled_backend(q, k, v, alpha, o, attn_mask, key_mask);
    const Tensor<T> p = detail::attention_probs(q, k, o, attn_mask, key_mask, "coeff_attention");
    const coeff::Draws<T> draws = detail::attention_draws(q, k, o, true, "coeff_attention");
    const Tensor<T> mixed = mix_heads(p, alpha_prime(alpha, draws.alpha, o.coeff.alpha_residual));
    const Tensor<T> pd = detail::apply_dropout(mixed, draws.phat);
    AttentionResult<T> r{matmul(pd, v), {}, {}};
    if (o.return_maps) {
        r.maps = p;
        r.mixed_maps = mixed;
    }
    return r;
}

// [B, N, H*d] -> [B, H, N, d] (a view) and back (a copy).
template <class T>
Tensor<T> split_heads(const Tensor<T>& x, int64_t heads) {
    check(x.dim() == 3 && heads > 0 && x.shape()[2] % heads == 0, "split_heads: cannot split ", shape_str(x.shape()),
          " into ", heads, " heads");
    return x.reshape({x.shape()[0], x.shape()[1], heads, x.shape()[2] / heads}).permute({0, 2, 1, 3});
}

template <class T>
Tensor<T> merge_heads(const Tensor<T>& x) {
    check(x.dim() == 4, "merge_heads: expects [batch, heads, tokens, head_dim], got ", shape_str(x.shape()));
    return x.permute({0, 2, 1, 3}).reshape({x.shape()[0], x.shape()[2], x.shape()[1] * x.shape()[3]});
}

}  // namespace coeffnet

