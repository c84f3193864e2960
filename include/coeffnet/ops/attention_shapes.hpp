// coeffnet/ops/attention_shapes.hpp: the shape rules of (coefficient) attention, shared by the CPU
// op (ops/attention.hpp) and the CUDA launchers (src/cuda/attention.cu). Needs nothing but Shape,
// so nvcc compiles it without Eigen.
#pragma once

#include "../core/shape.hpp"

namespace coeffnet {

// q [B, H, N, d], k [B, H, M, d], v [B, H, M, dv]; throws naming `op` and the shapes.
inline void check_attention_shapes(const Shape& qs, const Shape& ks, const Shape& vs, const char* op) {
    check(qs.size() == 4 && ks.size() == 4 && vs.size() == 4, op,
          ": q, k, v must be [batch, heads, tokens, head_dim], got ", shape_str(qs), ", ", shape_str(ks), ", ",
          shape_str(vs));
    check(qs[0] == ks[0] && qs[1] == ks[1] && qs[3] == ks[3], op, ": q ", shape_str(qs), " and k ", shape_str(ks),
          " must agree in batch, heads and head_dim");
    check(vs[0] == ks[0] && vs[1] == ks[1] && vs[2] == ks[2], op, ": v ", shape_str(vs), " and k ", shape_str(ks),
          " must agree in batch, heads and key tokens");
}

}  // namespace coeffnet
