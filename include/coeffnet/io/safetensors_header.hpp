// coeffnet/io/safetensors_header.hpp: the header of a safetensors file, read and checked.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N, then
// N bytes of UTF-8 JSON (the header), then the data section. The header is one object. Its
// optional "__metadata__" entry maps strings to strings (null means none); every other entry
// names a tensor: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, its bytes at
// [begin, end) of the data section, row-major and little-endian.
//
// parse_header checks the whole file but the tensors' bytes, and accepts what the reference
// implementation (safetensors/src/tensor.rs: read_metadata and Metadata::validate) accepts. The
// rules, each failure a coeffnet::Error naming the file, the tensor where there is one, and the
// rule:
//   1. the file holds at least the 8 bytes of N;
//   2. N <= 100,000,000 and 8 + N <= the file size;
//   3. the header is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)
//      and does not open with a byte-order mark;
//   4. it is one JSON value and nothing but whitespace after it (no NUL byte anywhere), nested
//      at most 127 deep (the reference parser's limit), with no number beyond double's range;
//   5. that value is an object;
//   6. "__metadata__" is null or an object whose values are all strings;
//   7. every other entry is an object with a known "dtype" string (the 22 of io/dtype.hpp),
//      "shape", an array of non-negative integers, and "data_offsets", an array of exactly two
//      non-negative integers [begin, end] with begin <= end; other fields are ignored, as the
//      reference ignores them;
//   8. the element count (the product of the shape, left to right, as the reference computes
//      it) and its size in bits fit in 64 bits, the bits make whole bytes, and end - begin is
//      exactly that many bytes;
//   9. sorted by (begin, end), the tensors tile the data section: the first begins at 0 and
//      each begins where the one before it ends (no gap, no overlap);
//  10. the last end is the size of the data section: no trailing bytes, nothing truncated.
// Stricter than the reference, on purpose: a key twice in one object is refused (the reference
// keeps the last, so a tensor could silently vanish); so are an entry written as a JSON array
// and a dtype written as {"F32": null} (serde quirks no writer produces), and a dimension above
// 2^63 - 1 (a Shape holds int64).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/strings.hpp"
#include "../tensor/tensor.hpp"
#include "dtype.hpp"
#include "utf8.hpp"

namespace coeffnet::io {

// One tensor's entry.
struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0, end = 0;  // byte offsets into the data section

    uint64_t nbytes() const { return end - begin; }
    int64_t numel() const { return shape_numel(shape, "safetensors"); }
};

// A checked header: what parse_header returns.
struct SafeTensorsHeader {
    uint64_t data_start = 8;                                    // 8 + N: where the data section begins
    bool has_metadata = false;                                  // a non-null "__metadata__" (perhaps empty)
    std::vector<std::pair<std::string, std::string>> metadata;  // in the header's order
    std::vector<TensorInfo> tensors;                            // in the order of their data
};

namespace detail {

inline constexpr uint64_t kMaxHeader = 100'000'000;
inline constexpr size_t kMaxDepth = 127;  // serde_json refuses the 128th level of nesting

inline std::string offsets_str(uint64_t b, uint64_t e) {
    return cat("[", std::to_string(b), ", ", std::to_string(e), "]");
}

// Walks the header as a stream of JSON events (nlohmann's SAX interface), checking rules 4-7
// on the way: no DOM, so a header is read in one pass however many tensors it holds, duplicate
// keys can be seen (a DOM keeps one), and the entries keep the header's order.
class HeaderParser {
public:
    using json = nlohmann::json;

    explicit HeaderParser(const std::string& file) : file_(file) {}

    std::vector<TensorInfo> tensors;  // header order
    bool has_metadata = false;
    std::vector<std::pair<std::string, std::string>> metadata;  // header order

