// coeffnet/cuda/attention.hpp: fused coefficient attention on the GPU (kernels/coeff_attention.cuh),
// forward and backward, never storing the [B, H, N, M] maps.
//
//   auto fwd = cuda::coeff_attention_forward(q, k, v, alpha, cfg, &key_mask);  // out, saved state
//   auto g   = cuda::coeff_attention_backward(q, k, v, dout, fwd.saved, &key_mask);
//
// Semantics: coeffnet::coeff_attention (ops/attention.hpp) with the causal flag and a key mask:
//     P_i = softmax(scale Q_i K_i^T + mask),  alpha' = I + Dropout_p(alpha)  (or Dropout_p(alpha)),
//     Phat_h = Dropout_q(sum_i alpha'[h, i] P_i),  O_h = Phat_h V_h
// q [B, H, N, d], k [B, H, M, d], v [B, H, M, dv] contiguous, T in float / bfloat16_t / half_t
// (fp32 accumulation; lse saved in fp32). key_mask [B, M] uint8 (nonzero = token, the
// Hugging Face attention_mask convention); causal is bottom-right aligned (query n sees keys
// m <= n + M - N); a query row with no visible key gives zeros. alpha [H, H] fp32 (the master
// parameter); an undefined alpha means plain attention (alpha' = I, no dalpha).
// alpha', the masks, the scale and the randomness are ops/coeff_spec.hpp's, as on the CPU: the
// generator draws alpha's H x H mask first, then reserves B*H*N*M numbers for Phat (element
// [b,h,n,m] = word ((b*H + h)*N + n)*M + m), both only when training with p > 0, so a GPU run
// and a CPU run with the same Generator agree. The kernels' launch plan (tiles, shared memory,
// grids) is kernels/coeff_attention_plan.cuh's, an implementation detail not installed.
// Not supported here (use the CPU op): an additive float mask, return_maps, H > 64.
//
// Every entry point calls require() first: without a usable GPU it throws coeffnet::Error
// ("cuda::coeff_attention_forward: no usable CUDA device (<reason>)"). Runs on
// Context::get().stream(); returns without synchronising.
#pragma once

#include <cstdint>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../ops/coeff_spec.hpp"
#include "tensor.hpp"

namespace coeffnet::cuda {

// What the caller chooses; the fields mirror coeffnet::AttentionOptions.
struct AttentionConfig {
    double scale = 0.0;            // 0 = 1/sqrt(d) (coeff::score_scale)
    bool causal = false;
    CoeffSpec coeff;               // alpha's dropout and parameterisation (ops/coeff_spec.hpp)
    double attn_dropout = 0.0;     // p of Dropout on Phat (training only)
    bool training = false;
    Generator* generator = nullptr;  // required when training with a dropout p > 0
    bool tensor_cores = true;      // bf16 / half: the tensor-core kernels (false: the SIMT ones)
    int64_t max_smem = 0;          // 0: plan for the device's opt-in shared memory per block; else at
                                   // most this many bytes (smaller tiles and head groups; the tests use it)
};

// Everything the backward needs besides q, k, v, dout and the key mask.
struct CoeffAttentionSaved {
    DeviceTensor<float> lse;          // [B, H, N] log-sum-exp of each masked score row (-inf: no key)
    DeviceTensor<float> alpha_prime;  // [H, H] alpha' as the forward used it
    DropoutDraw<float> alpha_draw;    // alpha's dropout (dalpha = dalpha' * its multipliers)
    bool mix = false;                 // false: plain attention (no dalpha)
    float scale = 1.0f;
    bool causal = false;
    DropoutDraw<float> drop;          // Phat's dropout
    bool tensor_cores = true;         // the backward uses the forward's choice
    int64_t max_smem = 0;             // and its shared-memory cap (AttentionConfig::max_smem)
};

template <class T>
struct CoeffAttentionOutput {
    DeviceTensor<T> out;  // [B, H, N, dv]
    CoeffAttentionSaved saved;
};

template <class T>
struct CoeffAttentionGrads {
    DeviceTensor<T> dq, dk, dv;   // shapes of q, k, v
    DeviceTensor<float> dalpha;   // [H, H] (undefined for plain attention)
};

template <class T>
CoeffAttentionOutput<T> coeff_attention_forward(const DeviceTensor<T>& q, const DeviceTensor<T>& k,
                                                const DeviceTensor<T>& v, const DeviceTensor<float>& alpha,
                                                const AttentionConfig& cfg = {},
                                                const DeviceTensor<uint8_t>* key_mask = nullptr);

template <class T>
CoeffAttentionGrads<T> coeff_attention_backward(const DeviceTensor<T>& q, const DeviceTensor<T>& k,
                                                const DeviceTensor<T>& v, const DeviceTensor<T>& dout,
                                                const CoeffAttentionSaved& saved,
                                                const DeviceTensor<uint8_t>* key_mask = nullptr);

// For tests only (tests/cuda/test_attention_cuda.cpp): C [16, 16] (fp32) = A [16, K] B [K, 16] through
// the tensor-core tile product of the fused attention kernels (kernels/coeff_attention.cuh tile_mma),
// one warp, K a multiple of 16. a_col_major: `a` holds A^T, [K, 16] (else A, [16, K]); b_col_major:
// `b` holds B^T, [16, K] (else B, [K, 16]). T: bfloat16_t or half_t.
template <class T>
void tile_mma_for_testing(const DeviceTensor<T>& a, bool a_col_major, const DeviceTensor<T>& b, bool b_col_major,
                          DeviceTensor<float>& c);

}  // namespace coeffnet::cuda
