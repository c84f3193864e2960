// Fine-tuning: each method's trainable parameters, the alpha = 0 start, which parameters a step
// changes, checkpoint/resume bit-exactness, adapters with a new head, bad inputs.
#include <doctest/doctest.h>

#include <filesystem>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/data/procedural.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/train/finetune.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
using train::Method;

namespace {

const std::filesystem::path kModel = std::filesystem::path(COEFFNET_TEST_DATA) / "vit_cls";  // 3 layers, 6 heads, D 48

struct Data {
    Tensor<float> px;
    Tensor<int64_t> y;
    std::vector<std::string> classes;
};
Data task_data(int64_t n, uint64_t seed = 3) {
    const auto set = data::generate("count", seed, n, 30);
    return {data::to_pixels(set.images, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}), set.labels, set.classes};
}

std::map<std::string, std::vector<float>> snapshot(const nn::Module<float>& m) {
    std::map<std::string, std::vector<float>> s;
    for (const auto& [n, p] : m.named_parameters()) s[n] = p.to_vector();
    return s;
}

}  // namespace

TEST_CASE("each method trains exactly its parameters, counted exactly") {
    const Data d = task_data(16);
    const int64_t head = 48 * 4 + 4, alpha = 3 * 6 * 6, lora = 3 * 2 * (4 * 48 + 48 * 4);
    auto base = models::load_vit_for_image_classification<float>(kModel);
    const int64_t backbone = base->vit.num_parameters();
    const std::map<Method, int64_t> want{{Method::linear_probe, head},
                                         {Method::coeff, head + alpha},
                                         {Method::lora, head + lora},
                                         {Method::coeff_lora, head + alpha + lora},
                                         {Method::full, head + backbone}};
    for (Method m : train::kMethods) {
        INFO("method ", train::method_name(m));
        auto model = models::load_vit_for_image_classification<float>(kModel);
        train::TuneConfig c;
        c.method = m;
        c.lora_rank = 4;
        c.batch_size = 8;
        train::Finetuner<float> tuner(*model, c, d.classes, d.px, d.y);
        CHECK(tuner.trainable_parameters() == want.at(m));
        CHECK(model->num_parameters(true) == want.at(m));

        // Two steps (the first has lr 0: transformers' warm-up starts at 0) change the tuned
        // parameters and nothing else.
        const auto before = snapshot(*model);
        tuner.train_step();
        tuner.train_step();
        const auto after = snapshot(*model);
        for (const auto& [name, v] : after) {
            // LoRA's A gets a zero gradient while B = 0 (both steps' forward passes), so it stays put.
            const bool tuned = name.rfind("classifier.", 0) == 0 ||
                               (train::uses_alpha(m) && name.find("coeff_alpha") != std::string::npos) ||
                               (train::uses_lora(m) && name.find("lora_B") != std::string::npos) || m == Method::full;
            INFO("parameter ", name);
            REQUIRE(before.count(name));
            if (tuned) CHECK(v != before.at(name));
            else CHECK(v == before.at(name));
        }
    }
}

TEST_CASE("setup_method gives each method's trainable set and groups, whatever was set up before") {
    const int64_t head = 48 * 4 + 4, alpha = 3 * 6 * 6, lora = 3 * 2 * (4 * 48 + 48 * 4);
    auto model = models::load_vit_for_image_classification<float>(kModel);  // loaded: all trainable
    const int64_t backbone = model->vit.num_parameters();
    const std::map<Method, int64_t> want{{Method::linear_probe, head},
                                         {Method::coeff, head + alpha},
                                         {Method::lora, head + lora},
                                         {Method::coeff_lora, head + alpha + lora},
                                         {Method::full, head + backbone}};
    const std::map<Method, std::vector<std::string>> groups{{Method::linear_probe, {"head"}},
                                                            {Method::coeff, {"head", "alpha"}},
                                                            {Method::lora, {"head", "lora"}},
                                                            {Method::coeff_lora, {"head", "alpha", "lora"}},
                                                            {Method::full, {"head", "backbone"}}};
    const std::vector<std::string> classes{"a", "b", "c", "d"};
    Generator init(5);
    // Every method after every other (and after a stray freeze or unfreeze of everything).
    for (Method before : train::kMethods)
        for (Method m : train::kMethods) {
            INFO("method ", train::method_name(m), " after ", train::method_name(before));
            train::TuneConfig c;
            c.lora_rank = 4;
            c.method = before;
            train::setup_method<float>(*model, c, classes, init);
            model->set_requires_grad(m == Method::coeff);
            c.method = m;
            const auto g = train::setup_method<float>(*model, c, classes, init);
            CHECK(model->num_parameters(true) == want.at(m));
            CHECK(train::count_parameters(g) == want.at(m));
            std::vector<std::string> names;
            for (const auto& grp : g) names.push_back(grp.name);
            CHECK(names == groups.at(m));
            for (const auto& grp : g)
                for (const auto& p : grp.params) CHECK(p.requires_grad());
        }
}

