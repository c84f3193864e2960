// coeffnet/ops/elementwise.hpp: arithmetic with broadcasting, and pointwise functions.
//
// Binary ops broadcast like NumPy; the backward sums the gradient back over the broadcast
// axes (sum_to). Pointwise functions are one line each: the value f(x) and the derivative
// written in terms of x and y = f(x), which is all their backward needs.
#pragma once

#include <cmath>
#include <type_traits>

#include "../core/vmath.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

template <class T, class F, class DA, class DB>
Tensor<T> binary_op(const Tensor<T>& a, const Tensor<T>& b, const char* name, F f, DA da, DB db) {
    check(a.defined() && b.defined(), name, ": undefined operand");
    Tensor<T> out = map_binary(a, b, name, f);
    const Tensor<T> sa = a.detach(), sb = b.detach();
    return record<T>(out, name, {a, b}, [sa, sb, da, db, name](const Tensor<T>& g, const std::vector<bool>& needs) {
        std::vector<Tensor<T>> r(2);
        if (needs[0]) r[0] = sum_to(da(g, sa, sb), sa.shape());
        if (needs[1]) r[1] = sum_to(db(g, sa, sb), sb.shape());
        (void)name;
        return r;
    });
}

// y = f(x) with dy/dx = df(x, y).
template <class T, class F, class DF>
Tensor<T> unary_op(const Tensor<T>& x, const char* name, F f, DF df) {
    check(x.defined(), name, ": undefined operand");
    Tensor<T> y = map_unary(x, f);
    const Tensor<T> sx = x.detach(), sy = y.detach();
    return record<T>(y, name, {x}, [sx, sy, df](const Tensor<T>& g, const std::vector<bool>&) {
        const Tensor<T> xc = as_contiguous(sx);
        const Tensor<T> gc = as_contiguous(g);
        Tensor<T> dx = Tensor<T>::empty(sx.shape());
        const T *px = xc.data(), *py = sy.data(), *pg = gc.data();
        T* pd = dx.data();
        parallel_for(dx.numel(), 8, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) pd[i] = pg[i] * df(px[i], py[i]);
        });
        return std::vector<Tensor<T>>{dx};
    });
}

}  // namespace detail

// ---- arithmetic ---------------------------------------------------------------------------

template <class T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "add", [](T x, T y) { return x + y; }, [](const Tensor<T>& g, auto&, auto&) { return g; },
        [](const Tensor<T>& g, auto&, auto&) { return g; });
}

template <class T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "sub", [](T x, T y) { return x - y; }, [](const Tensor<T>& g, auto&, auto&) { return g; },
        [](const Tensor<T>& g, auto&, auto&) { return detail::map_unary(g, [](T v) { return -v; }); });
}

template <class T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "mul", [](T x, T y) { return x * y; },
        [](const Tensor<T>& g, auto&, const Tensor<T>& y) {
            return detail::map_binary(g, y, "mul backward", [](T p, T q) { return p * q; });
        },
        [](const Tensor<T>& g, const Tensor<T>& x, auto&) {
            return detail::map_binary(g, x, "mul backward", [](T p, T q) { return p * q; });
        });
}

template <class T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
    return detail::binary_op(
        a, b, "div", [](T x, T y) { return x / y; },
        [](const Tensor<T>& g, auto&, const Tensor<T>& y) {
            return detail::map_binary(g, y, "div backward", [](T p, T q) { return p / q; });
        },
        [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
            // d(x/y)/dy = -x / y^2
            const Tensor<T> q = detail::map_binary(x, y, "div backward", [](T p, T r) { return -p / (r * r); });
            return detail::map_binary(g, q, "div backward", [](T p, T r) { return p * r; });
        });
}

template <class T>
Tensor<T> scale(const Tensor<T>& x, double s) {
    const T c = static_cast<T>(s);
    return detail::unary_op(
        x, "scale", [c](T v) { return v * c; }, [c](T, T) { return c; });
}

template <class T>
Tensor<T> add_scalar(const Tensor<T>& x, double s) {
    const T c = static_cast<T>(s);
    return detail::unary_op(
        x, "add_scalar", [c](T v) { return v + c; }, [](T, T) { return T(1); });
}

