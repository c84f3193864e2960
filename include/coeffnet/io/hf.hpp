// coeffnet/io/hf.hpp: Hugging Face model directories, typed config fields and scoped,
// shape-checked weight binding (candle's VarBuilder is the model).
//
// A directory as save_pretrained writes it: config.json plus either model.safetensors or
// model.safetensors.index.json naming the shard of every tensor. Nothing is converted:
// tensors are read (zero-copy where the file's dtype and alignment allow) from the mapped files.
//
//     auto dir = io::ModelDir::open("vit-base");
//     io::WeightScope w(dir);
//     auto q = w.sub("vit.encoder").sub("layer.3").get<float>("attention.attention.query.weight", {768, 768});
//
// A missing tensor names its full path (and the closest names the files do hold); a tensor
// of the wrong shape names both shapes. Names may carry the model's prefix or not
// ("vit.embeddings.cls_token" or "embeddings.cls_token"), as transformers allows.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../nn/module.hpp"
#include "safetensors.hpp"

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

// Writes text to `path` through a temporary file and a rename, so `path` is never half-written.
inline void write_file_atomic(const std::filesystem::path& path, const std::string& bytes) {
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        check(static_cast<bool>(out), path.string(), ": cannot open ", tmp.string(), " for writing");
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) {
            std::error_code ignored;
            std::filesystem::remove(tmp, ignored);
            fail(path.string(), ": write failed");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        fail(path.string(), ": cannot rename the temporary file into place");
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

    // " (did you mean 'x'?)" for the held name closest to `name` by common suffix, or "".
    std::string suggest(const std::string& name) const {
        std::string best;
        size_t best_len = 0;
        for (const auto& [held, i] : where_) {
            size_t k = 0;
            while (k < held.size() && k < name.size() && held[held.size() - 1 - k] == name[name.size() - 1 - k]) ++k;
            if (k > best_len) {
                best_len = k;
                best = held;
            }
        }
        return best_len >= 4 ? " (did you mean '" + best + "'?)" : "";
    }

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

// A prefix into a ModelDir. `optional_prefix` (the model's base prefix, "vit") may be present
// in the file or not: "vit.x" is looked up as "vit.x", then "x"; and "x" as "x", then "vit.x".
class WeightScope {
public:
    explicit WeightScope(const ModelDir& dir, std::string prefix = "", std::string optional_prefix = "")
        : dir_(&dir), prefix_(std::move(prefix)), optional_(std::move(optional_prefix)) {}

    WeightScope sub(const std::string& name) const { return WeightScope(*dir_, join(name), optional_); }
    std::string full_name(const std::string& name) const { return join(name); }

    // The name the file holds for `name`, or "" when it holds none.
    std::string resolve(const std::string& name) const {
        const std::string full = join(name);
        if (dir_->contains(full)) return full;
        if (!optional_.empty()) {
            const std::string p = optional_ + ".";
            if (full.rfind(p, 0) == 0 && dir_->contains(full.substr(p.size()))) return full.substr(p.size());
            if (full.rfind(p, 0) != 0 && dir_->contains(p + full)) return p + full;
        }
        return "";
    }
    bool contains(const std::string& name) const { return !resolve(name).empty(); }
    const ModelDir& dir() const { return *dir_; }

    template <class T>
    Tensor<T> get(const std::string& name, const Shape& shape) const {
        const std::string held = resolve(name);
        if (held.empty()) fail(dir_->path().string(), ": missing tensor '", join(name), "'", dir_->suggest(join(name)));
        const Shape have = dir_->shape_of(held);
        check(have == shape, dir_->path().string(), ": tensor '", held, "' has shape ", shape_str(have),
              ", the model expects ", shape_str(shape));
        return dir_->get<T>(held);
    }

private:
    std::string join(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
    const ModelDir* dir_;
    std::string prefix_, optional_;
};

// What binding a module to a directory did: every parameter found is loaded; `missing` lists
// the optional ones the file lacks (left as they were); `unused` the file's tensors no
// parameter took.
struct LoadReport {
    std::vector<std::string> loaded, missing, unused;
};

// Binds every parameter slot of `m` (by its dotted name, under `scope`) to the file's tensor,
// shape-checked. Slots named in `optional` (exact names or suffixes like "coeff_alpha") may be
// absent from the file; undefined optional slots are skipped. Loaded tensors keep the slot's
// requires_grad.
template <class T>
LoadReport load_parameters(nn::Module<T>& m, const WeightScope& scope, const std::vector<std::string>& optional = {}) {
    LoadReport r;
    std::set<std::string> used;
    auto is_optional = [&](const std::string& name) {
        for (const auto& o : optional)
            if (name == o || (name.size() > o.size() && name.compare(name.size() - o.size(), o.size(), o) == 0 &&
                              name[name.size() - o.size() - 1] == '.'))
                return true;
        return false;
    };
    for (auto& [name, slot] : m.named_slots()) {
        if (!slot->defined() || (is_optional(name) && !scope.contains(name))) {
            if (slot->defined()) r.missing.push_back(scope.full_name(name));
            continue;
        }
        const bool trainable = slot->requires_grad();
        *slot = scope.get<T>(name, slot->shape());
        if (!slot->is_contiguous()) *slot = slot->contiguous();
        slot->set_requires_grad(trainable);
        used.insert(scope.resolve(name));
        r.loaded.push_back(scope.full_name(name));
    }
    for (const auto& name : scope.dir().names())
        if (!used.count(name)) r.unused.push_back(name);
    return r;
}

}  // namespace coeffnet::io
