// ViT against transformers: checkpoints saved by save_pretrained (tests/data, made by
// tools/make_reference.py) load without conversion and reproduce transformers' outputs, and
// the Coeff-Tuning gradients of its PyTorch reference. Regenerate: python3 tools/make_reference.py
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/io/adapter.hpp>
#include <coeffnet/models/vit.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
using models::ViTConfig;

namespace {

const std::filesystem::path kData = COEFFNET_TEST_DATA;


// Copies the reference's alpha.<layer> tensors into the model's alphas.
template <class T>
void set_alphas(const io::SafeTensors& ref, std::vector<Tensor<T>>& alphas) {
    for (size_t l = 0; l < alphas.size(); ++l) {
        const auto a = ref.get_as<T>("alpha." + std::to_string(l));
        std::copy_n(a.data(), a.numel(), alphas[l].data());
    }
}

// The gradients of the pixels and of every alpha against the reference's grad_* tensors, each
// relative to its own scale: max|ours - ref| <= rel * max|ref|. The reference is float32
// PyTorch, so its own rounding bounds how close even double can get: measured on 2026-12-06,
// the worst relative error was 6.3e-7 in float and 5.8e-7 in double. rel is 1e-5 in float and
// 2e-6 in double; a backward 5 % off fails either (tests/mutations.sh, softmax-backward-vit).
template <class T>
void check_gradients(const io::SafeTensors& ref, const Tensor<T>& px, const std::vector<Tensor<T>>& alphas) {
    const double rel = std::is_same_v<T, float> ? 1e-5 : 2e-6;
    auto check_one = [&](const std::string& what, const Tensor<T>& ours, const Tensor<float>& want) {
        const double scale = max_abs(want);
        INFO(what, ": max|ref| ", scale, ", max|ours - ref| / max|ref| ", max_abs_diff(ours, want) / scale);
        REQUIRE(scale > 0);
        CHECK(max_abs_diff(ours, want) <= rel * scale);
    };
    check_one("pixels", px.grad(), ref.get<float>("grad_pixel_values"));
    for (size_t l = 0; l < alphas.size(); ++l)
        check_one("alpha " + std::to_string(l), alphas[l].grad(), ref.get<float>("grad_alpha." + std::to_string(l)));
}

}  // namespace

TEST_CASE_TEMPLATE("ViTForImageClassification matches transformers' logits and hidden states", T, float, double) {
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    nn::LoadReport report;
    auto model = models::load_vit_for_image_classification<T>(kData / "vit_cls", &report);
    CHECK(report.unused.empty());
    CHECK(report.missing.empty());
    CHECK(model->config().num_labels() == 5);
    CHECK(model->config().id2label[3] == "star");
    CHECK(model->config().image_height == 30);
    CHECK(model->config().num_attention_heads == 6);
    const auto out = model->forward(ref.get_as<T>("pixel_values"));
    CHECK(max_abs_diff(out.logits, ref.get<float>("logits")) <= 1e-4);
    CHECK(max_abs_diff(out.vit.last_hidden_state, ref.get<float>("last_hidden_state")) <= 1e-4);
}

TEST_CASE("a sharded checkpoint loads to the same model as the single file") {
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    auto single = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    nn::LoadReport report;
    auto sharded = models::load_vit_for_image_classification<float>(kData / "vit_cls_sharded", &report);
    CHECK(report.unused.empty());
    CHECK(io::ModelDir::open(kData / "vit_cls_sharded").files().size() > 1);
    const auto px = ref.get<float>("pixel_values");
    CHECK(single->forward(px).logits.to_vector() == sharded->forward(px).logits.to_vector());
}

TEST_CASE("ViTModel with pooler, non-square image, no qkv bias and gelu_new matches transformers") {
    const auto ref = io::SafeTensors::open(kData / "vit_base_reference.safetensors");
    nn::LoadReport report;
    auto model = models::load_vit_model<float>(kData / "vit_base", &report);
    CHECK(report.unused.empty());
    REQUIRE(model->pooler != nullptr);
    CHECK(model->config.image_height == 24);
    CHECK(model->config.image_width == 40);
    CHECK_FALSE(model->config.qkv_bias);
    CHECK(model->config.hidden_act == "gelu_new");
    const auto out = model->forward(ref.get<float>("pixel_values"));
    CHECK(max_abs_diff(out.last_hidden_state, ref.get<float>("last_hidden_state")) <= 1e-4);
    CHECK(max_abs_diff(out.pooler_output, ref.get<float>("pooler_output")) <= 1e-4);
}

