// coeffnet/io/safetensors.hpp: reading and writing safetensors files, the format of Hugging
// Face checkpoints.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N, then
// N bytes of UTF-8 JSON (the header), then the data section. The header is one object. Its
// optional "__metadata__" entry maps strings to strings (null means none); every other entry
// names a tensor: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, its bytes at
// [begin, end) of the data section, row-major and little-endian.
//
// SafeTensors::open maps the file and checks all of it at once, so a SafeTensors that exists is
// sound and every later access is in bounds. It accepts what the reference implementation
// (safetensors/src/tensor.rs: read_metadata and Metadata::validate) accepts. The rules, each
// failure a coeffnet::Error naming the file, the tensor where there is one, and the rule:
//   1. the file holds at least the 8 bytes of N;
//   2. N <= 100,000,000 and 8 + N <= the file size;
//   3. the header is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)
//      and does not open with a byte-order mark;
//   4. it is one JSON value and nothing but whitespace after it (no NUL byte anywhere), nested
//      at most 127 deep (the reference parser's limit), with no number beyond double's range;
//   5. that value is an object;
//   6. "__metadata__" is null or an object whose values are all strings;
//   7. every other entry is an object with a known "dtype" string (the 22 of DType below),
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
//
// The mapping is copy-on-write (MAP_PRIVATE of a file opened read-only): get<T>() returns a
// zero-copy view into it when the data is aligned for T (a copy when it is not: writers other
// than the reference do not pad the header), and writing through such a view changes this
// process's copy, never the file. Views share ownership of the mapping, so they outlive the
// SafeTensors. As with any mapping, truncating the file while it is mapped is undefined
// (SIGBUS); SafeTensorsWriter::write never does that, it replaces the file.
//
// SafeTensorsWriter writes what the reference writer writes, byte for byte: tensors sorted by
// dtype (in DType's order, largest first) then by name, offsets packed from 0, the header as
// compact JSON ("__metadata__" first, then each tensor's "dtype", "shape", "data_offsets"),
// padded with spaces to a multiple of 8 so that every tensor's data is aligned. write() goes to
// a temporary file beside the target, synced, then renamed over it: a crash leaves the old file
// or the new one, never half of one, and mappings of the old file stay valid.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/strings.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet::io {

// ---- element types ------------------------------------------------------------------------

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

inline const DTypeRow& dtype_row(DType d) {
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

inline std::string_view dtype_name(DType d) { return detail::dtype_row(d).name; }

// Bits per element: 4 for F4, 6 for the F6 types, 8 to 64 for the rest.
inline size_t dtype_bits(DType d) { return detail::dtype_row(d).bits; }

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
}

// The value of one 8-bit float (F8_*) as a double; NaN for the NaN encodings.
inline double f8_to_double(DType d, uint8_t b) {
    const bool neg = (b & 0x80u) != 0;
    double v;
    switch (d) {
        case DType::F8_E5M2:  // IEEE-like binary8: the top byte of a binary16
            return static_cast<double>(half_t::to_float(static_cast<uint16_t>(b << 8)));
        case DType::F8_E4M3: {  // bias 7, no infinities, S.1111.111 is NaN
            const int e = (b >> 3) & 0xf, m = b & 0x7;
            if (e == 0xf && m == 0x7) return std::nan("");
            v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
            break;
        }
        case DType::F8_E4M3FNUZ: {  // bias 8, no infinities, no -0: 0x80 is NaN
            if (b == 0x80u) return std::nan("");
            const int e = (b >> 3) & 0xf, m = b & 0x7;
            v = e == 0 ? std::ldexp(m / 8.0, -7) : std::ldexp(1.0 + m / 8.0, e - 8);
            break;
        }
        case DType::F8_E5M2FNUZ: {  // bias 16, no infinities, no -0: 0x80 is NaN
            if (b == 0x80u) return std::nan("");
            const int e = (b >> 2) & 0x1f, m = b & 0x3;
            v = e == 0 ? std::ldexp(m / 4.0, -15) : std::ldexp(1.0 + m / 4.0, e - 16);
            break;
        }
        case DType::F8_E8M0:  // an exponent alone: 2^(b - 127), 0xff is NaN
            return b == 0xffu ? std::nan("") : std::ldexp(1.0, static_cast<int>(b) - 127);
        default:
            fail("safetensors: ", dtype_name(d), " is not an 8-bit float type");
    }
    return neg ? -v : v;
}

