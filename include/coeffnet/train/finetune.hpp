// coeffnet/train/finetune.hpp: parameter-efficient fine-tuning of a classifier.
//
// The model is any nn::TunableModel (coeffnet/nn/tunable.hpp; ViTForImageClassification is
// one): the fine-tuner asks it for its head, the Linear layers LoRA targets and to switch
// coefficient attention on, and finds alpha, LoRA and everything else by the role each
// parameter was registered with, never by its name.
//
// Methods (the columns of the paper's Table 1):
//   linear_probe  the new head only
//   coeff         alpha in every attention layer + head ("Coeff. alpha only": layers x H^2)
//   lora          LoRA of rank r on the model's lora_targets (a ViT's query and value; PEFT's init
//                 and alpha/r scaling) + head
//   coeff_lora    both: alpha plugged into LoRA
//   full          every parameter
// Alpha parameterisations (the ablation): residual I + alpha with alpha = 0 (default),
// direct alpha initialised to I, direct alpha initialised at random. Weight decay and
// dropout act on the tuned tensor alpha itself, which is what separates the first two.
//
// Finetuner runs AdamW with one parameter group per kind (head, alpha, lora, backbone), each
// with its own lr and weight decay, under transformers' cosine schedule with warm-up. Every
// random choice (batch order, dropout masks) comes from counter-based generators whose
// (seed, offset) a checkpoint stores, so a resumed run continues bit for bit. The batch order
// is a pure function of the step; the model's dropout generator is saved as is.
//
// With a frozen backbone (linear_probe) the head's input (model.features: a ViT's final CLS
// token) is computed once and the head trains on it: the same numbers as running the backbone
// every step, since nothing in it changes and it is run in evaluation mode (no dropout).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "../data/dataset.hpp"
#include "../io/safetensors.hpp"
#include "../nn/tunable.hpp"
#include "optim.hpp"
#include "schedule.hpp"

namespace coeffnet::train {

enum class Method { linear_probe, coeff, lora, coeff_lora, full };
inline constexpr std::array<Method, 5> kMethods{Method::linear_probe, Method::coeff, Method::lora, Method::coeff_lora,
                                                Method::full};

inline std::string method_name(Method m) {
    switch (m) {
        case Method::linear_probe: return "linear_probe";
        case Method::coeff: return "coeff";
        case Method::lora: return "lora";
        case Method::coeff_lora: return "coeff_lora";
        case Method::full: return "full";
    }
    return "?";
}
inline Method parse_method(std::string_view s) {
    for (Method m : kMethods)
        if (s == method_name(m)) return m;
    if (s == "alpha") return Method::coeff;
    if (s == "alpha_lora") return Method::coeff_lora;
    fail("unknown method '", s, "' (linear_probe, coeff, lora, coeff_lora, full)");
}
inline bool uses_alpha(Method m) { return m == Method::coeff || m == Method::coeff_lora; }
inline bool uses_lora(Method m) { return m == Method::lora || m == Method::coeff_lora; }

enum class AlphaInit { residual_zero, identity, random };
inline std::string alpha_init_name(AlphaInit a) {
    return a == AlphaInit::residual_zero ? "residual_zero" : a == AlphaInit::identity ? "identity" : "random";
}
inline AlphaInit parse_alpha_init(std::string_view s) {
    for (AlphaInit a : {AlphaInit::residual_zero, AlphaInit::identity, AlphaInit::random})
        if (s == alpha_init_name(a)) return a;
    fail("unknown alpha init '", s, "' (residual_zero, identity, random)");
}

struct GroupHyper {
    double lr = 1e-3;
    double weight_decay = 0.0;
};

struct TuneConfig {
    Method method = Method::coeff;
    AlphaInit alpha_init = AlphaInit::residual_zero;
    double alpha_dropout = 0.0;  // with alpha_init, the CoeffSpec the model gets: coeff()
    int64_t lora_rank = 4;
    double lora_alpha = 8.0;
    int64_t epochs = 10;
    int64_t batch_size = 32;
    double warmup_fraction = 0.1;  // of all steps
    GroupHyper head{3e-3, 0.0}, alpha{1e-2, 0.0}, lora{3e-3, 0.0}, backbone{3e-4, 0.01};
    uint64_t seed = 0;

