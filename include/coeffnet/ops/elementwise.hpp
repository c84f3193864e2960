// coeffnet/ops/elementwise.hpp: arithmetic with broadcasting, and pointwise functions.
//
// Binary ops broadcast like NumPy; the backward sums the gradient back over the broadcast
// axes (sum_to). Each op is an op code of the backend table (backend/backend.hpp), run on its
// inputs' device; the pointwise formulas, value and derivative, are in backend/pointwise.hpp.
#pragma once

#include <cmath>
#include <type_traits>

#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

// a op b; the backward of each operand is da(g, a, b) / db(g, a, b), summed back over the
// broadcast axes.
template <class T, class DA, class DB>
Tensor<T> binary_op(const Tensor<T>& a, const Tensor<T>& b, const char* name, backend::BinaryOp op, DA da, DB db) {
    check(a.defined() && b.defined(), name, ": undefined operand");
    Tensor<T> out = binary(op, a, b, name);
    const Tensor<T> sa = a.detach(), sb = b.detach();
    return record<T>(out, name, {a, b}, [sa, sb, da, db](const Tensor<T>& g, const std::vector<bool>& needs) {
        std::vector<Tensor<T>> r(2);
        if (needs[0]) r[0] = sum_to(da(g, sa, sb), sa.shape());
        if (needs[1]) r[1] = sum_to(db(g, sa, sb), sb.shape());
        return r;
    });
}

// y = f_op(x; c); the backward is the table's unary_backward, g * f_op'(x, y; c).
template <class T>
Tensor<T> unary_op(const Tensor<T>& x, const char* name, backend::UnaryOp op, double c = 0.0) {
    check(x.defined(), name, ": undefined operand");
    Tensor<T> y = unary(op, x, c);
    const Tensor<T> sx = x.detach(), sy = y.detach();
    return record<T>(y, name, {x}, [sx, sy, op, c](const Tensor<T>& g, const std::vector<bool>&) {
        Tensor<T> dx = Tensor<T>::empty(sx.shape(), sx.device());
        backend::ops<T>(sx.device()).unary_backward(op, dx, g, sx, sy, c);
        return std::vector<Tensor<T>>{dx};
    });
}

}  // namespace detail

// ---- arithmetic ---------------------------------------------------------------------------

template <class T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "add", backend::BinaryOp::add, [](const Tensor<T>& g, auto&, auto&) { return g; },
        [](const Tensor<T>& g, auto&, auto&) { return g; });
}

template <class T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "sub", backend::BinaryOp::sub, [](const Tensor<T>& g, auto&, auto&) { return g; },
        [](const Tensor<T>& g, auto&, auto&) { return detail::unary(backend::UnaryOp::neg, g); });
}

template <class T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "mul", backend::BinaryOp::mul,
        [](const Tensor<T>& g, auto&, const Tensor<T>& y) {
            return detail::binary(backend::BinaryOp::mul, g, y, "mul backward");
        },
        [](const Tensor<T>& g, const Tensor<T>& x, auto&) {
            return detail::binary(backend::BinaryOp::mul, g, x, "mul backward");
        });
}

template <class T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "div", backend::BinaryOp::div,
        [](const Tensor<T>& g, auto&, const Tensor<T>& y) {
            return detail::binary(backend::BinaryOp::div, g, y, "div backward");
        },
        [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
            // d(x/y)/dy = -x / y^2
            const Tensor<T> q = detail::binary(backend::BinaryOp::neg_div_square, x, y, "div backward");
            return detail::binary(backend::BinaryOp::mul, g, q, "div backward");
        });
}

template <class T>
Tensor<T> scale(const Tensor<T>& x, double s) {
    return detail::unary_op(x, "scale", backend::UnaryOp::scale, s);
}

template <class T>
Tensor<T> add_scalar(const Tensor<T>& x, double s) {
    return detail::unary_op(x, "add_scalar", backend::UnaryOp::add_scalar, s);
}

// s - x (torch.rsub(x, s)).
template <class T>
Tensor<T> rsub_scalar(const Tensor<T>& x, double s) {
    return detail::unary_op(x, "rsub_scalar", backend::UnaryOp::rsub_scalar, s);
}

// s / x.
template <class T>
Tensor<T> rdiv_scalar(const Tensor<T>& x, double s) {
    return detail::unary_op(x, "rdiv_scalar", backend::UnaryOp::rdiv_scalar, s);
}

template <class T>
Tensor<T> neg(const Tensor<T>& x) {
    return detail::unary_op(x, "neg", backend::UnaryOp::neg);
}

