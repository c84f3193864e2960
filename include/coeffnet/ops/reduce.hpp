// coeffnet/ops/reduce.hpp: sum and mean over all elements or over chosen axes.
//
// Sums of float accumulate in double. The backward broadcasts the gradient back (expand of
// the kept-dims gradient), so it costs one pass over the input's size.
#pragma once

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
    Tensor<T> kept = sum_keepdim(x, mask);
    if (factor != 1.0) {
        T* p = kept.data();
        for (int64_t i = 0; i < kept.numel(); ++i) p[i] = static_cast<T>(p[i] * factor);
    }
    Shape out_shape;
    for (size_t i = 0; i < mask.size(); ++i)
        if (!mask[i] || keepdim) out_shape.push_back(kept.shape()[i]);
    Tensor<T> out = view_of(kept, out_shape, contiguous_strides(out_shape), 0);
    const Shape in_shape = x.shape(), keep_shape = kept.shape();
    return record<T>(out, name, {x}, [in_shape, keep_shape, factor](const Tensor<T>& g, const std::vector<bool>&) {
        Tensor<T> gk = g.reshape(keep_shape).expand(in_shape);
        Tensor<T> r = factor == 1.0 ? contiguous_copy(gk)
                                    : map_unary(gk, [factor](T v) { return static_cast<T>(v * factor); });
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

}  // namespace coeffnet