TEST_CASE("at the start, alpha = 0 and LoRA's B = 0 give exactly the base model's logits") {
    // The reference is an untouched base model (no Finetuner, no Coeff-Tuning, no LoRA) given the
    // same new head, so every method, the first included, is compared with an independent result.
    const Data d = task_data(8);
    auto base = models::load_vit_for_image_classification<float>(kModel);
    base->eval();
    CHECK_FALSE(base->vit.coeff_enabled());
    for (Method m : train::kMethods) {
        INFO("method ", train::method_name(m));
        auto model = models::load_vit_for_image_classification<float>(kModel);
        train::TuneConfig c;
        c.method = m;
        train::Finetuner<float> tuner(*model, c, d.classes, d.px, d.y);
        CHECK(model->vit.coeff_enabled() == train::uses_alpha(m));
        model->eval();
        NoGrad ng;
        base->classifier.weight = model->classifier.weight.detach().clone();
        base->classifier.bias = model->classifier.bias.detach().clone();
        const auto want = base->forward(d.px).logits.to_vector();
        REQUIRE(want.size() == d.classes.size() * 8);
        CHECK(model->forward(d.px).logits.to_vector() == want);
    }
}

TEST_CASE("a checkpointed run resumed after 2 steps equals 4 straight steps, bit for bit") {
    // Alpha dropout on, shuffled batches, LoRA too: the generators' states must travel.
    TempDir tmp("ft-resume");
    const Data d = task_data(40);
    train::TuneConfig c;
    c.method = Method::coeff_lora;
    c.alpha_dropout = 0.3;
    c.batch_size = 8;
    c.epochs = 2;
    c.seed = 5;

    auto straight = models::load_vit_for_image_classification<float>(kModel);
    train::Finetuner<float> a(*straight, c, d.classes, d.px, d.y);
    for (int i = 0; i < 4; ++i) a.train_step();

    auto first = models::load_vit_for_image_classification<float>(kModel);
    train::Finetuner<float> b(*first, c, d.classes, d.px, d.y);
    b.train_step();
    b.train_step();
    b.save_checkpoint(tmp.path / "ckpt.safetensors");

    auto second = models::load_vit_for_image_classification<float>(kModel);
    train::Finetuner<float> r(*second, c, d.classes, d.px, d.y);
    r.load_checkpoint(tmp.path / "ckpt.safetensors");
    CHECK(r.step() == 2);
    r.train_step();
    r.train_step();
    CHECK(snapshot(*second) == snapshot(*straight));
    CHECK(second->vit.rng.offset == straight->vit.rng.offset);

    // A checkpoint of another configuration is refused.
    train::TuneConfig other = c;
    other.alpha_dropout = 0.1;
    auto third = models::load_vit_for_image_classification<float>(kModel);
    train::Finetuner<float> x(*third, other, d.classes, d.px, d.y);
    CHECK_THROWS_WITH_AS(x.load_checkpoint(tmp.path / "ckpt.safetensors"), doctest::Contains("another configuration"),
                         Error);
}

TEST_CASE("a tuned model's adapter (alpha, LoRA, a new 4-class head) reloads onto the base exactly") {
    TempDir tmp("ft-adapter");
    const Data d = task_data(24);
    train::TuneConfig c;
    c.method = Method::coeff_lora;
    c.alpha_init = train::AlphaInit::identity;  // the direct parameterisation must travel too
    c.batch_size = 8;
    auto model = models::load_vit_for_image_classification<float>(kModel);
    train::Finetuner<float> tuner(*model, c, d.classes, d.px, d.y);
    for (int i = 0; i < 3; ++i) tuner.train_step();
    model->eval();
    const auto want = model->forward(d.px).logits.to_vector();

    io::AdapterConfig a;
    a.method = "coeff_lora";
    a.r = c.lora_rank;
    a.lora_alpha = c.lora_alpha;
    a.coeff.alpha_residual = false;
    a.modules_to_save = {"classifier"};
    a.id2label = d.classes;
    nn::save_adapter(tmp.path, *model, a);

    auto fresh = models::load_vit_for_image_classification<float>(kModel);
    CHECK(fresh->config().num_labels() == 5);
    models::apply_adapter(*fresh, tmp.path);
    CHECK(fresh->config().id2label == d.classes);
    CHECK_FALSE(fresh->vit.coeff.alpha_residual);
    CHECK(fresh->forward(d.px).logits.to_vector() == want);

    auto other = models::load_vit_model<float>(std::filesystem::path(COEFFNET_TEST_DATA) / "vit_base");
    CHECK_THROWS_WITH_AS(nn::load_adapter(tmp.path, *other), doctest::Contains("names no parameter of the model"), Error);
}

