// tests/fuzz/safetensors_cases.hpp: hand-made safetensors files, shared by the unit tests
// (tests/test_safetensors.cpp, which checks each verdict) and the fuzzer's seed corpus
// (tests/fuzz/make_corpus.cpp).
//
// malformed_cases(): files the reader must refuse, each with a distinctive part of the message
// it must give. quirk_cases(): unusual files the reference implementation accepts, so the
// reader must accept them too. Each verdict was checked against the reference (safetensors 0.8,
// safetensors.deserialize) except where `stricter` says the reader refuses on purpose.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace safetensors_cases {

struct Case {
    std::string label;
    std::string bytes;
    std::string expect;     // part of the error message (malformed cases only)
    bool stricter = false;  // the reference accepts this file; coeffnet refuses it on purpose
};

// The 8-byte little-endian length n.
inline std::string le64(uint64_t n) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xffu);
    return out;
}

// A file: the header's length, the header, then `data` bytes of data section (zeros).
inline std::string file(const std::string& header, size_t data = 0) {
    return le64(header.size()) + header + std::string(data, '\0');
}

// One tensor entry.
inline std::string entry(const std::string& dtype, const std::string& shape, uint64_t begin, uint64_t end) {
    return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) + "," +
           std::to_string(end) + "]}";
}

inline std::string f32(uint64_t begin = 0) { return entry("F32", "[1]", begin, begin + 4); }