// s - x (torch.rsub(x, s)).
template <class T>
Tensor<T> rsub_scalar(const Tensor<T>& x, double s) {
    const T c = static_cast<T>(s);
    return detail::unary_op(
        x, "rsub_scalar", [c](T v) { return c - v; }, [](T, T) { return T(-1); });
}

// s / x; derivative -s / x^2 = -y / x.
template <class T>
Tensor<T> rdiv_scalar(const Tensor<T>& x, double s) {
    const T c = static_cast<T>(s);
    return detail::unary_op(
        x, "rdiv_scalar", [c](T v) { return c / v; }, [](T v, T y) { return -y / v; });
}

template <class T>
Tensor<T> neg(const Tensor<T>& x) {
    return detail::unary_op(
        x, "neg", [](T v) { return -v; }, [](T, T) { return T(-1); });
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

// ---- pointwise functions ------------------------------------------------------------------

template <class T>
Tensor<T> exp(const Tensor<T>& x) {
    return detail::unary_op(
        x, "exp", [](T v) { return std::exp(v); }, [](T, T y) { return y; });
}

template <class T>
Tensor<T> log(const Tensor<T>& x) {
    return detail::unary_op(
        x, "log", [](T v) { return std::log(v); }, [](T v, T) { return T(1) / v; });
}

template <class T>
Tensor<T> sqrt(const Tensor<T>& x) {
    return detail::unary_op(
        x, "sqrt", [](T v) { return std::sqrt(v); }, [](T, T y) { return T(0.5) / y; });
}

template <class T>
Tensor<T> square(const Tensor<T>& x) {
    return detail::unary_op(
        x, "square", [](T v) { return v * v; }, [](T v, T) { return T(2) * v; });
}

template <class T>
Tensor<T> tanh(const Tensor<T>& x) {
    return detail::unary_op(
        x, "tanh", [](T v) { return std::tanh(v); }, [](T, T y) { return T(1) - y * y; });
}

template <class T>
Tensor<T> sigmoid(const Tensor<T>& x) {
    return detail::unary_op(
        x, "sigmoid", [](T v) { return T(1) / (T(1) + std::exp(-v)); }, [](T, T y) { return y * (T(1) - y); });
}

// relu'(0) is taken as 0, as PyTorch does.
template <class T>
Tensor<T> relu(const Tensor<T>& x) {
    return detail::unary_op(
        x, "relu", [](T v) { return v > T(0) ? v : T(0); }, [](T v, T) { return v > T(0) ? T(1) : T(0); });
}

// SiLU (swish): x * sigmoid(x); derivative s * (1 + x * (1 - s)).
template <class T>
Tensor<T> silu(const Tensor<T>& x) {
    return detail::unary_op(
        x, "silu", [](T v) { return v / (T(1) + std::exp(-v)); },
        [](T v, T) {
            const T s = T(1) / (T(1) + std::exp(-v));
            return s * (T(1) + v * (T(1) - s));
        });
}

enum class GeluApprox { none, tanh };

// GELU. none: x * Phi(x), Phi the normal cdf (BERT/ViT "gelu", erf-exact: vmath's Phi is within
// 9 ulp in float, and keeps its relative accuracy in the left tail); tanh: the approximation
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ("gelu_new", "gelu_pytorch_tanh").
template <class T>
Tensor<T> gelu(const Tensor<T>& x, GeluApprox approx = GeluApprox::none) {
    if (approx == GeluApprox::none) {
        return detail::unary_op(
            x, "gelu",
            [](T v) {
                T cdf, pdf;
                vmath::normal_cdf_pdf(v, cdf, pdf);
                return v * cdf;
            },
            [](T v, T) {
                T cdf, pdf;
                vmath::normal_cdf_pdf(v, cdf, pdf);
                return cdf + v * pdf;
            });
    }
    return detail::unary_op(
        x, "gelu_tanh",
        [](T v) {
            const T k = T(0.79788456080286535588);
            return T(0.5) * v * (T(1) + std::tanh(k * (v + T(0.044715) * v * v * v)));
        },
        [](T v, T) {
            const T k = T(0.79788456080286535588);
            const T t = std::tanh(k * (v + T(0.044715) * v * v * v));
            return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);
        });
}

}  // namespace coeffnet
