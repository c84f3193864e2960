// coeffnet/tensor/loops.hpp: the raw operations views and ops share (no autograd here): copies,
// sums and pointwise maps through the backend table, and two CPU-only lambda maps.
// Part of tensor.hpp, which includes this file at its end; included alone, it includes tensor.hpp.
#include "tensor.hpp"
#ifndef COEFFNET_TENSOR_LOOPS_HPP
#define COEFFNET_TENSOR_LOOPS_HPP

namespace coeffnet::detail {

// A fresh contiguous copy of x, whatever its strides, on x's device.
template <class T>
Tensor<T> contiguous_copy(const Tensor<T>& x) {
    Tensor<T> out = Tensor<T>::empty(x.shape(), x.device());
    backend::memory(x.device()).copy(sizeof(T), raw_view(out), raw_view(x));
    return out;
}

template <class T>
Tensor<T> as_contiguous(const Tensor<T>& x) {
    return x.is_contiguous() ? x.detach() : contiguous_copy(x);
}

// Sums x over the axes where reduce[axis] is true, times `factor` (see Ops::sum); the result
// keeps those axes with size 1. Sums accumulate in acc_t<T> (double for float).
template <class T>
Tensor<T> sum_keepdim(const Tensor<T>& x, const std::vector<bool>& reduce, double factor = 1.0) {
    Shape out_shape = x.shape();
    for (size_t i = 0; i < out_shape.size(); ++i)
        if (reduce[i]) out_shape[i] = 1;
    Tensor<T> out = Tensor<T>::empty(out_shape, x.device());
    backend::ops<T>(x.device()).sum(out, x, reduce, factor);
    return out;
}

// f_op(x; c), elementwise on x's device (no autograd).
template <class T>
Tensor<T> unary(backend::UnaryOp op, const Tensor<T>& x, double c = 0.0) {
    Tensor<T> out = Tensor<T>::empty(x.shape(), x.device());
    backend::ops<T>(x.device()).unary(op, out, x, c);
    return out;
}

// a op b with NumPy broadcasting, on the operands' device (no autograd).
template <class T>
Tensor<T> binary(backend::BinaryOp op, const Tensor<T>& a, const Tensor<T>& b, const char* name) {
    const Device dev = same_device(name, a, b);
    Tensor<T> out = Tensor<T>::empty(broadcast_shapes(a.shape(), b.shape(), name), dev);
    backend::ops<T>(dev).binary(op, out, a, b);
    return out;
}

// Sums a broadcast gradient back to `shape` (the inverse of broadcasting `shape` to g's shape).
template <class T>
Tensor<T> sum_to(const Tensor<T>& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    const Shape& gs = g.shape();
    check(gs.size() >= shape.size(), "sum_to: cannot reduce ", shape_str(gs), " to ", shape_str(shape));
    const size_t lead = gs.size() - shape.size();
    std::vector<bool> reduce(gs.size(), false);
    for (size_t i = 0; i < gs.size(); ++i) {
        if (i < lead) reduce[i] = true;
        else if (shape[i - lead] == 1 && gs[i] != 1) reduce[i] = true;
        else check(shape[i - lead] == gs[i], "sum_to: cannot reduce ", shape_str(gs), " to ", shape_str(shape));
    }
    Tensor<T> s = sum_keepdim(g, reduce);
    return make_tensor<T>(s.storage(), shape, contiguous_strides(shape), 0);
}

// CPU loops for code not yet in the backend table: a same-shaped tensor whose elements are f(x)
// for contiguous or strided x.
template <class T, class F>
Tensor<T> map_unary(const Tensor<T>& x, F&& f) {
    const Tensor<T> xc = as_contiguous(x);
    Tensor<T> out = Tensor<T>::empty(x.shape());
    const T* s = xc.data();
    T* d = out.data();
    parallel_for(out.numel(), 8, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = f(s[i]);
    });
    return out;
}

// out[i] = f(a[i], b[i]) with NumPy broadcasting of a and b.
template <class T, class F>
Tensor<T> map_binary(const Tensor<T>& a, const Tensor<T>& b, const char* op, F&& f) {
    const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
    Tensor<T> out = Tensor<T>::empty(shape);
    T* d = out.data();
    const T* pa = a.data();
    const T* pb = b.data();
    if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
        parallel_for(out.numel(), 4, [&](int64_t lo, int64_t hi) {
            for (int64_t i = lo; i < hi; ++i) d[i] = f(pa[i], pb[i]);
        });
        return out;
    }
    const Shape cs = contiguous_strides(shape);
    const Shape sa = broadcast_strides(a.shape(), a.strides(), shape);
    const Shape sb = broadcast_strides(b.shape(), b.strides(), shape);
    for_each_row<3>(shape, {&cs, &sa, &sb},
                    [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& in) {
                        for (int64_t j = 0; j < len; ++j)
                            d[off[0] + j] = f(pa[off[1] + j * in[1]], pb[off[2] + j * in[2]]);
                    });
    return out;
}

}  // namespace coeffnet::detail

#endif  // COEFFNET_TENSOR_LOOPS_HPP