TEST_CASE_TEMPLATE("Coeff-Tuning ViT: outputs and gradients (pixels, every alpha) match the PyTorch reference", T, float,
                   double) {
    // Gradients are compared relative to their own scale (check_gradients).
    SUBCASE("classifier, cross-entropy loss") {
        const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
        auto model = models::load_vit_for_image_classification<T>(kData / "vit_cls");
        model->set_requires_grad(false);
        model->vit.enable_coeff(true);
        auto alphas = model->vit.alphas();
        REQUIRE(alphas.size() == 3);
        set_alphas(ref, alphas);
        auto px = ref.get_as<T>("pixel_values").contiguous().clone().detach().set_requires_grad(true);
        const auto out = model->forward(px);
        CHECK(max_abs_diff(out.logits, ref.get<float>("logits_coeff")) <= 1e-4);
        CHECK(max_abs_diff(out.vit.last_hidden_state, ref.get<float>("last_hidden_state_coeff")) <= 1e-4);
        auto loss = cross_entropy(out.logits, ref.get<int64_t>("labels"));
        CHECK(loss.item() == doctest::Approx(ref.get<float>("loss_coeff").item()).epsilon(1e-5));
        loss.backward();
        check_gradients(ref, px, alphas);
        CHECK_FALSE(model->classifier.weight.grad().defined());  // frozen: no weight gradient
    }
    SUBCASE("base model with pooler, weighted-sum loss") {
        const auto ref = io::SafeTensors::open(kData / "vit_base_reference.safetensors");
        auto model = models::load_vit_model<T>(kData / "vit_base");
        model->set_requires_grad(false);
        model->enable_coeff(true);
        auto alphas = model->alphas();
        REQUIRE(alphas.size() == 2);
        set_alphas(ref, alphas);
        auto px = ref.get_as<T>("pixel_values").contiguous().clone().detach().set_requires_grad(true);
        const auto out = model->forward(px);
        CHECK(max_abs_diff(out.pooler_output, ref.get<float>("pooler_output_coeff")) <= 1e-4);
        auto loss = sum(mul(out.pooler_output, ref.get_as<T>("weights")));
        CHECK(loss.item() == doctest::Approx(ref.get<float>("loss_coeff").item()).epsilon(1e-5));
        loss.backward();
        check_gradients(ref, px, alphas);
    }
}

TEST_CASE_TEMPLATE("the graph-filter view: P is transformers' output_attentions, Phat V is the attention output", T,
                   float, double) {
    // Reference: tools/make_reference.py (attentions.<l> from transformers with eager attention;
    // maps_coeff / mixed_maps_coeff / context_coeff.<l> recorded inside the patched attention).
    // Tolerances relative to each reference's own scale; the reference is float32.
    const double rel = std::is_same_v<T, float> ? 1e-5 : 2e-6;
    auto close = [&](const std::string& what, const Tensor<T>& ours, const Tensor<float>& want) {
        INFO(what, ": max|ours - ref| ", max_abs_diff(ours, want), ", max|ref| ", max_abs(want));
        REQUIRE(ours.shape() == want.shape());
        CHECK(max_abs_diff(ours, want) <= rel * std::max(1.0, max_abs(want)));
    };
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    auto model = models::load_vit_for_image_classification<T>(kData / "vit_cls");
    const auto px = ref.get_as<T>("pixel_values");
    NoGrad no_grad;
    SUBCASE("plain attention: P per layer, and Phat = P exactly") {
        const auto out = model->vit.forward(px, /*return_maps=*/true);
        REQUIRE(out.maps.size() == 3);
        for (size_t l = 0; l < 3; ++l) {
            close("attentions." + std::to_string(l), out.maps[l], ref.get<float>("attentions." + std::to_string(l)));
            CHECK(out.mixed_maps[l].to_vector() == out.maps[l].to_vector());
        }
    }
    SUBCASE("alpha = 0 gives Phat = P exactly") {
        model->vit.enable_coeff(true);
        const auto out = model->vit.forward(px, true);
        for (size_t l = 0; l < 3; ++l) CHECK(out.mixed_maps[l].to_vector() == out.maps[l].to_vector());
    }
    SUBCASE("with alpha: P, Phat = (I + alpha) P and Phat V against the reference's patched attention") {
        model->vit.enable_coeff(true);
        auto alphas = model->vit.alphas();
        set_alphas(ref, alphas);
        const auto out = model->vit.forward(px, true);
        for (size_t l = 0; l < 3; ++l) {
            const std::string L = std::to_string(l);
            close("maps_coeff." + L, out.maps[l], ref.get<float>("maps_coeff." + L));
            close("mixed_maps_coeff." + L, out.mixed_maps[l], ref.get<float>("mixed_maps_coeff." + L));
            // Phat V from the layer's own input: the filters the values see give the attention output.
            auto& layer = *model->vit.encoder.layer[l];
            const auto v = split_heads(layer.attention.attention.value(layer.layernorm_before(out.hidden_states[l])), 6);
            close("Phat V vs context_coeff." + L, merge_heads(matmul(out.mixed_maps[l], v)), ref.get<float>("context_coeff." + L));
            close("contexts." + L, out.contexts[l], ref.get<float>("context_coeff." + L));
        }
    }
}