TEST_CASE("bad inputs are clear errors") {
    CHECK_THROWS_WITH_AS(train::parse_method("prompt"), doctest::Contains("unknown method 'prompt'"), Error);
    CHECK_THROWS_WITH_AS(train::parse_alpha_init("zeros"), doctest::Contains("unknown alpha init 'zeros'"), Error);
    auto model = models::load_vit_for_image_classification<float>(kModel);
    const Data d = task_data(8);
    train::TuneConfig c;
    c.epochs = 0;
    CHECK_THROWS_WITH_AS(train::Finetuner<float>(*model, c, d.classes, d.px, d.y), doctest::Contains("epochs"), Error);
    c.epochs = 1;
    CHECK_THROWS_WITH_AS(train::Finetuner<float>(*model, c, d.classes, d.px, d.y.slice(0, 0, 4)),
                         doctest::Contains("8 images but 4 labels"), Error);
    c.method = Method::linear_probe;  // computes the features at once, so the size is checked here
    CHECK_THROWS_WITH_AS(train::Finetuner<float>(*model, c, d.classes, Tensor<float>::zeros({8, 3, 32, 32}), d.y),
                         doctest::Contains("do not match the model's"), Error);
}

namespace {

// A model that is not a ViT, tuned by the same Finetuner through nn::TunableModel: tokens
// [B, N, 8] -> coefficient attention (2 heads) -> layer norm -> mean over tokens -> head.
struct TokenClassifier : nn::TunableModel<float> {
    Generator gen{11}, dropout_rng{0};
    nn::CoeffAttention<float> attn;
    nn::LayerNorm<float> norm;
    nn::Linear<float> classifier;

    TokenClassifier() : attn(8, 2, gen), norm(8), classifier(8, 2, gen) {
        register_module("attn", attn);
        register_module("norm", norm);
        register_module("classifier", classifier);
    }
    void enable_coeff(bool on, const CoeffSpec& spec) override {
        check(spec.alpha_residual, "TokenClassifier: only the residual parameterisation");
        attn.enable_coeff(on, spec);
    }
    std::vector<std::pair<std::string, nn::Linear<float>*>> lora_targets() override {
        return {{"attn.query", &attn.query}, {"attn.value", &attn.value}};
    }
    nn::Linear<float>& head() override { return classifier; }
    void reset_head(const std::vector<std::string>& labels, Generator& init) override {
        classifier.weight = Tensor<float>::randn({static_cast<int64_t>(labels.size()), 8}, init, 0.0, 0.02);
        classifier.bias = Tensor<float>::zeros({static_cast<int64_t>(labels.size())});
    }
    Tensor<float> features(const Tensor<float>& x) override {
        return mean(norm(attn.forward(x, {.generator = &dropout_rng}).out), Shape{1});
    }
    Tensor<float> logits(const Tensor<float>& x) override { return classifier(features(x)); }
    Generator& dropout_generator() override { return dropout_rng; }
};

}  // namespace

TEST_CASE("the Finetuner tunes any TunableModel: a token classifier that is not a ViT") {
    // Class 1: the tokens' first feature is shifted up; the task is learnable from the mean.
    Generator g(4);
    Tensor<float> x = Tensor<float>::randn({24, 5, 8}, g);
    Tensor<int64_t> y = Tensor<int64_t>::zeros({24});
    for (int64_t i = 0; i < 24; i += 2) {
        y.data()[i] = 1;
        for (int64_t t = 0; t < 5; ++t) x.data()[(i * 5 + t) * 8] += 2.0f;
    }
    const std::vector<std::string> classes{"low", "high"};
    const int64_t head = 8 * 2 + 2, alpha = 2 * 2, lora = 2 * (4 * 8 + 8 * 4);
    for (Method m : train::kMethods) {
        INFO("method ", train::method_name(m));
        TokenClassifier model;
        const int64_t all = model.num_parameters() - head;
        train::TuneConfig c;
        c.method = m;
        c.batch_size = 6;
        c.epochs = 3;
        c.alpha_dropout = 0.1;
        c.head.lr = 0.05;
        train::Finetuner<float> tuner(model, c, classes, x, y);
        const std::map<Method, int64_t> want{{Method::linear_probe, head},
                                             {Method::coeff, head + alpha},
                                             {Method::lora, head + lora},
                                             {Method::coeff_lora, head + alpha + lora},
                                             {Method::full, head + all}};
        CHECK(tuner.trainable_parameters() == want.at(m));
        CHECK(model.num_parameters(true) == want.at(m));
        // The groups hold what the roles say.
        for (const auto& grp : tuner.groups()) {
            const auto role = grp.name == "alpha" ? nn::ParamRole::alpha : nn::ParamRole::lora;
            if (grp.name == "alpha" || grp.name == "lora")
                CHECK(grp.params.size() == train::parameters_with_role(model, role).size());
        }
        // fit reports every step, the images of each batch and the epoch ends, and stops when asked.
        std::vector<train::StepReport> seen;
        tuner.fit([&](const train::StepReport& s) {
            seen.push_back(s);
            return s.step < 5;
        });
        REQUIRE(seen.size() == 5);
        CHECK(tuner.step() == 5);
        CHECK(seen[3].epoch_end);
        CHECK_FALSE(seen[2].epoch_end);
        for (int i = 0; i < 5; ++i) CHECK(seen[static_cast<size_t>(i)].images == 6);
        tuner.fit(nullptr);
        CHECK(tuner.done());
        CHECK(tuner.evaluate(x, y) >= 0.75);
    }
}
