// coeffnet/core/dtype.hpp: element types.
//
// Compute types are float and double. half_t (IEEE binary16) and bfloat16_t are storage
// types: a Tensor can hold them (a checkpoint loaded as published, a GPU buffer) and
// convert them to float with Tensor::to<float>(); ops compute in float or double.
// Conversions round to nearest, ties to even, and keep NaN and infinities.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace coeffnet {

struct half_t {
    uint16_t bits = 0;
    half_t() = default;
    explicit half_t(float f) : bits(from_float(f)) {}
    explicit operator float() const { return to_float(bits); }

    static uint16_t from_float(float f) {
        const uint32_t x = std::bit_cast<uint32_t>(f);
        const uint32_t sign = (x >> 16) & 0x8000u;
        const uint32_t absx = x & 0x7fffffffu;
        if (absx >= 0x7f800000u)  // inf or NaN (keep NaN quiet and non-zero)
            return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
        if (absx >= 0x477ff000u)  // rounds to >= 65520: overflow to inf
            return static_cast<uint16_t>(sign | 0x7c00u);
        if (absx < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or 0
            if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
            const uint32_t exp = absx >> 23;
            const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
            const uint32_t shift = 126u - exp;  // value = mant * 2^(exp-150); half sub unit 2^-24
            uint32_t q = mant >> shift;
            const uint32_t rem = mant & ((1u << shift) - 1u);
            const uint32_t half = 1u << (shift - 1u);
            if (rem > half || (rem == half && (q & 1u))) ++q;
            return static_cast<uint16_t>(sign | q);
        }
        uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
        const uint32_t lsb = (r >> 13) & 1u;
        r += 0xfffu + lsb;
        return static_cast<uint16_t>(sign | (r >> 13));
    }
    static float to_float(uint16_t h) {
        const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
        const uint32_t exp = (h >> 10) & 0x1fu;
        uint32_t mant = h & 0x3ffu;
        uint32_t bits;
        if (exp == 0x1f) {
            bits = sign | 0x7f800000u | (mant << 13);
        } else if (exp != 0) {
            bits = sign | ((exp + 112u) << 23) | (mant << 13);
        } else if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                mant <<= 1;
                ++e;
            } while (!(mant & 0x400u));
            bits = sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((mant & 0x3ffu) << 13);
        }
        return std::bit_cast<float>(bits);
    }
};

struct bfloat16_t {
    uint16_t bits = 0;
    bfloat16_t() = default;
    explicit bfloat16_t(float f) : bits(from_float(f)) {}
    explicit operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

    static uint16_t from_float(float f) {
        const uint32_t x = std::bit_cast<uint32_t>(f);
        if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
        const uint32_t lsb = (x >> 16) & 1u;
        return static_cast<uint16_t>((x + 0x7fffu + lsb) >> 16);
    }
};

// Converts between any two element types of the library (through float for 16-bit types).
template <class To, class From>
inline To convert(From v) {
    if constexpr (std::is_same_v<To, From>) {
        return v;
    } else if constexpr (std::is_same_v<From, half_t> || std::is_same_v<From, bfloat16_t>) {
        return convert<To>(static_cast<float>(v));
    } else if constexpr (std::is_same_v<To, half_t> || std::is_same_v<To, bfloat16_t>) {
        return To(static_cast<float>(v));
    } else {
        return static_cast<To>(v);
    }
}

template <class T>
inline constexpr bool is_compute_type_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Accumulator type of reductions: float sums are accumulated in double.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, float>, double, T>;

template <class T>
constexpr std::string_view dtype_name() {
    if constexpr (std::is_same_v<T, float>) return "float32";
    else if constexpr (std::is_same_v<T, double>) return "float64";
    else if constexpr (std::is_same_v<T, half_t>) return "float16";
    else if constexpr (std::is_same_v<T, bfloat16_t>) return "bfloat16";
    else if constexpr (std::is_same_v<T, int64_t>) return "int64";
    else if constexpr (std::is_same_v<T, int32_t>) return "int32";
    else if constexpr (std::is_same_v<T, uint8_t>) return "uint8";
    else if constexpr (std::is_same_v<T, int8_t>) return "int8";
    else if constexpr (std::is_same_v<T, bool>) return "bool";
    else return "unknown";
}

}  // namespace coeffnet
