// coeffnet/ops/reduce.hpp: sum and mean over all elements or over chosen axes; max/min and
// argmax/argmin along one axis; isclose/allclose.
//
// Sums of float accumulate in double. The backward broadcasts the gradient back (expand of
// the kept-dims gradient), so it costs one pass over the input's size. max/min (values, indices
// and the gradient's scatter) and isclose run in the backend table (Ops::max_min, isclose) on
// the input's device.
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

// Ops::max_min, or for element types the tables do not compute (max/argmax of an int64 tensor)
// the CPU's loop, on the CPU only.
template <class T>
void max_min_raw(const Tensor<T>& values, const Tensor<int64_t>& indices, const Tensor<T>& x, int64_t axis,
                 bool want_max, const char* op) {
    if constexpr (is_compute_type_v<T>) {
        backend::ops<T>(x.device()).max_min(values, indices, x, axis, want_max);
    } else {
        check(x.device().is_cpu(), op, ": ", dtype_name<T>(), " tensors are computed on the CPU only, this one is on ",
              x.device().str());
        backend::cpu_impl::max_min(values, indices, x, axis, want_max);
    }
}

// The output shape of a max/min along `axis` of x (checked, normalised into *a).
template <class T>
Shape extreme_shape(const Tensor<T>& x, int64_t axis, bool keepdim, const char* op, int64_t* a) {
    check(x.defined(), op, ": undefined operand");
    const int64_t rank = x.dim();
    *a = normalize_axis(axis, rank, op);
    const Shape& s = x.shape();
    const int64_t n = rank == 0 ? 1 : s[static_cast<size_t>(*a)];
    check(n > 0, op, ": axis ", axis, " of shape ", shape_str(s), " is empty (no maximum or minimum to take)");
    Shape out_shape;
    for (int64_t d = 0; d < rank; ++d)
        if (d != *a || keepdim) out_shape.push_back(d == *a ? 1 : s[static_cast<size_t>(d)]);
    return out_shape;
}

template <class T>
ValuesIndices<T> max_min(const Tensor<T>& x, int64_t axis, bool keepdim, bool want_max, const char* op) {
    int64_t a = 0;
    const Shape out_shape = extreme_shape(x, axis, keepdim, op, &a);
    const Device dev = x.device();
    Tensor<T> values = Tensor<T>::empty(out_shape, dev);
    const Tensor<int64_t> indices = Tensor<int64_t>::empty(out_shape, dev);
    max_min_raw(values, indices, x, a, want_max, op);
    if constexpr (is_compute_type_v<T>) {  // (other types have no gradients: max of an int64 tensor)
        const Shape in_shape = x.shape();
        // The backward's own copy of the indices (the caller may write to the returned ones).
        const Tensor<int64_t> idx = GradMode::enabled() && x.requires_grad() ? contiguous_copy(indices) : indices;
        values = record<T>(values, op, {x}, [idx, in_shape, a](const Tensor<T>& g, const std::vector<bool>&) {
            Tensor<T> dx = Tensor<T>::zeros(in_shape, idx.device());
            backend::ops<T>(idx.device()).max_min_backward(dx, idx, g, a);
            return std::vector<Tensor<T>>{dx};
        });
    }
    return {values, indices};
}

template <class T>
Tensor<int64_t> arg_extreme(const Tensor<T>& x, int64_t axis, bool keepdim, bool want_max, const char* op) {
    int64_t a = 0;
    const Shape out_shape = extreme_shape(x, axis, keepdim, op, &a);
    const Tensor<int64_t> indices = Tensor<int64_t>::empty(out_shape, x.device());
    max_min_raw(Tensor<T>(), indices, x, a, want_max, op);
    return indices;
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
    const Device dev = detail::same_device("isclose", a, b);
    Tensor<uint8_t> out = Tensor<uint8_t>::empty(shape, dev);
    backend::ops<T>(dev).isclose(out, a, b, rtol, atol);
    return out;
}

template <class T>
bool allclose(const Tensor<T>& a, const Tensor<T>& b, double rtol = 1e-5, double atol = 1e-8) {
    const Tensor<uint8_t> c = isclose(a, b, rtol, atol);
    const std::vector<uint8_t> v = c.to_vector();  // (a copy off the CPU)
    for (const uint8_t close : v)
        if (!close) return false;
    return true;
}

}  // namespace coeffnet