TEST_CASE("enabling Coeff-Tuning leaves the model's output unchanged, bit for bit") {
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    auto model = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    const auto px = ref.get<float>("pixel_values");
    const auto before = model->forward(px).logits.to_vector();
    model->vit.enable_coeff(true, {0.2});
    CHECK(model->vit.coeff_enabled());
    CHECK(model->forward(px).logits.to_vector() == before);  // eval: no alpha dropout, alpha = 0
    auto names = model->named_parameters();
    int n_alpha = 0;
    for (auto& [name, p] : names)
        if (name.find("coeff_alpha") != std::string::npos) {
            ++n_alpha;
            CHECK(name.rfind("vit.encoder.layer.", 0) == 0);
            CHECK(name.find(".attention.attention.coeff_alpha") != std::string::npos);
        }
    CHECK(n_alpha == 3);
}

TEST_CASE("config.json's layer_norm_eps reaches every LayerNorm") {
    // At the fixtures' scale eps barely moves the outputs (1e-6 against unit variances), so the
    // comparisons with transformers cannot tell whether it was passed on; this checks that it was.
    for (const char* dir : {"vit_base", "vit_cls"}) {
        INFO(dir);
        const auto model = models::load_vit_model<float>(kData / dir);
        const double eps = model->config.layer_norm_eps;
        CHECK(eps == (std::string(dir) == "vit_base" ? 1e-6 : 1e-12));  // tests/data/<dir>/config.json
        REQUIRE(model->encoder.layer.size() == static_cast<size_t>(model->config.num_hidden_layers));
        for (const auto& l : model->encoder.layer) {
            CHECK(l->layernorm_before.eps == eps);
            CHECK(l->layernorm_after.eps == eps);
        }
        CHECK(model->layernorm.eps == eps);
    }
}

TEST_CASE("ViT-B/16: 12 layers x 12 x 12 = 1,728 alpha parameters") {
    models::ViTModel<float> vit(ViTConfig{}, false);
    const int64_t base = vit.num_parameters();
    CHECK(base == 85798656);  // transformers' ViTModel(ViTConfig(), add_pooling_layer=False)
    vit.enable_coeff(true);
    CHECK(vit.num_parameters() - base == 1728);
}

TEST_CASE_TEMPLATE("building a ViT registers the tiled attention backend for its element type", T, float, double) {
    // models/vit.hpp includes the backend's code without ops/attention_tiled.hpp's start-up
    // registration; the model's constructor registers it (long sequences take it automatically).
    const TiledAttentionFn<T> kept = tiled_attention_backend<T>;
    tiled_attention_backend<T> = nullptr;
    ViTConfig c;
    c.hidden_size = 8, c.num_attention_heads = 2, c.num_hidden_layers = 1, c.intermediate_size = 8;
    c.image_height = c.image_width = 4, c.patch_height = c.patch_width = 2;
    models::ViTModel<T> vit(c, false);
    const bool registered = tiled_attention_backend<T> == &coeff_attention_tiled<T>;
    tiled_attention_backend<T> = kept;
    CHECK(registered);
}