    bool null() { return scalar(Kind::Null); }
    bool boolean(bool) { return scalar(Kind::Bool); }
    bool number_integer(json::number_integer_t) { return scalar(Kind::Negative); }  // written with '-'
    bool number_unsigned(json::number_unsigned_t v) {
        unsigned_ = v;
        return scalar(Kind::Unsigned);
    }
    bool number_float(json::number_float_t, const json::string_t&) { return scalar(Kind::Float); }
    bool string(json::string_t& s) {
        string_ = &s;
        return scalar(Kind::String);
    }
    bool binary(json::binary_t&) { return scalar(Kind::Binary); }
    bool start_object(size_t) { return open(Kind::Object); }
    bool start_array(size_t) { return open(Kind::Array); }
    bool key(json::string_t& k) {
        if (skip_) return true;
        Frame& f = stack_.back();
        if (!f.seen.insert(k).second) {
            if (f.ctx == Ctx::Top && k == "__metadata__") fail(file_, ": '__metadata__' appears twice in the header");
            if (f.ctx == Ctx::Top) fail(file_, ": tensor ", quote_name(k), " appears twice in the header");
            if (f.ctx == Ctx::Meta) fail(file_, ": __metadata__ key ", quote_name(k), " appears twice");
            fail(file_, ": tensor ", quote_name(entry_.name), ": field ", quote_name(k), " appears twice");
        }
        f.key = k;
        return true;
    }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    bool parse_error(size_t, const std::string&, const json::exception& e) {
        fail(file_, ": header is not valid JSON: ", e.what());
    }

private:
    enum class Kind { Null, Bool, Negative, Unsigned, Float, String, Binary, Object, Array };
    enum class Ctx { Top, Meta, Entry, Shape, Offsets };
    struct Frame {
        Ctx ctx;
        std::string key;  // the current key, in an object
        std::unordered_set<std::string> seen;
    };

    static const char* describe(Kind k) {
        switch (k) {
            case Kind::Null: return "null";
            case Kind::Bool: return "a boolean";
            case Kind::Negative: return "a negative number";
            case Kind::Unsigned: return "an integer";
            case Kind::Float: return "a floating-point number";
            case Kind::String: return "a string";
            case Kind::Binary: return "binary data";
            case Kind::Object: return "an object";
            case Kind::Array: return "an array";
        }
        return "?";
    }

    std::string tensor() const { return file_ + ": tensor " + quote_name(entry_.name) + ": "; }

    [[noreturn]] void bad_element(Ctx ctx, Kind k) const {
        const char* field = ctx == Ctx::Shape ? "'shape'" : "'data_offsets'";
        if (k == Kind::Negative)
            fail(tensor(), field, " holds a negative number (or -0); it must hold non-negative integers");
        fail(tensor(), field, " holds ", describe(k), "; it must hold non-negative integers");
    }

