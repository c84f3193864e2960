// coeffnet/nn/module.hpp: modules with named parameters, and the layers a transformer needs.
//
// A Module registers its parameters and children by name, so named_parameters() yields the
// dotted names checkpoints use ("attention.attention.query.weight"). A registered parameter
// may stay undefined (an optional bias, alpha before Coeff-Tuning is switched on); it is then
// skipped. Modules are neither copied nor moved (they hold pointers to their own members):
// create them in place or behind a unique_ptr.
#pragma once

#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../ops/attention.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/layernorm.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet::nn {

// What a parameter is for, said when it is registered: code that treats kinds differently
// (initialisation, weight decay, what an adapter or a checkpoint holds) asks this instead of
// matching names. norm_scale is a normalisation layer's gain; a normalisation bias is a bias.
enum class ParamRole { weight, bias, norm_scale, alpha, lora };

template <class T>
class Module {
public:
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    virtual ~Module() = default;

    // The parameter slots by dotted name, defined or not; loaders assign through them.
    std::vector<std::pair<std::string, Tensor<T>*>> named_slots() {
        std::vector<std::pair<std::string, Tensor<T>*>> out = params_;
        for (const auto& [name, m] : children_)
            for (auto& [sub, p] : m->named_slots()) out.emplace_back(name + "." + sub, p);
        return out;
    }
    // Every module below this one (not itself), by dotted name, parents before children.
    std::vector<std::pair<std::string, Module*>> named_modules() {
        std::vector<std::pair<std::string, Module*>> out;
        for (const auto& [name, m] : children_) {
            out.emplace_back(name, m);
            for (auto& [sub, c] : m->named_modules()) out.emplace_back(name + "." + sub, c);
        }
        return out;
    }
    // The parameter slots (defined or not) with their roles, by dotted name, in named_slots()' order.
    std::vector<std::tuple<std::string, Tensor<T>*, ParamRole>> named_roles() const {
        std::vector<std::tuple<std::string, Tensor<T>*, ParamRole>> out;
        for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(params_[i].first, params_[i].second, roles_[i]);
        for (const auto& [name, m] : children_)
            for (auto& [sub, p, role] : m->named_roles()) out.emplace_back(name + "." + sub, p, role);
        return out;
    }
    std::vector<std::pair<std::string, Tensor<T>>> named_parameters() const {
        std::vector<std::pair<std::string, Tensor<T>>> out;
        for (const auto& [name, p] : params_)
            if (p->defined()) out.emplace_back(name, *p);
        for (const auto& [name, m] : children_)
            for (auto& [sub, p] : m->named_parameters()) out.emplace_back(name + "." + sub, p);
        return out;
    }
    std::vector<Tensor<T>> parameters() const {
        std::vector<Tensor<T>> out;
        for (auto& [name, p] : named_parameters()) out.push_back(p);
        return out;
    }
    int64_t num_parameters(bool trainable_only = false) const {
        int64_t n = 0;
        for (auto& [name, p] : named_parameters())
            if (!trainable_only || p.requires_grad()) n += p.numel();
        return n;
    }
    // Marks every parameter trainable or frozen.
    void set_requires_grad(bool on) {
        for (auto& p : parameters()) p.set_requires_grad(on);
    }
    void train(bool on = true) {
        training_ = on;
        for (auto& [name, m] : children_) m->train(on);
    }
    void eval() { train(false); }
    bool training() const { return training_; }

protected:
    void register_parameter(std::string name, Tensor<T>& p, ParamRole role = ParamRole::weight) {
        params_.emplace_back(std::move(name), &p);
        roles_.push_back(role);
    }
    void register_module(std::string name, Module& m) { children_.emplace_back(std::move(name), &m); }

private:
    std::vector<std::pair<std::string, Tensor<T>*>> params_;
    std::vector<ParamRole> roles_;  // one per params_ entry
    std::vector<std::pair<std::string, Module*>> children_;
    bool training_ = true;
};

// Initialisers (in place, no history).
template <class T>
void init_normal(Tensor<T>& t, Generator& gen, double stddev) {
    t = Tensor<T>::randn(t.shape(), gen, 0.0, stddev).set_requires_grad(t.requires_grad());
}
template <class T>
void init_uniform(Tensor<T>& t, Generator& gen, double bound) {
    t = Tensor<T>::uniform(t.shape(), gen, -bound, bound).set_requires_grad(t.requires_grad());
}

// y = x W^T + b. The first constructor leaves zeros for a loader or an init_* call to fill;
// the second initialises like torch.nn.Linear (uniform with bound 1/sqrt(in)).
//
// LoRA (Hu et al.; PEFT's conventions): enable_lora(r, alpha) adds y += (alpha / r) x A^T B^T
// with A [r, in] ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a = sqrt(5))) and B [out, r]
// = 0, so the layer starts unchanged. They are registered as "lora_A.weight" and
// "lora_B.weight", PEFT's names.
template <class T>
class Linear : public Module<T> {
public:
    Tensor<T> weight, bias;
    Tensor<T> lora_A, lora_B;
    double lora_scaling = 0.0;

