// coeffnet/tensor/loops.hpp: raw CPU loops shared by views and ops (no autograd here).
// Part of tensor.hpp, which includes this file at its end; included alone, it includes tensor.hpp.
#include "tensor.hpp"
#ifndef COEFFNET_TENSOR_LOOPS_HPP
#define COEFFNET_TENSOR_LOOPS_HPP

namespace coeffnet::detail {

// A fresh contiguous copy of x, whatever its strides.
template <class T>
Tensor<T> contiguous_copy(const Tensor<T>& x) {
    Tensor<T> out = Tensor<T>::empty(x.shape());
    T* d = out.data();
    const T* s = x.data();
    const Shape cs = contiguous_strides(x.shape());
    for_each_row<2>(x.shape(), {&cs, &x.strides()},
                    [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& inner) {
                        if (inner[1] == 1) std::copy_n(s + off[1], len, d + off[0]);
                        else for (int64_t j = 0; j < len; ++j) d[off[0] + j] = s[off[1] + j * inner[1]];
                    });
    return out;
}

template <class T>
Tensor<T> as_contiguous(const Tensor<T>& x) {
    return x.is_contiguous() ? x.detach() : contiguous_copy(x);
}

// Sums x over the axes where reduce[axis] is true; the result keeps those axes with size 1.
// Sums accumulate in acc_t<T> (double for float).
template <class T>
Tensor<T> sum_keepdim(const Tensor<T>& x, const std::vector<bool>& reduce) {
    using A = acc_t<T>;
    const Shape& s = x.shape();
    const size_t r = s.size();
    Shape out_shape = s;
    for (size_t i = 0; i < r; ++i)
        if (reduce[i]) out_shape[i] = 1;
    Tensor<T> out = Tensor<T>::empty(out_shape);
    if (out.numel() == 0) return out;
    // Split the axes into a kept block and a reduced block: if the reduced axes are a
    // suffix (rows) or a prefix (columns) of a contiguous x, no reordering copy is needed.
    size_t first_reduced = r, last_kept = 0;
    bool any_kept = false;
    for (size_t i = 0; i < r; ++i) {
        if (reduce[i] && s[i] != 1) first_reduced = std::min(first_reduced, i);
        if (!reduce[i] && s[i] != 1) {
            last_kept = i;
            any_kept = true;
        }
    }
    const bool suffix = !any_kept || first_reduced > last_kept;
    size_t last_reduced = 0, first_kept = r;
    bool any_reduced = false;
    for (size_t i = 0; i < r; ++i) {
        if (reduce[i] && s[i] != 1) {
            last_reduced = i;
            any_reduced = true;
        }
        if (!reduce[i] && s[i] != 1) first_kept = std::min(first_kept, i);
    }
    const bool prefix = !any_reduced || last_reduced < first_kept;
    const int64_t kept = out.numel();
    const int64_t red = kept == 0 ? 0 : x.numel() / kept;
    T* o = out.data();

    if (prefix && !suffix) {  // columns: out[c] = sum_r x[r, c]
        const Tensor<T> xc = as_contiguous(x);
        const T* p = xc.data();
        parallel_for(kept, red, [&](int64_t c0, int64_t c1) {
            std::vector<A> acc(static_cast<size_t>(c1 - c0), A(0));
            for (int64_t row = 0; row < red; ++row) {
                const T* src = p + row * kept;
                for (int64_t c = c0; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += static_cast<A>(src[c]);
            }
            for (int64_t c = c0; c < c1; ++c) o[c] = static_cast<T>(acc[static_cast<size_t>(c - c0)]);
        });
        return out;
    }
    Tensor<T> xc;
    if (suffix) {
        xc = as_contiguous(x);
    } else {  // move the reduced axes last, then sum rows
        Shape order;
        for (size_t i = 0; i < r; ++i)
            if (!reduce[i]) order.push_back(static_cast<int64_t>(i));
        for (size_t i = 0; i < r; ++i)
            if (reduce[i]) order.push_back(static_cast<int64_t>(i));
        Shape ps(r), pst(r);
        for (size_t i = 0; i < r; ++i) {
            ps[i] = s[static_cast<size_t>(order[i])];
            pst[i] = x.strides()[static_cast<size_t>(order[i])];
        }
        xc = contiguous_copy(make_tensor<T>(x.impl()->data, x.impl()->capacity, ps, pst, x.offset()));
    }
    const T* p = xc.data();
    parallel_for(kept, red, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
            A acc(0);
            const T* src = p + k * red;
            for (int64_t j = 0; j < red; ++j) acc += static_cast<A>(src[j]);
            o[k] = static_cast<T>(acc);
        }
    });
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
    return make_tensor<T>(s.impl()->data, s.impl()->capacity, shape, contiguous_strides(shape), 0);
}

// A same-shaped tensor whose elements are f(x) for contiguous or strided x.
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
