// coeffnet/backend/cpu_misc.hpp: the CPU loops of the misc primitives (backend/backend.hpp's
// "dropout masks, embedding, max/min along an axis" and "optimiser steps" sections): dropout masks
// from Philox, embedding's gather and scatter-add, max/min with indices along an axis and its
// gradient scatter, isclose, the SGD and AdamW updates, and clipping's sum of squares. CpuOps<T>
// (backend/cpu.hpp) forwards to these. Part of tensor.hpp through cpu.hpp; included alone, it
// includes tensor.hpp.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_BACKEND_CPU_MISC_HPP
#define COEFFNET_BACKEND_CPU_MISC_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace coeffnet::backend::cpu_impl {

// ---- dropout masks, embedding, max/min along an axis ----

template <class T>
void dropout_mask(const Tensor<T>& out, uint64_t seed, uint64_t first, double p) {
    const int64_t n = out.numel();
    const T keep = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const float pf = static_cast<float>(p);
    T* pm = out.data();
    parallel_for((n + 3) / 4, 64, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const Philox4 w = philox_block(seed, first + static_cast<uint64_t>(b));
            for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j)
                pm[b * 4 + j] = uniform_from_bits(w[static_cast<size_t>(j)]) >= pf ? keep : T(0);
        }
    });
}

template <class T>
void embedding(const Tensor<T>& out, const Tensor<int64_t>& indices, const Tensor<T>& weight) {
    const int64_t D = weight.shape()[1];
    const Tensor<int64_t> ic = detail::as_contiguous(indices);
    const int64_t* idx = ic.data();
    const Tensor<T> wc = detail::as_contiguous(weight);
    const T* pw = wc.data();
    T* po = out.data();
    const int64_t n = ic.numel();
    parallel_for(n, D, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) std::copy_n(pw + idx[i] * D, D, po + i * D);
    });
}

template <class T>
void embedding_backward(const Tensor<T>& dw, const Tensor<int64_t>& indices, const Tensor<T>& g) {
    const int64_t D = dw.shape()[1];
    const Tensor<int64_t> ic = detail::as_contiguous(indices);
    const int64_t* idx = ic.data();
    const int64_t n = ic.numel();
    const Tensor<T> gc = detail::as_contiguous(g);
    const T* pg = gc.data();
    T* pd = dw.data();
    // Sequential over indices (repeated indices add into the same row), parallel over D.
    parallel_for(D, n, [&](int64_t c0, int64_t c1) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t c = c0; c < c1; ++c) pd[idx[i] * D + c] += pg[i * D + c];
    });
}

// x of shape `s` seen as [outer, n, inner] around axis `a` (a scalar: [1, 1, 1]).
struct AxisExtents {
    int64_t outer = 1, n = 1, inner = 1;
};

inline AxisExtents axis_extents(const Shape& s, int64_t a) {
    AxisExtents e;
    const auto rank = static_cast<int64_t>(s.size());
    e.n = rank == 0 ? 1 : s[static_cast<size_t>(a)];
    for (int64_t d = 0; d < rank; ++d) {
        if (d < a) e.outer *= s[static_cast<size_t>(d)];
        if (d > a) e.inner *= s[static_cast<size_t>(d)];
    }
    return e;
}

template <class T>
void max_min(const Tensor<T>& values, const Tensor<int64_t>& indices, const Tensor<T>& x, int64_t axis,
             bool want_max) {
    const AxisExtents e = axis_extents(x.shape(), axis);
    const Tensor<T> xc = detail::as_contiguous(x);
    const T* p = xc.data();
    const int64_t N = e.n, I = e.inner;
    int64_t* idx = indices.data();
    parallel_for(e.outer * e.inner, N, [&](int64_t b, int64_t end) {
        for (int64_t k = b; k < end; ++k) {
            const T* src = p + (k / I) * N * I + k % I;
            int64_t best = 0;
            T bv = src[0];
            for (int64_t j = 1; j < N; ++j) {
                const T v = src[j * I];
                if (std::isnan(static_cast<double>(bv))) break;
                const bool better = std::isnan(static_cast<double>(v)) || (want_max ? v > bv : v < bv);
                if (better) {
                    bv = v;
                    best = j;
                }
            }
            idx[k] = best;
        }
    });
    if (!values.defined()) return;
    T* pv = values.data();
    for (int64_t k = 0; k < e.outer * I; ++k) pv[k] = p[(k / I) * N * I + idx[k] * I + k % I];
}

