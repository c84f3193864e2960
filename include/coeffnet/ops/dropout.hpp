// coeffnet/ops/dropout.hpp: inverted dropout from the counter-based generator.
//
// Element i is kept when uniform(i) >= p (probability 1 - p) and scaled by 1/(1-p), so the
// expectation is unchanged and evaluation needs no rescaling. uniform(i) comes from the
// Philox stream at the generator's offset (core/rng.hpp), so a CUDA kernel given the same
// seed and offset drops the same elements. p = 1 drops everything (output zeros).
#pragma once

#include <cmath>

#include "../tensor/tensor.hpp"

namespace coeffnet {

// The multiplier of each element: 0 where dropped, 1/(1-p) where kept.
template <class T>
Tensor<T> dropout_mask(const Shape& shape, double p, Generator& gen) {
    Tensor<T> m = Tensor<T>::empty(shape);
    const int64_t n = m.numel();
    const T keep = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const float pf = static_cast<float>(p);
    T* pm = m.data();
    const uint64_t first = gen.reserve(static_cast<uint64_t>(n));
    parallel_for((n + 3) / 4, 64, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const Philox4 w = philox_block(gen.seed, first + static_cast<uint64_t>(b));
            for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j)
                pm[b * 4 + j] = uniform_from_bits(w[static_cast<size_t>(j)]) >= pf ? keep : T(0);
        }
    });
    return m;
}

// Returns x itself when !training or p == 0 (no draw, the generator does not advance).
template <class T>
Tensor<T> dropout(const Tensor<T>& x, double p, Generator& gen, bool training = true) {
    check(x.defined(), "dropout: undefined input");
    check_probability(p, "dropout");
    if (!training || p == 0.0) return x;
    const Tensor<T> mask = dropout_mask<T>(x.shape(), p, gen);
    Tensor<T> y = detail::map_binary(x, mask, "dropout", [](T a, T m) { return a * m; });
    return record<T>(y, "dropout", {x}, [mask](const Tensor<T>& g, const std::vector<bool>&) {
        return std::vector<Tensor<T>>{detail::map_binary(g, mask, "dropout backward", [](T a, T m) { return a * m; })};
    });
}

}  // namespace coeffnet
