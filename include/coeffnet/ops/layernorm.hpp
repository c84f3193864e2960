// coeffnet/ops/layernorm.hpp: layer normalisation over the last axis (PyTorch's F.layer_norm
// with normalized_shape = [C]).
//
// Statistics in double for float inputs, two passes (mean, then centred variance), so a
// constant row gives exactly 0 variance and output = bias. Backward, with xhat = (x - mu) * rstd
// and dxhat = g * w:  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// dw = sum_rows(g * xhat), db = sum_rows(g). The forward and dx are the backend table's
// primitives on the input's device (the CPU loops: backend/cpu_norm.hpp); dw and db are tensor ops.
#pragma once

#include <cmath>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

template <class T>
Tensor<T> layer_norm(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias, double eps) {
    check(x.defined() && x.dim() >= 1, "layer_norm: expects a defined input of rank >= 1");
    const int64_t C = x.shape().back();
    check(!weight.defined() || weight.shape() == Shape{C}, "layer_norm: weight ",
          weight.defined() ? shape_str(weight.shape()) : "", " does not match input ", shape_str(x.shape()),
          " (expected [", C, "])");
    check(!bias.defined() || bias.shape() == Shape{C}, "layer_norm: bias ", bias.defined() ? shape_str(bias.shape()) : "",
          " does not match input ", shape_str(x.shape()), " (expected [", C, "])");
    check(eps >= 0 && std::isfinite(eps), "layer_norm: eps must be finite and >= 0, got ", eps);
    const Device dev = detail::same_device("layer_norm", x, weight, bias);
    const int64_t rows = C == 0 ? 0 : x.numel() / C;
    const Tensor<T> wc = weight.defined() ? detail::as_contiguous(weight) : Tensor<T>();
    Tensor<T> y = Tensor<T>::empty(x.shape(), dev);
    Tensor<T> xhat = Tensor<T>::empty(x.shape(), dev);
    Tensor<T> rstd = Tensor<T>::empty({rows}, dev);
    backend::ops<T>(dev).layer_norm(y, xhat, rstd, x, wc, bias, eps);
    return record<T>(y, "layer_norm", {x, weight, bias},
                     [xhat, rstd, wc, C](const Tensor<T>& g, const std::vector<bool>& needs) {
                         std::vector<Tensor<T>> r(3);
                         const Tensor<T> gc = detail::as_contiguous(g);
                         if (needs[0]) {
                             r[0] = Tensor<T>::empty(xhat.shape(), xhat.device());
                             backend::ops<T>(xhat.device()).layer_norm_backward(r[0], gc, xhat, rstd, wc);
                         }
                         if (needs[1])
                             r[1] = detail::sum_to(detail::binary(backend::BinaryOp::mul, gc, xhat, "layer_norm backward"),
                                                   {C});
                         if (needs[2]) r[2] = detail::sum_to(gc, {C});
                         return r;
                     });
}

}  // namespace coeffnet
