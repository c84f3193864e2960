// coeffnet/ops/attention_tiled_impl.hpp: the tiled attention backend's code without its start-up
// registration. Include <coeffnet/ops/attention_tiled.hpp>, which adds this backend to a program;
// this file is its code and `register_tiled_backend<T>()`, for headers that register it only
// where they are used (models/vit.hpp; see attention_tiled.hpp).
//
// The backend is the fused attention op (detail::fused_attention, ops/attention.hpp: options,
// draws, alpha', autograd) over the CPU table's fused primitives, whose kernels are the tiled
// algorithm of backend/cpu_attention_tiled.hpp (its design and measurements are there). cpu.hpp,
// part of every program, does not include those kernels (backend/cpu_attention.hpp says why):
// including this file compiles them, and coeff_attention_tiled / register_tiled_backend point the
// CPU table at them.
#pragma once

#include "../backend/cpu_attention_tiled.hpp"
#include "attention.hpp"

namespace coeffnet {

// The tiled backend of attention (alpha undefined) and coeff_attention (alpha [H, H]): same
// arguments and semantics as those (ops/attention.hpp), except that it cannot return the maps.
template <class T>
AttentionResult<T> coeff_attention_tiled(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                         const Tensor<T>& alpha, const AttentionOptions& o, const Tensor<T>& attn_mask,
                                         const Tensor<T>& key_mask, const TiledConfig& cfg) {
    // The CPU table's kernels, registered on the first call (a file may call this directly
    // without register_tiled_backend; the CPU table needs them either way).
    [[maybe_unused]] static const bool kernels = (backend::cpu_impl::register_tiled_kernels<T>(), true);
    return detail::fused_attention(q, k, v, alpha, o, attn_mask, key_mask, cfg);
}

// Points ops/attention.hpp's dispatch for element type T at this backend, and the CPU table's fused
// attention at its kernels. Calling it compiles the backend for T into the calling file; a program
// needs one call per type (or attention_tiled.hpp).
template <class T>
void register_tiled_backend() {
    backend::cpu_impl::register_tiled_kernels<T>();
    tiled_attention_backend<T> = &coeff_attention_tiled<T>;
}

}  // namespace coeffnet
