// coeffnet/train/clip.hpp: gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_),
// through the backend table on the gradients' device (Ops::add_squares, the scale_double op code).
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
    // One running sum of squares in double, in the parameters' order, on the gradients' device
    // (read back and carried over where the device changes).
    Tensor<double> sq;
    for (const auto& p : params) {
        check(p.defined(), "clip_grad_norm_: undefined parameter in the list");
        const Tensor<T> g = p.grad();
        if (!g.defined()) continue;
        if (!sq.defined() || sq.device() != g.device())
            sq = Tensor<double>::scalar(sq.defined() ? sq.item() : 0.0, g.device());
        backend::ops<T>(g.device()).add_squares(sq, g);
    }
    const double norm = std::sqrt(sq.defined() ? sq.item() : 0.0);
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;  // also false for a NaN coefficient, which is applied
    NoGrad no_grad;
    for (const auto& p : params) {
        Tensor<T> g = p.grad();
        if (!g.defined()) continue;
        g.copy_(detail::unary(backend::UnaryOp::scale_double, g, coef));  // T(double(v) * coef)
    }
    return norm;
}

}  // namespace coeffnet