template <class T> Tensor<T> operator+(const Tensor<T>& a, const Tensor<T>& b) { return add(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, const Tensor<T>& b) { return sub(a, b); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, const Tensor<T>& b) { return mul(a, b); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, const Tensor<T>& b) { return div(a, b); }
template <class T> Tensor<T> operator-(const Tensor<T>& a) { return neg(a); }
template <class T> Tensor<T> operator*(const Tensor<T>& a, double s) { return scale(a, s); }
template <class T> Tensor<T> operator*(double s, const Tensor<T>& a) { return scale(a, s); }
template <class T> Tensor<T> operator/(const Tensor<T>& a, double s) { return scale(a, 1.0 / s); }
template <class T> Tensor<T> operator+(const Tensor<T>& a, double s) { return add_scalar(a, s); }
template <class T> Tensor<T> operator-(const Tensor<T>& a, double s) { return add_scalar(a, -s); }
template <class T> Tensor<T> operator+(double s, const Tensor<T>& a) { return add_scalar(a, s); }
template <class T> Tensor<T> operator-(double s, const Tensor<T>& a) { return rsub_scalar(a, s); }
template <class T> Tensor<T> operator/(double s, const Tensor<T>& a) { return rdiv_scalar(a, s); }

// ---- dtype cast inside a graph ----------------------------------------------------------------

// A differentiable cast between the compute types (float <-> double), e.g. a loss accumulated in
// double over a float model: the backward casts the gradient back to T. Tensor::cast<U>() stays
// the copy without history. cast_op<T> on a Tensor<T> is an identity node, so generic code may
// call it unconditionally. to_float / to_double are the two spellings.
//
// How the gradient crosses dtypes: the graph is typed (Node<float> edges lead only to Node<float>),
// so the cast's node in U's graph, once its gradient is complete, runs x.backward(grad cast to T)
// on x's own graph. That inner backward keeps x's graph (retain_graph), so a second backward
// through the cast works; x's graph is freed when its tensors go. Limit: if one backward reaches
// x's history both through a cast and directly in T (a diamond across dtypes), the direct sweep
// may free it first and the cast's inner backward then throws "was freed by an earlier backward";
// pass retain_graph=true to that backward() in such graphs.
template <class U, class T>
Tensor<U> cast_op(const Tensor<T>& x) {
    static_assert(is_compute_type_v<T> && is_compute_type_v<U>, "cast_op: float and double only (use Tensor::cast)");
    check(x.defined(), "cast_op: undefined operand");
    if constexpr (std::is_same_v<U, T>) {
        return record<T>(x.clone().detach(), "cast", {x}, [](const Tensor<T>& g, const std::vector<bool>&) {
            return std::vector<Tensor<T>>{g};
        });
    } else {
        Tensor<U> y = x.template cast<U>();
        if (!GradMode::enabled() || !x.requires_grad()) return y;
        // The U-side node needs an input that requires grad to be recorded: a scalar stand-in leaf
        // that never receives a gradient (the backward returns none for it).
        const Tensor<U> anchor = Tensor<U>::zeros({}).set_requires_grad(true);
        const Tensor<T> src = x;  // not detached: the cast continues into x's graph
        return record<U>(y, "cast", {anchor}, [src](const Tensor<U>& g, const std::vector<bool>&) {
            src.backward(g.template cast<T>(), /*retain_graph=*/true);
            return std::vector<Tensor<U>>{Tensor<U>()};
        });
    }
}

template <class T>
Tensor<double> to_double(const Tensor<T>& x) {
    return cast_op<double>(x);
}

template <class T>
Tensor<float> to_float(const Tensor<T>& x) {
    return cast_op<float>(x);
}

// ---- pointwise functions (formulas: backend/pointwise.hpp) ---------------------------------

template <class T>
Tensor<T> exp(const Tensor<T>& x) {
    return detail::unary_op(x, "exp", backend::UnaryOp::exp);
}

template <class T>
Tensor<T> log(const Tensor<T>& x) {
    return detail::unary_op(x, "log", backend::UnaryOp::log);
}

template <class T>
Tensor<T> sqrt(const Tensor<T>& x) {
    return detail::unary_op(x, "sqrt", backend::UnaryOp::sqrt);
}

template <class T>
Tensor<T> square(const Tensor<T>& x) {
    return detail::unary_op(x, "square", backend::UnaryOp::square);
}

template <class T>
Tensor<T> tanh(const Tensor<T>& x) {
    return detail::unary_op(x, "tanh", backend::UnaryOp::tanh);
}

template <class T>
Tensor<T> sigmoid(const Tensor<T>& x) {
    return detail::unary_op(x, "sigmoid", backend::UnaryOp::sigmoid);
}

// relu'(0) is taken as 0, as PyTorch does.
template <class T>
Tensor<T> relu(const Tensor<T>& x) {
    return detail::unary_op(x, "relu", backend::UnaryOp::relu);
}

// SiLU (swish): x * sigmoid(x).
template <class T>
Tensor<T> silu(const Tensor<T>& x) {
    return detail::unary_op(x, "silu", backend::UnaryOp::silu);
}

enum class GeluApprox { none, tanh };

// GELU. none: x * Phi(x), Phi the normal cdf (BERT/ViT "gelu", erf-exact); tanh: the approximation
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ("gelu_new", "gelu_pytorch_tanh").
template <class T>
Tensor<T> gelu(const Tensor<T>& x, GeluApprox approx = GeluApprox::none) {
    if (approx == GeluApprox::none) return detail::unary_op(x, "gelu", backend::UnaryOp::gelu);
    return detail::unary_op(x, "gelu_tanh", backend::UnaryOp::gelu_tanh);
}

}  // namespace coeffnet