inline std::vector<Case> malformed_cases() {
    const std::string good = "{\"a\":" + f32() + "}";
    std::string deep = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":";
    deep += std::string(126, '[') + std::string(126, ']') + "}}";  // 128 levels in all
    return {
        // Rules 1-2: the length prefix.
        {"empty file", "", "too short to hold the 8-byte header length"},
        {"7 bytes", std::string(7, '\0'), "the file is 7 bytes, too short"},
        {"header length over 100 MB", le64(100'000'001) + "{}", "header length 100000001 is over the limit"},
        {"header length 2^64 - 1", le64(UINT64_MAX) + "{}", "is over the limit of 100000000 bytes"},
        {"header length past the end", le64(100) + "{}", "header length 100 runs past the end of the file"},
        {"header length 100 MB, file short", le64(100'000'000) + "{}", "runs past the end of the file"},
        // Rule 3: UTF-8.
        {"stray continuation byte", file("{\"__metadata__\":{\"k\":\"\x80\"}}"), "header is not valid UTF-8 (byte 0x80"},
        {"overlong encoding", file("{\"__metadata__\":{\"k\":\"\xc0\x80\"}}"), "not valid UTF-8 (byte 0xc0"},
        {"UTF-8 surrogate", file("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}"), "not valid UTF-8 (byte 0xed"},
        {"code point past U+10FFFF", file("{\"__metadata__\":{\"k\":\"\xf4\x90\x80\x80\"}}"), "not valid UTF-8 (byte 0xf4"},
        {"sequence cut by the header's end", file("{}\xe2\x82"), "not valid UTF-8 (byte 0xe2 at header offset 2)"},
        {"byte-order mark", file("\xef\xbb\xbf{}"), "byte-order mark"},
        // Rule 4: JSON.
        {"not JSON", file("{\"a\":"), "header is not valid JSON"},
        {"empty header", file(""), "header is not valid JSON"},
        {"garbage after the object", file("{} x"), "header is not valid JSON"},
        {"NUL padding", file(std::string("{}\0\0", 4)), "header is not valid JSON"},
        {"comment", file("{/* c */}"), "header is not valid JSON"},
        {"number beyond double",
         file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1e400}}", 4), "header is not valid JSON"},
        {"lone surrogate escape", file("{\"__metadata__\":{\"k\":\"\\ud800\"}}"), "header is not valid JSON"},
        {"raw control character in a string", file("{\"__metadata__\":{\"k\":\"a\nb\"}}"), "header is not valid JSON"},
        {"nested 128 deep", file(deep, 4), "more than 127 deep"},
        // Rule 5: an object.
        {"JSON array", file("[]"), "header is an array, not a JSON object"},
        {"JSON string", file("\"x\""), "header is a string, not a JSON object"},
        // Rule 6: __metadata__.
        {"__metadata__ an array", file("{\"__metadata__\":[]}"), "'__metadata__' is an array; it must be an object"},
        {"__metadata__ a string", file("{\"__metadata__\":\"x\"}"), "'__metadata__' is a string"},
        {"__metadata__ value a number", file("{\"__metadata__\":{\"k\":1}}"),
         "__metadata__ value of 'k' is an integer; it must be a string"},
        {"__metadata__ value an object", file("{\"__metadata__\":{\"k\":{}}}"), "__metadata__ value of 'k' is an object"},
        {"__metadata__ value null", file("{\"__metadata__\":{\"k\":null}}"), "__metadata__ value of 'k' is null"},
        {"__metadata__ twice", file("{\"__metadata__\":{},\"__metadata__\":{}}"), "'__metadata__' appears twice"},
        {"metadata key twice", file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), "__metadata__ key 'k' appears twice",
         true},
        // Rule 7: entries.
        {"tensor name twice", file("{\"a\":" + f32() + ",\"a\":" + f32() + "}", 4), "tensor 'a' appears twice", true},
        {"field twice", file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
         "tensor 'a': field 'dtype' appears twice"},
        {"entry an array", file("{\"a\":[\"F32\",[1],[0,4]]}", 4), "tensor 'a': the entry is an array", true},
        {"entry null", file("{\"a\":null}"), "tensor 'a': the entry is null"},
        {"entry a number", file("{\"a\":7}"), "tensor 'a': the entry is an integer"},
        {"unknown dtype", file("{\"a\":" + entry("f32", "[1]", 0, 4) + "}", 4), "tensor 'a': unknown dtype 'f32'"},
        {"dtype a number", file("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
         "tensor 'a': 'dtype' is an integer"},
        {"dtype as an enum map", file("{\"a\":{\"dtype\":{\"F32\":null},\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
         "tensor 'a': 'dtype' is an object", true},
        {"no dtype", file("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'a': the entry has no 'dtype'"},
        {"no shape", file("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'a': the entry has no 'shape'"},
        {"no data_offsets", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
         "tensor 'a': the entry has no 'data_offsets'"},
        {"negative dimension", file("{\"a\":" + entry("F32", "[2,-1]", 0, 4) + "}", 4),
         "tensor 'a': 'shape' holds a negative number"},
        {"dimension -0", file("{\"a\":" + entry("F32", "[-0]", 0, 0) + "}"), "'shape' holds a negative number (or -0)"},
        {"dimension 1.0", file("{\"a\":" + entry("F32", "[1.0]", 0, 4) + "}", 4),
         "tensor 'a': 'shape' holds a floating-point number"},
        {"dimension a string", file("{\"a\":" + entry("F32", "[\"1\"]", 0, 4) + "}", 4), "'shape' holds a string"},
        {"dimension past u64", file("{\"a\":" + entry("F32", "[18446744073709551616]", 0, 4) + "}", 4),
         "'shape' holds a floating-point number"},
        {"shape a number", file("{\"a\":" + entry("F32", "4", 0, 16) + "}", 16), "tensor 'a': 'shape' is an integer"},
        {"dimension past int64", file("{\"a\":" + entry("F32", "[0,9223372036854775808]", 0, 0) + "}"),
         "tensor 'a': dimension 9223372036854775808 is larger than 2^63 - 1", true},
        {"element count overflows", file("{\"a\":" + entry("F32", "[4294967296,4294967296]", 0, 4) + "}", 4),
         "tensor 'a': the size of F32 [4294967296, 4294967296] overflows 64 bits"},
        {"bit count overflows", file("{\"a\":" + entry("F32", "[2305843009213693952]", 0, 4) + "}", 4),
         "overflows 64 bits"},
        {"overflow before a zero", file("{\"a\":" + entry("F32", "[4294967296,4294967296,0]", 0, 0) + "}"),
         "overflows 64 bits"},
        {"F4 odd count", file("{\"a\":" + entry("F4", "[3]", 0, 1) + "}", 1), "F4 [3] is 12 bits, not a whole number of bytes"},
        {"data_offsets one integer", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4),
         "'data_offsets' holds 1 integer; it must be [begin, end]"},
        {"data_offsets three integers", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4),
         "'data_offsets' holds more than 2 integers"},
        {"data_offsets an object",
         file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"0\":0,\"1\":4}}}", 4),
         "'data_offsets' is an object"},
        {"data_offsets negative", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,-4]}}"),
         "'data_offsets' holds a negative number"},
        {"begin after end", file("{\"a\":" + f32() + ",\"b\":" + entry("F32", "[0]", 4, 0) + "}", 4),
         "tensor 'b': data_offsets [4, 0] begin after they end"},
        // Rule 8: the bytes each tensor needs.
        {"too few bytes", file("{\"w\":" + entry("F32", "[2,2]", 0, 12) + "}", 12),
         "tensor 'w': data_offsets [0, 12] hold 12 bytes but F32 [2, 2] needs 16"},
        {"too many bytes", file("{\"w\":" + entry("F16", "[3]", 0, 8) + "}", 8),
         "tensor 'w': data_offsets [0, 8] hold 8 bytes but F16 [3] needs 6"},
        {"scalar with no bytes", file("{\"s\":" + entry("F64", "[]", 0, 0) + "}"),
         "hold 0 bytes but F64 [] needs 8"},
        // Rule 9: the tensors tile the data section.
        {"first tensor not at 0", file("{\"a\":" + f32(4) + "}", 8),
         "tensor 'a': data_offsets [4, 8] begin at 4, but the first tensor's data must begin at 0"},
        {"gap between tensors", file("{\"a\":" + f32(0) + ",\"b\":" + f32(8) + "}", 12),
         "tensor 'b': data_offsets [8, 12] leave a gap of 4 bytes after tensor 'a', which ends at 4"},
        {"overlapping tensors", file("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + f32(4) + "}", 8),
         "tensor 'b': data_offsets [4, 8] overlap tensor 'a', which ends at 8"},
        {"one region twice", file("{\"a\":" + f32(0) + ",\"b\":" + f32(0) + "}", 4),
         "data_offsets [0, 4] overlap tensor"},
        // Rule 10: nothing after the last tensor, nothing missing.
        {"trailing bytes", file(good, 5), "the tensors end at 4 but the data section holds 5 bytes: 1 trailing bytes"},
        {"data but no tensors", file("{}", 4), "the tensors end at 0 but the data section holds 4 bytes"},
        {"truncated data", file(good, 3), "holds only 3 bytes: the file is truncated"},
        {"truncated in the second tensor", file("{\"a\":" + f32(0) + ",\"b\":" + f32(4) + "}", 6),
         "the tensors end at 8 but the data section holds only 6 bytes"},
    };
}

