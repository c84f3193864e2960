// coeffnet/ops/layernorm.hpp: layer normalisation over the last axis (PyTorch's F.layer_norm
// with normalized_shape = [C]).
//
// Statistics in double for float inputs, two passes (mean, then centred variance), so a
// constant row gives exactly 0 variance and output = bias. Backward, with xhat = (x - mu) * rstd
// and dxhat = g * w:  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// dw = sum_rows(g * xhat), db = sum_rows(g).
#pragma once

#include <cmath>

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
    const int64_t rows = C == 0 ? 0 : x.numel() / C;
    const Tensor<T> xc = detail::as_contiguous(x);
    const Tensor<T> wc = weight.defined() ? detail::as_contiguous(weight) : Tensor<T>();
    const Tensor<T> bc = bias.defined() ? detail::as_contiguous(bias) : Tensor<T>();
    Tensor<T> y = Tensor<T>::empty(x.shape());
    Tensor<T> xhat = Tensor<T>::empty(x.shape());
    Tensor<T> rstd = Tensor<T>::empty({rows});
    const T* px = xc.data();
    const T* pw = wc.defined() ? wc.data() : nullptr;
    const T* pb = bc.defined() ? bc.data() : nullptr;
    T *py = y.data(), *ph = xhat.data(), *pr = rstd.data();
    parallel_for(rows, C * 3, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * C;
            acc_t<T> mu = 0, var = 0;
            for (int64_t j = 0; j < C; ++j) mu += row[j];
            mu /= static_cast<acc_t<T>>(C);
            for (int64_t j = 0; j < C; ++j) {
                const acc_t<T> d = row[j] - mu;
                var += d * d;
            }
            var /= static_cast<acc_t<T>>(C);
            const acc_t<T> rs = 1.0 / std::sqrt(var + eps);
            pr[r] = static_cast<T>(rs);
            for (int64_t j = 0; j < C; ++j) {
                const T h = static_cast<T>((row[j] - mu) * rs);
                ph[r * C + j] = h;
                py[r * C + j] = (pw ? h * pw[j] : h) + (pb ? pb[j] : T(0));
            }
        }
    });
    const Tensor<T> sw = wc;
    return record<T>(y, "layer_norm", {x, weight, bias},
                     [xhat, rstd, sw, rows, C](const Tensor<T>& g, const std::vector<bool>& needs) {
                         std::vector<Tensor<T>> r(3);
                         const Tensor<T> gc = detail::as_contiguous(g);
                         const T *pg = gc.data(), *ph = xhat.data(), *pr = rstd.data();
                         const T* pw = sw.defined() ? sw.data() : nullptr;
                         if (needs[0]) {
                             r[0] = Tensor<T>::empty(xhat.shape());
                             T* pd = r[0].data();
                             parallel_for(rows, C * 4, [&](int64_t r0, int64_t r1) {
                                 for (int64_t i = r0; i < r1; ++i) {
                                     acc_t<T> m1 = 0, m2 = 0;
                                     for (int64_t j = 0; j < C; ++j) {
                                         const T d = pw ? pg[i * C + j] * pw[j] : pg[i * C + j];
                                         m1 += d;
                                         m2 += static_cast<acc_t<T>>(d) * ph[i * C + j];
                                     }
                                     const T a = static_cast<T>(m1 / C), b = static_cast<T>(m2 / C);
                                     for (int64_t j = 0; j < C; ++j) {
                                         const T d = pw ? pg[i * C + j] * pw[j] : pg[i * C + j];
                                         pd[i * C + j] = pr[i] * (d - a - ph[i * C + j] * b);
                                     }
                                 }
                             });
                         }
                         if (needs[1]) {
                             const Tensor<T> gh = detail::map_binary(gc, xhat, "layer_norm backward",
                                                                     [](T p, T q) { return p * q; });
                             r[1] = detail::sum_to(gh, {C});
                         }
                         if (needs[2]) r[2] = detail::sum_to(gc, {C});
                         return r;
                     });
}

}  // namespace coeffnet