    // Residual (alpha' = I + alpha) exactly for the zero init; identity and random are the direct form.
    CoeffSpec coeff() const { return {alpha_dropout, alpha_init == AlphaInit::residual_zero}; }

    nlohmann::json to_json() const {
        auto g = [](const GroupHyper& h) { return nlohmann::json{{"lr", h.lr}, {"weight_decay", h.weight_decay}}; };
        return {{"method", method_name(method)},
                {"alpha_init", alpha_init_name(alpha_init)},
                {"alpha_dropout", alpha_dropout},
                {"lora_rank", lora_rank},
                {"lora_alpha", lora_alpha},
                {"epochs", epochs},
                {"batch_size", batch_size},
                {"warmup_fraction", warmup_fraction},
                {"head", g(head)},
                {"alpha", g(alpha)},
                {"lora", g(lora)},
                {"backbone", g(backbone)},
                {"seed", seed}};
    }
};

// The defined parameters of `m` registered with `role`, in parameter order.
template <class T>
std::vector<Tensor<T>> parameters_with_role(const nn::Module<T>& m, nn::ParamRole role) {
    std::vector<Tensor<T>> out;
    for (const auto& [name, p, r] : m.named_roles())
        if (r == role && p->defined()) out.push_back(*p);
    return out;
}

// Sets up `model` for `c.method` on a task with `classes`: a new head (model.reset_head),
// everything else frozen except what the method tunes. Returns the parameter groups in the
// order head, alpha, lora, backbone (empty ones dropped).
template <class T>
std::vector<ParamGroup<T>> setup_method(nn::TunableModel<T>& model, const TuneConfig& c,
                                        const std::vector<std::string>& classes, Generator& init) {
    check(!classes.empty(), "setup_method: no classes");
    model.enable_coeff(false, {});
    const auto lora_targets = model.lora_targets();
    for (auto& [name, lin] : lora_targets) lin->disable_lora();
    model.set_requires_grad(false);

    model.reset_head(classes, init);
    std::vector<Tensor<T>> head = model.head().parameters();
    for (auto& p : head) p.set_requires_grad(true);
    std::vector<ParamGroup<T>> groups;
    groups.push_back({head, c.head.lr, c.head.weight_decay, "head"});

    if (uses_alpha(c.method)) {
        model.enable_coeff(true, c.coeff());
        std::vector<Tensor<T>> alphas = parameters_with_role(model, nn::ParamRole::alpha);
        for (auto& a : alphas) {
            const int64_t H = a.size(0);
            if (c.alpha_init == AlphaInit::identity) {
                a.copy_(Tensor<T>::eye(H));
            } else if (c.alpha_init == AlphaInit::random) {
                // U(-1/sqrt(H), 1/sqrt(H)): torch.nn.Linear(H, H)'s init of a mixing matrix.
                a.copy_(Tensor<T>::uniform({H, H}, init, -1.0 / std::sqrt(double(H)), 1.0 / std::sqrt(double(H))));
            }
        }
        groups.push_back({alphas, c.alpha.lr, c.alpha.weight_decay, "alpha"});
    }
    if (uses_lora(c.method)) {
        for (auto& [name, lin] : lora_targets) lin->enable_lora(c.lora_rank, c.lora_alpha, init);
        groups.push_back({parameters_with_role(model, nn::ParamRole::lora), c.lora.lr, c.lora.weight_decay, "lora"});
    }
    if (c.method == Method::full) {
        // The backbone: every parameter outside the head (alpha and LoRA are off).
        std::vector<Tensor<T>> backbone;
        for (auto& p : model.parameters())
            if (std::none_of(head.begin(), head.end(), [&](const Tensor<T>& h) { return h.impl() == p.impl(); }))
                backbone.push_back(p.set_requires_grad(true));
        groups.push_back({backbone, c.backbone.lr, c.backbone.weight_decay, "backbone"});
    }
    return groups;
}

template <class T>
int64_t count_parameters(const std::vector<ParamGroup<T>>& groups) {
    int64_t n = 0;
    for (const auto& g : groups)
        for (const auto& p : g.params) n += p.numel();
    return n;
}

// What Finetuner::fit reports after each step.
struct StepReport {
    int64_t step = 0;        // steps done, this one included
    int64_t images = 0;      // in this step's batch
    double loss = 0;         // the batch's mean loss
    int64_t correct = 0;     // the batch's correct predictions
    bool epoch_end = false;  // this step finished an epoch
};

// Fine-tunes a TunableModel on inputs [N, ...] (pixels [N, 3, H, W] for a ViT) with labels [N].
template <class T>
class Finetuner {
public:
    Finetuner(nn::TunableModel<T>& model, const TuneConfig& c, const std::vector<std::string>& classes,
              Tensor<T> pixels, Tensor<int64_t> labels)
        : model_(model), c_(c), pixels_(std::move(pixels)), labels_(std::move(labels)),
          order_(pixels_.size(0), c.batch_size, Generator(c.seed, 1ull << 40)) {
        check(c.epochs > 0, "Finetuner: epochs must be positive");
        check(pixels_.size(0) == labels_.numel(), "Finetuner: ", pixels_.size(0), " images but ", labels_.numel(), " labels");
        Generator init(c.seed);
        groups_ = setup_method(model_, c, classes, init);
        trainable_ = count_parameters(groups_);
        model_.dropout_generator() = Generator(c.seed, 1ull << 41);
        opt_ = std::make_unique<AdamW<T>>(groups_, typename AdamW<T>::Options{.lr = c.head.lr, .weight_decay = 0.0});
        base_lr_.clear();
        for (size_t g = 0; g < opt_->num_groups(); ++g) base_lr_.push_back(opt_->lr(g));
        total_ = c.epochs * order_.batches_per_epoch();
        warmup_ = static_cast<int64_t>(c.warmup_fraction * static_cast<double>(total_));
        if (c.method == Method::linear_probe) features_ = features(pixels_);
    }

