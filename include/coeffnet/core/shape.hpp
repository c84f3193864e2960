// coeffnet/core/shape.hpp: Shape and its arithmetic (element count, row-major strides, axes,
// broadcasting), the one copy used by the CPU Tensor and the CUDA backend alike. It needs only
// the standard library and core/error.hpp, so nvcc compiles it (src/cuda/*.cu include it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"

namespace coeffnet {

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    return out + "]";
}

// Element count; throws naming `where` for a negative dimension or a count beyond int64.
inline int64_t shape_numel(const Shape& s, const char* where = "shape") {
    int64_t n = 1;
    for (int64_t d : s) {
        check(d >= 0, where, ": negative dimension in ", shape_str(s));
        if (d != 0 && n > INT64_MAX / d) fail(where, ": element count of ", shape_str(s), " overflows int64");
        n *= d;
    }
    return n;
}

// Row-major strides. Saturates at INT64_MAX instead of overflowing: only a tensor with no
// elements can have such dimensions ([0, 2^62, 2^62]), and its strides address nothing.
inline Shape contiguous_strides(const Shape& s) {
    Shape st(s.size());
    int64_t acc = 1;
    for (size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        const int64_t d = std::max<int64_t>(s[i], 1);
        acc = acc > INT64_MAX / d ? INT64_MAX : acc * d;
    }
    return st;
}

// Maps a possibly negative axis into [0, rank); `op` names the caller in the error.
inline int64_t normalize_axis(int64_t axis, int64_t rank, const char* op) {
    const int64_t r = std::max<int64_t>(rank, 1);
    if (axis < -r || axis >= r) fail(op, ": axis ", axis, " is out of range for a tensor of rank ", rank);
    return axis < 0 ? axis + r : axis;
}

// NumPy broadcasting of two shapes; throws naming the op and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    const size_t r = std::max(a.size(), b.size());
    Shape out(r);
    for (size_t i = 0; i < r; ++i) {
        const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        if (da != db && da != 1 && db != 1)
            fail(op, ": shapes ", shape_str(a), " and ", shape_str(b), " cannot be broadcast (dimension ", i,
                 ": ", da, " vs ", db, ")");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// True when `from` broadcasts to exactly `to` (NumPy rules, `to` unchanged).
inline bool broadcasts_to(const Shape& from, const Shape& to) {
    if (from.size() > to.size()) return false;
    const size_t lead = to.size() - from.size();
    for (size_t i = 0; i < from.size(); ++i)
        if (from[i] != 1 && from[i] != to[lead + i]) return false;
    return true;
}

// Strides that read a tensor of `shape`/`strides` as if it had `out` shape (0 where broadcast).
inline Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& out) {
    Shape st(out.size(), 0);
    const size_t lead = out.size() - shape.size();
    for (size_t i = 0; i < shape.size(); ++i) st[lead + i] = shape[i] == 1 ? 0 : strides[i];
    return st;
}

}  // namespace coeffnet
