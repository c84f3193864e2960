// coeffnet/io/deflate.hpp: a DEFLATE compressor (RFC 1951) in a zlib wrapper (RFC 1950), written
// for io/png.hpp's encode_png; no zlib. Decompression is left to stb_image (io/image.hpp).
//
// The pipeline, for zlib_compress(data, level):
//   1. LZ77 (lz77): a 32 KiB window searched through hash chains. head[h] is the latest position
//      whose next three bytes hash to h, prev[pos % 32768] the one before it with the same hash,
//      so a chain walks back through earlier positions sharing a 3-byte prefix, newest first. At
//      most `chain` candidates are tried per position (fewer once a `good` match is in hand); a
//      match of `nice` bytes ends the walk. Matches are 3 to 258 bytes at distances 1 to 32768;
//      a 3-byte match further than 4096 back is dropped (its distance code costs more than three
//      literals). From level 4 matching is lazy: when a match is found, the next position is
//      searched too, and if it has a longer match the first byte goes out as a literal instead.
//   2. Huffman coding: the tokens are cut into blocks of up to 32768 tokens, and each block is
//      written in whichever of the three block types is smallest, its size counted exactly
//      beforehand: dynamic Huffman (code lengths from the block's symbol frequencies by
//      package-merge, optimal under the length limits of 15 bits for literal/length and
//      distance codes and 7 for the code-length code; the code lengths themselves run-length
//      coded with symbols 16, 17 and 18), fixed Huffman, or stored.
//   3. zlib: the CMF/FLG header (deflate, 32 KiB window, FLEVEL from the level) and the Adler-32
//      of the uncompressed data, big-endian.
// Level 0 writes stored blocks only (65535 bytes each); levels 1-3 match greedily with chains
// of 4, 8 and 16; 4-9 lazily with chains of 16 to 4096. 6 is the default, as in zlib.
//
// Measured sizes and speeds, against Python's zlib on the same input, are at the top of
// io/png.hpp (a 1009 x 1200 figure: 3.6 MB stored, 23 KB at level 6, within 1% of zlib -6).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace coeffnet::io {

