// coeffnet/ops/softmax.hpp: softmax (with an additive mask), log-softmax and cross-entropy.
//
// All over the last axis, max-subtracted so logits of +-1e4 stay finite, with the row sums
// accumulated in double for float; softmax's exp is vmath::exp, which vectorises. A row whose
// every entry is masked to -inf gives zeros (not NaN): an all-padding query attends to nothing.
// The mask is a constant: no gradient flows into it.
#pragma once

#include <cmath>
#include <limits>

#include "../core/vmath.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

// y[row] = softmax(x[row] + mask[row]); mask may be undefined.
template <class T>
Tensor<T> softmax_raw(const Tensor<T>& x, const Tensor<T>& mask, const char* op) {
    check(x.dim() >= 1, op, ": expects rank >= 1, got a scalar");
    if (mask.defined())
        check(broadcasts_to(mask.shape(), x.shape()), op, ": mask ", shape_str(mask.shape()),
              " does not broadcast to the input ", shape_str(x.shape()));
    const Tensor<T> xc = as_contiguous(x);
    Tensor<T> y = Tensor<T>::empty(x.shape());
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
                        for (int64_t j = 0; j < n; ++j) {
                            out[j] = pm ? row[j] + pm[off[1] + j * in[1]] : row[j];
                            mx = std::max(mx, out[j]);
                        }
                        if (mx == -std::numeric_limits<T>::infinity()) {
                            std::fill_n(out, n, T(0));
                            return;
                        }
                        for (int64_t j = 0; j < n; ++j) out[j] = vmath::exp(out[j] - mx);
                        acc_t<T> s = 0;
                        for (int64_t j = 0; j < n; ++j) s += out[j];
                        const T inv = static_cast<T>(1.0 / s);
                        for (int64_t j = 0; j < n; ++j) out[j] *= inv;
                    });
    return y;
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

}  // namespace detail

// The softmax backward on values, outside autograd: dx = y * (g - rowsum(g * y)) over the last axis,
// from the softmax output y and the upstream gradient g.
template <class T>
Tensor<T> softmax_backward(const Tensor<T>& y, const Tensor<T>& g) {
    const Tensor<T> gc = detail::as_contiguous(g);
    Tensor<T> dx = Tensor<T>::empty(y.shape());
    const int64_t n = y.shape().back(), rows = y.numel() / std::max<int64_t>(n, 1);
    const T *py = y.data(), *pg = gc.data();
    T* pd = dx.data();
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T *yr = py + r * n, *gr = pg + r * n;
            acc_t<T> dot = 0;
            for (int64_t j = 0; j < n; ++j) dot += static_cast<acc_t<T>>(gr[j]) * yr[j];
            const T d = static_cast<T>(dot);
            for (int64_t j = 0; j < n; ++j) pd[r * n + j] = yr[j] * (gr[j] - d);
        }
    });
    return dx;
}

// softmax over the last axis of x + mask (mask broadcastable to x, e.g. [B, 1, 1, N]).
template <class T>
Tensor<T> softmax(const Tensor<T>& x, const Tensor<T>& mask = Tensor<T>()) {
    check(x.defined(), "softmax: undefined input");
    Tensor<T> y = detail::softmax_raw(x, mask, "softmax");
    const Tensor<T> sy = y.detach();
    return record<T>(y, "softmax", {x}, [sy](const Tensor<T>& g, const std::vector<bool>&) {
        return std::vector<Tensor<T>>{softmax_backward(sy, g)};
    });
}

