// coeffnet/ops/dropout.hpp: inverted dropout from the counter-based generator.
//
// Element i is kept when uniform(i) >= p (probability 1 - p) and scaled by 1/(1-p), so the
// expectation is unchanged and evaluation needs no rescaling. uniform(i) comes from the
// Philox stream at the generator's offset (core/rng.hpp), so a CUDA kernel given the same
// seed and offset drops the same elements. p = 1 drops everything (output zeros). The mask is
// drawn by the backend table (Ops::dropout_mask) on the input's device, the product is the
// table's mul.
#pragma once

#include <cmath>

#include "../tensor/tensor.hpp"

namespace coeffnet {

// The multiplier of each element: 0 where dropped, 1/(1-p) where kept, on `device`. The draw is
// reserved on the host, so every device draws the same mask.
template <class T>
Tensor<T> dropout_mask(const Shape& shape, double p, Generator& gen, Device device) {
    Tensor<T> m = Tensor<T>::empty(shape, device);
    const uint64_t first = gen.reserve(static_cast<uint64_t>(m.numel()));
    backend::ops<T>(device).dropout_mask(m, gen.seed, first, p);
    return m;
}

template <class T>
Tensor<T> dropout_mask(const Shape& shape, double p, Generator& gen) {
    return dropout_mask<T>(shape, p, gen, Device::cpu());
}

// Returns x itself when !training or p == 0 (no draw, the generator does not advance).
template <class T>
Tensor<T> dropout(const Tensor<T>& x, double p, Generator& gen, bool training = true) {
    check(x.defined(), "dropout: undefined input");
    check_probability(p, "dropout");
    if (!training || p == 0.0) return x;
    const Tensor<T> mask = dropout_mask<T>(x.shape(), p, gen, x.device());
    Tensor<T> y = detail::binary(backend::BinaryOp::mul, x, mask, "dropout");
    return record<T>(y, "dropout", {x}, [mask](const Tensor<T>& g, const std::vector<bool>&) {
        return std::vector<Tensor<T>>{detail::binary(backend::BinaryOp::mul, g, mask, "dropout backward")};
    });
}

}  // namespace coeffnet