// ---- one tensor's entry -------------------------------------------------------------------

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0, end = 0;  // byte offsets into the data section

    uint64_t nbytes() const { return end - begin; }
    int64_t numel() const { return shape_numel(shape, "safetensors"); }
};

namespace detail {

inline constexpr uint64_t kMaxHeader = 100'000'000;
inline constexpr size_t kMaxDepth = 127;  // serde_json refuses the 128th level of nesting

// A name as it appears in messages: quoted, control characters escaped, long names cut.
inline std::string quote_name(std::string_view s) {
    std::string out = "'";
    const size_t keep = std::min<size_t>(s.size(), 120);
    for (size_t i = 0; i < keep; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (keep < s.size()) out += "...";
    return out + "'";
}

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

// Concatenates strings by appending (`"literal" + std::string(...)` trips GCC 12's -Wrestrict).
template <class... S>
std::string cat(const S&... parts) {
    std::string out;
    (out += ... += parts);
    return out;
}

inline std::string offsets_str(uint64_t b, uint64_t e) {
    return cat("[", std::to_string(b), ", ", std::to_string(e), "]");
}

// Bytes of `count` elements of `dtype` with this shape; nullopt on 64-bit overflow (computed as
// the reference does: the product left to right, then times the bits). Throws when the bits are
// not whole bytes.
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

// The bytes a SafeTensors reads: a private mapping of a file, or a 64-byte-aligned copy of an
// in-memory buffer. Views returned by get() share ownership of it.
struct Storage {
    std::byte* data = nullptr;
    size_t size = 0;
    bool mapped = false;

    Storage() = default;
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() {
        if (!data) return;
        if (mapped) ::munmap(data, size);
        else ::operator delete[](data, std::align_val_t{64});
    }
};

class FdCloser {
public:
    explicit FdCloser(int fd) : fd_(fd) {}
    FdCloser(const FdCloser&) = delete;
    FdCloser& operator=(const FdCloser&) = delete;
    ~FdCloser() { close(); }
    int get() const { return fd_; }
    int close() {
        const int rc = fd_ >= 0 ? ::close(fd_) : 0;
        fd_ = -1;
        return rc;
    }

private:
    int fd_;
};

inline std::string errno_str(int err) { return std::generic_category().message(err); }

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

}  // namespace detail

// ---- the reader ---------------------------------------------------------------------------

class SafeTensorsWriter;

class SafeTensors {
public:
    // Maps and checks the file; throws coeffnet::Error naming it and the broken rule.
    static SafeTensors open(const std::filesystem::path& path) {
        const std::string name = path.string();
        detail::FdCloser fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) fail(name, ": cannot open: ", detail::errno_str(errno));
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) fail(name, ": cannot stat: ", detail::errno_str(errno));
        if (!S_ISREG(st.st_mode)) fail(name, ": not a regular file");
        const auto size = static_cast<size_t>(st.st_size);
        if (size < 8) fail(name, ": the file is ", size, " bytes, too short to hold the 8-byte header length");
        auto storage = std::make_shared<detail::Storage>();
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
        if (p == MAP_FAILED) fail(name, ": cannot map ", size, " bytes: ", detail::errno_str(errno));
        storage->data = static_cast<std::byte*>(p);
        storage->size = size;
        storage->mapped = true;
        SafeTensors out(std::move(storage), name);
        out.path_ = path;
        return out;
    }

    // Checks an in-memory file (copied into an aligned buffer); `name` stands for the file in
    // messages.
    static SafeTensors from_bytes(std::string_view bytes, std::string name = "<memory>") {
        auto storage = std::make_shared<detail::Storage>();
        if (!bytes.empty()) {
            storage->data = static_cast<std::byte*>(::operator new[](bytes.size(), std::align_val_t{64}));
            storage->size = bytes.size();
            std::memcpy(storage->data, bytes.data(), bytes.size());
        }
        return SafeTensors(std::move(storage), std::move(name));
    }

    const std::filesystem::path& path() const { return path_; }  // empty for from_bytes
    const std::string& name() const { return name_; }

    // True when the header has a non-null "__metadata__" (perhaps empty).
    bool has_metadata() const { return has_metadata_; }
    const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
    // The same pairs in the header's order (the reference writer's is arbitrary).
    const std::vector<std::pair<std::string, std::string>>& metadata_items() const { return metadata_items_; }

    // Every tensor, in the order of their data in the file.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& t : tensors_) out.push_back(t.name);
        return out;
    }
    size_t size() const { return tensors_.size(); }
    bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

    // Throws naming the file and the missing tensor, with the closest names as suggestions.
    const TensorInfo& info(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) not_found(name);
        return tensors_[it->second];
    }

    // The tensor's raw little-endian bytes, inside the mapping.
    std::span<const std::byte> bytes(std::string_view name) const {
        const TensorInfo& t = info(name);
        return {storage_->data + data_start_ + t.begin, static_cast<size_t>(t.nbytes())};
    }

    uint64_t header_size() const { return data_start_ - 8; }  // N
    uint64_t data_start() const { return data_start_; }       // 8 + N
    std::span<const std::byte> file_bytes() const { return {storage_->data, storage_->size}; }

    // The tensor as stored; its dtype must be T's (float F32, double F64, half_t F16,
    // bfloat16_t BF16, intN_t IN, uintN_t UN; uint8_t also reads BOOL). A view into the
    // mapping when the data is aligned for T, else a copy.
    template <class T>
    Tensor<T> get(std::string_view name) const {
        const TensorInfo& t = info(name);
        constexpr DType want = dtype_of<T>();
        const bool ok = t.dtype == want || (std::is_same_v<T, uint8_t> && t.dtype == DType::BOOL);
        if (!ok)
            fail(name_, ": tensor ", detail::quote_name(t.name), " is ", dtype_name(t.dtype), ", not ",
                 dtype_name(want), " (get_as<float>() converts)");
        check_tensor_shape(t);
        std::byte* p = storage_->data + data_start_ + t.begin;
        if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0)
            return Tensor<T>::from_blob(reinterpret_cast<T*>(p), t.shape, std::shared_ptr<void>(storage_));
        Tensor<T> out = Tensor<T>::empty(t.shape);
        std::memcpy(static_cast<void*>(out.data()), p, static_cast<size_t>(t.nbytes()));
        return out;
    }

    // The tensor converted to float or double: from F16, BF16, F32, F64, the 8-bit floats, the
    // integers and BOOL (nonzero is 1). Not from F4, F6 or C64. When the dtype is T's already,
    // this is get<T>().
    template <class T>
    Tensor<T> get_as(std::string_view name) const {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "get_as converts to float or double");
        const TensorInfo& t = info(name);
        if (t.dtype == dtype_of<T>()) return get<T>(name);
        check_tensor_shape(t);
        Tensor<T> out = Tensor<T>::empty(t.shape);
        const std::byte* p = storage_->data + data_start_ + t.begin;
        const int64_t n = t.numel();
        T* o = out.data();
        const auto cast = [](auto s) { return static_cast<T>(s); };
        switch (t.dtype) {
            case DType::F16:
                convert_each<uint16_t>(p, n, o, [](uint16_t h) { return static_cast<T>(half_t::to_float(h)); });
                break;
            case DType::BF16:
                convert_each<uint16_t>(p, n, o, [](uint16_t h) {
                    return static_cast<T>(std::bit_cast<float>(uint32_t{h} << 16));
                });
                break;
            case DType::F32: convert_each<float>(p, n, o, cast); break;
            case DType::F64: convert_each<double>(p, n, o, cast); break;
            case DType::BOOL: convert_each<uint8_t>(p, n, o, [](uint8_t b) { return static_cast<T>(b != 0); }); break;
            case DType::U8: convert_each<uint8_t>(p, n, o, cast); break;
            case DType::I8: convert_each<int8_t>(p, n, o, cast); break;
            case DType::I16: convert_each<int16_t>(p, n, o, cast); break;
            case DType::U16: convert_each<uint16_t>(p, n, o, cast); break;
            case DType::I32: convert_each<int32_t>(p, n, o, cast); break;
            case DType::U32: convert_each<uint32_t>(p, n, o, cast); break;
            case DType::I64: convert_each<int64_t>(p, n, o, cast); break;
            case DType::U64: convert_each<uint64_t>(p, n, o, cast); break;
            case DType::F8_E5M2:
            case DType::F8_E4M3:
            case DType::F8_E8M0:
            case DType::F8_E4M3FNUZ:
            case DType::F8_E5M2FNUZ: {
                const DType d = t.dtype;
                convert_each<uint8_t>(p, n, o, [d](uint8_t b) { return static_cast<T>(f8_to_double(d, b)); });
                break;
            }
            default:
                fail(name_, ": tensor ", detail::quote_name(t.name), " is ", dtype_name(t.dtype),
                     ", which get_as does not convert; read its bytes()");
        }
        return out;
    }

