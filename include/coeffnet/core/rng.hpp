// coeffnet/core/rng.hpp: counter-based random numbers (Philox4x32-10).
//
// Why counter-based: the random number used for element i of a draw is a pure function of
// (seed, offset + i), so the CPU loop, an OpenMP loop and a CUDA kernel produce the same
// dropout mask for the same seed without sharing any state but two integers.
//
// Layout (the contract a GPU kernel must follow too): a draw of n numbers from a Generator
// at offset o uses Philox blocks with counter (o + i/4, 0, 0, 0) and key (seed low, seed high);
// element i takes word i%4 of its block. The generator's offset then advances by ceil(n/4).
// uniform: (word >> 8) * 2^-24, in [0, 1). normal: Box-Muller on words (2j, 2j+1) of a block.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

// The Philox functions below are the same code on the host and in CUDA kernels (nvcc needs
// --expt-relaxed-constexpr for std::array there), so a GPU dropout mask is the CPU's, bit for bit.
#if defined(__CUDACC__)
#define COEFFNET_HD __host__ __device__
#else
#define COEFFNET_HD
#endif

namespace coeffnet {

using Philox4 = std::array<uint32_t, 4>;

// One Philox4x32-10 block (Salmon et al., SC'11); matches Random123's known-answer vectors.
COEFFNET_HD inline Philox4 philox4x32_10(Philox4 ctr, std::array<uint32_t, 2> key) {
    constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = static_cast<uint64_t>(M0) * ctr[0];
        const uint64_t p1 = static_cast<uint64_t>(M1) * ctr[2];
        ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
               static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
        key[0] += W0;
        key[1] += W1;
    }
    return ctr;
}

COEFFNET_HD inline Philox4 philox_block(uint64_t seed, uint64_t block) {
    return philox4x32_10({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u},
                         {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

COEFFNET_HD inline float uniform_from_bits(uint32_t w) { return static_cast<float>(w >> 8) * 0x1.0p-24f; }

// A seed and a position in its stream. Copying a Generator copies its position, which is how
// a training checkpoint saves "the RNG state": two integers.
struct Generator {
    uint64_t seed = 0;
    uint64_t offset = 0;  // in Philox blocks

    Generator() = default;
    explicit Generator(uint64_t s, uint64_t o = 0) : seed(s), offset(o) {}

    // Reserves the blocks for a draw of n numbers; returns the first block index.
    uint64_t reserve(uint64_t n) {
        const uint64_t first = offset;
        offset += (n + 3) / 4;
        return first;
    }
};

// Element i of a draw that started at block `first`.
COEFFNET_HD inline uint32_t draw_bits(uint64_t seed, uint64_t first, uint64_t i) {
    return philox_block(seed, first + i / 4)[i % 4];
}

// Fills out[0..n) by fn(word) in blocks of four: the work of a draw without recomputing
// a block per element.
template <class F>
inline void for_each_draw(uint64_t seed, uint64_t first, int64_t n, F&& fn) {
    for (int64_t b = 0; b * 4 < n; ++b) {
        const Philox4 w = philox_block(seed, first + static_cast<uint64_t>(b));
        for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j) fn(b * 4 + j, w[static_cast<size_t>(j)]);
    }
}

// Two standard normals from one block's first two (or last two) words.
inline std::array<double, 2> box_muller(uint32_t a, uint32_t b) {
    const double u1 = (static_cast<double>(a) + 1.0) * 0x1.0p-32;  // (0, 1]: log is finite
    const double u2 = static_cast<double>(b) * 0x1.0p-32;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 6.283185307179586 * u2;
    return {r * std::cos(t), r * std::sin(t)};
}

}  // namespace coeffnet
