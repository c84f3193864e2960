// src/emulator/include/cuda_fp16.h: __half for the block emulator (see cuda_runtime.h).
// A distinct 2-byte type, as in CUDA; conversions round to nearest even with coeffnet's own
// half_t (core/dtype.hpp).
#pragma once

#include <cstdint>

#include "coeffnet/core/dtype.hpp"

struct __half {
    uint16_t __x;
};
inline float __half2float(__half v) { return coeffnet::half_t::to_float(v.__x); }
inline __half __float2half_rn(float f) { return {coeffnet::half_t(f).bits}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
