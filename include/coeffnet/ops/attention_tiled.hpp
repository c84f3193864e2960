// coeffnet/ops/attention_tiled.hpp: adds the tiled attention backend (ops/attention_tiled_impl.hpp;
// the algorithm and its measurements: backend/cpu_attention_tiled.hpp) to a program. Included in any
// one file, it registers the backend for float and double at start-up, so that attention and
// coeff_attention (ops/attention.hpp) pick it automatically for large maps and
// AttentionBackend::tiled finds it.
//
// Every file that includes this header compiles the backend for both types (about 7 s of a
// 13 s compile for a small file at -O3, GCC 12). models/ headers therefore include the
// implementation alone and call register_tiled_backend<T>() where a model of type T is
// constructed: a file that names a model without building one compiles none of it.
#pragma once

#include "attention_tiled_impl.hpp"

namespace coeffnet::detail {
// Once per program (an inline variable), before main.
inline const bool tiled_backend_registered = [] {
    register_tiled_backend<float>();
    register_tiled_backend<double>();
    return true;
}();
}  // namespace coeffnet::detail
