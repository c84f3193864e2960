// tests/fuzz/make_corpus.cpp: writes the safetensors fuzzer's seed corpus into a directory.
//
// Seeds: valid files from SafeTensorsWriter (every dtype, scalars, empty tensors, metadata),
// the odd files the reference accepts, and the catalogue of malformed files, so that the fuzzer
// starts next to every rule the reader checks. Prints one line per seed: file, kind, label.
//
//   make_corpus <dir>
#include <coeffnet/io/safetensors.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "safetensors_cases.hpp"

using namespace coeffnet;
using namespace coeffnet::io;

namespace {

std::vector<std::byte> ramp(size_t n) {
    std::vector<std::byte> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(i * 37 + 11);
    return out;
}

std::vector<std::pair<std::string, std::string>> valid_files() {
    std::vector<std::pair<std::string, std::string>> out;
    {  // every dtype once, each with a different shape
        SafeTensorsWriter w;
        const Shape shapes[] = {{3}, {2, 2}, {4}, {4}, {2, 1}, {1, 1, 1}, {5}, {0}, {}, {2, 0, 3}, {1}};
        size_t i = 0;
        for (const DType d : all_dtypes()) {
            Shape s = shapes[i % std::size(shapes)];
            if (dtype_bits(d) == 4) s = {2, 2};
            if (dtype_bits(d) == 6) s = {4};
            const uint64_t bits = static_cast<uint64_t>(shape_numel(s)) * dtype_bits(d);
            w.add_raw(std::string(dtype_name(d)) + ".t" + std::to_string(i), d, s, ramp(bits / 8));
            ++i;
        }
        w.set_metadata({{"format", "pt"}, {"what", "every dtype"}});
        out.emplace_back("every dtype", w.to_bytes());
    }
    {  // compute types, with values
        SafeTensorsWriter w;
        w.add("weight", Tensor<float>::from({0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}, {2, 3}));
        w.add("bias", Tensor<double>::scalar(2.5));
        w.add("half", Tensor<half_t>::from({half_t(1.0f), half_t(-2.0f)}, {2}));
        w.add("bf", Tensor<bfloat16_t>::from({bfloat16_t(3.0f)}, {1, 1}));
        w.add("empty", Tensor<float>::zeros({0, 4}));
        w.add("ids", Tensor<int64_t>::from({-1, 0, 1099511627776}, {3}));
        out.emplace_back("compute types", w.to_bytes());
    }
    {  // metadata only; and nothing at all
        SafeTensorsWriter w;
        w.set_metadata({{"a", "1"}, {"b", "\xc3\xa9\n\""}});
        out.emplace_back("metadata only", w.to_bytes());
        out.emplace_back("nothing", SafeTensorsWriter().to_bytes());
    }
    {  // many small tensors
        SafeTensorsWriter w;
        for (int i = 0; i < 12; ++i) w.add("layer." + std::to_string(i) + ".w", Tensor<float>::full({2}, static_cast<float>(i)));
        out.emplace_back("twelve tensors", w.to_bytes());
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_corpus <dir>\n";
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    int n = 0;
    auto put = [&](const std::string& kind, const std::string& label, const std::string& bytes) {
        char name[64];
        std::snprintf(name, sizeof name, "%s-%03d", kind.c_str(), n++);
        std::ofstream(dir / name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        std::cout << name << "\t" << kind << "\t" << label << "\n";
    };
    for (const auto& [label, bytes] : valid_files()) put("valid", label, bytes);
    for (const auto& c : safetensors_cases::quirk_cases()) put("quirk", c.label, c.bytes);
    for (const auto& c : safetensors_cases::malformed_cases())
        put(c.stricter ? "stricter" : "malformed", c.label, c.bytes);
    return 0;
}