    Linear(int64_t in, int64_t out, bool with_bias = true) {
        weight = Tensor<T>::zeros({out, in}).set_requires_grad(true);
        if (with_bias) bias = Tensor<T>::zeros({out}).set_requires_grad(true);
        this->register_parameter("weight", weight);
        this->register_parameter("bias", bias, ParamRole::bias);
        this->register_parameter("lora_A.weight", lora_A, ParamRole::lora);
        this->register_parameter("lora_B.weight", lora_B, ParamRole::lora);
    }
    Linear(int64_t in, int64_t out, Generator& gen, bool with_bias = true) : Linear(in, out, with_bias) {
        const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
        init_uniform(weight, gen, bound);
        if (with_bias) init_uniform(bias, gen, bound);
    }

    int64_t in_features() const { return weight.shape()[1]; }
    int64_t out_features() const { return weight.shape()[0]; }

    void enable_lora(int64_t r, double alpha, Generator& gen) {
        check(r > 0, "Linear::enable_lora: rank must be positive, got ", r);
        lora_A = Tensor<T>::uniform({r, in_features()}, gen, -1.0 / std::sqrt(static_cast<double>(in_features())),
                                    1.0 / std::sqrt(static_cast<double>(in_features())))
                     .set_requires_grad(true);
        lora_B = Tensor<T>::zeros({out_features(), r}).set_requires_grad(true);
        lora_scaling = alpha / static_cast<double>(r);
    }
    void disable_lora() {
        lora_A = lora_B = Tensor<T>();
        lora_scaling = 0.0;
    }
    bool has_lora() const { return lora_A.defined(); }

    Tensor<T> operator()(const Tensor<T>& x) const {
        Tensor<T> y = linear(x, weight, bias);
        if (has_lora()) y = add(y, scale(linear(linear(x, lora_A), lora_B), lora_scaling));
        return y;
    }
};

template <class T>
class LayerNorm : public Module<T> {
public:
    Tensor<T> weight, bias;
    double eps;

    explicit LayerNorm(int64_t dim, double eps_ = 1e-5) : eps(eps_) {
        weight = Tensor<T>::ones({dim}).set_requires_grad(true);
        bias = Tensor<T>::zeros({dim}).set_requires_grad(true);
        this->register_parameter("weight", weight, ParamRole::norm_scale);
        this->register_parameter("bias", bias, ParamRole::bias);
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return layer_norm(x, weight, bias, eps); }
};

// The projections-and-heads part of multi-head attention, shared by every attention module:
// x [B, N, C] queries context [B, M, C] through q/k/v projections split into `heads`, with
// head mixing when alpha is defined. Returns the merged heads [B, N, C] in .out (before the
// output projection) and the maps when o.return_maps.
template <class T>
AttentionResult<T> project_and_attend(const Linear<T>& query, const Linear<T>& key, const Linear<T>& value,
                                      const Tensor<T>& alpha, int64_t heads, const Tensor<T>& x,
                                      const Tensor<T>& context, const AttentionOptions& o,
                                      const Tensor<T>& key_mask = Tensor<T>()) {
    const Tensor<T>& ctx = context.defined() ? context : x;
    const Tensor<T> q = split_heads(query(x), heads), k = split_heads(key(ctx), heads), v = split_heads(value(ctx), heads);
    AttentionResult<T> r = alpha.defined() ? coeff_attention(q, k, v, alpha, o, Tensor<T>(), key_mask)
                                           : attention(q, k, v, o, Tensor<T>(), key_mask);
    r.out = merge_heads(r.out);
    return r;
}

// Multi-head attention with Coeff-Tuning's head mixing: query/key/value/out projections and
// one alpha [heads, heads], zero-initialised so a fresh layer is plain attention. alpha is
// registered as "coeff_alpha", the name adapters use.
template <class T>
class CoeffAttention : public Module<T> {
public:
    Linear<T> query, key, value, out;
    Tensor<T> alpha;
    int64_t heads;
    double alpha_dropout = 0.0, attn_dropout = 0.0;

    CoeffAttention(int64_t dim, int64_t heads_, Generator& gen, bool coeff = true)
        : query(dim, dim, gen), key(dim, dim, gen), value(dim, dim, gen), out(dim, dim, gen), heads(heads_) {
        check(heads_ > 0 && dim % heads_ == 0, "CoeffAttention: dim ", dim, " is not divisible by ", heads_, " heads");
        this->register_module("query", query);
        this->register_module("key", key);
        this->register_module("value", value);
        this->register_module("out", out);
        if (coeff) alpha = Tensor<T>::zeros({heads, heads}).set_requires_grad(true);
        this->register_parameter("coeff_alpha", alpha, ParamRole::alpha);
    }

    // x [B, N, C] attends to context [B, M, C] (x itself when undefined).
    AttentionResult<T> forward(const Tensor<T>& x, const Tensor<T>& context = Tensor<T>(), Generator* gen = nullptr,
                               const Tensor<T>& key_mask = Tensor<T>(), bool causal = false,
                               bool return_maps = false) const {
        AttentionOptions o;
        o.causal = causal;
        o.training = this->training();
        o.alpha_dropout = alpha_dropout;
        o.attn_dropout = attn_dropout;
        o.generator = gen;
        o.return_maps = return_maps;
        AttentionResult<T> r = project_and_attend(query, key, value, alpha, heads, x, context, o, key_mask);
        r.out = out(r.out);
        return r;
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return forward(x).out; }
};

}  // namespace coeffnet::nn