TEST_CASE("config.json: defaults for missing keys, unknown keys ignored, wrong types refused") {
    auto c = ViTConfig::from_json(nlohmann::json::parse(R"({"hidden_size": 64, "num_attention_heads": 4, "some_new_key": [1, 2]})"));
    CHECK(c.hidden_size == 64);
    CHECK(c.num_hidden_layers == 12);
    CHECK(c.layer_norm_eps == 1e-12);
    CHECK(c.image_height == 224);
    CHECK(c.num_labels() == 2);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"hidden_size": "768"})"), "x/config.json"),
                         doctest::Contains("x/config.json: config key 'hidden_size' should be an integer, got \"768\""),
                         Error);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"image_size": [1, 2, 3]})")),
                         doctest::Contains("'image_size' should be an integer or [height, width]"), Error);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"hidden_act": "mish"})")),
                         doctest::Contains("hidden_act 'mish' is not supported"), Error);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"hidden_size": 100, "num_attention_heads": 12})")),
                         doctest::Contains("hidden_size 100 is not divisible by num_attention_heads 12"), Error);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"id2label": {"0": "a", "2": "b"}})")),
                         doctest::Contains("id2label must map the indices 0..1"), Error);
    CHECK_THROWS_WITH_AS(ViTConfig::from_json(nlohmann::json::parse(R"({"model_type": "bert"})")),
                         doctest::Contains("model_type is 'bert', expected 'vit'"), Error);
    // A round trip through to_json keeps every field.
    auto again = ViTConfig::from_json(c.to_json());
    CHECK(again.to_json() == c.to_json());
}

TEST_CASE("a missing or mis-shaped tensor names its full path and both shapes") {
    TempDir tmp("vit_broken");
    const auto src = io::SafeTensors::open(kData / "vit_cls" / "model.safetensors");
    for (const char* broken : {"missing", "shape"}) {
        io::SafeTensorsWriter w;
        for (const auto& t : src.tensors()) {
            const auto v = src.get<float>(t.name);
            if (t.name == "vit.encoder.layer.1.attention.attention.key.weight") {
                if (std::string(broken) == "missing") continue;
                w.add(t.name, Tensor<float>::zeros({48, 47}));
            } else {
                w.add(t.name, v);
            }
        }
        w.write(tmp.path / "model.safetensors");
        std::filesystem::copy_file(kData / "vit_cls" / "config.json", tmp.path / "config.json",
                                   std::filesystem::copy_options::overwrite_existing);
        if (std::string(broken) == "missing")
            CHECK_THROWS_WITH_AS(models::load_vit_for_image_classification<float>(tmp.path),
                                 doctest::Contains("missing tensor 'vit.encoder.layer.1.attention.attention.key.weight'"),
                                 Error);
        else
            CHECK_THROWS_WITH_AS(
                models::load_vit_for_image_classification<float>(tmp.path),
                doctest::Contains("tensor 'vit.encoder.layer.1.attention.attention.key.weight' has shape [48, 47], the model expects [48, 48]"),
                Error);
    }
    CHECK_THROWS_WITH_AS(io::ModelDir::open(tmp.path / "nowhere"), doctest::Contains("not a directory"), Error);
    auto model = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    CHECK_THROWS_WITH_AS(model->forward(Tensor<float>::zeros({1, 3, 32, 30})),
                         doctest::Contains("pixel_values [1, 3, 32, 30] do not match the model's [batch, 3, 30, 30]"),
                         Error);
}

TEST_CASE("names with or without the model prefix load alike") {
    // ViTModel from the classifier's checkpoint ("vit." prefix), and the scope resolving both ways.
    nn::LoadReport report;
    auto backbone = models::load_vit_model<float>(kData / "vit_cls", &report);
    CHECK(backbone->pooler == nullptr);
    CHECK(report.unused == std::vector<std::string>{"classifier.bias", "classifier.weight"});
    const auto md = io::ModelDir::open(kData / "vit_cls");
    nn::WeightScope scope(md, "", "vit");
    CHECK(scope.resolve("embeddings.cls_token") == "vit.embeddings.cls_token");
    CHECK(scope.sub("vit").resolve("embeddings.cls_token") == "vit.embeddings.cls_token");
    CHECK(scope.sub("vit.encoder").sub("layer.2").get<float>("layernorm_after.weight", {48}).numel() == 48);
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    CHECK(max_abs_diff(backbone->forward(ref.get<float>("pixel_values")).last_hidden_state,
                       ref.get<float>("last_hidden_state")) <= 1e-4);
}

