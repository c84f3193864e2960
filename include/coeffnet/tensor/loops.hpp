// coeffnet/tensor/loops.hpp: the raw operations views and ops share (no autograd here): copies,
// sums and pointwise maps, each through the backend table of its tensors' device.
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

}  // namespace coeffnet::detail

#endif  // COEFFNET_TENSOR_LOOPS_HPP