private:
    friend class SafeTensorsWriter;

    // o[i] = f(element i of p, read as an S); p need not be aligned for S.
    template <class S, class T, class F>
    static void convert_each(const std::byte* p, int64_t n, T* o, F f) {
        parallel_for(n, 4, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                S s;
                std::memcpy(&s, p + static_cast<size_t>(i) * sizeof(S), sizeof(S));
                o[i] = f(s);
            }
        });
    }

    SafeTensors(std::shared_ptr<detail::Storage> storage, std::string name)
        : storage_(std::move(storage)), name_(std::move(name)) {
        parse();
    }

    void parse() {
        const auto* b = reinterpret_cast<const unsigned char*>(storage_->data);
        const size_t size = storage_->size;
        if (size < 8) fail(name_, ": the file is ", size, " bytes, too short to hold the 8-byte header length");
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
        if (n > detail::kMaxHeader)
            fail(name_, ": header length ", n, " is over the limit of ", detail::kMaxHeader, " bytes");
        if (n > size - 8)
            fail(name_, ": header length ", n, " runs past the end of the file (", size, " bytes hold at most ",
                 size - 8, " after the length)");
        const unsigned char* h = b + 8;
        if (const size_t bad = detail::utf8_error(h, n); bad != std::string::npos)
            fail(name_, ": header is not valid UTF-8 (byte 0x", hex_byte(h[bad]), " at header offset ", bad, ")");
        if (n >= 3 && h[0] == 0xef && h[1] == 0xbb && h[2] == 0xbf)
            fail(name_, ": header opens with a UTF-8 byte-order mark, which JSON does not allow");
        // nlohmann's lexer takes a NUL for the end of its input; JSON allows none anywhere.
        if (const void* z = std::memchr(h, 0, n))
            fail(name_, ": header is not valid JSON: a NUL byte at header offset ",
                 static_cast<const unsigned char*>(z) - h);
        data_start_ = 8 + n;

        detail::HeaderParser parser(name_);
        const char* first = reinterpret_cast<const char*>(h);
        nlohmann::json::sax_parse(first, first + n, &parser, nlohmann::json::input_format_t::json, true, false);

        has_metadata_ = parser.has_metadata;
        metadata_items_ = std::move(parser.metadata);
        for (const auto& [k, v] : metadata_items_) metadata_.emplace(k, v);
        tensors_ = std::move(parser.tensors);

        // Rule 9: sorted by (begin, end), the tensors tile the data section.
        std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& x, const TensorInfo& y) {
            return std::pair(x.begin, x.end) < std::pair(y.begin, y.end);
        });
        uint64_t at = 0;
        for (size_t i = 0; i < tensors_.size(); ++i) {
            const TensorInfo& t = tensors_[i];
            if (t.begin != at) {
                const std::string where = name_ + ": tensor " + detail::quote_name(t.name) + ": data_offsets " +
                                          detail::offsets_str(t.begin, t.end);
                if (i == 0) fail(where, " begin at ", t.begin, ", but the first tensor's data must begin at 0");
                const std::string prev = detail::quote_name(tensors_[i - 1].name);
                if (t.begin > at)
                    fail(where, " leave a gap of ", t.begin - at, " bytes after tensor ", prev, ", which ends at ", at);
                fail(where, " overlap tensor ", prev, ", which ends at ", at);
            }
            at = t.end;
        }
        // Rule 10: ... and nothing else.
        const uint64_t data_size = size - data_start_;
        if (at < data_size)
            fail(name_, ": the tensors end at ", at, " but the data section holds ", data_size, " bytes: ",
                 data_size - at, " trailing bytes");
        if (at > data_size)
            fail(name_, ": the tensors end at ", at, " but the data section holds only ", data_size,
                 " bytes: the file is truncated");
        for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    }

    static std::string hex_byte(unsigned char c) {
        static constexpr char hex[] = "0123456789abcdef";
        return {hex[c >> 4], hex[c & 15]};
    }

    // A shape valid in the file can still be beyond a Tensor: [0, 2^62, 2^62] holds no
    // elements, but its strides overflow int64.
    void check_tensor_shape(const TensorInfo& t) const {
        if constexpr (std::endian::native != std::endian::little)
            fail(name_, ": reading safetensors on a big-endian machine is not supported");
        int64_t acc = 1;
        for (int64_t d : t.shape) {
            const int64_t m = std::max<int64_t>(d, 1);
            if (acc > INT64_MAX / m)
                fail(name_, ": tensor ", detail::quote_name(t.name), ": shape ", shape_str(t.shape),
                     " is too large for a Tensor (its strides overflow int64)");
            acc *= m;
        }
    }

    [[noreturn]] void not_found(std::string_view name) const {
        // Suggest the names within a small edit distance.
        const size_t limit = std::max<size_t>(2, name.size() / 3);
        std::vector<std::pair<size_t, std::string_view>> close;
        if (name.size() <= 1000)
            for (const auto& t : tensors_)
                if (t.name.size() <= name.size() + limit && t.name.size() + limit >= name.size())
                    if (const size_t d = edit_distance(name, t.name); d <= limit) close.emplace_back(d, t.name);
        std::sort(close.begin(), close.end());
        std::string hint;
        for (size_t i = 0; i < close.size() && i < 3; ++i) {
            hint += i ? ", " : " (did you mean ";
            hint += detail::quote_name(close[i].second);
        }
        if (!hint.empty()) hint += "?)";
        fail(name_, ": no tensor named ", detail::quote_name(name), hint, "; the file holds ", tensors_.size(),
             " tensors");
    }

    std::shared_ptr<detail::Storage> storage_;
    std::string name_;
    std::filesystem::path path_;
    uint64_t data_start_ = 8;
    bool has_metadata_ = false;
    std::map<std::string, std::string, std::less<>> metadata_;
    std::vector<std::pair<std::string, std::string>> metadata_items_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> index_;
};

