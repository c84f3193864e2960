// coeffnet/ops/random.hpp: random integers and permutations from the counter-based generator.
//
// Both draw from the Philox stream at the generator's offset (core/rng.hpp) and advance it, so
// a result is a pure function of (seed, offset) and the arguments: the same Generator state
// gives the same tensor. Each integer takes two 32-bit words (one 64-bit number u), mapped to
// [0, range) by the high half of u * range; the bias of that map is below range / 2^64.
// The values are this library's own stream, not torch.randint's for the same seed.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

// count 64-bit random numbers from gen (2 * count draws).
inline std::vector<uint64_t> draw_u64(Generator& gen, int64_t count) {
    std::vector<uint64_t> out(static_cast<size_t>(count));
    if (count == 0) return out;
    const uint64_t first = gen.reserve(static_cast<uint64_t>(2 * count));
    for_each_draw(gen.seed, first, 2 * count, [&](int64_t i, uint32_t w) {
        uint64_t& u = out[static_cast<size_t>(i / 2)];
        u = (i % 2 == 0) ? static_cast<uint64_t>(w) << 32 : u | w;
    });
    return out;
}

// u scaled into [0, range): the high 64 bits of u * range.
inline uint64_t scale_u64(uint64_t u, uint64_t range) {
    const uint64_t ul = u & 0xFFFFFFFFu, uh = u >> 32, rl = range & 0xFFFFFFFFu, rh = range >> 32;
    const uint64_t ll = ul * rl, lh = ul * rh, hl = uh * rl, hh = uh * rh;
    const uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

}  // namespace detail

// Integers uniform in [low, high) (like torch.randint(low, high, size, generator=gen)). (Both are
// templates only so that a program that does not call them does not instantiate Tensor<int64_t>.)
template <int = 0>
Tensor<int64_t> randint(int64_t low, int64_t high, const Shape& shape, Generator& gen) {
    check(high > low, "randint: high (", high, ") must be greater than low (", low, ")");
    const int64_t n = shape_numel(shape, "randint");
    const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
    const std::vector<uint64_t> u = detail::draw_u64(gen, n);
    Tensor<int64_t> out = Tensor<int64_t>::empty(shape);
    int64_t* p = out.data();
    for (int64_t i = 0; i < n; ++i)
        p[i] = static_cast<int64_t>(static_cast<uint64_t>(low) + detail::scale_u64(u[static_cast<size_t>(i)], range));
    return out;
}

// A random permutation of 0 .. n-1 (like torch.randperm(n, generator=gen)): Fisher-Yates with
// n 64-bit draws.
template <int = 0>
Tensor<int64_t> randperm(int64_t n, Generator& gen) {
    check(n >= 0, "randperm: n must be >= 0, got ", n);
    Tensor<int64_t> out = Tensor<int64_t>::arange(n);
    int64_t* p = out.data();
    const std::vector<uint64_t> u = detail::draw_u64(gen, n);
    for (int64_t i = n - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(detail::scale_u64(u[static_cast<size_t>(i)], static_cast<uint64_t>(i + 1)));
        std::swap(p[i], p[j]);
    }
    return out;
}

}  // namespace coeffnet
