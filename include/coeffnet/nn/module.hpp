// coeffnet/nn/module.hpp: modules with named parameters, and the layers a transformer needs.
//
// A Module registers its parameters and children by name, so named_parameters() yields the
// dotted names checkpoints use ("attn.query.weight"). Modules are neither copied nor moved
// (they hold pointers to their own members); create them in place.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "../ops/attention.hpp"
#include "../ops/layernorm.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet::nn {

template <class T>
class Module {
public:
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    virtual ~Module() = default;

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
    void register_parameter(std::string name, Tensor<T>& p) { params_.emplace_back(std::move(name), &p); }
    void register_module(std::string name, Module& m) { children_.emplace_back(std::move(name), &m); }

private:
    std::vector<std::pair<std::string, Tensor<T>*>> params_;
    std::vector<std::pair<std::string, Module*>> children_;
    bool training_ = true;
};

// y = x W^T + b; weight and bias initialised U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear does.
template <class T>
class Linear : public Module<T> {
public:
    Tensor<T> weight, bias;

    Linear(int64_t in, int64_t out, Generator& gen, bool with_bias = true) {
        const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
        weight = Tensor<T>::uniform({out, in}, gen, -bound, bound).set_requires_grad(true);
        this->register_parameter("weight", weight);
        if (with_bias) {
            bias = Tensor<T>::uniform({out}, gen, -bound, bound).set_requires_grad(true);
            this->register_parameter("bias", bias);
        }
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return linear(x, weight, bias); }
};

template <class T>
class LayerNorm : public Module<T> {
public:
    Tensor<T> weight, bias;
    double eps;

    explicit LayerNorm(int64_t dim, double eps_ = 1e-5) : eps(eps_) {
        weight = Tensor<T>::ones({dim}).set_requires_grad(true);
        bias = Tensor<T>::zeros({dim}).set_requires_grad(true);
        this->register_parameter("weight", weight);
        this->register_parameter("bias", bias);
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return layer_norm(x, weight, bias, eps); }
};

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
        if (coeff) {
            alpha = Tensor<T>::zeros({heads, heads}).set_requires_grad(true);
            this->register_parameter("coeff_alpha", alpha);
        }
    }

    // x [B, N, C] attends to context [B, M, C] (x itself when undefined).
    AttentionResult<T> forward(const Tensor<T>& x, const Tensor<T>& context = Tensor<T>(), Generator* gen = nullptr,
                               const Tensor<T>& key_mask = Tensor<T>(), bool causal = false,
                               bool return_maps = false) const {
        const Tensor<T>& ctx = context.defined() ? context : x;
        AttentionOptions o;
        o.causal = causal;
        o.training = this->training();
        o.alpha_dropout = alpha_dropout;
        o.attn_dropout = attn_dropout;
        o.generator = gen;
        o.return_maps = return_maps;
        const Tensor<T> q = split_heads(query(x), heads), k = split_heads(key(ctx), heads),
                        v = split_heads(value(ctx), heads);
        AttentionResult<T> r = alpha.defined() ? coeff_attention(q, k, v, alpha, o, Tensor<T>(), key_mask)
                                               : attention(q, k, v, o, Tensor<T>(), key_mask);
        r.out = out(merge_heads(r.out));
        return r;
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return forward(x).out; }
};

}  // namespace coeffnet::nn
