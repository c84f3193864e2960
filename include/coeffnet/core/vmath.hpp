// coeffnet/core/vmath.hpp: exp and the normal distribution's cdf/pdf for float, written so that a
// compiler vectorises the loops that call them (no libm calls, no branches, no errno), as the CPU
// backend's GELU and softmax need: libm's scalar erff and expf were 19% of a `coeffnet tune` run.
//
//   vmath::exp(x)              e^x; float: at most 2 ulp from the correctly rounded value
//                              (results below FLT_MIN come out subnormal, as libm's do)
//   vmath::normal_cdf_pdf(x)   Phi(x) and phi(x) = exp(-x^2/2) / sqrt(2 pi), from one exp:
//                              GELU(x) = x Phi(x), GELU'(x) = Phi(x) + x phi(x)
//
// double calls std::exp and std::erfc: the double path is the reference the float one is tested
// against (tests/test_core.cpp: dense sweeps of [-16, 16] and of exp's whole range). How the
// constants were found, and their measured errors: tools/fit_vmath.py.
//
// The float erfc: erfc(z) = exp(-z^2) R(z) for z >= 0, where R(z) = exp(z^2) erfc(z) is smooth and
// falls like 1 / (z sqrt(pi)); with t = 1 / (1 + 0.3 z), R = t P(t) for a degree-8 polynomial P,
// fitted for relative error over z in [0, 10] (2.0e-8 in exact arithmetic, 4.1e-7 evaluated in
// float). Phi(-|x|) = erfc(|x| / sqrt 2) / 2 keeps its relative accuracy far into the left tail,
// where 1 + erf(x / sqrt 2) would cancel; x^2 is carried as a sum of two floats so that
// exp(-x^2 / 2) loses nothing to the rounding of x^2.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace coeffnet::vmath {

namespace impl {

// x * y exactly, as hi + lo (Dekker's product; an FMA where the target has one). |x|, |y| < 2^60.
inline void two_product(float x, float y, float& hi, float& lo) {
    hi = x * y;
#if defined(__FMA__) || defined(__aarch64__)
    lo = std::fma(x, y, -hi);
#else
    const auto split = [](float v, float& h, float& l) {
        const float c = 4097.0f * v;  // 2^12 + 1: halves of 12 bits
        h = c - (c - v);
        l = v - h;
    };
    float xh, xl, yh, yl;
    split(x, xh, xl);
    split(y, yh, yl);
    lo = ((xh * yh - hi) + xh * yl + xl * yh) + xl * yl;
#endif
}

// 2^n for an integer-valued n in [-150, 129], as a product of two normal powers of two (so that the
// caller's product rounds once, into the subnormals or to infinity, as it should).
inline float ldexp_factor(float p, float n) {
    const int32_t k = static_cast<int32_t>(n);
    const int32_t a = k / 2, b = k - a;  // each in [-75, 65]
    const float sa = std::bit_cast<float>(static_cast<int32_t>((a + 127) << 23));
    const float sb = std::bit_cast<float>(static_cast<int32_t>((b + 127) << 23));
    return p * sa * sb;
}

}  // namespace impl

// e^x for float; std::exp for double.
template <class T>
inline T exp(T x) {
    if constexpr (!std::is_same_v<T, float>) {
        return std::exp(x);
    } else {
        // Outside [-104, 89] the result is 0 or infinity either way; NaN stays NaN (through r).
        const float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
        // n = round(x / ln 2) by the 1.5 * 2^23 trick (round to nearest, no libm); then
        // r = x - n ln 2 in [-ln2/2, ln2/2], with ln 2 split so that n * kLn2Hi is exact.
        constexpr float kLog2e = 1.44269504088896341f, kShift = 12582912.0f;
        constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
        float n = (xc * kLog2e + kShift) - kShift;
        n = n == n ? n : 0.0f;  // NaN: any n; the NaN travels in r
        const float r = (x - n * kLn2Hi) - n * kLn2Lo;
        // e^r on [-ln2/2, ln2/2]: degree 6, relative error 2.6e-9 in exact arithmetic.
        float p = 1.383733004e-03f;
        p = p * r + 8.374950849e-03f;
        p = p * r + 4.166822508e-02f;
        p = p * r + 1.666641831e-01f;
        p = p * r + 4.999999106e-01f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        const float y = impl::ldexp_factor(p, n);
        return x < -104.0f ? 0.0f : (x > 89.0f ? x * 1e30f * 1e30f : y);  // keeps +inf, and NaN
    }
}

// Phi(x) (the standard normal cdf) into cdf and phi(x) (its pdf) into pdf.
template <class T>
inline void normal_cdf_pdf(T x, T& cdf, T& pdf) {
    if constexpr (!std::is_same_v<T, float>) {
        constexpr T kInvSqrt2 = T(0.70710678118654752440), kInvSqrt2Pi = T(0.39894228040143267794);
        cdf = T(0.5) * std::erfc(-x * kInvSqrt2);
        pdf = kInvSqrt2Pi * std::exp(T(-0.5) * x * x);
    } else {
        constexpr float kInvSqrt2 = 0.70710678118654752440f, kInvSqrt2Pi = 0.39894228040143267794f;
        // Beyond |x| = 15, Phi is 0 or 1 and phi is 0 in float (exp(-112.5) flushes to 0).
        const float ax = std::fabs(x) < 15.0f ? std::fabs(x) : 15.0f;
        float x2, x2lo;
        impl::two_product(ax, ax, x2, x2lo);
        const float e = vmath::exp(-0.5f * x2) * (1.0f - 0.5f * x2lo);  // exp(-x^2 / 2)
        const float t = 1.0f / (1.0f + 0.3f * (ax * kInvSqrt2));
        float q = -1.295838058e-01f;
        q = q * t + 4.858763814e-01f;
        q = q * t - 5.129653811e-01f;
        q = q * t + 5.485592484e-01f;
        q = q * t - 9.527302533e-02f;
        q = q * t + 2.152124196e-01f;
        q = q * t + 1.482594609e-01f;
        q = q * t + 1.707274765e-01f;
        q = q * t + 1.691872030e-01f;
        const float tail = 0.5f * (t * q) * e;  // Phi(-|x|) = erfc(|x| / sqrt 2) / 2
        cdf = x < 0.0f ? tail : 1.0f - tail;
        pdf = kInvSqrt2Pi * e;
        if (x != x) cdf = pdf = x;
    }
}

}  // namespace coeffnet::vmath
