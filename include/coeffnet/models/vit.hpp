// coeffnet/models/vit.hpp: the Vision Transformer as Hugging Face transformers defines it
// (ViTModel, ViTForImageClassification), with Coeff-Tuning switchable per model.
//
// Modules carry the checkpoint's own names, so named_parameters() is the list of tensors a
// save_pretrained directory holds ("vit.encoder.layer.3.attention.attention.query.weight") and
// loading is one shape-checked lookup per parameter. The forward pass:
//
//   patches = pixels cut into P x P tiles, flattened (c, y, x)      the stride-P convolution,
//   x       = patches W^T + b                                         as one GEMM
//   x       = [cls; x] + position_embeddings, dropout
//   layer:  x = x + dropout(O(attention(LN_before(x))))               attention with alpha when on
//           x = x + dropout(fc2(act(fc1(LN_after(x)))))
//   out     = LN(x); pooler = tanh(dense(out[:, 0])); logits = classifier(out[:, 0])
//
// Coefficient attention: enable_coeff(true, spec) gives every attention layer an alpha [H, H]
// (registered as ...attention.attention.coeff_alpha, zero, so the model is unchanged) and
// alpha-dropout p; ViT-B/16 gets 12 x 144 = 1,728 of them.
#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../io/adapter.hpp"
#include "../io/hf.hpp"
#include "../nn/module.hpp"
#include "../nn/tunable.hpp"
#include "../nn/weights.hpp"
#include "../ops/attention_tiled_impl.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/shape.hpp"

namespace coeffnet::models {

// The activations transformers names in config.json (ACT2FN) that coeffnet computes.
template <class T>
Tensor<T> activation(const std::string& name, const Tensor<T>& x) {
    if (name == "gelu" || name == "gelu_python") return gelu(x);
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" || name == "gelu_python_tanh")
        return gelu(x, GeluApprox::tanh);
    if (name == "relu") return relu(x);
    if (name == "silu" || name == "swish") return silu(x);
    if (name == "tanh") return tanh(x);
    if (name == "quick_gelu") return mul(x, sigmoid(scale(x, 1.702)));
    fail("activation: '", name, "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, tanh, "
         "quick_gelu)");
}

inline bool is_known_activation(const std::string& name) {
    for (const char* a : {"gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python_tanh",
                          "relu", "silu", "swish", "tanh", "quick_gelu"})
        if (name == a) return true;
    return false;
}

// transformers' ViTConfig, with its defaults (google/vit-base-patch16-224).
struct ViTConfig {
    int64_t hidden_size = 768;
    int64_t num_hidden_layers = 12;
    int64_t num_attention_heads = 12;
    int64_t intermediate_size = 3072;
    std::string hidden_act = "gelu";
    double hidden_dropout_prob = 0.0;
    double attention_probs_dropout_prob = 0.0;
    double initializer_range = 0.02;
    double layer_norm_eps = 1e-12;
    int64_t image_height = 224, image_width = 224;
    int64_t patch_height = 16, patch_width = 16;
    int64_t num_channels = 3;
    bool qkv_bias = true;
    int64_t pooler_output_size = 0;  // 0: hidden_size
    std::string pooler_act = "tanh";
    std::vector<std::string> id2label{"LABEL_0", "LABEL_1"};  // transformers' default: 2 labels

    int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
    int64_t head_dim() const { return hidden_size / num_attention_heads; }
    int64_t num_patches() const { return (image_height / patch_height) * (image_width / patch_width); }

