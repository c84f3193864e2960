// src/emulator/include/cuda_runtime.h: the CUDA runtime as the block emulator provides it.
//
// The host compiler sees this file instead of the toolkit's when it compiles kernels/*.cuh and
// src/cuda/*.cu for the emulator (target coeffnet_emulated). It declares what coeffnet's kernels
// and launchers use, no more: the execution-space keywords, the built-in variables, barriers, warp
// shuffles, atomics, and the runtime calls (implemented in src/emulator/runtime.cpp). A kernel
// that needs something missing here fails to compile for the emulator, which is the point.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "../emulator.hpp"

#ifndef COEFFNET_EMULATED
#define COEFFNET_EMULATED 1
#endif

// ---- execution spaces and qualifiers -----------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one copy per kernel instantiation, used by one CTA at a time; the
// emulator recognises it by address (static storage) and poisons its shadow per CTA.
#define __shared__ static

// ---- built-in vectors and variables ------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
// The running emulated thread's: each read asks the emulator (kernels read them a few times).
#define threadIdx (::coeffnet::emu::builtins().thread_idx)
#define blockIdx (::coeffnet::emu::builtins().block_idx)
#define blockDim (::coeffnet::emu::builtins().block_dim)
#define gridDim (::coeffnet::emu::builtins().grid_dim)
constexpr int warpSize = 32;
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};

// ---- barriers and warp collectives -------------------------------------------------------------
inline void __syncthreads(std::source_location where = std::source_location::current()) {
    ::coeffnet::emu::syncthreads(where);
}

namespace coeffnet::emu::detail {
enum class Shfl { idx, up, down, bfly };
struct ShflSlot {
    uint64_t value;
    int arg, width;
    Shfl kind;
    uint64_t result;
};
void shfl_complete(void** payloads, unsigned mask, void* ctx);
template <class T>
T shfl(Shfl kind, unsigned mask, T v, int arg, int width, const std::source_location& where) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move at most 8 bytes");
    ShflSlot s{0, arg, width, kind, 0};
    std::memcpy(&s.value, &v, sizeof(T));
    ::coeffnet::emu::warp_collective("__shfl_sync", mask, &s, &shfl_complete, nullptr, where);
    T out;
    std::memcpy(&out, &s.result, sizeof(T));
    return out;
}
}  // namespace coeffnet::emu::detail

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, std::source_location w = std::source_location::current()) {
    return ::coeffnet::emu::detail::shfl(::coeffnet::emu::detail::Shfl::idx, mask, v, src, width, w);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32, std::source_location w = std::source_location::current()) {
    return ::coeffnet::emu::detail::shfl(::coeffnet::emu::detail::Shfl::up, mask, v, static_cast<int>(d), width, w);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32, std::source_location w = std::source_location::current()) {
    return ::coeffnet::emu::detail::shfl(::coeffnet::emu::detail::Shfl::down, mask, v, static_cast<int>(d), width, w);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, std::source_location w = std::source_location::current()) {
    return ::coeffnet::emu::detail::shfl(::coeffnet::emu::detail::Shfl::bfly, mask, v, lane_mask, width, w);
}

// ---- atomics -------------------------------------------------------------------------------------
inline float atomicAdd(float* a, float v) { return ::coeffnet::emu::atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return ::coeffnet::emu::atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return ::coeffnet::emu::atomic_add(a, v); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return ::coeffnet::emu::atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    return ::coeffnet::emu::atomic_add(a, v);
}

// ---- device math the kernels use (the host's libm: the device's expf may differ in the last bit) --
using std::erf;
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <class T>
inline T __ldg(const T* p) { return *p; }

#include "cuda_runtime_api.h"