    int64_t trainable_parameters() const { return trainable_; }
    int64_t total_steps() const { return total_; }
    int64_t steps_per_epoch() const { return order_.batches_per_epoch(); }
    int64_t step() const { return step_; }
    bool done() const { return step_ >= total_; }
    const std::vector<ParamGroup<T>>& groups() const { return groups_; }

    // One optimiser step; returns the batch's mean loss and number of correct predictions.
    std::pair<double, int64_t> train_step() {
        check(!done(), "Finetuner: all ", total_, " steps are done");
        const std::vector<int64_t> idx = order_.batch(step_);
        const double mult = cosine_with_warmup(step_, total_, warmup_);
        for (size_t g = 0; g < base_lr_.size(); ++g) opt_->set_lr(g, base_lr_[g] * mult);
        model_.train();
        const data::Batch<T> b = data::gather(features_.defined() ? features_ : pixels_, labels_, idx);
        const Tensor<T> logits = features_.defined() ? model_.head()(b.pixels) : model_.logits(b.pixels);
        const Tensor<T> loss = cross_entropy(logits, b.labels);
        opt_->zero_grad();
        loss.backward();
        opt_->step();
        ++step_;
        return {static_cast<double>(loss.item()), correct(logits, b.labels)};
    }

    // Runs the remaining steps, calling on_step after each (to show progress, validate, save a
    // checkpoint); stops early when it returns false. The library prints nothing itself.
    void fit(const std::function<bool(const StepReport&)>& on_step) {
        const int64_t n = labels_.numel(), bs = c_.batch_size;
        while (!done()) {
            StepReport r;
            r.images = std::min(bs, n - (step_ % steps_per_epoch()) * bs);
            std::tie(r.loss, r.correct) = train_step();
            r.step = step_;
            r.epoch_end = step_ % steps_per_epoch() == 0;
            if (on_step && !on_step(r)) break;
        }
    }

