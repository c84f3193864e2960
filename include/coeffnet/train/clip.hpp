// coeffnet/train/clip.hpp: gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_).
#pragma once

#include <cmath>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

// Scales the gradients of `params` in place so that their joint L2 norm is at most max_norm,
// and returns the norm before clipping. As PyTorch: the norm is taken over all gradients
// together (accumulated in double); when it exceeds max_norm every gradient is multiplied by
// max_norm / (norm + 1e-6); parameters without a gradient are skipped. A non-finite norm is
// returned as it is and the same formula applied (PyTorch's error_if_nonfinite=False), so NaN
// or infinite gradients stay non-finite; check the returned value to skip such a step.
template <class T>
double clip_grad_norm_(const std::vector<Tensor<T>>& params, double max_norm) {
    check(max_norm >= 0 && !std::isnan(max_norm), "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
    double sq = 0;
    for (const auto& p : params) {
        check(p.defined(), "clip_grad_norm_: undefined parameter in the list");
        const Tensor<T> g = p.grad();
        if (!g.defined()) continue;
        for (const T v : g.to_vector()) sq += static_cast<double>(v) * static_cast<double>(v);
    }
    const double norm = std::sqrt(sq);
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;  // also false for a NaN coefficient, which is applied
    NoGrad no_grad;
    for (const auto& p : params) {
        Tensor<T> g = p.grad();
        if (!g.defined()) continue;
        g.copy_(detail::map_unary(g, [coef](T v) { return static_cast<T>(static_cast<double>(v) * coef); }));
    }
    return norm;
}

}  // namespace coeffnet