// ---- the writer ---------------------------------------------------------------------------

class SafeTensorsWriter {
public:
    // Adds the tensor's current data (no copy: the writer holds the storage, so later writes to
    // the tensor show in the file). Names are UTF-8, unique and not "__metadata__".
    template <class T>
    void add(std::string name, const Tensor<T>& t) {
        if (!t.defined()) fail("SafeTensorsWriter: tensor ", detail::quote_name(name), " is undefined");
        const Tensor<T> c = t.detach().contiguous();
        const auto n = static_cast<uint64_t>(c.numel()) * sizeof(T);
        std::shared_ptr<const std::byte> data(c.impl()->data, reinterpret_cast<const std::byte*>(c.data()));
        push(std::move(name), dtype_of<T>(), c.shape(), std::move(data), n);
    }

    // Adds raw little-endian bytes; their count must be the shape's elements times the dtype's size.
    void add_raw(std::string name, DType dtype, Shape shape, std::vector<std::byte> data) {
        auto owner = std::make_shared<std::vector<std::byte>>(std::move(data));
        std::shared_ptr<const std::byte> p(owner, owner->data());
        const uint64_t n = owner->size();
        push(std::move(name), dtype, std::move(shape), std::move(p), n);
    }
    void add_raw(std::string name, DType dtype, Shape shape, std::span<const std::byte> data) {
        add_raw(std::move(name), dtype, std::move(shape), std::vector<std::byte>(data.begin(), data.end()));
    }

