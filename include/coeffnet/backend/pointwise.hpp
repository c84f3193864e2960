// coeffnet/backend/pointwise.hpp: the host formulas of the pointwise op codes, one line each: the
// value f(v; c) and the derivative df(v, y; c) written in terms of the input v and the output
// y = f(v), which is all a backward needs. The CPU table (backend/cpu.hpp) runs them; the CUDA
// kernels have their device twins in kernels/activations.cuh.
//
// with_unary(op, fn) / with_binary(op, fn) turn a run-time op code into a compile-time one:
// fn(Unary<op>{}) is called with the formula struct, so each loop is compiled (and vectorised)
// for one formula, as a hand-written loop would be.
#pragma once

#include <cmath>
#include <utility>

#include "../core/error.hpp"
#include "../core/vmath.hpp"
#include "backend.hpp"

namespace coeffnet::backend {

template <UnaryOp op>
struct Unary;

#define COEFFNET_UNARY_(OP, F, DF)                                 \
    template <>                                                   \
    struct Unary<UnaryOp::OP> {                                   \
        template <class T>                                        \
        static T f(T v, [[maybe_unused]] T c) {                   \
            return F;                                             \
        }                                                         \
        template <class T>                                        \
        static T df([[maybe_unused]] T v, [[maybe_unused]] T y, [[maybe_unused]] T c) { \
            return DF;                                            \
        }                                                         \
    };

COEFFNET_UNARY_(neg, -v, T(-1))
COEFFNET_UNARY_(scale, v * c, c)
COEFFNET_UNARY_(add_scalar, v + c, T(1))
COEFFNET_UNARY_(rsub_scalar, c - v, T(-1))
COEFFNET_UNARY_(rdiv_scalar, c / v, -y / v)  // d(c/v)/dv = -c/v^2 = -y/v
COEFFNET_UNARY_(exp, std::exp(v), y)
COEFFNET_UNARY_(log, std::log(v), T(1) / v)
COEFFNET_UNARY_(sqrt, std::sqrt(v), T(0.5) / y)
COEFFNET_UNARY_(square, v * v, T(2) * v)
COEFFNET_UNARY_(tanh, std::tanh(v), T(1) - y * y)
COEFFNET_UNARY_(sigmoid, T(1) / (T(1) + std::exp(-v)), y * (T(1) - y))
COEFFNET_UNARY_(relu, v > T(0) ? v : T(0), v > T(0) ? T(1) : T(0))  // relu'(0) = 0, as PyTorch
#undef COEFFNET_UNARY_

// T(v * c) with the product in double: the scalar c is the op's double, not rounded to T first.
template <>
struct Unary<UnaryOp::scale_double> {
    template <class T>
    static T f(T v, double c) {
        return static_cast<T>(v * c);
    }
    template <class T>
    static T df(T, T, double c) {
        return static_cast<T>(c);
    }
};

// SiLU (swish): x sigmoid(x); derivative s (1 + x (1 - s)).
template <>
struct Unary<UnaryOp::silu> {
    template <class T>
    static T f(T v, T) {
        return v / (T(1) + std::exp(-v));
    }
    template <class T>
    static T df(T v, T, T) {
        const T s = T(1) / (T(1) + std::exp(-v));
        return s * (T(1) + v * (T(1) - s));
    }
};

// GELU, erf-exact: x Phi(x) (vmath's Phi: within 9 ulp in float, relative accuracy kept in the
// left tail); derivative Phi(x) + x phi(x).
template <>
struct Unary<UnaryOp::gelu> {
    template <class T>
    static T f(T v, T) {
        T cdf, pdf;
        vmath::normal_cdf_pdf(v, cdf, pdf);
        return v * cdf;
    }
    template <class T>
    static T df(T v, T, T) {
        T cdf, pdf;
        vmath::normal_cdf_pdf(v, cdf, pdf);
        return cdf + v * pdf;
    }
};

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <>
struct Unary<UnaryOp::gelu_tanh> {
    template <class T>
    static T f(T v, T) {
        const T k = T(0.79788456080286535588);
        return T(0.5) * v * (T(1) + std::tanh(k * (v + T(0.044715) * v * v * v)));
    }
    template <class T>
    static T df(T v, T, T) {
        const T k = T(0.79788456080286535588);
        const T t = std::tanh(k * (v + T(0.044715) * v * v * v));
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);
    }
};

// The scalar a formula takes: T(c), except scale_double's double.
template <UnaryOp op, class T>
auto unary_scalar(double c) {
    if constexpr (op == UnaryOp::scale_double) return c;
    else return static_cast<T>(c);
}

template <BinaryOp op>
struct Binary;
template <>
struct Binary<BinaryOp::add> {
    template <class T>
    static T f(T a, T b) {
        return a + b;
    }
};
template <>
struct Binary<BinaryOp::sub> {
    template <class T>
    static T f(T a, T b) {
        return a - b;
    }
};
template <>
struct Binary<BinaryOp::mul> {
    template <class T>
    static T f(T a, T b) {
        return a * b;
    }
};
template <>
struct Binary<BinaryOp::div> {
    template <class T>
    static T f(T a, T b) {
        return a / b;
    }
};
template <>
struct Binary<BinaryOp::neg_div_square> {
    template <class T>
    static T f(T a, T b) {
        return -a / (b * b);
    }
};

template <class Fn>
decltype(auto) with_unary(UnaryOp op, Fn&& fn) {
    switch (op) {
#define COEFFNET_CASE_(OP) \
    case UnaryOp::OP: return fn(std::integral_constant<UnaryOp, UnaryOp::OP>{});
        COEFFNET_CASE_(neg)
        COEFFNET_CASE_(scale)
        COEFFNET_CASE_(scale_double)
        COEFFNET_CASE_(add_scalar)
        COEFFNET_CASE_(rsub_scalar)
        COEFFNET_CASE_(rdiv_scalar)
        COEFFNET_CASE_(exp)
        COEFFNET_CASE_(log)
        COEFFNET_CASE_(sqrt)
        COEFFNET_CASE_(square)
        COEFFNET_CASE_(tanh)
        COEFFNET_CASE_(sigmoid)
        COEFFNET_CASE_(relu)
        COEFFNET_CASE_(silu)
        COEFFNET_CASE_(gelu)
        COEFFNET_CASE_(gelu_tanh)
#undef COEFFNET_CASE_
        case UnaryOp::count_: break;
    }
    fail("backend: unknown unary op code ", static_cast<int>(op));
}

template <class Fn>
decltype(auto) with_binary(BinaryOp op, Fn&& fn) {
    switch (op) {
        case BinaryOp::add: return fn(std::integral_constant<BinaryOp, BinaryOp::add>{});
        case BinaryOp::sub: return fn(std::integral_constant<BinaryOp, BinaryOp::sub>{});
        case BinaryOp::mul: return fn(std::integral_constant<BinaryOp, BinaryOp::mul>{});
        case BinaryOp::div: return fn(std::integral_constant<BinaryOp, BinaryOp::div>{});
        case BinaryOp::neg_div_square: return fn(std::integral_constant<BinaryOp, BinaryOp::neg_div_square>{});
        case BinaryOp::count_: break;
    }
    fail("backend: unknown binary op code ", static_cast<int>(op));
}

}  // namespace coeffnet::backend