TEST_CASE("loading writes into the parameters: an optimiser built before the load trains what was loaded") {
    // The trap: a load that rebinds each parameter slot leaves an earlier optimiser holding the
    // old tensors, and its steps move nothing the model uses.
    const auto md = io::ModelDir::open(kData / "vit_cls");
    models::ViTForImageClassification<float> model(models::ViTConfig::from_json(md.config(), md.config_file()));
    Generator init(3);
    model.vit.init_weights(init);
    nn::init_normal(model.classifier.weight, init, 0.02);
    std::vector<Tensor<float>> params;
    for (auto& [name, p] : model.named_parameters()) params.push_back(p);
    AdamW<float> opt(params, {.lr = 1e-2, .weight_decay = 0.0});
    nn::load_parameters(model, nn::WeightScope(md, "", "vit"));
    const auto reference = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    const auto ref_params = reference->named_parameters();
    REQUIRE(ref_params.size() == params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        CAPTURE(ref_params[i].first);
        CHECK(params[i].to_vector() == ref_params[i].second.to_vector());  // the optimiser sees the load
    }
    const auto px = io::SafeTensors::open(kData / "vit_cls_reference.safetensors").get<float>("pixel_values");
    model.train();
    opt.zero_grad();
    mean(square(model.forward(px).logits)).backward();
    opt.step();
    const auto after = model.named_parameters();
    int moved = 0;
    for (size_t i = 0; i < after.size(); ++i)
        if (after[i].second.to_vector() != ref_params[i].second.to_vector()) ++moved;
    CHECK(moved == static_cast<int>(after.size()));  // every parameter got a gradient and moved
}

TEST_CASE("an adapter (alpha + classifier) saved and loaded onto the base reproduces the tuned model") {
    TempDir tmp("adapter");
    const auto ref = io::SafeTensors::open(kData / "vit_cls_reference.safetensors");
    const auto px = ref.get<float>("pixel_values");
    auto tuned = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    tuned->set_requires_grad(false);
    tuned->vit.enable_coeff(true, {0.2});
    tuned->classifier.weight.set_requires_grad(true);
    tuned->classifier.bias.set_requires_grad(true);
    Generator g(5);
    for (auto& a : tuned->vit.alphas()) {
        const auto r = Tensor<float>::randn(a.shape(), g, 0.0, 0.2);
        std::copy_n(r.data(), r.numel(), a.data());
    }
    tuned->classifier.bias.data()[0] += 1.0f;
    const auto want = tuned->forward(px).logits.to_vector();
    io::AdapterConfig cfg;
    cfg.method = "coeff";
    cfg.coeff.alpha_dropout = 0.2;
    cfg.target_modules = {"attention.attention"};
    cfg.modules_to_save = {"classifier"};
    cfg.base_model = (kData / "vit_cls").string();
    nn::save_adapter(tmp.path, *tuned, cfg);

    const auto st = io::SafeTensors::open(tmp.path / "adapter_model.safetensors");
    CHECK(st.tensors().size() == 5);  // 3 alphas + classifier weight and bias
    CHECK(st.contains("vit.encoder.layer.0.attention.attention.coeff_alpha"));
    CHECK(st.metadata().at("method") == "coeff");
    CHECK(st.metadata().at("alpha_dropout") == "0.2");
    const auto cfg_json = io::read_json(tmp.path / "adapter_config.json");
    CHECK(cfg_json["peft_type"] == "COEFF_TUNING");
    CHECK(cfg_json["modules_to_save"] == nlohmann::json::array({"classifier"}));

    auto fresh = models::load_vit_for_image_classification<float>(kData / "vit_cls");
    const Tensor<float> head_bias = fresh->classifier.bias;  // as an optimiser built now holds it
    const auto loaded = nn::load_adapter(tmp.path, *fresh);
    CHECK(head_bias.to_vector() == tuned->classifier.bias.to_vector());  // written in place (the tuned bias moved)
    CHECK(loaded.coeff.alpha_dropout == 0.2);
    CHECK(fresh->vit.coeff_enabled());
    CHECK(fresh->forward(px).logits.to_vector() == want);

    // An adapter for another model is refused by name.
    auto other = models::load_vit_model<float>(kData / "vit_base");
    CHECK_THROWS_WITH_AS(nn::load_adapter(tmp.path, *other), doctest::Contains("names no parameter of the model"), Error);
}