    // Adds every tensor of `file` (no copy: the writer shares its mapping) and, when the file has
    // metadata, sets it in the file's order; to_bytes() then reproduces a reference-written file
    // byte for byte.
    void copy_from(const SafeTensors& file) {
        for (const auto& t : file.tensors()) {
            std::shared_ptr<const std::byte> p(file.storage_, file.storage_->data + file.data_start_ + t.begin);
            push(t.name, t.dtype, t.shape, std::move(p), t.nbytes());
        }
        if (file.has_metadata()) set_metadata_ordered(file.metadata_items());
    }

    // The "__metadata__" map, written in key order. Without a call, the header has none.
    void set_metadata(const std::map<std::string, std::string>& metadata) {
        set_metadata_ordered({metadata.begin(), metadata.end()});
    }
    // The same, written in the order given; keys must be unique.
    void set_metadata_ordered(std::vector<std::pair<std::string, std::string>> items) {
        std::unordered_set<std::string_view> seen;
        for (const auto& [k, v] : items) {
            if (!seen.insert(k).second) fail("SafeTensorsWriter: metadata key ", detail::quote_name(k), " given twice");
            if (!detail::is_utf8(k) || !detail::is_utf8(v))
                fail("SafeTensorsWriter: metadata key ", detail::quote_name(k), " or its value is not valid UTF-8");
        }
        metadata_ = std::move(items);
    }
    void clear_metadata() { metadata_.reset(); }