    // Missing keys keep the defaults above; unknown keys are ignored; wrong types are errors.
    static ViTConfig from_json(const nlohmann::json& j, const std::string& file = "config.json") {
        check(j.is_object(), file, ": expected a JSON object");
        ViTConfig c;
        if (j.contains("model_type") && j["model_type"].is_string())
            check(j["model_type"] == "vit", file, ": model_type is '", j["model_type"].get<std::string>(),
                  "', expected 'vit'");
        io::read_field(j, "hidden_size", c.hidden_size, file);
        io::read_field(j, "num_hidden_layers", c.num_hidden_layers, file);
        io::read_field(j, "num_attention_heads", c.num_attention_heads, file);
        io::read_field(j, "intermediate_size", c.intermediate_size, file);
        io::read_field(j, "hidden_act", c.hidden_act, file);
        io::read_field(j, "hidden_dropout_prob", c.hidden_dropout_prob, file);
        io::read_field(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, file);
        io::read_field(j, "initializer_range", c.initializer_range, file);
        io::read_field(j, "layer_norm_eps", c.layer_norm_eps, file);
        io::read_field(j, "num_channels", c.num_channels, file);
        io::read_field(j, "qkv_bias", c.qkv_bias, file);
        io::read_field(j, "pooler_output_size", c.pooler_output_size, file);
        io::read_field(j, "pooler_act", c.pooler_act, file);
        read_pair(j, "image_size", c.image_height, c.image_width, file);
        read_pair(j, "patch_size", c.patch_height, c.patch_width, file);
        if (j.contains("id2label") && !j["id2label"].is_null()) {
            const auto& m = j["id2label"];
            check(m.is_object(), file, ": config key 'id2label' should be an object, got ", m.dump());
            c.id2label.assign(m.size(), "");
            for (auto& [k, v] : m.items()) {
                size_t pos = 0;
                int64_t i = -1;
                try {
                    i = std::stoll(k, &pos);
                } catch (const std::exception&) {
                }
                check(pos == k.size() && i >= 0 && i < static_cast<int64_t>(m.size()) && v.is_string(), file,
                      ": id2label must map the indices 0..", m.size() - 1, " to strings; got '", k, "': ", v.dump());
                c.id2label[static_cast<size_t>(i)] = v.get<std::string>();
            }
        } else if (j.contains("num_labels") && j["num_labels"].is_number_integer()) {
            const int64_t n = j["num_labels"].get<int64_t>();
            check(n >= 0, file, ": num_labels must be >= 0");
            c.id2label.clear();
            for (int64_t i = 0; i < n; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
        }
        c.validate(file);
        return c;
    }

    void validate(const std::string& file = "ViTConfig") const {
        check(hidden_size > 0 && num_hidden_layers >= 0 && num_attention_heads > 0 && intermediate_size > 0, file,
              ": sizes must be positive");
        check(hidden_size % num_attention_heads == 0, file, ": hidden_size ", hidden_size,
              " is not divisible by num_attention_heads ", num_attention_heads);
        check(patch_height > 0 && patch_width > 0 && image_height >= patch_height && image_width >= patch_width, file,
              ": image_size [", image_height, ", ", image_width, "] must hold at least one patch of [", patch_height,
              ", ", patch_width, "]");
        check(num_channels > 0, file, ": num_channels must be positive");
        check(is_known_activation(hidden_act), file, ": hidden_act '", hidden_act, "' is not supported");
        check(is_known_activation(pooler_act), file, ": pooler_act '", pooler_act, "' is not supported");
        check(layer_norm_eps >= 0, file, ": layer_norm_eps must be >= 0");
    }

    // config.json as transformers writes it (for models coeffnet trains itself).
    nlohmann::json to_json(const std::string& architecture = "ViTForImageClassification") const {
        nlohmann::json j;
        j["architectures"] = {architecture};
        j["model_type"] = "vit";
        j["hidden_size"] = hidden_size;
        j["num_hidden_layers"] = num_hidden_layers;
        j["num_attention_heads"] = num_attention_heads;
        j["intermediate_size"] = intermediate_size;
        j["hidden_act"] = hidden_act;
        j["hidden_dropout_prob"] = hidden_dropout_prob;
        j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
        j["initializer_range"] = initializer_range;
        j["layer_norm_eps"] = layer_norm_eps;
        j["image_size"] = image_height == image_width ? nlohmann::json(image_height)
                                                       : nlohmann::json({image_height, image_width});
        j["patch_size"] = patch_height == patch_width ? nlohmann::json(patch_height)
                                                       : nlohmann::json({patch_height, patch_width});
        j["num_channels"] = num_channels;
        j["qkv_bias"] = qkv_bias;
        j["pooler_output_size"] = pooler_output_size > 0 ? pooler_output_size : hidden_size;
        j["pooler_act"] = pooler_act;
        nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
        for (size_t i = 0; i < this->id2label.size(); ++i) {
            id2label[std::to_string(i)] = this->id2label[i];
            label2id[this->id2label[i]] = i;
        }
        j["id2label"] = id2label;
        j["label2id"] = label2id;
        j["dtype"] = "float32";
        return j;
    }

private:
    // image_size / patch_size: an integer, or [height, width].
    static void read_pair(const nlohmann::json& j, const char* key, int64_t& h, int64_t& w, const std::string& file) {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return;
        if (it->is_number_integer()) {
            h = w = it->get<int64_t>();
        } else {
            check(it->is_array() && it->size() == 2 && (*it)[0].is_number_integer() && (*it)[1].is_number_integer(),
                  file, ": config key '", key, "' should be an integer or [height, width], got ", it->dump());
            h = (*it)[0].get<int64_t>();
            w = (*it)[1].get<int64_t>();
        }
    }
};

// A module holding one Linear named "dense" (transformers' ViTSelfOutput, ViTIntermediate, ...).
template <class T>
struct Dense : nn::Module<T> {
    nn::Linear<T> dense;
    Dense(int64_t in, int64_t out, bool bias = true) : dense(in, out, bias) { this->register_module("dense", dense); }
};

// "attention.attention": query, key, value and, with Coeff-Tuning, coeff_alpha: the library's
// coefficient-attention module (nn/module.hpp), whose parameter names are transformers'.
template <class T>
using ViTSelfAttention = nn::CoeffSelfAttention<T>;

template <class T>
struct ViTAttention : nn::Module<T> {
    ViTSelfAttention<T> attention;
    Dense<T> output;
    ViTAttention(int64_t hidden, int64_t heads, bool bias) : attention(hidden, heads, bias), output(hidden, hidden) {
        this->register_module("attention", attention);
        this->register_module("output", output);
    }
};

template <class T>
struct ViTLayer : nn::Module<T> {
    ViTAttention<T> attention;
    Dense<T> intermediate, output;
    nn::LayerNorm<T> layernorm_before, layernorm_after;
    explicit ViTLayer(const ViTConfig& c)
        : attention(c.hidden_size, c.num_attention_heads, c.qkv_bias), intermediate(c.hidden_size, c.intermediate_size),
          output(c.intermediate_size, c.hidden_size), layernorm_before(c.hidden_size, c.layer_norm_eps),
          layernorm_after(c.hidden_size, c.layer_norm_eps) {
        this->register_module("attention", attention);
        this->register_module("intermediate", intermediate);
        this->register_module("output", output);
        this->register_module("layernorm_before", layernorm_before);
        this->register_module("layernorm_after", layernorm_after);
    }
};

template <class T>
struct ViTEncoder : nn::Module<T> {
    std::vector<std::unique_ptr<ViTLayer<T>>> layer;
    explicit ViTEncoder(const ViTConfig& c) {
        for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
            layer.push_back(std::make_unique<ViTLayer<T>>(c));
            this->register_module("layer." + std::to_string(i), *layer.back());
        }
    }
};

// The convolution that cuts the image into patches, stored as transformers stores it:
// weight [hidden, channels, P_h, P_w], bias [hidden].
template <class T>
struct PatchProjection : nn::Module<T> {
    Tensor<T> weight, bias;
    explicit PatchProjection(const ViTConfig& c) {
        weight = Tensor<T>::zeros({c.hidden_size, c.num_channels, c.patch_height, c.patch_width}).set_requires_grad(true);
        bias = Tensor<T>::zeros({c.hidden_size}).set_requires_grad(true);
        this->register_parameter("weight", weight);
        this->register_parameter("bias", bias, nn::ParamRole::bias);
    }
};

template <class T>
struct PatchEmbeddings : nn::Module<T> {
    PatchProjection<T> projection;
    explicit PatchEmbeddings(const ViTConfig& c) : projection(c) { this->register_module("projection", projection); }
};

template <class T>
struct ViTEmbeddings : nn::Module<T> {
    Tensor<T> cls_token, position_embeddings;
    PatchEmbeddings<T> patch_embeddings;
    explicit ViTEmbeddings(const ViTConfig& c) : patch_embeddings(c) {
        cls_token = Tensor<T>::zeros({1, 1, c.hidden_size}).set_requires_grad(true);
        position_embeddings = Tensor<T>::zeros({1, c.num_patches() + 1, c.hidden_size}).set_requires_grad(true);
        this->register_parameter("cls_token", cls_token);
        this->register_parameter("position_embeddings", position_embeddings);
        this->register_module("patch_embeddings", patch_embeddings);
    }
};

// [B, C, H, W] -> [B, (H/P_h) (W/P_w), C P_h P_w], each patch flattened in (channel, row, column)
// order, the order of the convolution weight; pixels past the last whole patch are dropped,
// as a stride-P convolution drops them. Differentiable (views and one copy).
template <class T>
Tensor<T> patchify(const Tensor<T>& pixels, int64_t ph, int64_t pw) {
    check(pixels.dim() == 4, "patchify: pixels must be [batch, channels, height, width], got ", shape_str(pixels.shape()));
    const int64_t B = pixels.size(0), C = pixels.size(1), hp = pixels.size(2) / ph, wp = pixels.size(3) / pw;
    return pixels.slice(2, 0, hp * ph)
        .slice(3, 0, wp * pw)
        .reshape({B, C, hp, ph, wp, pw})
        .permute({0, 2, 4, 1, 3, 5})
        .reshape({B, hp * wp, C * ph * pw});
}

template <class T>
struct ViTOutput {
    Tensor<T> last_hidden_state;  // [B, N + 1, D], after the final layer norm
    Tensor<T> pooler_output;      // [B, P] when the model has a pooler
    // Per layer, when forward(pixels, return_maps = true) asks (the graph-filter view):
    std::vector<Tensor<T>> hidden_states;  // the layer's input [B, N+1, D] (transformers' hidden_states[l])
    std::vector<Tensor<T>> maps;           // P: each head's filter, [B, H, N+1, N+1] (output_attentions)
    std::vector<Tensor<T>> mixed_maps;     // Phat = (I + alpha) P, the filters the values see (= maps when plain)
    std::vector<Tensor<T>> contexts;       // Phat V with the heads merged, [B, N+1, D]: before the output projection
};

// transformers' ViTModel. `with_pooler` decides whether "pooler.dense" is part of the model.
template <class T>
class ViTModel : public nn::Module<T> {
public:
    ViTConfig config;
    ViTEmbeddings<T> embeddings;
    ViTEncoder<T> encoder;
    nn::LayerNorm<T> layernorm;
    std::unique_ptr<Dense<T>> pooler;
    CoeffSpec coeff;   // alpha's dropout and parameterisation in every layer (ops/coeff_spec.hpp)
    Generator rng{0};  // draws every dropout mask in training mode; save it to resume exactly

