// coeffnet/ops/reduce.hpp: sum and mean over all elements or over chosen axes; max/min and
// argmax/argmin along one axis; isclose/allclose.
//
// Sums of float accumulate in double. The backward broadcasts the gradient back (expand of
// the kept-dims gradient), so it costs one pass over the input's size.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

inline std::vector<bool> axes_mask(const Shape& axes, int64_t rank, const char* op) {
    std::vector<bool> mask(static_cast<size_t>(rank), false);
    for (int64_t a : axes) {
        if (rank == 0) {  // a scalar has one implicit axis, as in PyTorch
            normalize_axis(a, rank, op);
            continue;
        }
        const int64_t n = normalize_axis(a, rank, op);
        check(!mask[static_cast<size_t>(n)], op, ": axis ", a, " given twice");
        mask[static_cast<size_t>(n)] = true;
    }
    return mask;
}

template <class T>
Tensor<T> reduce_sum(const Tensor<T>& x, const std::vector<bool>& mask, bool keepdim, double factor, const char* name) {
    Tensor<T> kept = sum_keepdim(x, mask, factor);
    Shape out_shape;
    for (size_t i = 0; i < mask.size(); ++i)
        if (!mask[i] || keepdim) out_shape.push_back(kept.shape()[i]);
    Tensor<T> out = view_of(kept, out_shape, contiguous_strides(out_shape), 0);
    const Shape in_shape = x.shape(), keep_shape = kept.shape();
    return record<T>(out, name, {x}, [in_shape, keep_shape, factor](const Tensor<T>& g, const std::vector<bool>&) {
        Tensor<T> gk = g.reshape(keep_shape).expand(in_shape);
        Tensor<T> r = factor == 1.0 ? contiguous_copy(gk) : unary(backend::UnaryOp::scale_double, gk, factor);
        return std::vector<Tensor<T>>{r};
    });
}

}  // namespace detail

// Sum over every element: a scalar (shape []).
template <class T>
Tensor<T> sum(const Tensor<T>& x) {
    return detail::reduce_sum(x, std::vector<bool>(static_cast<size_t>(x.dim()), true), false, 1.0, "sum");
}

template <class T>
Tensor<T> sum(const Tensor<T>& x, const Shape& axes, bool keepdim = false) {
    return detail::reduce_sum(x, detail::axes_mask(axes, x.dim(), "sum"), keepdim, 1.0, "sum");
}

template <class T>
Tensor<T> mean(const Tensor<T>& x) {
    check(x.numel() > 0, "mean: empty tensor of shape ", shape_str(x.shape()));
    return detail::reduce_sum(x, std::vector<bool>(static_cast<size_t>(x.dim()), true), false,
                              1.0 / static_cast<double>(x.numel()), "mean");
}

template <class T>
Tensor<T> mean(const Tensor<T>& x, const Shape& axes, bool keepdim = false) {
    const auto mask = detail::axes_mask(axes, x.dim(), "mean");
    int64_t count = 1;
    for (size_t i = 0; i < mask.size(); ++i)
        if (mask[i]) count *= x.shape()[i];
    check(count > 0, "mean: reducing over an empty axis of shape ", shape_str(x.shape()));
    return detail::reduce_sum(x, mask, keepdim, 1.0 / static_cast<double>(count), "mean");
}

// ---- max / min / argmax / argmin along one axis ----------------------------------------------
//
// Like torch.max(x, dim, keepdim) / torch.argmax: the index is of type int64. Ties go to the
// first index along the axis; a NaN counts as larger (max) or smaller (min) than every number,
// so a slice holding a NaN yields its first NaN, as PyTorch does. The values' gradient goes to
// the chosen element only (the first of tied maxima), like PyTorch's CPU max(dim) backward.

template <class T>
struct ValuesIndices {
    Tensor<T> values;
    Tensor<int64_t> indices;
};