    size_t size() const { return entries_.size(); }
    bool contains(std::string_view name) const { return names_.find(name) != names_.end(); }

    // The header as the reference writes it: compact JSON padded with spaces to a multiple of 8.
    std::string header() const {
        std::string h = "{";
        if (metadata_) {
            h += "\"__metadata__\":{";
            for (size_t i = 0; i < metadata_->size(); ++i) {
                if (i) h += ',';
                append_json_string(h, (*metadata_)[i].first);
                h += ':';
                append_json_string(h, (*metadata_)[i].second);
            }
            h += '}';
        }
        uint64_t at = 0;
        for (const Entry* e : ordered()) {
            if (h.size() > 1) h += ',';
            append_json_string(h, e->name);
            h += ":{\"dtype\":\"";
            h += dtype_name(e->dtype);
            h += "\",\"shape\":[";
            for (size_t i = 0; i < e->shape.size(); ++i) {
                if (i) h += ',';
                h += std::to_string(e->shape[i]);
            }
            h += detail::cat("],\"data_offsets\":[", std::to_string(at), ",", std::to_string(at + e->nbytes), "]}");
            at += e->nbytes;
        }
        h += '}';
        h.resize((h.size() + 7) / 8 * 8, ' ');
        if (h.size() > detail::kMaxHeader)
            fail("SafeTensorsWriter: the header would be ", h.size(), " bytes, over the limit of ", detail::kMaxHeader);
        return h;
    }

    // The whole file.
    std::string to_bytes() const {
        const std::string h = header();
        uint64_t total = 8 + h.size();
        for (const auto& e : entries_) total += e.nbytes;
        std::string out;
        out.reserve(static_cast<size_t>(total));
        out += length_prefix(h.size());
        out += h;
        for (const Entry* e : ordered())
            if (e->nbytes) out.append(reinterpret_cast<const char*>(e->data.get()), e->nbytes);
        return out;
    }

