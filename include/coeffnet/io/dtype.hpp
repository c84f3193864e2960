// coeffnet/io/dtype.hpp: the element types of safetensors files (the reference implementation's
// Dtype, https://github.com/huggingface/safetensors): their names, their sizes in bits, and which
// of them a Tensor<T> holds.
//
// This is the one table of file dtypes. core/dtype.hpp defines the element types a Tensor can
// hold (half_t, bfloat16_t, ...); dtype_of<T>() below maps each of them to its file dtype and
// checks, at compile time, that the table's size is sizeof(T).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace coeffnet::io {

// The reference's dtypes, in the reference's order (its writer sorts by this order, largest
// first, so the order is part of the file layout).
enum class DType : uint8_t {
    BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
    I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};

namespace detail {

struct DTypeRow {
    DType dtype;
    std::string_view name;
    unsigned bits;
};

inline constexpr std::array<DTypeRow, 22> kDTypes{{
    {DType::BOOL, "BOOL", 8},         {DType::F4, "F4", 4},
    {DType::F6_E2M3, "F6_E2M3", 6},   {DType::F6_E3M2, "F6_E3M2", 6},
    {DType::U8, "U8", 8},             {DType::I8, "I8", 8},
    {DType::F8_E5M2, "F8_E5M2", 8},   {DType::F8_E4M3, "F8_E4M3", 8},
    {DType::F8_E8M0, "F8_E8M0", 8},   {DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8}, {DType::I16, "I16", 16},
    {DType::U16, "U16", 16},          {DType::F16, "F16", 16},
    {DType::BF16, "BF16", 16},        {DType::I32, "I32", 32},
    {DType::U32, "U32", 32},          {DType::F32, "F32", 32},
    {DType::C64, "C64", 64},          {DType::F64, "F64", 64},
    {DType::I64, "I64", 64},          {DType::U64, "U64", 64},
}};

constexpr const DTypeRow& dtype_row(DType d) {
    const auto i = static_cast<size_t>(d);
    if (i >= kDTypes.size()) fail("safetensors: invalid DType value ", i);
    return kDTypes[i];
}

}  // namespace detail

// Every dtype, in DType's order.
inline constexpr std::array<DType, detail::kDTypes.size()> all_dtypes() {
    std::array<DType, detail::kDTypes.size()> out{};
    for (size_t i = 0; i < out.size(); ++i) out[i] = detail::kDTypes[i].dtype;
    return out;
}

constexpr std::string_view dtype_name(DType d) { return detail::dtype_row(d).name; }

// Bits per element: 4 for F4, 6 for the F6 types, 8 to 64 for the rest.
constexpr size_t dtype_bits(DType d) { return detail::dtype_row(d).bits; }

// Bytes per element; throws for F4 and the F6 types, whose elements are not whole bytes.
inline size_t dtype_size(DType d) {
    const size_t bits = dtype_bits(d);
    if (bits % 8 != 0) fail("safetensors: ", dtype_name(d), " elements are ", bits, " bits, not whole bytes");
    return bits / 8;
}

inline std::optional<DType> find_dtype(std::string_view name) {
    for (const auto& row : detail::kDTypes)
        if (row.name == name) return row.dtype;
    return std::nullopt;
}

inline std::string known_dtypes() {
    std::string out;
    for (const auto& row : detail::kDTypes) {
        if (!out.empty()) out += ", ";
        out += row.name;
    }
    return out;
}

// "F32" -> DType::F32; throws listing the known names.
inline DType parse_dtype(std::string_view name) {
    if (auto d = find_dtype(name)) return *d;
    fail("safetensors: unknown dtype '", name, "' (known: ", known_dtypes(), ")");
}

// The dtype of a Tensor<T>'s elements.
template <class T>
constexpr DType dtype_of() {
    constexpr DType d = [] {
        if constexpr (std::is_same_v<T, float>) return DType::F32;
        else if constexpr (std::is_same_v<T, double>) return DType::F64;
        else if constexpr (std::is_same_v<T, half_t>) return DType::F16;
        else if constexpr (std::is_same_v<T, bfloat16_t>) return DType::BF16;
        else if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
        else if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
        else if constexpr (std::is_same_v<T, int16_t>) return DType::I16;
        else if constexpr (std::is_same_v<T, int8_t>) return DType::I8;
        else if constexpr (std::is_same_v<T, uint64_t>) return DType::U64;
        else if constexpr (std::is_same_v<T, uint32_t>) return DType::U32;
        else if constexpr (std::is_same_v<T, uint16_t>) return DType::U16;
        else if constexpr (std::is_same_v<T, uint8_t>) return DType::U8;
        else static_assert(sizeof(T) == 0, "safetensors: no dtype for this element type");
    }();
    static_assert(dtype_bits(d) == 8 * sizeof(T), "safetensors: the dtype table disagrees with the element type's size");
    return d;
}

namespace detail {

// Bytes of a tensor of `dtype` with this shape (non-negative dimensions); nullopt on 64-bit
// overflow (computed as the reference does: the product left to right, then times the bits).
// Throws, after `where`, when the bits are not whole bytes.
inline std::optional<uint64_t> checked_nbytes(const Shape& shape, DType dtype, std::string_view where) {
    uint64_t n = 1;
    for (int64_t d : shape) {
        const auto u = static_cast<uint64_t>(d);
        if (u != 0 && n > UINT64_MAX / u) return std::nullopt;
        n *= u;
    }
    const uint64_t bits = dtype_bits(dtype);
    if (n > UINT64_MAX / bits) return std::nullopt;
    const uint64_t total = n * bits;
    if (total % 8 != 0)
        fail(where, dtype_name(dtype), " ", shape_str(shape), " is ", total, " bits, not a whole number of bytes");
    return total / 8;
}

}  // namespace detail

}  // namespace coeffnet::io
