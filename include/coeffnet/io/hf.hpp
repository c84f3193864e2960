// coeffnet/io/hf.hpp: Hugging Face model directories and typed config fields.
//
// A directory as save_pretrained writes it: config.json plus either model.safetensors or
// model.safetensors.index.json naming the shard of every tensor. Nothing is converted:
// tensors are read (zero-copy where the file's dtype and alignment allow) from the mapped files.
//
//     const auto dir = io::ModelDir::open("vit-base");
//     auto q = dir.get<float>("vit.encoder.layer.3.attention.attention.query.weight");
//
// A missing tensor names the directory and the closest names its files do hold. Binding the
// tensors to a module's parameters (shape-checked, with or without the model's prefix) is
// nn/weights.hpp's job.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/strings.hpp"
#include "file.hpp"
#include "safetensors_reader.hpp"

namespace coeffnet::io {

// Parses a JSON file; the error names the file and the parser's position.
inline nlohmann::json read_json(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    check(static_cast<bool>(in), path.string(), ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::parse_error& e) {
        fail(path.string(), ": not valid JSON: ", e.what());
    }
}

// Reads config key `key` into `out` when present and not null (else `out` keeps its default,
// the reference implementation's). A value of the wrong type names the file, the key, the
// expected type and what the file holds.
template <class V>
void read_field(const nlohmann::json& j, const char* key, V& out, const std::string& file) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    const char* want = std::is_same_v<V, bool>              ? "a boolean"
                       : std::is_integral_v<V>               ? "an integer"
                       : std::is_floating_point_v<V>         ? "a number"
                       : std::is_same_v<V, std::string>      ? "a string"
                                                             : "a different type";
    bool ok;
    if constexpr (std::is_same_v<V, bool>) ok = it->is_boolean();
    else if constexpr (std::is_integral_v<V>) ok = it->is_number_integer();
    else if constexpr (std::is_floating_point_v<V>) ok = it->is_number();
    else if constexpr (std::is_same_v<V, std::string>) ok = it->is_string();
    else ok = true;
    check(ok, file, ": config key '", key, "' should be ", want, ", got ", it->dump());
    try {
        out = it->template get<V>();
    } catch (const nlohmann::json::exception& e) {
        fail(file, ": config key '", key, "': ", e.what());
    }
}

// A model directory: config.json and the safetensors file(s) it names.
class ModelDir {
public:
    static ModelDir open(const std::filesystem::path& dir) {
        ModelDir m;
        m.dir_ = dir;
        check(std::filesystem::is_directory(dir), dir.string(), ": not a directory");
        const auto config = dir / "config.json";
        check(std::filesystem::exists(config), dir.string(), ": no config.json");
        m.config_ = read_json(config);
        check(m.config_.is_object(), config.string(), ": expected a JSON object");
        const auto single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
        if (std::filesystem::exists(single)) {
            m.add_file(single);
        } else if (std::filesystem::exists(index)) {
            const nlohmann::json idx = read_json(index);
            check(idx.is_object() && idx.contains("weight_map") && idx["weight_map"].is_object(), index.string(),
                  ": expected an object with a \"weight_map\" object");
            std::map<std::string, size_t> shard_of_file;
            for (auto& [name, shard] : idx["weight_map"].items()) {
                check(shard.is_string(), index.string(), ": weight_map entry '", name, "' is not a file name");
                const std::string f = shard.get<std::string>();
                check(!f.empty() && f.find('/') == std::string::npos && f.find('\\') == std::string::npos && f != "." &&
                          f != "..",
                      index.string(), ": shard name '", f, "' must be a plain file name in the directory");
                if (!shard_of_file.count(f)) shard_of_file[f] = m.add_file(dir / f, false);
                const SafeTensors& st = *m.files_[shard_of_file[f]];
                check(st.contains(name), index.string(), ": weight_map puts '", name, "' in ", f,
                      ", which does not hold it");
                m.where_[name] = shard_of_file[f];
            }
        } else {
            fail(dir.string(), ": no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are "
                               "not read; save with safe_serialization=True)");
        }
        return m;
    }

    const std::filesystem::path& path() const { return dir_; }
    const nlohmann::json& config() const { return config_; }
    std::string config_file() const { return (dir_ / "config.json").string(); }

    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& [name, i] : where_) out.push_back(name);
        return out;
    }
    bool contains(const std::string& name) const { return where_.count(name) > 0; }
    const SafeTensors& file_of(const std::string& name) const {
        auto it = where_.find(name);
        if (it == where_.end()) fail(dir_.string(), ": no tensor '", name, "'", suggest(name));
        return *files_[it->second];
    }
    Shape shape_of(const std::string& name) const { return file_of(name).info(name).shape; }
    template <class T>
    Tensor<T> get(const std::string& name) const {
        return file_of(name).template get_as<T>(name);
    }
    int64_t num_elements() const {
        int64_t n = 0;
        for (const auto& [name, i] : where_) n += shape_numel(shape_of(name));
        return n;
    }
    const std::vector<std::shared_ptr<SafeTensors>>& files() const { return files_; }

    // " (did you mean 'x'?)" for the held names closest to `name` (core/strings.hpp's rule), or "".
    std::string suggest(std::string_view name) const { return did_you_mean(name, names()); }

private:
    size_t add_file(const std::filesystem::path& f, bool index_all = true) {
        files_.push_back(std::make_shared<SafeTensors>(SafeTensors::open(f)));
        const size_t i = files_.size() - 1;
        if (index_all)
            for (const auto& t : files_[i]->tensors()) where_[t.name] = i;
        return i;
    }
    std::filesystem::path dir_;
    nlohmann::json config_;
    std::vector<std::shared_ptr<SafeTensors>> files_;
    std::map<std::string, size_t> where_;
};

}  // namespace coeffnet::io
