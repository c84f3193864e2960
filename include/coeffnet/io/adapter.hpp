// coeffnet/io/adapter.hpp: the tuned parameters of a model, saved apart from the base model.
//
// An adapter directory holds, in the style of PEFT:
//   adapter_model.safetensors   the tuned tensors under the base model's own names
//                               ("vit.encoder.layer.0.attention.attention.coeff_alpha",
//                               "classifier.weight", later "...lora_A.weight"), with
//                               __metadata__ {format, method, alpha_dropout, base_model}
//   adapter_config.json         {peft_type, method, target_modules, r, lora_alpha,
//                               alpha_dropout, modules_to_save, base_model_name_or_path}
// Loading puts each tensor into the parameter of the same name (shape-checked), so the base
// plus its adapter is the tuned model exactly. Both files are written atomically.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "hf.hpp"
#include "safetensors.hpp"

namespace coeffnet::io {

struct AdapterConfig {
    std::string method = "coeff";               // coeff, lora, coeff+lora, linear_probe, full
    double alpha_dropout = 0.0;                 // Coeff-Tuning's dropout on alpha
    std::vector<std::string> target_modules;    // e.g. {"attention.attention"}
    int64_t r = 0;                              // LoRA rank (0: no LoRA)
    double lora_alpha = 0.0;                    // LoRA scaling numerator
    std::vector<std::string> modules_to_save;   // e.g. {"classifier"}: replaced whole, shape and all
    std::string base_model;                     // the base model directory
    bool alpha_residual = true;                 // alpha' = I + alpha (false: alpha' = alpha)
    std::vector<std::string> id2label;          // the tuned head's labels, when it has its own

    nlohmann::json to_json() const {
        return {{"peft_type", method == "coeff" ? "COEFF_TUNING" : method == "lora" ? "LORA" : "COEFFNET"},
                {"method", method},
                {"alpha_dropout", alpha_dropout},
                {"target_modules", target_modules},
                {"r", r},
                {"lora_alpha", lora_alpha},
                {"modules_to_save", modules_to_save},
                {"base_model_name_or_path", base_model},
                {"alpha_residual", alpha_residual},
                {"id2label", id2label},
                {"inference_mode", true},
                {"library", "coeffnet"}};
    }
    static AdapterConfig from_json(const nlohmann::json& j, const std::string& file) {
        check(j.is_object(), file, ": expected a JSON object");
        AdapterConfig c;
        read_field(j, "method", c.method, file);
        read_field(j, "alpha_dropout", c.alpha_dropout, file);
        read_field(j, "r", c.r, file);
        read_field(j, "lora_alpha", c.lora_alpha, file);
        read_field(j, "base_model_name_or_path", c.base_model, file);
        read_field(j, "alpha_residual", c.alpha_residual, file);
        for (const char* key : {"target_modules", "modules_to_save", "id2label"}) {
            if (!j.contains(key) || j[key].is_null()) continue;
            check(j[key].is_array(), file, ": '", key, "' should be a list of strings");
            auto& dst = std::string(key) == "target_modules"    ? c.target_modules
                        : std::string(key) == "modules_to_save" ? c.modules_to_save
                                                                : c.id2label;
            for (const auto& v : j[key]) {
                check(v.is_string(), file, ": '", key, "' should be a list of strings");
                dst.push_back(v.get<std::string>());
            }
        }
        return c;
    }
};

// Saves the parameters of `model` whose names are in `names` (every trainable one when empty).
template <class T>
void save_adapter(const std::filesystem::path& dir, const nn::Module<T>& model, const AdapterConfig& config,
                  std::vector<std::string> names = {}) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    check(std::filesystem::is_directory(dir), dir.string(), ": cannot create the adapter directory");
    const auto params = model.named_parameters();
    if (names.empty())
        for (const auto& [name, p] : params)
            if (p.requires_grad()) names.push_back(name);
    check(!names.empty(), "save_adapter: no parameters to save (none is trainable)");
    SafeTensorsWriter w;
    for (const auto& name : names) {
        const Tensor<T>* found = nullptr;
        for (const auto& [n, p] : params)
            if (n == name) found = &p;
        check(found != nullptr, "save_adapter: the model has no parameter '", name, "'");
        w.add(name, found->contiguous().detach());
    }
    std::ostringstream p;
    p << config.alpha_dropout;
    w.set_metadata({{"format", "pt"}, {"method", config.method}, {"alpha_dropout", p.str()}, {"base_model", config.base_model}});
    w.write(dir / "adapter_model.safetensors");
    write_file_atomic(dir / "adapter_config.json", config.to_json().dump(2) + "\n");
}

// Loads an adapter into `model`: every tensor must name a parameter slot of the same shape,
// except in modules_to_save (a new head may have another number of classes). Slots the model
// leaves undefined (alpha before enable_coeff, LoRA's A and B) are filled too, and each Linear
// that receives LoRA tensors gets the adapter's scaling lora_alpha / r. PEFT's own files prefix
// names with "base_model.model."; that prefix is accepted. Returns the config (the caller applies
// what is model-specific: id2label, alpha_residual).
template <class T>
AdapterConfig load_adapter(const std::filesystem::path& dir, nn::Module<T>& model) {
    const auto cfg_path = dir / "adapter_config.json";
    check(std::filesystem::exists(cfg_path), dir.string(), ": no adapter_config.json");
    AdapterConfig cfg = AdapterConfig::from_json(read_json(cfg_path), cfg_path.string());
    const SafeTensors st = SafeTensors::open(dir / "adapter_model.safetensors");
    auto slots = model.named_slots();
    auto replaceable = [&](const std::string& name) {
        for (const auto& m : cfg.modules_to_save)
            if (name.rfind(m + ".", 0) == 0 || name.find("." + m + ".") != std::string::npos) return true;
        return false;
    };
    const std::string peft_prefix = "base_model.model.";
    for (const auto& info : st.tensors()) {
        const std::string name =
            info.name.rfind(peft_prefix, 0) == 0 ? info.name.substr(peft_prefix.size()) : info.name;
        Tensor<T>* slot = nullptr;
        for (auto& [n, s] : slots)
            if (n == name) slot = s;
        check(slot != nullptr, st.name(), ": tensor '", info.name, "' names no parameter of the model");
        Tensor<T> t = st.template get_as<T>(info.name).contiguous();
        if (slot->defined() && !replaceable(name))
            check(slot->shape() == t.shape(), st.name(), ": tensor '", info.name, "' has shape ", shape_str(t.shape()),
                  ", the model's parameter has ", shape_str(slot->shape()));
        const bool trainable = slot->defined() ? slot->requires_grad() : true;
        *slot = t.clone().detach().set_requires_grad(trainable);
    }
    for (auto& [name, m] : model.named_modules())
        if (auto* lin = dynamic_cast<nn::Linear<T>*>(m); lin && lin->has_lora()) {
            check(cfg.r > 0, cfg_path.string(), ": the adapter holds LoRA tensors but r is ", cfg.r);
            check(lin->lora_A.shape()[0] == cfg.r && lin->lora_B.shape()[1] == cfg.r, st.name(), ": LoRA tensors of '",
                  name, "' do not have rank r = ", cfg.r);
            lin->lora_scaling = cfg.lora_alpha / static_cast<double>(cfg.r);
        }
    return cfg;
}

}  // namespace coeffnet::io
