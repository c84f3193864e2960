// coeffnet/io/adapter.hpp: the tuned parameters of a model, saved apart from the base model.
//
// An adapter directory holds, in the style of PEFT:
//   adapter_model.safetensors   the tuned tensors under the base model's own names
//                               ("vit.encoder.layer.0.attention.attention.coeff_alpha",
//                               "classifier.weight", later "...lora_A.weight"), with
//                               __metadata__ {format, method, alpha_dropout, base_model}
//   adapter_config.json         {peft_type, method, target_modules, r, lora_alpha,
//                               alpha_dropout, modules_to_save, base_model_name_or_path}
// This header reads and writes the two files; nn/weights.hpp saves a module's parameters as an
// adapter and loads an adapter into a module. Both files are written atomically.
#pragma once

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../ops/coeff_spec.hpp"
#include "file.hpp"
#include "hf.hpp"
#include "safetensors.hpp"

namespace coeffnet::io {

struct AdapterConfig {
    std::string method = "coeff";               // coeff, lora, coeff+lora, linear_probe, full
    CoeffSpec coeff;                            // alpha's dropout and parameterisation
    std::vector<std::string> target_modules;    // e.g. {"attention.attention"}
    int64_t r = 0;                              // LoRA rank (0: no LoRA)
    double lora_alpha = 0.0;                    // LoRA scaling numerator
    std::vector<std::string> modules_to_save;   // e.g. {"classifier"}: replaced whole, shape and all
    std::string base_model;                     // the base model directory
    std::vector<std::string> id2label;          // the tuned head's labels, when it has its own

    nlohmann::json to_json() const {
        return {{"peft_type", method == "coeff" ? "COEFF_TUNING" : method == "lora" ? "LORA" : "COEFFNET"},
                {"method", method},
                {"alpha_dropout", coeff.alpha_dropout},
                {"target_modules", target_modules},
                {"r", r},
                {"lora_alpha", lora_alpha},
                {"modules_to_save", modules_to_save},
                {"base_model_name_or_path", base_model},
                {"alpha_residual", coeff.alpha_residual},
                {"id2label", id2label},
                {"inference_mode", true},
                {"library", "coeffnet"}};
    }
    static AdapterConfig from_json(const nlohmann::json& j, const std::string& file) {
        check(j.is_object(), file, ": expected a JSON object");
        AdapterConfig c;
        read_field(j, "method", c.method, file);
        read_field(j, "alpha_dropout", c.coeff.alpha_dropout, file);
        read_field(j, "r", c.r, file);
        read_field(j, "lora_alpha", c.lora_alpha, file);
        read_field(j, "base_model_name_or_path", c.base_model, file);
        read_field(j, "alpha_residual", c.coeff.alpha_residual, file);
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

// Writes an adapter directory: `tensors` (under the base model's parameter names) into
// adapter_model.safetensors, `config` into adapter_config.json.
template <class T>
void write_adapter(const std::filesystem::path& dir, const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                   const AdapterConfig& config) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    check(std::filesystem::is_directory(dir), dir.string(), ": cannot create the adapter directory");
    SafeTensorsWriter w;
    for (const auto& [name, t] : tensors) w.add(name, t.contiguous().detach());
    std::ostringstream p;
    p << config.coeff.alpha_dropout;
    w.set_metadata({{"format", "pt"}, {"method", config.method}, {"alpha_dropout", p.str()}, {"base_model", config.base_model}});
    w.write(dir / "adapter_model.safetensors");
    write_file_atomic(dir / "adapter_config.json", config.to_json().dump(2) + "\n");
}

// An adapter directory, read: its config and its tensors.
struct AdapterFiles {
    std::string config_file;  // dir/adapter_config.json
    AdapterConfig config;
    SafeTensors tensors;      // dir/adapter_model.safetensors

    // The parameter a tensor of the file stands for: its name, less the "base_model.model." that
    // PEFT's own files put before every name.
    static std::string parameter_name(const std::string& tensor_name) {
        const std::string peft_prefix = "base_model.model.";
        return tensor_name.rfind(peft_prefix, 0) == 0 ? tensor_name.substr(peft_prefix.size()) : tensor_name;
    }
};

inline AdapterFiles read_adapter(const std::filesystem::path& dir) {
    const auto cfg_path = dir / "adapter_config.json";
    check(std::filesystem::exists(cfg_path), dir.string(), ": no adapter_config.json");
    AdapterConfig cfg = AdapterConfig::from_json(read_json(cfg_path), cfg_path.string());
    return {cfg_path.string(), std::move(cfg), SafeTensors::open(dir / "adapter_model.safetensors")};
}

}  // namespace coeffnet::io
