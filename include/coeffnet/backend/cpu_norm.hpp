// coeffnet/backend/cpu_norm.hpp: the CPU table's softmax, log-softmax, cross-entropy and layer
// norm loops (forward and backward), which CpuOps<T> (backend/cpu.hpp) forwards to. The ops that
// check shapes and record the backward are ops/softmax.hpp and ops/layernorm.hpp.
//
// All over the last axis, max-subtracted so logits of +-1e4 stay finite, with the row sums
// accumulated in acc_t<T> (double for float); softmax's exp is vmath::exp, which vectorises. Layer
// norm's statistics take two passes (mean, then centred variance), so a constant row gives exactly
// 0 variance. Outputs are contiguous (allocated by the op); inputs of any strides are made
// contiguous first where the loops need it.
// Part of cpu.hpp, which includes this file; included alone, it includes tensor.hpp.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_BACKEND_CPU_NORM_HPP
#define COEFFNET_BACKEND_CPU_NORM_HPP

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/vmath.hpp"

namespace coeffnet::backend::cpu_impl {

// y[row] = softmax(x[row] + mask[row]); mask may be undefined. A row whose every entry is -inf
// gives zeros (not NaN).
template <class T>
void softmax(const Tensor<T>& y, const Tensor<T>& x, const Tensor<T>& mask) {
    const Tensor<T> xc = coeffnet::detail::as_contiguous(x);
    const Shape cs = contiguous_strides(x.shape());
    const Shape ms = mask.defined() ? broadcast_strides(mask.shape(), mask.strides(), x.shape()) : Shape(cs.size(), 0);
    const T* px = xc.data();
    const T* pm = mask.defined() ? mask.data() : nullptr;
    T* py = y.data();
    for_each_row<2>(x.shape(), {&cs, &ms},
                    [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& in) {
                        const T* row = px + off[0];
                        T* out = py + off[0];
                        T mx = -std::numeric_limits<T>::infinity();
                        if (pm)
                            for (int64_t j = 0; j < n; ++j) out[j] = row[j] + pm[off[1] + j * in[1]];
                        else
                            std::copy_n(row, n, out);
                        COEFFNET_SIMD_REDUCE(max, mx)
                        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, out[j]);
                        if (mx == -std::numeric_limits<T>::infinity()) {
                            std::fill_n(out, n, T(0));
                            return;
                        }
                        for (int64_t j = 0; j < n; ++j) out[j] = vmath::exp(out[j] - mx);
                        acc_t<T> s = 0;
                        COEFFNET_SIMD_REDUCE(+, s)
                        for (int64_t j = 0; j < n; ++j) s += out[j];
                        const T inv = static_cast<T>(1.0 / s);
                        for (int64_t j = 0; j < n; ++j) out[j] *= inv;
                    });
}

// dx = y * (g - rowsum(g * y)) over the last axis.
template <class T>
void softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) {
    const Tensor<T> yc = coeffnet::detail::as_contiguous(y), gc = coeffnet::detail::as_contiguous(g);
    const int64_t n = y.shape().back(), rows = y.numel() / std::max<int64_t>(n, 1);
    const T *py = yc.data(), *pg = gc.data();
    T* pd = dx.data();
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T *yr = py + r * n, *gr = pg + r * n;
            acc_t<T> dot = 0;
            COEFFNET_SIMD_REDUCE(+, dot)
            for (int64_t j = 0; j < n; ++j) dot += static_cast<acc_t<T>>(gr[j]) * yr[j];
            const T d = static_cast<T>(dot);
            for (int64_t j = 0; j < n; ++j) pd[r * n + j] = yr[j] * (gr[j] - d);
        }
    });
}

// log(sum_j exp(row[j])), max-subtracted (finite for logits of +-1e4); -inf for an all -inf row.
template <class T>
acc_t<T> row_logsumexp(const T* row, int64_t n) {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
    if (mx == -std::numeric_limits<T>::infinity()) return mx;
    acc_t<T> s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<acc_t<T>>(row[j] - mx));
    return mx + std::log(s);
}

// y[row] = x[row] - logsumexp(x[row]).
template <class T>
void log_softmax(const Tensor<T>& y, const Tensor<T>& x) {
    const Tensor<T> xc = coeffnet::detail::as_contiguous(x);
    const int64_t n = x.shape().back(), rows = x.numel() / std::max<int64_t>(n, 1);
    const T* px = xc.data();
    T* py = y.data();
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * n;
            const T lse = static_cast<T>(row_logsumexp(row, n));
            for (int64_t j = 0; j < n; ++j) py[r * n + j] = row[j] - lse;
        }
    });
}

// dx = g - exp(y) * rowsum(g), y the log-softmax output.
template <class T>
void log_softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) {
    const Tensor<T> yc = coeffnet::detail::as_contiguous(y), gc = coeffnet::detail::as_contiguous(g);
    const int64_t n = y.shape().back(), rows = y.numel() / std::max<int64_t>(n, 1);
    const T *py = yc.data(), *pg = gc.data();
    T* pd = dx.data();
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            acc_t<T> s = 0;
            for (int64_t j = 0; j < n; ++j) s += pg[r * n + j];
            for (int64_t j = 0; j < n; ++j) pd[r * n + j] = pg[r * n + j] - std::exp(py[r * n + j]) * static_cast<T>(s);
        }
    });
}

