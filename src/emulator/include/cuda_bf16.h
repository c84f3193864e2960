// src/emulator/include/cuda_bf16.h: __nv_bfloat16 for the block emulator (see cuda_runtime.h).
// A distinct 2-byte type, as in CUDA; conversions round to nearest even with coeffnet's own
// bfloat16_t (core/dtype.hpp), bit for bit what __float2bfloat16_rn gives on a device.
#pragma once

#include <cstdint>

#include "coeffnet/core/dtype.hpp"

struct __nv_bfloat16 {
    uint16_t __x;
};
inline float __bfloat162float(__nv_bfloat16 v) {
    coeffnet::bfloat16_t b;
    b.bits = v.__x;
    return static_cast<float>(b);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {coeffnet::bfloat16_t(f).bits}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