// Files the reference accepts, some of them odd; `label` says what is odd.
inline std::vector<Case> quirk_cases() {
    std::string deep = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":";
    deep += std::string(125, '[') + std::string(125, ']') + "}}";  // 127 levels in all
    return {
        {"no tensors", file("{}"), ""},
        {"no tensors, padded", file("{}      "), ""},
        {"whitespace around the object", file(" \t\r\n{} \n"), ""},
        {"__metadata__ null", file("{\"__metadata__\":null,\"a\":" + f32() + "}", 4), ""},
        {"__metadata__ empty", file("{\"__metadata__\":{}}"), ""},
        {"__metadata__ after the tensors", file("{\"a\":" + f32() + ",\"__metadata__\":{\"k\":\"v\"}}", 4), ""},
        {"unknown fields, ignored", file("{\"a\":{\"x\":-1,\"dtype\":\"F32\",\"y\":[{\"z\":null}],\"shape\":[1],"
                                         "\"data_offsets\":[0,4],\"w\":1.5e300}}", 4), ""},
        {"an ignored field nested 127 deep", file(deep, 4), ""},
        {"header order differs from data order",
         file("{\"b\":" + f32(4) + ",\"a\":" + f32(0) + "}", 8), ""},
        {"two empty tensors at one offset",
         file("{\"a\":" + entry("F32", "[0]", 0, 0) + ",\"b\":" + entry("I64", "[3,0]", 0, 0) + "}"), ""},
        {"empty tensor after the data", file("{\"a\":" + f32() + ",\"z\":" + entry("F32", "[0,4]", 4, 4) + "}", 4), ""},
        {"scalar", file("{\"s\":" + entry("F32", "[]", 0, 4) + "}", 4), ""},
        {"zero-size tensor with huge dimensions",
         file("{\"a\":" + entry("F32", "[0,4611686018427387904,4611686018427387904]", 0, 0) + "}"), ""},
        {"F4, whole bytes", file("{\"a\":" + entry("F4", "[4]", 0, 2) + "}", 2), ""},
        {"F6_E2M3", file("{\"a\":" + entry("F6_E2M3", "[4]", 0, 3) + "}", 3), ""},
        {"C64", file("{\"a\":" + entry("C64", "[1]", 0, 8) + "}", 8), ""},
        {"every 8-bit float", file("{\"a\":" + entry("F8_E4M3", "[1]", 0, 1) + ",\"b\":" + entry("F8_E5M2", "[1]", 1, 2) +
                                   ",\"c\":" + entry("F8_E8M0", "[1]", 2, 3) + ",\"d\":" + entry("F8_E4M3FNUZ", "[1]", 3, 4) +
                                   ",\"e\":" + entry("F8_E5M2FNUZ", "[1]", 4, 5) + "}", 5), ""},
        {"empty name", file("{\"\":" + f32() + "}", 4), ""},
        {"escaped names", file("{\"a\\u0000b\":" + f32(0) + ",\"\\u00e9\\\"\\\\\":" + f32(4) + "}", 8), ""},
        {"UTF-8 names", file("{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":" + f32() + "}", 4), ""},
        {"__METADATA__ is a tensor", file("{\"__METADATA__\":" + f32() + "}", 4), ""},
        {"unpadded header", file("{\"a\":" + entry("F64", "[2]", 0, 16) + "}", 16), ""},
    };
}

}  // namespace safetensors_cases