    ViTModel(const ViTConfig& c, bool with_pooler)
        : config(c), embeddings(c), encoder(c), layernorm(c.hidden_size, c.layer_norm_eps) {
        c.validate();
        // Long sequences take the tiled attention backend (compiled where a model is built, not in
        // every file that includes this header: ops/attention_tiled.hpp).
        register_tiled_backend<T>();
        this->register_module("embeddings", embeddings);
        this->register_module("encoder", encoder);
        this->register_module("layernorm", layernorm);
        if (with_pooler) {
            pooler = std::make_unique<Dense<T>>(c.hidden_size, c.pooler_output_size > 0 ? c.pooler_output_size : c.hidden_size);
            this->register_module("pooler", *pooler);
        }
    }

    // Coeff-Tuning on: one alpha [H, H] per layer, zero (the model's output is unchanged), with
    // spec's alpha-dropout; trainable. Off: the alphas are dropped. spec.alpha_residual = false
    // switches to the direct parameterisation alpha' = alpha (initialise alpha yourself then; zero
    // is no attention).
    void enable_coeff(bool on = true, const CoeffSpec& spec = {}) {
        check_probability(spec.alpha_dropout, "ViTModel::enable_coeff");
        coeff = spec;
        for (auto& l : encoder.layer) l->attention.attention.enable_coeff(on);
    }
    bool coeff_enabled() const { return !encoder.layer.empty() && encoder.layer[0]->attention.attention.alpha.defined(); }
    std::vector<Tensor<T>> alphas() const {
        std::vector<Tensor<T>> out;
        for (auto& l : encoder.layer)
            if (l->attention.attention.alpha.defined()) out.push_back(l->attention.attention.alpha);
        return out;
    }