    // A value in the current context (for a container, before it opens).
    void place(Kind k) {
        if (stack_.empty()) {
            if (k != Kind::Object) fail(file_, ": header is ", describe(k), ", not a JSON object");
            stack_.push_back({Ctx::Top, {}, {}});
            return;
        }
        Frame& f = stack_.back();
        switch (f.ctx) {
            case Ctx::Top:
                if (f.key == "__metadata__") {
                    if (k == Kind::Null) return;
                    if (k != Kind::Object)
                        fail(file_, ": '__metadata__' is ", describe(k), "; it must be an object of strings (or null)");
                    has_metadata = true;
                    stack_.push_back({Ctx::Meta, {}, {}});
                    return;
                }
                entry_ = Pending{};
                entry_.name = f.key;
                if (k != Kind::Object)
                    fail(tensor(), "the entry is ", describe(k),
                         "; it must be an object with dtype, shape and data_offsets");
                stack_.push_back({Ctx::Entry, {}, {}});
                return;
            case Ctx::Meta:
                if (k != Kind::String)
                    fail(file_, ": __metadata__ value of ", quote_name(f.key), " is ", describe(k),
                         "; it must be a string");
                metadata.emplace_back(f.key, std::move(*string_));
                return;
            case Ctx::Entry:
                if (f.key == "dtype") {
                    if (k != Kind::String) fail(tensor(), "'dtype' is ", describe(k), "; it must be a string");
                    const auto d = find_dtype(*string_);
                    if (!d) fail(tensor(), "unknown dtype ", quote_name(*string_), " (known: ", known_dtypes(), ")");
                    entry_.info.dtype = *d;
                    entry_.has_dtype = true;
                } else if (f.key == "shape" || f.key == "data_offsets") {
                    if (k != Kind::Array)
                        fail(tensor(), quote_name(f.key), " is ", describe(k), "; it must be an array of integers");
                    const bool shape = f.key == "shape";
                    (shape ? entry_.has_shape : entry_.has_offsets) = true;
                    stack_.push_back({shape ? Ctx::Shape : Ctx::Offsets, {}, {}});
                } else if (k == Kind::Object || k == Kind::Array) {
                    skip_ = 1;  // an unknown field: ignored, as the reference ignores it
                }
                return;
            case Ctx::Shape:
                if (k != Kind::Unsigned) bad_element(f.ctx, k);
                if (unsigned_ > static_cast<uint64_t>(INT64_MAX))
                    fail(tensor(), "dimension ", unsigned_, " is larger than 2^63 - 1");
                entry_.info.shape.push_back(static_cast<int64_t>(unsigned_));
                return;
            case Ctx::Offsets:
                if (k != Kind::Unsigned) bad_element(f.ctx, k);
                if (entry_.n_offsets == 2) fail(tensor(), "'data_offsets' holds more than 2 integers");
                entry_.offsets[entry_.n_offsets++] = unsigned_;
                return;
        }
    }

    bool scalar(Kind k) {
        if (!skip_) place(k);
        return true;
    }

    bool open(Kind k) {
        if (++depth_ > kMaxDepth) fail(file_, ": header nests arrays and objects more than ", kMaxDepth, " deep");
        if (skip_) ++skip_;
        else place(k);
        return true;
    }

    bool close() {
        --depth_;
        if (skip_) {
            --skip_;
            return true;
        }
        const Ctx ctx = stack_.back().ctx;
        stack_.pop_back();
        if (ctx == Ctx::Offsets && entry_.n_offsets != 2)
            fail(tensor(), "'data_offsets' holds ", entry_.n_offsets, " integer", entry_.n_offsets == 1 ? "" : "s",
                 "; it must be [begin, end]");
        if (ctx == Ctx::Entry) finish_entry();
        return true;
    }

    void finish_entry() {
        const char* missing = !entry_.has_dtype ? "dtype" : !entry_.has_shape ? "shape"
                            : !entry_.has_offsets ? "data_offsets" : nullptr;
        if (missing) fail(tensor(), "the entry has no '", missing, "'");
        TensorInfo& ti = entry_.info;
        ti.begin = entry_.offsets[0];
        ti.end = entry_.offsets[1];
        if (ti.begin > ti.end) fail(tensor(), "data_offsets ", offsets_str(ti.begin, ti.end), " begin after they end");
        const auto bytes = checked_nbytes(ti.shape, ti.dtype, tensor());
        if (!bytes)
            fail(tensor(), "the size of ", dtype_name(ti.dtype), " ", shape_str(ti.shape), " overflows 64 bits");
        if (*bytes != ti.nbytes())
            fail(tensor(), "data_offsets ", offsets_str(ti.begin, ti.end), " hold ", ti.nbytes(), " bytes but ",
                 dtype_name(ti.dtype), " ", shape_str(ti.shape), " needs ", *bytes);
        ti.name = entry_.name;
        tensors.push_back(std::move(ti));
    }

    struct Pending {
        std::string name;
        TensorInfo info;
        bool has_dtype = false, has_shape = false, has_offsets = false;
        size_t n_offsets = 0;
        uint64_t offsets[2] = {0, 0};
    };