// probs = softmax(logits) per row; loss (a scalar) = sum over the rows whose target is not
// ignore_index of (logsumexp - logits[target]), accumulated in row order, divided by denom.
template <class T>
void cross_entropy(const Tensor<T>& loss, const Tensor<T>& probs, const Tensor<T>& logits,
                   const Tensor<int64_t>& targets, int64_t ignore_index, double denom) {
    const int64_t C = logits.shape().back(), rows = targets.numel();
    const Tensor<int64_t> tc = coeffnet::detail::as_contiguous(targets);
    const int64_t* tv = tc.data();
    const Tensor<T> xc = coeffnet::detail::as_contiguous(logits);
    const T* px = xc.data();
    T* pp = probs.data();
    std::vector<acc_t<T>> row_loss(static_cast<size_t>(rows), 0);
    parallel_for(rows, C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * C;
            const acc_t<T> lse = row_logsumexp(row, C);
            for (int64_t j = 0; j < C; ++j) pp[r * C + j] = static_cast<T>(std::exp(row[j] - lse));
            const int64_t t = tv[r];
            if (t != ignore_index) row_loss[static_cast<size_t>(r)] = lse - row[t];
        }
    });
    acc_t<T> total = 0;
    for (auto v : row_loss) total += v;
    loss.data()[0] = static_cast<T>(static_cast<double>(total) / denom);
}

// dx = (probs - onehot(target)) * g / denom on the rows whose target is not ignore_index, zeros on
// the others; g is the scalar upstream gradient (the scale is 0 when denom is 0).
template <class T>
void cross_entropy_backward(const Tensor<T>& dx, const Tensor<T>& probs, const Tensor<int64_t>& targets,
                            const Tensor<T>& g, int64_t ignore_index, double denom) {
    const int64_t C = probs.shape().back(), rows = targets.numel();
    const Tensor<int64_t> tc = coeffnet::detail::as_contiguous(targets);
    const int64_t* tv = tc.data();
    const Tensor<T> pc = coeffnet::detail::as_contiguous(probs);
    const T scale_g = denom > 0 ? static_cast<T>(g.item() / denom) : T(0);
    const T* pp = pc.data();
    T* pd = dx.data();
    std::fill_n(pd, dx.numel(), T(0));
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = tv[r];
        if (t == ignore_index) continue;
        for (int64_t j = 0; j < C; ++j) pd[r * C + j] = pp[r * C + j] * scale_g;
        pd[r * C + t] -= scale_g;
    }
}

// y = xhat * weight + bias per row, xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps); weight
// and bias may be undefined.
template <class T>
void layer_norm(const Tensor<T>& y, const Tensor<T>& xhat, const Tensor<T>& rstd, const Tensor<T>& x,
                const Tensor<T>& weight, const Tensor<T>& bias, double eps) {
    const int64_t C = x.shape().back();
    const int64_t rows = C == 0 ? 0 : x.numel() / C;
    const Tensor<T> xc = coeffnet::detail::as_contiguous(x);
    const Tensor<T> wc = weight.defined() ? coeffnet::detail::as_contiguous(weight) : Tensor<T>();
    const Tensor<T> bc = bias.defined() ? coeffnet::detail::as_contiguous(bias) : Tensor<T>();
    const T* px = xc.data();
    const T* pw = wc.defined() ? wc.data() : nullptr;
    const T* pb = bc.defined() ? bc.data() : nullptr;
    T *py = y.data(), *ph = xhat.data(), *pr = rstd.data();
    parallel_for(rows, C * 3, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * C;
            acc_t<T> mu = 0, var = 0;
            COEFFNET_SIMD_REDUCE(+, mu)
            for (int64_t j = 0; j < C; ++j) mu += row[j];
            mu /= static_cast<acc_t<T>>(C);
            COEFFNET_SIMD_REDUCE(+, var)
            for (int64_t j = 0; j < C; ++j) {
                const acc_t<T> d = row[j] - mu;
                var += d * d;
            }
            var /= static_cast<acc_t<T>>(C);
            const acc_t<T> rs = 1.0 / std::sqrt(var + eps);
            pr[r] = static_cast<T>(rs);
            T *hr = ph + r * C, *yr = py + r * C;
            for (int64_t j = 0; j < C; ++j) hr[j] = static_cast<T>((row[j] - mu) * rs);
            if (pw && pb)
                for (int64_t j = 0; j < C; ++j) yr[j] = hr[j] * pw[j] + pb[j];
            else
                for (int64_t j = 0; j < C; ++j) yr[j] = (pw ? hr[j] * pw[j] : hr[j]) + (pb ? pb[j] : T(0));
        }
    });
}

// dx = rstd * (d - mean(d) - xhat * mean(d * xhat)) per row, d = g * weight (g where weight is
// undefined).
template <class T>
void layer_norm_backward(const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& xhat, const Tensor<T>& rstd,
                         const Tensor<T>& weight) {
    const int64_t C = xhat.shape().back();
    const int64_t rows = C == 0 ? 0 : xhat.numel() / C;
    const Tensor<T> gc = coeffnet::detail::as_contiguous(g), hc = coeffnet::detail::as_contiguous(xhat);
    const Tensor<T> wc = weight.defined() ? coeffnet::detail::as_contiguous(weight) : Tensor<T>();
    const T *pg = gc.data(), *ph = hc.data(), *pr = rstd.data();
    const T* pw = wc.defined() ? wc.data() : nullptr;
    T* pd = dx.data();
    parallel_for(rows, C * 4, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            acc_t<T> m1 = 0, m2 = 0;
            COEFFNET_SIMD_REDUCE(+, m1, m2)
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

}  // namespace coeffnet::backend::cpu_impl

#endif  // COEFFNET_BACKEND_CPU_NORM_HPP