template <class T>
void max_min_backward(const Tensor<T>& dx, const Tensor<int64_t>& indices, const Tensor<T>& g, int64_t axis) {
    const AxisExtents e = axis_extents(dx.shape(), axis);
    const int64_t n = e.n, inner = e.inner;
    const Tensor<T> gc = detail::as_contiguous(g);
    const Tensor<int64_t> ic = detail::as_contiguous(indices);
    const int64_t* idx = ic.data();
    T* pd = dx.data();
    const T* pg = gc.data();
    for (int64_t k = 0; k < e.outer * inner; ++k) pd[(k / inner) * n * inner + idx[k] * inner + k % inner] += pg[k];
}

template <class T>
void isclose(const Tensor<uint8_t>& out, const Tensor<T>& a, const Tensor<T>& b, double rtol, double atol) {
    const Shape& shape = out.shape();
    uint8_t* d = out.data();
    const T* pa = a.data();
    const T* pb = b.data();
    const Shape sa = broadcast_strides(a.shape(), a.strides(), shape);
    const Shape sb = broadcast_strides(b.shape(), b.strides(), shape);
    for_each_row<3>(shape, {&out.strides(), &sa, &sb},
                    [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& in) {
                        for (int64_t j = 0; j < len; ++j) {
                            const double x = static_cast<double>(pa[off[1] + j * in[1]]);
                            const double y = static_cast<double>(pb[off[2] + j * in[2]]);
                            bool close;
                            if (std::isnan(x) || std::isnan(y)) close = false;
                            else if (x == y) close = true;  // equal infinities too
                            else if (std::isinf(x) || std::isinf(y)) close = false;
                            else close = std::abs(x - y) <= atol + rtol * std::abs(y);
                            d[off[0] + j * in[0]] = close ? 1 : 0;
                        }
                    });
}

// ---- optimiser steps ----

template <class T>
void sgd_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& buf, T lr, T wd, T mu, T damp,
              bool first, bool nesterov) {
    T* w = param.data();
    const T* d = grad.data();
    T* pb = buf.defined() ? buf.data() : nullptr;
    for (int64_t i = 0; i < param.numel(); ++i) {
        T step = d[i] + wd * w[i];
        if (pb) {
            pb[i] = first ? step : mu * pb[i] + damp * step;
            step = nesterov ? step + mu * pb[i] : pb[i];
        }
        w[i] -= lr * step;
    }
}

template <class T>
void adamw_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& exp_avg, const Tensor<T>& exp_avg_sq,
                T decay, T b1, T b2, T step_size, T bc2_sqrt, T eps) {
    T *w = param.data(), *m = exp_avg.data(), *v = exp_avg_sq.data();
    const T* d = grad.data();
    parallel_for(param.numel(), 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            w[i] *= decay;
            m[i] = b1 * m[i] + (T(1) - b1) * d[i];
            v[i] = b2 * v[i] + (T(1) - b2) * d[i] * d[i];
            w[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
        }
    });
}

// Each square is rounded to double and then added, in order: the loop (its count known before it
// starts) vectorises the products, as the former loop over to_vector() did, and so is not
// contracted into FMAs, which would change the double sum's last bits.
template <class T>
void add_squares(const Tensor<double>& acc, const Tensor<T>& x) {
    const Tensor<T> xc = detail::as_contiguous(x);
    const T* p = xc.data();
    const int64_t n = xc.numel();
    double sq = *acc.data();
    for (int64_t i = 0; i < n; ++i) sq += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    *acc.data() = sq;
}

}  // namespace coeffnet::backend::cpu_impl

#endif  // COEFFNET_BACKEND_CPU_MISC_HPP
