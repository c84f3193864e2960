// coeffnet/io/safetensors_reader.hpp: SafeTensors, a safetensors file mapped and checked (the
// format and the rules it checks: io/safetensors_header.hpp).
//
// SafeTensors::open maps the file (io/file.hpp) and checks all of it at once, so a SafeTensors
// that exists is sound and every later access is in bounds. get<T>() returns a zero-copy view
// into the mapping when the data is aligned for T (a copy when it is not: writers other than the
// reference do not pad the header); writing through such a view changes this process's copy,
// never the file. Views share ownership of the mapping, so they outlive the SafeTensors.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/strings.hpp"
#include "../tensor/tensor.hpp"
#include "dtype.hpp"
#include "file.hpp"
#include "float8.hpp"
#include "safetensors_header.hpp"

namespace coeffnet::io {

class SafeTensorsWriter;

class SafeTensors {
public:
    // Maps and checks the file; throws coeffnet::Error naming it and the broken rule.
    static SafeTensors open(const std::filesystem::path& path) {
        SafeTensors out(MappedBytes::map(path), path.string());
        out.path_ = path;
        return out;
    }

    // Checks an in-memory file (copied into an aligned buffer); `name` stands for the file in
    // messages.
    static SafeTensors from_bytes(std::string_view bytes, std::string name = "<memory>") {
        return SafeTensors(MappedBytes::copy_of(bytes), std::move(name));
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
        return {storage_->data() + data_start_ + t.begin, static_cast<size_t>(t.nbytes())};
    }

    uint64_t header_size() const { return data_start_ - 8; }  // N
    uint64_t data_start() const { return data_start_; }       // 8 + N
    std::span<const std::byte> file_bytes() const { return {storage_->data(), storage_->size()}; }

    // The tensor as stored; its dtype must be T's (float F32, double F64, half_t F16,
    // bfloat16_t BF16, intN_t IN, uintN_t UN; uint8_t also reads BOOL). A view into the
    // mapping when the data is aligned for T, else a copy.
    template <class T>
    Tensor<T> get(std::string_view name) const {
        const TensorInfo& t = info(name);
        constexpr DType want = dtype_of<T>();
        const bool ok = t.dtype == want || (std::is_same_v<T, uint8_t> && t.dtype == DType::BOOL);
        if (!ok)
            fail(name_, ": tensor ", quote_name(t.name), " is ", dtype_name(t.dtype), ", not ",
                 dtype_name(want), " (get_as<float>() converts)");
        check_tensor_shape(t);
        std::byte* p = storage_->data() + data_start_ + t.begin;
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
        const std::byte* p = storage_->data() + data_start_ + t.begin;
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
                fail(name_, ": tensor ", quote_name(t.name), " is ", dtype_name(t.dtype),
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

    SafeTensors(std::shared_ptr<MappedBytes> storage, std::string name)
        : storage_(std::move(storage)), name_(std::move(name)) {
        SafeTensorsHeader h = parse_header(storage_->bytes(), name_);
        data_start_ = h.data_start;
        has_metadata_ = h.has_metadata;
        metadata_items_ = std::move(h.metadata);
        for (const auto& [k, v] : metadata_items_) metadata_.emplace(k, v);
        tensors_ = std::move(h.tensors);
        for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
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
                fail(name_, ": tensor ", quote_name(t.name), ": shape ", shape_str(t.shape),
                     " is too large for a Tensor (its strides overflow int64)");
            acc *= m;
        }
    }

    [[noreturn]] void not_found(std::string_view name) const {
        std::vector<std::string_view> names;
        for (const auto& t : tensors_) names.push_back(t.name);
        fail(name_, ": no tensor named ", quote_name(name), did_you_mean(name, names), "; the file holds ",
             tensors_.size(), " tensors");
    }

    std::shared_ptr<MappedBytes> storage_;
    std::string name_;
    std::filesystem::path path_;
    uint64_t data_start_ = 8;
    bool has_metadata_ = false;
    std::map<std::string, std::string, std::less<>> metadata_;
    std::vector<std::pair<std::string, std::string>> metadata_items_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace coeffnet::io
