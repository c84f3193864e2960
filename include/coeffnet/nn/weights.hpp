// coeffnet/nn/weights.hpp: binding a module's parameters to tensors in files (candle keeps its
// VarBuilder in candle-nn for the same reason: io/ reads and writes files, nn/ knows modules).
//
//     const auto dir = io::ModelDir::open("vit-base");
//     nn::WeightScope w(dir, "", "vit");
//     auto q = w.sub("encoder").sub("layer.3").get<float>("attention.attention.query.weight", {768, 768});
//     nn::LoadReport r = nn::load_parameters(model, w);      // every parameter, by its dotted name
//     nn::save_adapter("out/adapter", model, config);         // the trainable ones (io/adapter.hpp's files)
//     nn::load_adapter("out/adapter", fresh);
//
// A missing tensor names its full path (and the closest names the files do hold); a tensor of
// the wrong shape names both shapes. Names may carry the model's prefix or not
// ("vit.embeddings.cls_token" or "embeddings.cls_token"), as transformers allows.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/adapter.hpp"
#include "../io/hf.hpp"
#include "module.hpp"

namespace coeffnet::nn {

// A prefix into a ModelDir. `optional_prefix` (the model's base prefix, "vit") may be present
// in the file or not: "vit.x" is looked up as "vit.x", then "x"; and "x" as "x", then "vit.x".
class WeightScope {
public:
    explicit WeightScope(const io::ModelDir& dir, std::string prefix = "", std::string optional_prefix = "")
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
    const io::ModelDir& dir() const { return *dir_; }

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
    const io::ModelDir* dir_;
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
LoadReport load_parameters(Module<T>& m, const WeightScope& scope, const std::vector<std::string>& optional = {}) {
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
        slot->copy_(scope.get<T>(name, slot->shape()));  // in place: holders of the parameter see it
        used.insert(scope.resolve(name));
        r.loaded.push_back(scope.full_name(name));
    }
    for (const auto& name : scope.dir().names())
        if (!used.count(name)) r.unused.push_back(name);
    return r;
}

// Saves every defined parameter of `m`, by dotted name, to one safetensors file (written to a
// temporary name beside `path`, then renamed over it); `metadata` goes into the file's header.
// load_module reads it back; so does safetensors.torch.load_file, under the same names.
template <class T>
void save_module(const std::filesystem::path& path, const Module<T>& m,
                 const std::map<std::string, std::string>& metadata = {}) {
    io::SafeTensorsWriter w;
    const auto params = m.named_parameters();
    check(!params.empty(), "save_module: ", path.string(), ": the module has no parameters");
    for (const auto& [name, p] : params) w.add(name, p);
    if (!metadata.empty()) w.set_metadata(metadata);
    w.write(path);
}

// Loads a safetensors file into the parameters of `m`, in place (Tensor::copy_: an optimiser
// built earlier trains the loaded values; a stored float or bf16 tensor converts to T). The
// report lists the names loaded, those `m` has but the file lacks (missing) and those the file
// has but `m` lacks (unused). strict: any missing or unused name throws, naming them (the file
// is then left unapplied: nothing is written before every name is checked). A tensor of the
// wrong shape always throws, naming both shapes.
template <class T>
LoadReport load_module(const std::filesystem::path& path, Module<T>& m, bool strict = true) {
    const io::SafeTensors st = io::SafeTensors::open(path);
    LoadReport r;
    std::vector<std::pair<Tensor<T>*, std::string>> todo;
    std::set<std::string> have;
    for (auto& [name, slot] : m.named_slots()) {
        if (!slot->defined()) continue;
        have.insert(name);
        if (!st.contains(name)) {
            r.missing.push_back(name);
            continue;
        }
        const Shape& shape = st.info(name).shape;
        check(shape == slot->shape(), path.string(), ": tensor '", name, "' has shape ", shape_str(shape),
              ", the module's parameter has ", shape_str(slot->shape()));
        todo.emplace_back(slot, name);
    }
    for (const auto& info : st.tensors())
        if (!have.count(info.name)) r.unused.push_back(info.name);
    if (strict && (!r.missing.empty() || !r.unused.empty())) {
        std::string msg;
        auto list = [&](const char* what, const std::vector<std::string>& names) {
            if (names.empty()) return;
            msg += msg.empty() ? "" : "; ";
            msg += std::to_string(names.size()) + " " + what + ": '" + names.front() + "'";
            for (size_t i = 1; i < std::min<size_t>(names.size(), 4); ++i) msg += ", '" + names[i] + "'";
            if (names.size() > 4) msg += ", ...";
        };
        list("parameters of the module not in the file", r.missing);
        list("tensors of the file the module does not have", r.unused);
        fail("load_module: ", path.string(), ": ", msg, " (strict; pass strict = false to load what matches)");
    }
    for (auto& [slot, name] : todo) {
        slot->copy_(st.template get_as<T>(name));
        r.loaded.push_back(name);
    }
    return r;
}

// Saves the parameters of `model` whose names are in `names` (every trainable one when empty)
// as an adapter directory (io::write_adapter).
template <class T>
void save_adapter(const std::filesystem::path& dir, const Module<T>& model, const io::AdapterConfig& config,
                  std::vector<std::string> names = {}) {
    const auto params = model.named_parameters();
    if (names.empty())
        for (const auto& [name, p] : params)
            if (p.requires_grad()) names.push_back(name);
    check(!names.empty(), "save_adapter: no parameters to save (none is trainable)");
    std::vector<std::pair<std::string, Tensor<T>>> tensors;
    for (const auto& name : names) {
        const Tensor<T>* found = nullptr;
        for (const auto& [n, p] : params)
            if (n == name) found = &p;
        check(found != nullptr, "save_adapter: the model has no parameter '", name, "'");
        tensors.emplace_back(name, *found);
    }
    io::write_adapter(dir, tensors, config);
}

// Loads an adapter (io::read_adapter) into `model`: every tensor must name a parameter slot of
// the same shape, except in modules_to_save (a new head may have another number of classes).
// Slots the model leaves undefined (alpha before enable_coeff, LoRA's A and B) are filled too,
// and each Linear that receives LoRA tensors gets the adapter's scaling lora_alpha / r. Returns
// the config (the caller applies what is model-specific: id2label, alpha_residual).
template <class T>
io::AdapterConfig load_adapter(const std::filesystem::path& dir, Module<T>& model) {
    const io::AdapterFiles files = io::read_adapter(dir);
    const io::AdapterConfig& cfg = files.config;
    const io::SafeTensors& st = files.tensors;
    auto slots = model.named_slots();
    auto replaceable = [&](const std::string& name) {
        for (const auto& m : cfg.modules_to_save)
            if (name.rfind(m + ".", 0) == 0 || name.find("." + m + ".") != std::string::npos) return true;
        return false;
    };
    for (const auto& info : st.tensors()) {
        const std::string name = io::AdapterFiles::parameter_name(info.name);
        Tensor<T>* slot = nullptr;
        for (auto& [n, s] : slots)
            if (n == name) slot = s;
        check(slot != nullptr, st.name(), ": tensor '", info.name, "' names no parameter of the model");
        Tensor<T> t = st.template get_as<T>(info.name).contiguous();
        if (slot->defined() && !replaceable(name))
            check(slot->shape() == t.shape(), st.name(), ": tensor '", info.name, "' has shape ", shape_str(t.shape()),
                  ", the model's parameter has ", shape_str(slot->shape()));
        if (slot->defined() && slot->shape() == t.shape()) {
            slot->copy_(t);  // in place: an optimiser built before the load trains the loaded values
        } else {  // a parameter the adapter brings (LoRA's A and B) or a replaced head of another shape
            const bool trainable = slot->defined() ? slot->requires_grad() : true;
            *slot = t.clone().detach().set_requires_grad(trainable);
        }
    }
    for (auto& [name, m] : model.named_modules())
        if (auto* lin = dynamic_cast<Linear<T>*>(m); lin && lin->has_lora()) {
            check(cfg.r > 0, files.config_file, ": the adapter holds LoRA tensors but r is ", cfg.r);
            check(lin->lora_A.shape()[0] == cfg.r && lin->lora_B.shape()[1] == cfg.r, st.name(), ": LoRA tensors of '",
                  name, "' do not have rank r = ", cfg.r);
            lin->lora_scaling = cfg.lora_alpha / static_cast<double>(cfg.r);
        }
    return cfg;
}

}  // namespace coeffnet::nn