    std::string file_;
    std::vector<Frame> stack_;
    size_t depth_ = 0;  // open arrays and objects, ignored ones included
    size_t skip_ = 0;   // > 0 inside an ignored field's value
    Pending entry_;
    uint64_t unsigned_ = 0;
    json::string_t* string_ = nullptr;
};

inline std::string hex_byte(unsigned char c) {
    static constexpr char hex[] = "0123456789abcdef";
    return {hex[c >> 4], hex[c & 15]};
}

}  // namespace detail

// Checks rules 1-10 on a whole file's bytes; `name` stands for the file in messages.
inline SafeTensorsHeader parse_header(std::span<const std::byte> file, const std::string& name) {
    const auto* b = reinterpret_cast<const unsigned char*>(file.data());
    const size_t size = file.size();
    if (size < 8) fail(name, ": the file is ", size, " bytes, too short to hold the 8-byte header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
    if (n > detail::kMaxHeader) fail(name, ": header length ", n, " is over the limit of ", detail::kMaxHeader, " bytes");
    if (n > size - 8)
        fail(name, ": header length ", n, " runs past the end of the file (", size, " bytes hold at most ", size - 8,
             " after the length)");
    const unsigned char* h = b + 8;
    if (const size_t bad = detail::utf8_error(h, n); bad != std::string::npos)
        fail(name, ": header is not valid UTF-8 (byte 0x", detail::hex_byte(h[bad]), " at header offset ", bad, ")");
    if (n >= 3 && h[0] == 0xef && h[1] == 0xbb && h[2] == 0xbf)
        fail(name, ": header opens with a UTF-8 byte-order mark, which JSON does not allow");
    // nlohmann's lexer takes a NUL for the end of its input; JSON allows none anywhere.
    if (const void* z = std::memchr(h, 0, n))
        fail(name, ": header is not valid JSON: a NUL byte at header offset ", static_cast<const unsigned char*>(z) - h);

    SafeTensorsHeader out;
    out.data_start = 8 + n;
    detail::HeaderParser parser(name);
    const char* first = reinterpret_cast<const char*>(h);
    nlohmann::json::sax_parse(first, first + n, &parser, nlohmann::json::input_format_t::json, true, false);
    out.has_metadata = parser.has_metadata;
    out.metadata = std::move(parser.metadata);
    out.tensors = std::move(parser.tensors);

    // Rule 9: sorted by (begin, end), the tensors tile the data section.
    std::vector<TensorInfo>& ts = out.tensors;
    std::stable_sort(ts.begin(), ts.end(), [](const TensorInfo& x, const TensorInfo& y) {
        return std::pair(x.begin, x.end) < std::pair(y.begin, y.end);
    });
    uint64_t at = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
        const TensorInfo& t = ts[i];
        if (t.begin != at) {
            const std::string where =
                cat(name, ": tensor ", quote_name(t.name), ": data_offsets ", detail::offsets_str(t.begin, t.end));
            if (i == 0) fail(where, " begin at ", t.begin, ", but the first tensor's data must begin at 0");
            const std::string prev = quote_name(ts[i - 1].name);
            if (t.begin > at)
                fail(where, " leave a gap of ", t.begin - at, " bytes after tensor ", prev, ", which ends at ", at);
            fail(where, " overlap tensor ", prev, ", which ends at ", at);
        }
        at = t.end;
    }
    // Rule 10: ... and nothing else.
    const uint64_t data_size = size - out.data_start;
    if (at < data_size)
        fail(name, ": the tensors end at ", at, " but the data section holds ", data_size, " bytes: ", data_size - at,
             " trailing bytes");
    if (at > data_size)
        fail(name, ": the tensors end at ", at, " but the data section holds only ", data_size,
             " bytes: the file is truncated");
    return out;
}

}  // namespace coeffnet::io