    // transformers' _init_weights: layer-norm gains one, biases zero, every other weight
    // normal(0, initializer_range), drawn in parameter order. Alpha and LoRA are left alone:
    // they are the tuning's, not the base model's.
    void init_weights(Generator& gen) {
        for (auto& [name, slot, role] : this->named_roles()) {
            if (!slot->defined() || role == nn::ParamRole::alpha || role == nn::ParamRole::lora) continue;
            if (role == nn::ParamRole::norm_scale) slot->fill_(T(1));
            else if (role == nn::ParamRole::bias) slot->fill_(T(0));
            else nn::init_normal(*slot, gen, config.initializer_range);
        }
    }

    ViTOutput<T> forward(const Tensor<T>& pixels, bool return_maps = false) {
        check(pixels.defined() && pixels.dim() == 4, "ViTModel: pixel_values must be [batch, channels, height, width], got ",
              pixels.defined() ? shape_str(pixels.shape()) : "undefined");
        check(pixels.size(1) == config.num_channels && pixels.size(2) == config.image_height &&
                  pixels.size(3) == config.image_width,
              "ViTModel: pixel_values ", shape_str(pixels.shape()), " do not match the model's [batch, ",
              config.num_channels, ", ", config.image_height, ", ", config.image_width, "]");
        const bool training = this->training();
        const int64_t B = pixels.size(0), D = config.hidden_size;
        const PatchProjection<T>& proj = embeddings.patch_embeddings.projection;
        Tensor<T> x = linear(patchify(pixels, config.patch_height, config.patch_width), proj.weight.reshape({D, -1}), proj.bias);
        x = add(concat(std::vector<Tensor<T>>{embeddings.cls_token.expand({B, 1, D}), x}, 1), embeddings.position_embeddings);
        x = dropout(x, config.hidden_dropout_prob, rng, training);

        AttentionOptions o;
        o.training = training;
        o.coeff = coeff;
        o.attn_dropout = config.attention_probs_dropout_prob;
        o.generator = &rng;
        o.return_maps = return_maps;
        ViTOutput<T> out;
        for (auto& l : encoder.layer) {
            AttentionResult<T> r = l->attention.attention.attend(l->layernorm_before(x), Tensor<T>(), o);
            if (return_maps) {
                out.hidden_states.push_back(x);
                out.maps.push_back(r.maps);
                out.mixed_maps.push_back(r.mixed_maps);
                out.contexts.push_back(r.out);
            }
            x = add(x, dropout(l->attention.output.dense(r.out), config.hidden_dropout_prob, rng, training));
            const Tensor<T> m = activation(config.hidden_act, l->intermediate.dense(l->layernorm_after(x)));
            x = add(x, dropout(l->output.dense(m), config.hidden_dropout_prob, rng, training));
        }
        out.last_hidden_state = layernorm(x);
        if (pooler) out.pooler_output = activation(config.pooler_act, pooler->dense(out.last_hidden_state.select(1, 0)));
        return out;
    }
};

// transformers' ViTForImageClassification: ViTModel without pooler ("vit.") and a linear
// classifier on the final CLS token. It is an nn::TunableModel: alpha in every self-attention,
// LoRA on query and value (the paper's and PEFT's choice for ViT), the classifier as head.
template <class T>
class ViTForImageClassification : public nn::TunableModel<T> {
public:
    ViTModel<T> vit;
    nn::Linear<T> classifier;

