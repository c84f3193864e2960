// coeffnet/io/png.hpp: the PNG container (https://www.w3.org/TR/png/): its signature, chunks and
// their CRC-32, checked when reading and written when encoding. Pixels are decoded by stb_image
// (io/image.hpp, which checks the chunks with check_png_chunks first); encode_png and write_png
// write PNG files themselves, uncompressed, so writing needs no stb_image.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "file.hpp"

namespace coeffnet::io {

// The eight bytes every PNG file opens with.
inline constexpr std::array<uint8_t, 8> kPngSignature = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

// The CRC-32 of PNG chunks (W3C, Portable Network Graphics (PNG) Specification, Second Edition,
// 2003, section 5.5), continued from `c` (0 to start).
inline uint32_t crc32(const uint8_t* p, size_t n, uint32_t c = 0) {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t v = i;
            for (int k = 0; k < 8; ++k) v = (v & 1u) ? 0xedb88320u ^ (v >> 1) : v >> 1;
            t[i] = v;
        }
        return t;
    }();
    c ^= 0xffffffffu;
    for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

namespace detail {

inline uint32_t read_be32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline void put_be32(std::vector<uint8_t>& out, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

inline void png_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
    put_be32(out, static_cast<uint32_t>(data.size()));
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put_be32(out, crc32(out.data() + start, out.size() - start));
}

// A chunk type as text when it is four letters, else as hex bytes.
inline std::string chunk_type(const uint8_t* p) {
    std::string s;
    bool letters = true;
    for (int i = 0; i < 4; ++i) letters = letters && ((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z'));
    if (letters) return "'" + std::string(reinterpret_cast<const char*>(p), 4) + "'";
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 4; ++i) s += {hex[p[i] >> 4], hex[p[i] & 15]};
    return "0x" + s;
}

// Walks a PNG's chunks as PIL does: IHDR first, every CRC right, IEND before the data ends.
// Returns the width and height IHDR gives.
inline std::pair<int64_t, int64_t> check_png_chunks(std::span<const uint8_t> b, const std::string& name) {
    std::pair<int64_t, int64_t> size{0, 0};
    size_t pos = 8;
    for (bool first = true;; first = false) {
        if (b.size() - pos < 8) fail(name, ": the PNG data is truncated (it ends at byte ", b.size(), " before the IEND chunk)");
        const uint32_t len = read_be32(&b[pos]);
        const std::string_view raw(reinterpret_cast<const char*>(&b[pos + 4]), 4);
        const std::string type = chunk_type(&b[pos + 4]);
        if (len > 0x7fffffffu) fail(name, ": PNG chunk ", type, " at byte ", pos, " has an invalid length ", len);
        if (b.size() - pos - 8 < uint64_t{len} + 4)
            fail(name, ": the PNG data is truncated (chunk ", type, " at byte ", pos, " ends past the end of the file)");
        if (first && (raw != "IHDR" || len != 13)) fail(name, ": corrupt PNG: the first chunk is not a 13-byte 'IHDR'");
        if (crc32(&b[pos + 4], size_t{len} + 4) != read_be32(&b[pos + 8 + len]))
            fail(name, ": corrupt PNG: chunk ", type, " at byte ", pos, " fails its CRC check");
        if (first) size = {read_be32(&b[pos + 8]), read_be32(&b[pos + 12])};
        pos += size_t{len} + 12;
        if (raw == "IEND") return size;
    }
}

}  // namespace detail

// A PNG file of 8-bit pixels (channels 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA; rows top to
// bottom, channels interleaved), deflate's stored blocks: no compression, any decoder reads it.
inline std::vector<uint8_t> encode_png(std::span<const uint8_t> pixels, int64_t width, int64_t height, int64_t channels = 3) {
    check(width > 0 && height > 0 && width <= (int64_t{1} << 24) && height <= (int64_t{1} << 24),
          "encode_png: bad size ", width, " x ", height);
    check(channels >= 1 && channels <= 4, "encode_png: channels must be 1 to 4, got ", channels);
    const auto row = static_cast<size_t>(width * channels);
    check(pixels.size() == row * static_cast<size_t>(height), "encode_png: ", pixels.size(), " bytes for a ", width,
          " x ", height, " x ", channels, " image");
    static constexpr uint8_t colour_type[5] = {0, 0, 4, 2, 6};
    std::vector<uint8_t> out(kPngSignature.begin(), kPngSignature.end());
    std::vector<uint8_t> ihdr;
    detail::put_be32(ihdr, static_cast<uint32_t>(width));
    detail::put_be32(ihdr, static_cast<uint32_t>(height));
    ihdr.insert(ihdr.end(), {8, colour_type[channels], 0, 0, 0});
    detail::png_chunk(out, "IHDR", ihdr);
    // The filtered scanlines (filter 0 on every row), as zlib stored blocks.
    std::vector<uint8_t> raw;
    raw.reserve((row + 1) * static_cast<size_t>(height));
    for (int64_t y = 0; y < height; ++y) {
        raw.push_back(0);
        raw.insert(raw.end(), pixels.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(y) * row),
                   pixels.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(y + 1) * row));
    }
    std::vector<uint8_t> z = {0x78, 0x01};
    size_t at = 0;
    do {
        const size_t len = std::min<size_t>(65535, raw.size() - at);
        z.push_back(at + len == raw.size() ? 1 : 0);
        z.insert(z.end(), {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(~len),
                           static_cast<uint8_t>(~len >> 8)});
        z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(at), raw.begin() + static_cast<std::ptrdiff_t>(at + len));
        at += len;
    } while (at < raw.size());
    uint32_t a = 1, b = 0;
    for (uint8_t v : raw) {
        a = (a + v) % 65521u;
        b = (b + a) % 65521u;
    }
    detail::put_be32(z, (b << 16) | a);
    detail::png_chunk(out, "IDAT", z);
    detail::png_chunk(out, "IEND", {});
    return out;
}

inline void write_png(const std::filesystem::path& path, std::span<const uint8_t> pixels, int64_t width, int64_t height,
                      int64_t channels = 3) {
    write_file(path, encode_png(pixels, width, height, channels));
}

}  // namespace coeffnet::io