    // Writes to `<path>.tmp.<pid>.<n>`, syncs it and renames it over `path`; on failure removes
    // the temporary file and throws naming `path`.
    void write(const std::filesystem::path& path) const {
        const std::string h = header();
        const std::string target = path.string();
        static std::atomic<uint64_t> counter{0};
        std::string tmp;
        int raw_fd = -1;
        for (int attempt = 0; attempt < 100 && raw_fd < 0; ++attempt) {
            tmp = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
            raw_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (raw_fd < 0 && errno != EEXIST) break;
        }
        if (raw_fd < 0) {
            const int err = errno;
            fail(target, ": cannot create the temporary file ", tmp, ": ", detail::errno_str(err));
        }
        detail::FdCloser fd(raw_fd);
        try {
            write_all(fd.get(), length_prefix(h.size()).data(), 8, target);
            write_all(fd.get(), h.data(), h.size(), target);
            for (const Entry* e : ordered()) write_all(fd.get(), e->data.get(), e->nbytes, target);
            if (::fsync(fd.get()) != 0) fail(target, ": cannot sync ", tmp, ": ", detail::errno_str(errno));
            if (fd.close() != 0) fail(target, ": cannot close ", tmp, ": ", detail::errno_str(errno));
            if (::rename(tmp.c_str(), target.c_str()) != 0)
                fail(target, ": cannot rename ", tmp, " to it: ", detail::errno_str(errno));
        } catch (...) {
            fd.close();
            ::unlink(tmp.c_str());
            throw;
        }
        // Make the rename itself durable (best effort: some file systems refuse to sync a directory).
        const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        detail::FdCloser dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (dfd.get() >= 0) (void)::fsync(dfd.get());
    }

private:
    struct Entry {
        std::string name;
        DType dtype;
        Shape shape;
        std::shared_ptr<const std::byte> data;
        uint64_t nbytes;
    };

    void push(std::string name, DType dtype, Shape shape, std::shared_ptr<const std::byte> data, uint64_t nbytes) {
        const std::string who = detail::cat("SafeTensorsWriter: tensor ", detail::quote_name(name), ": ");
        (void)detail::dtype_row(dtype);
        if (name == "__metadata__") fail(who, "the name is reserved for the header's metadata");
        if (!detail::is_utf8(name)) fail(who, "the name is not valid UTF-8");
        if (names_.find(name) != names_.end()) fail(who, "added twice");
        for (int64_t d : shape)
            if (d < 0) fail(who, "negative dimension in shape ", shape_str(shape));
        const auto need = detail::checked_nbytes(shape, dtype, who);
        if (!need) fail(who, "the size of ", dtype_name(dtype), " ", shape_str(shape), " overflows 64 bits");
        if (*need != nbytes)
            fail(who, dtype_name(dtype), " ", shape_str(shape), " needs ", *need, " bytes but ", nbytes, " were given");
        names_.insert(name);
        entries_.push_back({std::move(name), dtype, std::move(shape), std::move(data), nbytes});
    }

    // The reference writer's order: dtype from last to first in DType's order, then name.
    std::vector<const Entry*> ordered() const {
        std::vector<const Entry*> out;
        for (const auto& e : entries_) out.push_back(&e);
        std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) {
            if (a->dtype != b->dtype) return a->dtype > b->dtype;
            return a->name < b->name;
        });
        return out;
    }

    // JSON string escaping as serde_json writes it: \" \\ \b \f \n \r \t, other control
    // characters as \u00xx, everything else (UTF-8 included) as is.
    static void append_json_string(std::string& out, std::string_view s) {
        static constexpr char hex[] = "0123456789abcdef";
        out += '"';
        for (const char ch : s) {
            const auto c = static_cast<unsigned char>(ch);
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20) {
                        out += "\\u00";
                        out += hex[c >> 4];
                        out += hex[c & 15];
                    } else {
                        out += ch;
                    }
            }
        }
        out += '"';
    }

    static std::string length_prefix(uint64_t n) {
        std::string out(8, '\0');
        for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xffu);
        return out;
    }

    static void write_all(int fd, const void* data, uint64_t n, const std::string& target) {
        const auto* p = static_cast<const char*>(data);
        while (n > 0) {
            const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
            const ssize_t w = ::write(fd, p, chunk);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(target, ": write failed: ", detail::errno_str(errno));
            }
            p += w;
            n -= static_cast<uint64_t>(w);
        }
    }

    std::vector<Entry> entries_;
    std::set<std::string, std::less<>> names_;
    std::optional<std::vector<std::pair<std::string, std::string>>> metadata_;
};

}  // namespace coeffnet::io
