// coeffnet/io/utf8.hpp: UTF-8 validation, as strict as Rust's str::from_utf8 (the safetensors
// reference implementation reads headers with it).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coeffnet::io::detail {

// Offset of the first byte that is not part of valid UTF-8 (Unicode's Table 3-7, which Rust's
// str::from_utf8 follows), or npos.
inline size_t utf8_error(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;  // range of the second byte
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c == 0xe0) len = 3, lo = 0xa0;
        else if (c >= 0xe1 && c <= 0xec) len = 3;
        else if (c == 0xed) len = 3, hi = 0x9f;  // no surrogates
        else if (c >= 0xee && c <= 0xef) len = 3;
        else if (c == 0xf0) len = 4, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3) len = 4;
        else if (c == 0xf4) len = 4, hi = 0x8f;  // nothing past U+10FFFF
        else return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; ++k)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
        i += len;
    }
    return std::string::npos;
}

inline bool is_utf8(std::string_view s) {
    return utf8_error(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == std::string::npos;
}

}  // namespace coeffnet::io::detail