// The Adler-32 checksum of RFC 1950 section 8.2, continued from `adler` (1 to start).
inline uint32_t adler32(const uint8_t* p, size_t n, uint32_t adler = 1) {
    uint32_t a = adler & 0xffffu, b = adler >> 16;
    while (n > 0) {
        // 5552 bytes is the most that can be summed before b may pass 2^32 (RFC 1950's NMAX).
        size_t k = std::min<size_t>(n, 5552);
        n -= k;
        for (; k > 0; --k) {
            a += *p++;
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
    }
    return (b << 16) | a;
}

namespace detail::deflate {

inline constexpr size_t kWindow = 32768;  // the largest distance DEFLATE can code
inline constexpr int kMinMatch = 3, kMaxMatch = 258;
inline constexpr int kHashBits = 15;
inline constexpr size_t kBlockTokens = 32768;  // tokens per Huffman block

// RFC 1951 section 3.2.5: the lengths and distances each code starts at, and its extra bits.
inline constexpr std::array<uint16_t, 29> kLenBase = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
inline constexpr std::array<uint8_t, 29> kLenExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
inline constexpr std::array<uint16_t, 30> kDistBase = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,
                                                       33,  49,  65,  97,  129, 193,  257,  385,  513,  769,
                                                       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
inline constexpr std::array<uint8_t, 30> kDistExtra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
// The order the code-length code's lengths are sent in (section 3.2.7).
inline constexpr std::array<uint8_t, 19> kClOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

// Length (3..258) -> length code (0..28, symbol 257 + code); distance -> distance code, looked
// up by d - 1 below 256 and by 256 + (d - 1) / 128 above (every code from 257 on starts at a
// multiple of 128 plus one, so the quotient decides it).
struct CodeTables {
    std::array<uint8_t, 259> len_code{};
    std::array<uint8_t, 512> dist_code{};
};

inline const CodeTables& code_tables() {
    static const CodeTables t = [] {
        CodeTables c;
        for (int code = 0; code < 29; ++code)
            for (int l = kLenBase[code]; l < kLenBase[code] + (1 << kLenExtra[code]) && l <= kMaxMatch; ++l)
                c.len_code[l] = static_cast<uint8_t>(code);
        c.len_code[258] = 28;  // 258 has its own code, not 227 + 31 under code 27
        for (int code = 0; code < 30; ++code)
            for (uint32_t d = kDistBase[code]; d < kDistBase[code] + (1u << kDistExtra[code]); ++d)
                c.dist_code[d <= 256 ? d - 1 : 256 + ((d - 1) >> 7)] = static_cast<uint8_t>(code);
        return c;
    }();
    return t;
}

inline int dist_code(const CodeTables& t, uint32_t d) { return d <= 256 ? t.dist_code[d - 1] : t.dist_code[256 + ((d - 1) >> 7)]; }

// One LZ77 token: a literal byte (dist 0, value in len_or_lit) or a match of len_or_lit bytes
// dist back.
struct Token {
    uint16_t len_or_lit;
    uint16_t dist;
};

// How hard each level searches: chain candidates, `good` (a match this long cuts the chain to a
// quarter), `nice` (a match this long ends the search), lazy (try the next position while the
// match is shorter than this; 0 greedy).
struct Effort {
    int chain, good, nice, lazy;
};
inline constexpr std::array<Effort, 10> kEffort = {{{0, 0, 0, 0},
                                                    {4, 4, 16, 0},
                                                    {8, 8, 32, 0},
                                                    {16, 8, 64, 0},
                                                    {16, 8, 32, 16},
                                                    {32, 8, 64, 32},
                                                    {128, 16, 160, 64},
                                                    {256, 32, 258, 128},
                                                    {1024, 64, 258, 258},
                                                    {4096, 258, 258, 258}}};

// Bits into bytes, least significant bit first (section 3.1.1).
struct BitWriter {
    std::vector<uint8_t>& out;
    uint64_t buf = 0;
    int n = 0;  // bits in buf

    void put(uint32_t bits, int count) {  // count <= 16
        buf |= uint64_t{bits} << n;
        n += count;
        if (n >= 32) {
            for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(buf >> (8 * i)));
            buf >>= 32;
            n -= 32;
        }
    }
    void align() {  // to the next byte boundary, then everything out
        if (n & 7) put(0, 8 - (n & 7));
        for (; n > 0; n -= 8, buf >>= 8) out.push_back(static_cast<uint8_t>(buf));
        buf = 0;
        n = 0;
    }
};

// Code lengths (at most `limit` bits) minimising sum freq * length, by package-merge (Larmore and
// Hirschberg 1990): the symbols' weights are coins; `limit - 1` times, pair up the list's
// cheapest items into packages and merge them with the coins again; the cheapest 2m - 2 items of
// the last list hold each symbol once per bit of its code. Needs at least two used symbols and
// 2^limit >= their number; gives them a complete prefix code. Unused symbols get 0.
inline void limited_code_lengths(const uint32_t* freq, int n, int limit, uint8_t* len) {
    std::fill(len, len + n, uint8_t{0});
    std::vector<int> sym;
    for (int i = 0; i < n; ++i)
        if (freq[i] > 0) sym.push_back(i);
    const size_t m = sym.size();
    if (m == 0) return;
    if (m == 1) {
        len[sym[0]] = 1;
        return;
    }
    std::stable_sort(sym.begin(), sym.end(), [&](int a, int b) { return freq[a] < freq[b]; });
    struct Node {
        uint64_t w;
        int a, b;  // a leaf: a the symbol, b -1; a package: a and b its two items (indices into pool)
    };
    std::vector<Node> pool;
    pool.reserve(m * static_cast<size_t>(limit) * 2);
    std::vector<int> coins;
    for (int s : sym) {
        coins.push_back(static_cast<int>(pool.size()));
        pool.push_back({freq[s], s, -1});
    }
    std::vector<int> list = coins, next;
    for (int level = 1; level < limit; ++level) {
        next.clear();
        const size_t packages = std::min(list.size() / 2, m - 1);  // only 2m - 2 items are ever taken
        size_t i = 0, j = 0;
        while (i < m || j < packages) {
            const uint64_t pw = j < packages ? pool[list[2 * j]].w + pool[list[2 * j + 1]].w : 0;
            if (j >= packages || (i < m && pool[coins[i]].w <= pw)) {
                next.push_back(coins[i++]);
            } else {
                next.push_back(static_cast<int>(pool.size()));
                pool.push_back({pw, list[2 * j], list[2 * j + 1]});
                ++j;
            }
        }
        std::swap(list, next);
    }
    std::vector<int> stack;
    for (size_t k = 0; k < 2 * m - 2; ++k) {
        stack.push_back(list[k]);
        while (!stack.empty()) {
            const Node& nd = pool[static_cast<size_t>(stack.back())];
            stack.pop_back();
            if (nd.b < 0) {
                ++len[nd.a];
            } else {
                stack.push_back(nd.a);
                stack.push_back(nd.b);
            }
        }
    }
}

// Canonical Huffman codes for the lengths (section 3.2.2), bit-reversed, since the writer sends
// bits least significant first and Huffman codes go most significant bit first.
inline void canonical_codes(const uint8_t* len, int n, uint16_t* code) {
    std::array<int, 16> count{}, next{};
    for (int i = 0; i < n; ++i) ++count[len[i]];
    count[0] = 0;
    for (int bits = 1, c = 0; bits < 16; ++bits) {
        c = (c + count[static_cast<size_t>(bits - 1)]) << 1;
        next[static_cast<size_t>(bits)] = c;
    }
    for (int i = 0; i < n; ++i) {
        code[i] = 0;
        if (len[i] == 0) continue;
        const int c = next[len[i]]++;
        int r = 0;
        for (int b = 0; b < len[i]; ++b) r |= ((c >> b) & 1) << (len[i] - 1 - b);
        code[i] = static_cast<uint16_t>(r);
    }
}

// Gives a used-symbol count of at least two (by marking symbols 0 and 1 used), so every code
// built is complete: a lone symbol would otherwise get a 1-bit code with one code left unused.
inline void at_least_two(uint32_t* freq, int n) {
    int used = 0;
    for (int i = 0; i < n; ++i) used += freq[i] > 0;
    for (int i = 0; used < 2; ++i)
        if (freq[i] == 0) {
            freq[i] = 1;
            ++used;
        }
}

// How many bytes of s and t agree, from `from` up to at most `max` (eight at a time, the first
// difference found by counting trailing zero bits: little-endian loads).
inline int match_length(const uint8_t* s, const uint8_t* t, int from, int max) {
    int len = from;
    for (; len + 8 <= max; len += 8) {
        uint64_t x, y;
        std::memcpy(&x, s + len, 8);
        std::memcpy(&y, t + len, 8);
        if (x != y) {
            if constexpr (std::endian::native == std::endian::little) return len + (std::countr_zero(x ^ y) >> 3);
            break;
        }
    }
    while (len < max && s[len] == t[len]) ++len;
    return len;
}

// LZ77 over the whole input at `level` (1..9).
inline std::vector<Token> lz77(std::span<const uint8_t> data, int level) {
    const Effort e = kEffort[static_cast<size_t>(level)];
    const uint8_t* d = data.data();
    const size_t n = data.size();
    std::vector<Token> tokens;
    tokens.reserve(n / 4 + 16);
    std::vector<int64_t> head(size_t{1} << kHashBits, -1), prev(kWindow, -1);
    auto hash = [&](size_t p) {
        const uint32_t v = uint32_t{d[p]} | (uint32_t{d[p + 1]} << 8) | (uint32_t{d[p + 2]} << 16);
        return (v * 0x9e3779b1u) >> (32 - kHashBits);
    };
    // Chains hold the positions before `inserted`; a search at p needs exactly those before p.
    size_t inserted = 0;
    const size_t last = n >= 3 ? n - 2 : 0;  // positions with three bytes to hash
    auto insert_to = [&](size_t end) {
        for (end = std::min(end, last); inserted < end; ++inserted) {
            const uint32_t h = hash(inserted);
            prev[inserted & (kWindow - 1)] = head[h];
            head[h] = static_cast<int64_t>(inserted);
        }
    };
    // The longest match at p longer than `have`, as {length, distance}; {0, 0} if none.
    auto longest = [&](size_t p, int have) -> std::pair<int, uint32_t> {
        const int max_len = static_cast<int>(std::min<size_t>(kMaxMatch, n - p));
        if (max_len < kMinMatch || p >= last) return {0, 0};
        int best = std::max(have, kMinMatch - 1);
        if (best >= max_len) return {0, 0};
        uint32_t best_dist = 0;
        int chain = have >= e.good ? e.chain >> 2 : e.chain;
        const int64_t lowest = static_cast<int64_t>(p) - static_cast<int64_t>(kWindow);
        const uint8_t* s = d + p;
        for (int64_t c = head[hash(p)]; c >= 0 && c >= lowest && chain-- > 0; c = prev[static_cast<size_t>(c) & (kWindow - 1)]) {
            const uint8_t* t = d + c;
            if (t[best] != s[best] || t[0] != s[0] || t[1] != s[1]) continue;
            const int len = match_length(s, t, 2, max_len);
            if (len > best) {
                best = len;
                best_dist = static_cast<uint32_t>(p - static_cast<size_t>(c));
                if (len >= e.nice || len >= max_len) break;
            }
        }
        if (best_dist == 0 || (best == kMinMatch && best_dist > 4096)) return {0, 0};
        return {best, best_dist};
    };
    size_t p = 0;
    while (p < n) {
        insert_to(p);
        auto [len, dist] = longest(p, 0);
        if (len == 0) {
            tokens.push_back({d[p], 0});
            ++p;
            continue;
        }
        while (len < e.lazy && p + 1 < n) {  // lazy: does the next position do better?
            insert_to(p + 1);
            const auto [len2, dist2] = longest(p + 1, len);
            if (len2 <= len) break;
            tokens.push_back({d[p], 0});
            ++p;
            len = len2;
            dist = dist2;
        }
        tokens.push_back({static_cast<uint16_t>(len), static_cast<uint16_t>(dist)});
        p += static_cast<size_t>(len);
    }
    return tokens;
}

// Stored blocks (section 3.2.4) for raw[0, n): 65535 bytes at most each.
inline void write_stored(BitWriter& bw, const uint8_t* raw, size_t n, bool final) {
    size_t at = 0;
    do {
        const size_t len = std::min<size_t>(65535, n - at);
        bw.put(final && at + len == n ? 1 : 0, 1);
        bw.put(0, 2);
        bw.align();
        for (uint32_t v : {static_cast<uint32_t>(len), static_cast<uint32_t>(~len & 0xffffu)}) {
            bw.out.push_back(static_cast<uint8_t>(v));
            bw.out.push_back(static_cast<uint8_t>(v >> 8));
        }
        bw.out.insert(bw.out.end(), raw + at, raw + at + len);
        at += len;
    } while (at < n);
}

// One block of tokens (covering raw[0, n)) in the smallest of dynamic Huffman, fixed Huffman and
// stored, each counted exactly in bits first.
inline void write_block(BitWriter& bw, const Token* tok, size_t nt, const uint8_t* raw, size_t n, bool final) {
    const CodeTables& ct = code_tables();
    std::array<uint32_t, 286> lfreq{};
    std::array<uint32_t, 30> dfreq{};
    for (size_t i = 0; i < nt; ++i) {
        if (tok[i].dist == 0) {
            ++lfreq[tok[i].len_or_lit];
        } else {
            ++lfreq[257u + ct.len_code[tok[i].len_or_lit]];
            ++dfreq[static_cast<size_t>(dist_code(ct, tok[i].dist))];
        }
    }
    lfreq[256] = 1;  // end of block
    // The extra bits, the same in both Huffman block types.
    uint64_t extra = 0;
    for (int c = 0; c < 29; ++c) extra += uint64_t{lfreq[257u + static_cast<size_t>(c)]} * kLenExtra[static_cast<size_t>(c)];
    for (int c = 0; c < 30; ++c) extra += uint64_t{dfreq[static_cast<size_t>(c)]} * kDistExtra[static_cast<size_t>(c)];

    // Fixed codes (section 3.2.6).
    std::array<uint8_t, 288> fl{};
    std::array<uint8_t, 30> fd{};
    for (int i = 0; i < 288; ++i) fl[static_cast<size_t>(i)] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    fd.fill(5);
    uint64_t fixed_bits = 3 + extra;
    for (size_t i = 0; i < 286; ++i) fixed_bits += uint64_t{lfreq[i]} * fl[i];
    for (size_t i = 0; i < 30; ++i) fixed_bits += uint64_t{dfreq[i]} * fd[i];

    // Dynamic codes: lengths, then the lengths' run-length code and its own Huffman code.
    std::array<uint32_t, 286> lf = lfreq;
    std::array<uint32_t, 30> df = dfreq;
    at_least_two(lf.data(), 286);
    at_least_two(df.data(), 30);
    std::array<uint8_t, 286> ll{};
    std::array<uint8_t, 30> dl{};
    limited_code_lengths(lf.data(), 286, 15, ll.data());
    limited_code_lengths(df.data(), 30, 15, dl.data());
    int hlit = 286, hdist = 30;
    while (hlit > 257 && ll[static_cast<size_t>(hlit - 1)] == 0) --hlit;
    while (hdist > 1 && dl[static_cast<size_t>(hdist - 1)] == 0) --hdist;
    std::vector<uint8_t> seq(ll.begin(), ll.begin() + hlit);
    seq.insert(seq.end(), dl.begin(), dl.begin() + hdist);
    std::vector<std::pair<uint8_t, uint8_t>> rle;  // {symbol 0..18, its extra-bits value}
    for (size_t i = 0; i < seq.size();) {
        size_t r = 1;
        while (i + r < seq.size() && seq[i + r] == seq[i]) ++r;
        const uint8_t v = seq[i];
        i += r;
        if (v == 0) {
            for (; r >= 11; r -= std::min<size_t>(r, 138)) rle.push_back({18, static_cast<uint8_t>(std::min<size_t>(r, 138) - 11)});
            if (r >= 3) {
                rle.push_back({17, static_cast<uint8_t>(r - 3)});
                r = 0;
            }
        } else {
            rle.push_back({v, 0});
            --r;
            for (; r >= 3; r -= std::min<size_t>(r, 6)) rle.push_back({16, static_cast<uint8_t>(std::min<size_t>(r, 6) - 3)});
        }
        for (; r > 0; --r) rle.push_back({v, 0});
    }
    std::array<uint32_t, 19> cf{};
    for (auto [s, x] : rle) ++cf[s];
    at_least_two(cf.data(), 19);
    std::array<uint8_t, 19> cl{};
    limited_code_lengths(cf.data(), 19, 7, cl.data());
    int hclen = 19;
    while (hclen > 4 && cl[kClOrder[static_cast<size_t>(hclen - 1)]] == 0) --hclen;
    uint64_t dyn_bits = 3 + 5 + 5 + 4 + 3 * static_cast<uint64_t>(hclen) + extra;
    for (auto [s, x] : rle) dyn_bits += cl[s] + (s == 16 ? 2 : s == 17 ? 3 : s == 18 ? 7 : 0);
    for (size_t i = 0; i < 286; ++i) dyn_bits += uint64_t{lfreq[i]} * ll[i];
    for (size_t i = 0; i < 30; ++i) dyn_bits += uint64_t{dfreq[i]} * dl[i];

    // Stored: 3 header bits, padding to a byte, LEN and NLEN, the bytes; per 65535 bytes.
    const uint64_t pieces = std::max<uint64_t>(1, (n + 65534) / 65535);
    const uint64_t stored_bits = 3 + static_cast<uint64_t>((8 - ((bw.n + 3) & 7)) & 7) + (pieces - 1) * 8 + pieces * 32 + 8 * uint64_t{n};

    if (stored_bits <= std::min(dyn_bits, fixed_bits)) {
        write_stored(bw, raw, n, final);
        return;
    }
    const bool dynamic = dyn_bits < fixed_bits;
    const uint8_t* lens = dynamic ? ll.data() : fl.data();
    const uint8_t* dlens = dynamic ? dl.data() : fd.data();
    std::array<uint16_t, 288> lcode{};
    std::array<uint16_t, 30> dcode{};
    canonical_codes(lens, dynamic ? 286 : 288, lcode.data());
    canonical_codes(dlens, 30, dcode.data());
    bw.put(final ? 1 : 0, 1);
    bw.put(dynamic ? 2 : 1, 2);
    if (dynamic) {
        std::array<uint16_t, 19> ccode{};
        canonical_codes(cl.data(), 19, ccode.data());
        bw.put(static_cast<uint32_t>(hlit - 257), 5);
        bw.put(static_cast<uint32_t>(hdist - 1), 5);
        bw.put(static_cast<uint32_t>(hclen - 4), 4);
        for (int i = 0; i < hclen; ++i) bw.put(cl[kClOrder[static_cast<size_t>(i)]], 3);
        for (auto [s, x] : rle) {
            bw.put(ccode[s], cl[s]);
            if (s >= 16) bw.put(x, s == 16 ? 2 : s == 17 ? 3 : 7);
        }
    }
    for (size_t i = 0; i < nt; ++i) {
        const Token t = tok[i];
        if (t.dist == 0) {
            bw.put(lcode[t.len_or_lit], lens[t.len_or_lit]);
            continue;
        }
        const size_t lc = ct.len_code[t.len_or_lit];
        bw.put(lcode[257 + lc], lens[257 + lc]);
        if (kLenExtra[lc]) bw.put(t.len_or_lit - kLenBase[lc], kLenExtra[lc]);
        const auto dc = static_cast<size_t>(dist_code(ct, t.dist));
        bw.put(dcode[dc], dlens[dc]);
        if (kDistExtra[dc]) bw.put(t.dist - kDistBase[dc], kDistExtra[dc]);
    }
    bw.put(lcode[256], lens[256]);
}

}  // namespace detail::deflate