template <class T>
Tensor<T> log_softmax(const Tensor<T>& x) {
    check(x.defined() && x.dim() >= 1, "log_softmax: expects a defined tensor of rank >= 1");
    const Tensor<T> xc = detail::as_contiguous(x);
    Tensor<T> y = Tensor<T>::empty(x.shape());
    const int64_t n = x.shape().back(), rows = x.numel() / std::max<int64_t>(n, 1);
    const T* px = xc.data();
    T* py = y.data();
    parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * n;
            const T lse = static_cast<T>(detail::row_logsumexp(row, n));
            for (int64_t j = 0; j < n; ++j) py[r * n + j] = row[j] - lse;
        }
    });
    const Tensor<T> sy = y.detach();
    return record<T>(y, "log_softmax", {x}, [sy, n, rows](const Tensor<T>& g, const std::vector<bool>&) {
        const Tensor<T> gc = detail::as_contiguous(g);
        Tensor<T> dx = Tensor<T>::empty(sy.shape());
        const T *py = sy.data(), *pg = gc.data();
        T* pd = dx.data();
        parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                acc_t<T> s = 0;
                for (int64_t j = 0; j < n; ++j) s += pg[r * n + j];
                for (int64_t j = 0; j < n; ++j)
                    pd[r * n + j] = pg[r * n + j] - std::exp(py[r * n + j]) * static_cast<T>(s);
            }
        });
        return std::vector<Tensor<T>>{dx};
    });
}

enum class Reduction { mean, sum };

// Cross-entropy of logits [..., C] against class indices [...] (PyTorch's F.cross_entropy).
// Targets equal to ignore_index contribute nothing; the mean is over the other targets
// (NaN when every target is ignored, as in PyTorch).
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<int64_t>& targets, int64_t ignore_index = -100,
                        Reduction reduction = Reduction::mean) {
    check(logits.defined() && targets.defined(), "cross_entropy: undefined operand");
    check(logits.dim() >= 1, "cross_entropy: logits must have a class axis, got a scalar");
    const Shape expect(logits.shape().begin(), logits.shape().end() - 1);
    check(targets.shape() == expect, "cross_entropy: targets ", shape_str(targets.shape()), " do not match logits ",
          shape_str(logits.shape()), " (expected ", shape_str(expect), ")");
    const int64_t C = logits.shape().back(), rows = targets.numel();
    const std::vector<int64_t> tv = targets.to_vector();
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = tv[static_cast<size_t>(r)];
        if (t == ignore_index) continue;
        check(t >= 0 && t < C, "cross_entropy: target ", t, " at position ", r, " is out of range for ", C, " classes");
        ++count;
    }
    const Tensor<T> xc = detail::as_contiguous(logits);
    Tensor<T> probs = Tensor<T>::empty(logits.shape());
    const T* px = xc.data();
    T* pp = probs.data();
    std::vector<acc_t<T>> row_loss(static_cast<size_t>(rows), 0);
    parallel_for(rows, C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* row = px + r * C;
            const acc_t<T> lse = detail::row_logsumexp(row, C);
            for (int64_t j = 0; j < C; ++j) pp[r * C + j] = static_cast<T>(std::exp(row[j] - lse));
            const int64_t t = tv[static_cast<size_t>(r)];
            if (t != ignore_index) row_loss[static_cast<size_t>(r)] = lse - row[t];
        }
    });
    acc_t<T> total = 0;
    for (auto v : row_loss) total += v;
    const double denom = reduction == Reduction::mean ? static_cast<double>(count) : 1.0;
    Tensor<T> out = Tensor<T>::scalar(static_cast<T>(static_cast<double>(total) / denom));
    return record<T>(out, "cross_entropy", {logits},
                     [probs, tv, ignore_index, C, rows, denom](const Tensor<T>& g, const std::vector<bool>&) {
                         Tensor<T> dx = Tensor<T>::zeros(probs.shape());
                         const T scale_g = denom > 0 ? static_cast<T>(g.item() / denom) : T(0);
                         const T* pp = probs.data();
                         T* pd = dx.data();
                         for (int64_t r = 0; r < rows; ++r) {
                             const int64_t t = tv[static_cast<size_t>(r)];
                             if (t == ignore_index) continue;
                             for (int64_t j = 0; j < C; ++j) pd[r * C + j] = pp[r * C + j] * scale_g;
                             pd[r * C + t] -= scale_g;
                         }
                         return std::vector<Tensor<T>>{dx};
                     });
}

}  // namespace coeffnet
