// coeffnet/io/safetensors_writer.hpp: SafeTensorsWriter, which writes safetensors files (the
// format: io/safetensors_header.hpp).
//
// It writes what the reference writer writes, byte for byte: tensors sorted by dtype (in DType's
// order, largest first) then by name, offsets packed from 0, the header as compact JSON
// ("__metadata__" first, then each tensor's "dtype", "shape", "data_offsets"), padded with
// spaces to a multiple of 8 so that every tensor's data is aligned. write() replaces the file
// atomically (io/file.hpp), so mappings of the old file stay valid.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/strings.hpp"
#include "../tensor/tensor.hpp"
#include "dtype.hpp"
#include "file.hpp"
#include "safetensors_reader.hpp"
#include "utf8.hpp"

namespace coeffnet::io {

class SafeTensorsWriter {
public:
    // Adds a snapshot of the tensor's data as it is now (a copy, whatever its strides: later
    // writes to the tensor do not reach the file). Names are UTF-8, unique and not "__metadata__".
    template <class T>
    void add(std::string name, const Tensor<T>& t) {
        if (!t.defined()) fail("SafeTensorsWriter: tensor ", quote_name(name), " is undefined");
        const Tensor<T> c = t.detach().to(Device::cpu()).clone();  // a host copy
        const auto n = static_cast<uint64_t>(c.numel()) * sizeof(T);
        std::shared_ptr<const std::byte> data(c.storage().handle(), reinterpret_cast<const std::byte*>(c.data()));
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
            std::shared_ptr<const std::byte> p(file.storage_, file.storage_->data() + file.data_start_ + t.begin);
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
            if (!seen.insert(k).second) fail("SafeTensorsWriter: metadata key ", quote_name(k), " given twice");
            if (!detail::is_utf8(k) || !detail::is_utf8(v))
                fail("SafeTensorsWriter: metadata key ", quote_name(k), " or its value is not valid UTF-8");
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
            h += cat("],\"data_offsets\":[", std::to_string(at), ",", std::to_string(at + e->nbytes), "]}");
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

    // Replaces `path` with the file (io/file.hpp's write_file_atomic: a temporary file beside it,
    // synced, renamed over it); on failure throws naming `path`.
    void write(const std::filesystem::path& path) const {
        const std::string h = header();
        write_file_atomic(path, [&](FileSink& sink) {
            sink.write(length_prefix(h.size()));
            sink.write(h);
            for (const Entry* e : ordered()) sink.write(e->data.get(), e->nbytes);
        });
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
        const std::string who = cat("SafeTensorsWriter: tensor ", quote_name(name), ": ");
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

    std::vector<Entry> entries_;
    std::set<std::string, std::less<>> names_;
    std::optional<std::vector<std::pair<std::string, std::string>>> metadata_;
};

}  // namespace coeffnet::io