// Raw DEFLATE data (RFC 1951) for `data`, appended to `out`. level 0: stored blocks only; 1-9:
// LZ77 and Huffman coding, more searching for higher levels (6 is the default).
inline void deflate(std::span<const uint8_t> data, int level, std::vector<uint8_t>& out) {
    namespace dd = detail::deflate;
    check(level >= 0 && level <= 9, "deflate: level must be 0 to 9, got ", level);
    dd::BitWriter bw{out};
    if (level == 0) {
        dd::write_stored(bw, data.data(), data.size(), true);
        return;
    }
    const std::vector<dd::Token> tokens = dd::lz77(data, level);
    size_t at = 0, byte = 0;  // the next token, and the first byte it covers
    do {
        const size_t end = std::min(tokens.size(), at + dd::kBlockTokens);
        size_t bytes = 0;
        for (size_t i = at; i < end; ++i) bytes += tokens[i].dist == 0 ? 1 : tokens[i].len_or_lit;
        dd::write_block(bw, tokens.data() + at, end - at, data.data() + byte, bytes, end == tokens.size());
        at = end;
        byte += bytes;
    } while (at < tokens.size());
    bw.align();
}

// A zlib stream (RFC 1950): the CMF/FLG header, deflate(data, level), the Adler-32 of data.
inline std::vector<uint8_t> zlib_compress(std::span<const uint8_t> data, int level = 6) {
    check(level >= 0 && level <= 9, "zlib_compress: level must be 0 to 9, got ", level);
    // CMF 0x78: method 8 (deflate), a 2^(7 + 8) byte window. FLG: FLEVEL in the top two bits,
    // no preset dictionary, FCHECK making CMF * 256 + FLG a multiple of 31.
    const uint32_t flevel = level <= 1 ? 0 : level <= 5 ? 1 : level == 6 ? 2 : 3;
    uint32_t flg = flevel << 6;
    flg += (31 - (0x78u * 256 + flg) % 31) % 31;
    std::vector<uint8_t> out = {0x78, static_cast<uint8_t>(flg)};
    out.reserve(level == 0 ? data.size() + data.size() / 65535 * 5 + 16 : data.size() / 4 + 64);
    deflate(data, level, out);
    const uint32_t a = adler32(data.data(), data.size());
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(a >> s));
    return out;
}

}  // namespace coeffnet::io