    // Accuracy on (pixels, labels), in evaluation mode, batched.
    double evaluate(const Tensor<T>& pixels, const Tensor<int64_t>& labels, int64_t batch = 256) {
        NoGrad ng;
        model_.eval();
        int64_t right = 0;
        const int64_t n = pixels.size(0);
        for (int64_t s = 0; s < n; s += batch) {
            const int64_t e = std::min(n, s + batch);
            right += correct(model_.logits(pixels.slice(0, s, e)), labels.slice(0, s, e));
        }
        return n ? static_cast<double>(right) / static_cast<double>(n) : 0.0;
    }

    // The tuned parameters, the optimiser state, the step and the generators, written atomically.
    void save_checkpoint(const std::filesystem::path& path) const {
        io::SafeTensorsWriter w;
        for (const auto& [name, p] : model_.named_parameters())
            if (p.requires_grad()) w.add("param." + name, p.contiguous().detach());
        const OptimizerState<T> s = opt_->state();
        for (const auto& [name, t] : s.tensors) w.add("optim." + name, t);
        nlohmann::json values(s.values);
        w.set_metadata({{"format", "coeffnet-checkpoint"},
                        {"step", std::to_string(step_)},
                        {"dropout_rng", std::to_string(model_.dropout_generator().seed) + " " +
                                            std::to_string(model_.dropout_generator().offset)},
                        {"config", c_.to_json().dump()},
                        {"optimizer", values.dump()}});
        w.write(path);
    }

    // Restores a checkpoint of a run with the same config onto this freshly set-up Finetuner.
    void load_checkpoint(const std::filesystem::path& path) {
        const io::SafeTensors st = io::SafeTensors::open(path);
        const auto& md = st.metadata();
        check(md.count("format") && md.at("format") == "coeffnet-checkpoint", st.name(), ": not a coeffnet checkpoint");
        check(md.count("config") && nlohmann::json::parse(md.at("config")) == c_.to_json(), st.name(),
              ": the checkpoint was made with another configuration");
        for (auto& [name, p] : model_.named_parameters()) {
            if (!p.requires_grad()) continue;
            const std::string key = "param." + name;
            check(st.contains(key), st.name(), ": no tensor '", key, "'");
            const Tensor<T> v = st.template get_as<T>(key);
            check(v.shape() == p.shape(), st.name(), ": '", key, "' has shape ", shape_str(v.shape()), ", the model has ",
                  shape_str(p.shape()));
            p.copy_(v);
        }
        OptimizerState<T> s;
        for (const auto& t : st.tensors())
            if (t.name.rfind("optim.", 0) == 0) s.tensors.emplace_back(t.name.substr(6), st.template get_as<T>(t.name));
        const nlohmann::json values = nlohmann::json::parse(md.at("optimizer"));  // named: items() must not dangle
        for (auto& [k, v] : values.items()) s.values[k] = v.template get<std::string>();
        opt_->load_state(s);
        step_ = std::stoll(md.at("step"));
        std::istringstream rng(md.at("dropout_rng"));
        rng >> model_.dropout_generator().seed >> model_.dropout_generator().offset;
    }

private:
    static int64_t correct(const Tensor<T>& logits, const Tensor<int64_t>& labels) {
        const Tensor<T> l = logits.detach().contiguous();
        const int64_t C = l.size(1);
        int64_t right = 0;
        for (int64_t i = 0; i < l.size(0); ++i) {
            const T* row = l.data() + i * C;
            right += (std::max_element(row, row + C) - row) == labels.data()[i * labels.strides()[0]];
        }
        return right;
    }
    Tensor<T> features(const Tensor<T>& pixels) {
        NoGrad ng;
        model_.eval();
        std::vector<Tensor<T>> parts;
        for (int64_t s = 0; s < pixels.size(0); s += 256)
            parts.push_back(model_.features(pixels.slice(0, s, std::min(pixels.size(0), s + 256))));
        return concat(parts, 0);
    }

    nn::TunableModel<T>& model_;
    TuneConfig c_;
    Tensor<T> pixels_, features_;
    Tensor<int64_t> labels_;
    data::BatchOrder order_;
    std::vector<ParamGroup<T>> groups_;
    std::unique_ptr<AdamW<T>> opt_;
    std::vector<double> base_lr_;
    int64_t trainable_ = 0, total_ = 0, warmup_ = 0, step_ = 0;
};

}  // namespace coeffnet::train
