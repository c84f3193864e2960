// src/emulator/include/mma.h: nvcuda::wmma (16 x 16 x 16 tiles) for the block emulator.
//
// Every call is a warp collective, as on a device: all 32 lanes of the warp call it with the same
// pointer and leading dimension, and it completes when the last lane arrives. The device spreads a
// tile's elements over the lanes in an unspecified layout; here every lane holds the whole tile,
// and the loads and stores charge element e to lane e % 32 in the shared-memory shadow, so a
// race on a tile is seen like any other. Preconditions the device has (and would turn into wrong
// results or faults) are checked: 32-byte aligned pointers, ldm a multiple of 16 bytes.
// mma_sync accumulates in fp32 in k order (the device's order is unspecified; 16-bit products are
// exact in fp32, so only the summation order differs).
#pragma once

#include <cstdint>
#include <source_location>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulator has the 16 x 16 x 16 shape only");
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;  // every emulated lane holds the whole tile
    using element_type = T;
    float x[num_elements];
};

namespace emu_detail {
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_float(__half v) { return __half2float(v); }
template <class T>
T from_float(float v) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(v);
    else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
    else return v;
}

struct Tile {
    float* x;            // this lane's copy of the tile (rows x cols, row-major)
    int rows, cols;
    const void* ptr;     // memory side of a load or store
    unsigned ldm;
    bool col_major;      // memory layout
    int elem_bytes;
    float (*load)(const void*, int64_t);
    void (*store)(void*, int64_t, float);
    float fill;
    const float *a, *b, *c;  // mma operands (this lane's copies)
};
template <class T>
float load_elem(const void* p, int64_t i) { return to_float(static_cast<const T*>(p)[i]); }
template <class T>
void store_elem(void* p, int64_t i, float v) { static_cast<T*>(p)[i] = from_float<T>(v); }

void load_complete(void** payloads, unsigned mask, void* ctx);
void store_complete(void** payloads, unsigned mask, void* ctx);
void fill_complete(void** payloads, unsigned mask, void* ctx);
void mma_complete(void** payloads, unsigned mask, void* ctx);
}  // namespace emu_detail

template <class Use, int M, int N, int K, class T, class L, class S>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const S* p, unsigned ldm,
                      std::source_location w = std::source_location::current()) {
    static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load names its memory layout");
    using F = fragment<Use, M, N, K, T, L>;
    emu_detail::Tile t{f.x, F::rows, F::cols, p, ldm, std::is_same_v<L, col_major>, static_cast<int>(sizeof(S)),
                       &emu_detail::load_elem<S>, nullptr, 0.f, nullptr, nullptr, nullptr};
    ::coeffnet::emu::warp_collective("wmma::load_matrix_sync", 0xffffffffu, &t, &emu_detail::load_complete, nullptr, w);
}
template <int M, int N, int K, class T, class S>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const S* p, unsigned ldm, layout_t layout,
                      std::source_location w = std::source_location::current()) {
    using F = fragment<accumulator, M, N, K, T>;
    emu_detail::Tile t{f.x, F::rows, F::cols, p, ldm, layout == mem_col_major, static_cast<int>(sizeof(S)),
                       &emu_detail::load_elem<S>, nullptr, 0.f, nullptr, nullptr, nullptr};
    ::coeffnet::emu::warp_collective("wmma::load_matrix_sync", 0xffffffffu, &t, &emu_detail::load_complete, nullptr, w);
}
template <int M, int N, int K, class T, class S>
void store_matrix_sync(S* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout,
                       std::source_location w = std::source_location::current()) {
    using F = fragment<accumulator, M, N, K, T>;
    emu_detail::Tile t{const_cast<float*>(f.x), F::rows, F::cols, p, ldm, layout == mem_col_major,
                       static_cast<int>(sizeof(S)), nullptr, &emu_detail::store_elem<S>, 0.f, nullptr, nullptr, nullptr};
    ::coeffnet::emu::warp_collective("wmma::store_matrix_sync", 0xffffffffu, &t, &emu_detail::store_complete, nullptr, w);
}
template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v, std::source_location w = std::source_location::current()) {
    using F = fragment<Use, M, N, K, T, L>;
    emu_detail::Tile t{f.x, F::rows, F::cols, nullptr, 0, false, 0, nullptr, nullptr, v, nullptr, nullptr, nullptr};
    ::coeffnet::emu::warp_collective("wmma::fill_fragment", 0xffffffffu, &t, &emu_detail::fill_complete, nullptr, w);
}
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
              std::source_location w = std::source_location::current()) {
    emu_detail::Tile t{d.x, M, N, nullptr, 0, false, 0, nullptr, nullptr, 0.f, a.x, b.x, c.x};
    ::coeffnet::emu::warp_collective("wmma::mma_sync", 0xffffffffu, &t, &emu_detail::mma_complete, nullptr, w);
}

}  // namespace nvcuda::wmma