namespace detail {

// The extreme element of every slice of x along `axis`: its index along the axis, in the order
// of the output (shape out_shape), and x made contiguous as [outer, n, inner] for the caller.
template <class T>
struct Extremes {
    Tensor<T> xc;
    Shape out_shape;
    int64_t outer = 1, n = 1, inner = 1;
    std::vector<int64_t> idx;
};

template <class T>
Extremes<T> extreme_indices(const Tensor<T>& x, int64_t axis, bool keepdim, bool want_max, const char* op) {
    check(x.defined(), op, ": undefined operand");
    Extremes<T> e;
    const int64_t rank = x.dim();
    const int64_t a = normalize_axis(axis, rank, op);
    const Shape& s = x.shape();
    e.n = rank == 0 ? 1 : s[static_cast<size_t>(a)];
    check(e.n > 0, op, ": axis ", axis, " of shape ", shape_str(s), " is empty (no maximum or minimum to take)");
    for (int64_t d = 0; d < rank; ++d) {
        if (d < a) e.outer *= s[static_cast<size_t>(d)];
        if (d > a) e.inner *= s[static_cast<size_t>(d)];
    }
    for (int64_t d = 0; d < rank; ++d)
        if (d != a || keepdim) e.out_shape.push_back(d == a ? 1 : s[static_cast<size_t>(d)]);
    e.xc = as_contiguous(x);
    const T* p = e.xc.data();
    e.idx.resize(static_cast<size_t>(e.outer * e.inner));
    const int64_t N = e.n, I = e.inner;
    int64_t* idx = e.idx.data();
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
    return e;
}

template <class T>
ValuesIndices<T> max_min(const Tensor<T>& x, int64_t axis, bool keepdim, bool want_max, const char* op) {
    const Extremes<T> e = extreme_indices(x, axis, keepdim, want_max, op);
    Tensor<T> values = Tensor<T>::empty(e.out_shape);
    const Tensor<int64_t> indices = Tensor<int64_t>::from(e.idx, e.out_shape);
    const int64_t n = e.n, inner = e.inner;
    for (int64_t k = 0; k < e.outer * inner; ++k)
        values.data()[k] = e.xc.data()[(k / inner) * n * inner + e.idx[static_cast<size_t>(k)] * inner + k % inner];
    const Shape in_shape = x.shape();
    values = record<T>(values, op, {x}, [idx = e.idx, in_shape, n, inner](const Tensor<T>& g, const std::vector<bool>&) {
        const Tensor<T> gc = as_contiguous(g);
        Tensor<T> dx = Tensor<T>::zeros(in_shape);
        for (size_t k = 0; k < idx.size(); ++k) {
            const int64_t kk = static_cast<int64_t>(k);
            dx.data()[(kk / inner) * n * inner + idx[k] * inner + kk % inner] += gc.data()[kk];
        }
        return std::vector<Tensor<T>>{dx};
    });
    return {values, indices};
}

template <class T>
Tensor<int64_t> arg_extreme(const Tensor<T>& x, int64_t axis, bool keepdim, bool want_max, const char* op) {
    const Extremes<T> e = extreme_indices(x, axis, keepdim, want_max, op);
    return Tensor<int64_t>::from(e.idx, e.out_shape);
}

}  // namespace detail

// The largest element along `axis` and its index: {values (differentiable), indices (int64)}.
template <class T>
ValuesIndices<T> max(const Tensor<T>& x, int64_t axis, bool keepdim = false) {
    return detail::max_min(x, axis, keepdim, true, "max");
}

template <class T>
ValuesIndices<T> min(const Tensor<T>& x, int64_t axis, bool keepdim = false) {
    return detail::max_min(x, axis, keepdim, false, "min");
}

// The index (int64) of the largest / smallest element along `axis`; ties: the first.
template <class T>
Tensor<int64_t> argmax(const Tensor<T>& x, int64_t axis, bool keepdim = false) {
    return detail::arg_extreme(x, axis, keepdim, true, "argmax");
}

template <class T>
Tensor<int64_t> argmin(const Tensor<T>& x, int64_t axis, bool keepdim = false) {
    return detail::arg_extreme(x, axis, keepdim, false, "argmin");
}

// ---- isclose / allclose ----------------------------------------------------------------------
//
// torch.isclose with equal_nan = false: |a - b| <= atol + rtol * |b| elementwise (not symmetric
// in a and b, like PyTorch), with NumPy broadcasting. A NaN is close to nothing, itself
// included; infinities are close only to an equal infinity. isclose returns 1/0 as uint8;
// allclose says whether every element is close. Not differentiable (no history).
template <class T>
Tensor<uint8_t> isclose(const Tensor<T>& a, const Tensor<T>& b, double rtol = 1e-5, double atol = 1e-8) {
    check(a.defined() && b.defined(), "isclose: undefined operand");
    check(rtol >= 0 && atol >= 0, "isclose: rtol and atol must be >= 0, got rtol ", rtol, " and atol ", atol);
    const Shape shape = broadcast_shapes(a.shape(), b.shape(), "isclose");
    const std::vector<T> va = a.detach().expand(shape).to_vector();
    const std::vector<T> vb = b.detach().expand(shape).to_vector();
    Tensor<uint8_t> out = Tensor<uint8_t>::empty(shape);
    for (size_t i = 0; i < va.size(); ++i) {
        const double x = static_cast<double>(va[i]), y = static_cast<double>(vb[i]);
        bool close;
        if (std::isnan(x) || std::isnan(y)) close = false;
        else if (x == y) close = true;  // equal infinities too
        else if (std::isinf(x) || std::isinf(y)) close = false;
        else close = std::abs(x - y) <= atol + rtol * std::abs(y);
        out.data()[i] = close ? 1 : 0;
    }
    return out;
}

template <class T>
bool allclose(const Tensor<T>& a, const Tensor<T>& b, double rtol = 1e-5, double atol = 1e-8) {
    const Tensor<uint8_t> c = isclose(a, b, rtol, atol);
    const uint8_t* p = c.data();
    for (int64_t i = 0; i < c.numel(); ++i)
        if (!p[i]) return false;
    return true;
}

}  // namespace coeffnet
