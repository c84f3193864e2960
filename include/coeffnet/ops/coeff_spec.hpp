// coeffnet/ops/coeff_spec.hpp: the one definition of what coefficient attention computes besides
// its GEMMs, shared by every path: the CPU materialised op (ops/attention.hpp), the tiled CPU op
// (ops/attention_tiled_impl.hpp), the CUDA launchers (src/cuda/attention.cu, src/cuda/launchers.cu) and
// kernels (kernels/coeff_attention.cuh, kernels/mix.cuh).
//
//     alpha' = I + Dropout_p(alpha)        (alpha_residual; otherwise alpha' = Dropout_p(alpha))
//     scale  = the caller's, or 1/sqrt(head_dim) when it is 0
//     mask   = query n of N sees key m of M when m <= n + (M - N) (causal, bottom-right aligned)
//              and the key mask is nonzero there (1 = token, the Hugging Face convention)
//     draws  = per call, from one Generator: alpha's H x H multipliers (element h*H + i), then
//              the B*H*N*M multipliers of the attention-probability dropout on Phat (element
//              ((b*H + h)*N + n)*M + m); each only when training with its p > 0.
// Dropout keeps element i of a draw when uniform_from_bits(word i) >= float(p) and scales it by
// T(1 / (1 - p)) (0 when p = 1): ops/dropout.hpp's rule, so the materialised path's dropout op
// and these functions agree bit for bit.
//
// Plain C++ on core/rng.hpp and core/error.hpp (no Eigen): g++ and nvcc both compile it, and the
// COEFFNET_HD functions run in CUDA kernels and on the host.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace coeffnet {

// Coeff-Tuning's parameterisation of the mixing matrix; embedded (as a member named `coeff`) by
// every struct that carries it: AttentionOptions, cuda::AttentionConfig, nn::CoeffAttention,
// models::ViTModel, io::AdapterConfig (train::TuneConfig derives it from its alpha init).
struct CoeffSpec {
    double alpha_dropout = 0.0;  // p of Dropout on alpha (training only)
    bool alpha_residual = true;  // alpha' = I + Dropout(alpha); false: alpha' = Dropout(alpha) (the ablation)
};

// One dropout draw from a Generator, as its multipliers in T: element i is keep (kept) or 0.
template <class T>
struct DropoutDraw {
    bool on = false;  // false: nothing was drawn (evaluation, or p == 0); every multiplier is 1
    double p = 0.0;   // compared as float(p)
    T keep = T(1);    // T(1 / (1 - p)); 0 when p == 1
    uint64_t seed = 0, first_block = 0;

    COEFFNET_HD bool keeps(uint32_t word) const { return uniform_from_bits(word) >= static_cast<float>(p); }
    COEFFNET_HD T multiplier(uint64_t i) const {
        if (!on) return T(1);
        return keeps(draw_bits(seed, first_block, i)) ? keep : T(0);
    }
};

namespace coeff {

// The score scale: `scale` itself, or 1/sqrt(head_dim) when it is 0.
COEFFNET_HD inline double score_scale(double scale, int64_t head_dim) {
    return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// Causal masking, bottom-right aligned: query n of N sees the keys m < causal_key_end(n) of M.
// (Unclamped: it may be <= 0, no key, or > M.)
COEFFNET_HD inline int64_t causal_key_end(int64_t n, int64_t N, int64_t M) { return n + (M - N) + 1; }
// The first query of N that sees key m of M under the causal mask (unclamped: may be < 0).
COEFFNET_HD inline int64_t causal_first_query(int64_t m, int64_t N, int64_t M) { return m - (M - N); }
// A key-mask entry: nonzero is a token, zero is padding.
template <class K>
COEFFNET_HD bool key_is_token(K v) {
    return v != K(0);
}

// The word of the attention-probability dropout draw that element [b, h, n, m] of Phat uses.
COEFFNET_HD inline uint64_t phat_word(int64_t b, int64_t h, int64_t n, int64_t m, int64_t H, int64_t N, int64_t M) {
    return static_cast<uint64_t>(((b * H + h) * N + n) * M + m);
}

// alpha'[h, i] from alpha[h, i] and the alpha draw (element h*H + i): (h == i) + alpha * multiplier
// with residual, alpha * multiplier without; the product rounded, then the sum, on every path:
// no fused multiply-add on the device (__fmul_rn) nor on the host, where GCC's default
// -ffp-contract=fast may fuse a product and a sum even across statements once this is inlined
// into a loop (the volatile store is the standard C++ way to force the rounding; it costs one
// store per element of an H x H matrix).
template <class T>
COEFFNET_HD T alpha_prime_element(const DropoutDraw<T>& d, int64_t H, int64_t h, int64_t i, T alpha, bool residual) {
    const T m = d.multiplier(static_cast<uint64_t>(h * H + i));
#if defined(__CUDA_ARCH__)
    T dropped;
    if constexpr (sizeof(T) == 4) dropped = __fmul_rn(alpha, m);
    else dropped = __dmul_rn(alpha, m);
#else
    volatile T product = alpha * m;
    const T dropped = product;
#endif
    return residual ? (h == i ? T(1) : T(0)) + dropped : dropped;
}

// Reserves a draw of n numbers from gen when training with p > 0 (then gen must be given), else
// draws nothing. Checks p (in [0, 1]) first; errors name `op` and, for a missing generator, `gen_name`.
template <class T>
DropoutDraw<T> reserve_dropout(double p, bool training, Generator* gen, uint64_t n, const char* op,
                               const char* gen_name) {
    check_probability(p, op);
    DropoutDraw<T> d;
    if (!training || p == 0.0) return d;
    check(gen != nullptr, op, ": training with dropout p = ", p, " needs ", gen_name);
    d.on = true;
    d.p = p;
    d.keep = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    d.seed = gen->seed;
    d.first_block = gen->reserve(n);
    return d;
}

// The draws of one attention call, in their order: alpha's H x H (coefficient attention only),
// then Phat's B*H*N*M. Both probabilities are checked even when nothing is drawn.
template <class T>
struct Draws {
    DropoutDraw<T> alpha, phat;
};
template <class T>
Draws<T> reserve_draws(const CoeffSpec& spec, bool mix, double attn_dropout, bool training, Generator* gen, int64_t B,
                       int64_t H, int64_t N, int64_t M, const char* op, const char* gen_name) {
    Draws<T> d;
    if (mix) d.alpha = reserve_dropout<T>(spec.alpha_dropout, training, gen, static_cast<uint64_t>(H * H), op, gen_name);
    d.phat = reserve_dropout<T>(attn_dropout, training, gen, static_cast<uint64_t>(B * H * N * M), op, gen_name);
    return d;
}

}  // namespace coeff

}  // namespace coeffnet