    explicit ViTForImageClassification(const ViTConfig& c) : vit(c, false), classifier(c.hidden_size, c.num_labels()) {
        this->register_module("vit", vit);
        this->register_module("classifier", classifier);
    }
    const ViTConfig& config() const { return vit.config; }

    struct Output {
        Tensor<T> logits;  // [B, num_labels]
        ViTOutput<T> vit;
    };
    Output forward(const Tensor<T>& pixels, bool return_maps = false) {
        Output o{{}, vit.forward(pixels, return_maps)};
        o.logits = classifier(o.vit.last_hidden_state.select(1, 0));
        return o;
    }

    // nn::TunableModel
    void enable_coeff(bool on, const CoeffSpec& spec) override { vit.enable_coeff(on, spec); }
    std::vector<std::pair<std::string, nn::Linear<T>*>> lora_targets() override {
        std::vector<const nn::Module<T>*> targets;
        for (auto& l : vit.encoder.layer)
            targets.insert(targets.end(), {&l->attention.attention.query, &l->attention.attention.value});
        std::vector<std::pair<std::string, nn::Linear<T>*>> out;
        for (auto& [name, m] : this->named_modules())
            if (std::find(targets.begin(), targets.end(), m) != targets.end())
                out.emplace_back(name, static_cast<nn::Linear<T>*>(m));
        return out;
    }
    nn::Linear<T>& head() override { return classifier; }
    // normal(0, initializer_range) weights and a zero bias, as transformers initialises a new head.
    void reset_head(const std::vector<std::string>& labels, Generator& init) override {
        const int64_t C = static_cast<int64_t>(labels.size());
        classifier.weight = Tensor<T>::randn({C, vit.config.hidden_size}, init, 0.0, vit.config.initializer_range);
        classifier.bias = Tensor<T>::zeros({C});
        vit.config.id2label = labels;
    }
    Tensor<T> features(const Tensor<T>& pixels) override { return vit.forward(pixels).last_hidden_state.select(1, 0); }
    Tensor<T> logits(const Tensor<T>& pixels) override { return forward(pixels).logits; }
    Generator& dropout_generator() override { return vit.rng; }
};

// Loads a save_pretrained directory (config.json + safetensors, sharded or not). The result
// is in evaluation mode, every parameter trainable; the report lists what was not used.
template <class T>
std::unique_ptr<ViTForImageClassification<T>> load_vit_for_image_classification(const std::filesystem::path& dir,
                                                                                 nn::LoadReport* report = nullptr) {
    const io::ModelDir md = io::ModelDir::open(dir);
    auto model = std::make_unique<ViTForImageClassification<T>>(ViTConfig::from_json(md.config(), md.config_file()));
    nn::LoadReport r = nn::load_parameters(*model, nn::WeightScope(md, "", "vit"));
    model->eval();
    if (report) *report = std::move(r);
    return model;
}

// Writes `model` as transformers' save_pretrained does: config.json and model.safetensors
// (every parameter under its transformers name; alpha and LoRA tensors are left out: they
// belong in an adapter), plus preprocessor_config.json when `preprocessor` is an object.
template <class T>
void save_pretrained(const std::filesystem::path& dir, const ViTForImageClassification<T>& model,
                     const nlohmann::json& preprocessor = nlohmann::json()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    check(std::filesystem::is_directory(dir), dir.string(), ": cannot create the directory");
    io::SafeTensorsWriter w;
    for (const auto& [name, p, role] : model.named_roles())
        if (p->defined() && role != nn::ParamRole::alpha && role != nn::ParamRole::lora)
            w.add(name, p->template cast<float>());
    w.set_metadata({{"format", "pt"}});
    w.write(dir / "model.safetensors");
    io::write_file_atomic(dir / "config.json", model.config().to_json().dump(2) + "\n");
    if (preprocessor.is_object()) io::write_file_atomic(dir / "preprocessor_config.json", preprocessor.dump(2) + "\n");
}

// Loads an adapter (nn::load_adapter) onto a classifier and applies what is ViT-specific: the
// head's labels, alpha's parameterisation and dropout. Coeff-Tuning is on when the adapter holds alphas.
template <class T>
io::AdapterConfig apply_adapter(ViTForImageClassification<T>& model, const std::filesystem::path& dir) {
    const io::AdapterConfig cfg = nn::load_adapter(dir, model);
    if (!cfg.id2label.empty()) {
        check(static_cast<int64_t>(cfg.id2label.size()) == model.classifier.weight.shape()[0], dir.string(),
              ": id2label has ", cfg.id2label.size(), " labels, the head ", model.classifier.weight.shape()[0]);
        model.vit.config.id2label = cfg.id2label;
    }
    model.vit.coeff = cfg.coeff;
    check(model.classifier.weight.shape()[0] == model.config().num_labels(), dir.string(), ": the head has ",
          model.classifier.weight.shape()[0], " outputs but the model has ", model.config().num_labels(),
          " labels (the adapter's adapter_config.json lacks id2label)");
    return cfg;
}

// ViTModel from a directory; it has a pooler when the checkpoint holds one.
template <class T>
std::unique_ptr<ViTModel<T>> load_vit_model(const std::filesystem::path& dir, nn::LoadReport* report = nullptr) {
    const io::ModelDir md = io::ModelDir::open(dir);
    const nn::WeightScope scope(md, "", "vit");
    auto model = std::make_unique<ViTModel<T>>(ViTConfig::from_json(md.config(), md.config_file()),
                                               scope.contains("pooler.dense.weight"));
    nn::LoadReport r = nn::load_parameters(*model, scope);
    model->eval();
    if (report) *report = std::move(r);
    return model;
}

}  // namespace coeffnet::models
