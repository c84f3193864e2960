// coeffnet/nn/module.hpp: modules with named parameters, and the layers a transformer needs.
//
// A Module registers its parameters and children by name, so named_parameters() yields the
// dotted names checkpoints use ("attention.attention.query.weight"). A registered parameter
// may stay undefined (an optional bias, alpha before Coeff-Tuning is switched on); it is then
// skipped. Modules are neither copied nor moved (they hold pointers to their own members):
// create them in place or behind a unique_ptr.
//
// Registration. A member module or parameter that is not registered is invisible: never trained,
// saved or loaded. Two guards: submodule<M>(name, args...) and parameter(name, tensor) declare and
// register in one step; and parameters() / named_parameters() throw, naming the types, when a
// module with trainable parameters was built during this module's construction and was
// registered nowhere: the forgotten register_module (measured trap: such a Linear got gradients
// and never moved). "During construction" is judged on the thread that built it: built after it,
// before its last register_* call (a container's adopt() does not count) that preceded the first
// parameters() call, and placed in memory within 64 KiB after it (where its members are). It is a guard, not a proof: an
// unregistered module behind a pointer is not seen. A member meant to stay out (trained by its
// own optimiser) is declared with keep_unregistered(member).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#endif

#include "../core/strings.hpp"
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
    Module() {
        std::lock_guard<std::mutex> lock(registry().mutex);
        seq_ = ++registry().counter;
        registry().live.push_back(this);  // construction numbers only grow: the list stays sorted
    }
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    virtual ~Module() {
        std::lock_guard<std::mutex> lock(registry().mutex);
        auto& live = registry().live;
        for (size_t i = live.size(); i-- > 0;)  // usually the last: modules die in reverse order
            if (live[i] == this) {
                live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
                break;
            }
    }

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
    // The defined parameters by dotted name. Throws if a member module was not registered (see the
    // top of this file).
    std::vector<std::pair<std::string, Tensor<T>>> named_parameters() const {
        check_registration();
        std::vector<std::pair<std::string, Tensor<T>>> out;
        collect(out, "");
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
    // Moves every parameter to `device` (each keeps its requires_grad; a gradient is dropped), in
    // place like PyTorch's Module.to: the slots hold the moved tensors. An optimiser built before
    // holds the old ones, so move a model before building its optimiser.
    Module& to(Device device) {
        for (auto& [name, slot] : named_slots()) {
            if (!slot->defined() || slot->device() == device) continue;
            const bool trainable = slot->requires_grad();
            Tensor<T> moved = slot->detach().to(device);
            if (trainable) moved.set_requires_grad(true);
            *slot = moved;
        }
        return *this;
    }
    // Drops every parameter's gradient, frozen ones included (PyTorch's zero_grad with
    // set_to_none): a layer frozen after a backward keeps no stale gradient.
    void zero_grad() {
        for (auto& p : parameters()) p.zero_grad();
    }
    // Trains exactly the parameters that `patterns` name and freezes the rest, whatever was set
    // before. Patterns follow name_matches (core/strings.hpp): a dotted parameter name, a module
    // ("classifier" matches "classifier.weight"), or "*.suffix" ("*.coeff_alpha"). A pattern that
    // matches nothing throws naming it. Returns the number of trainable parameters (elements).
    int64_t train_only(const std::vector<std::string>& patterns) {
        const auto params = named_parameters();
        std::vector<bool> used(patterns.size(), false);
        int64_t n = 0;
        for (auto [name, p] : params) {
            bool on = false;
            for (size_t i = 0; i < patterns.size(); ++i)
                if (name_matches(patterns[i], name)) on = used[i] = true;
            p.set_requires_grad(on);
            if (on) n += p.numel();
        }
        for (size_t i = 0; i < patterns.size(); ++i)
            check(used[i], "Module::train_only: '", patterns[i], "' names no parameter (", params.size(),
                  " parameters, e.g. '", params.empty() ? std::string() : params.front().first, "')");
        return n;
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
        mark_registration();
    }
    void register_module(std::string name, Module& m) {
        children_.emplace_back(std::move(name), &m);
        m.registered_ = true;
        mark_registration();
    }
    // Registers a child added after construction (a container's push_back): the same as
    // register_module, except that it does not widen the construction window of the guard.
    void adopt(std::string name, Module& m) {
        children_.emplace_back(std::move(name), &m);
        m.registered_ = true;
    }
    // A member module deliberately outside this one: not a child, not reported as forgotten.
    void keep_unregistered(Module& m) { m.registered_ = true; }
    // Declares and registers in one step: a child module this one owns, built from `args`.
    //     nn::Linear<float>& fc = submodule<nn::Linear<float>>("fc", 8, 4, gen);   // a member
    template <class M, class... A>
    M& submodule(std::string name, A&&... args) {
        auto owned = std::make_unique<M>(std::forward<A>(args)...);
        M& m = *owned;
        owned_modules_.push_back(std::move(owned));
        register_module(std::move(name), m);
        return m;
    }
    // Declares and registers in one step: a parameter this one owns, holding `init`.
    //     Tensor<float>& scale = parameter("scale", Tensor<float>::ones({8}).set_requires_grad(true));
    Tensor<T>& parameter(std::string name, Tensor<T> init, ParamRole role = ParamRole::weight) {
        owned_params_.push_back(std::make_unique<Tensor<T>>(std::move(init)));
        register_parameter(std::move(name), *owned_params_.back(), role);
        return *owned_params_.back();
    }

private:
    // Every live module, in construction order (so sorted by construction number).
    struct Registry {
        std::mutex mutex;
        uint64_t counter = 0;
        std::vector<Module*> live;
    };
    static Registry& registry() {
        static Registry r;
        return r;
    }
    void mark_registration() {
        std::lock_guard<std::mutex> lock(registry().mutex);
        if (!window_closed_) window_end_ = registry().counter;
    }
    static std::string type_name(const Module& m) {
        const char* raw = typeid(m).name();
#if __has_include(<cxxabi.h>)
        int status = 0;
        std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(raw, nullptr, nullptr, &status), std::free);
        if (status == 0 && d) return d.get();
#endif
        return raw;
    }
    void collect(std::vector<std::pair<std::string, Tensor<T>>>& out, const std::string& prefix) const {
        for (const auto& [name, p] : params_)
            if (p->defined()) out.emplace_back(prefix + name, *p);
        for (const auto& [name, m] : children_) m->collect(out, prefix + name + ".");
    }
    bool has_trainable() const {
        std::vector<std::pair<std::string, Tensor<T>>> ps;
        collect(ps, "");
        for (const auto& [name, p] : ps)
            if (p.requires_grad()) return true;
        return false;
    }
    // The modules built while this one was (construction numbers after its own, up to its last
    // register_* call) on the same thread, alive, registered nowhere, with trainable parameters.
    void check_registration() const {
        std::vector<const Module*> missed;
        {
            std::lock_guard<std::mutex> lock(registry().mutex);
            window_closed_ = true;
            const auto* start = static_cast<const char*>(dynamic_cast<const void*>(this));
            const auto& live = registry().live;
            auto it = std::upper_bound(live.begin(), live.end(), seq_, [](uint64_t s, const Module* m) { return s < m->seq_; });
            for (; it != live.end() && (*it)->seq_ <= window_end_; ++it) {
                const Module* m = *it;
                const auto* at = static_cast<const char*>(dynamic_cast<const void*>(m));
                if (!m->registered_ && m->thread_ == thread_ && at > start && at - start < 65536) missed.push_back(m);
            }
        }
        for (const Module* m : missed)
            if (m->has_trainable())
                fail(type_name(*this), ": a ", type_name(*m), " with trainable parameters was built with it but never "
                     "registered, so it would never be trained, saved or loaded: call register_module(\"name\", member) "
                     "in the constructor (or declare it with submodule<...>(\"name\", ...)); freeze it "
                     "(set_requires_grad(false)) if it is meant to stay out");
    }

    uint64_t seq_ = 0;         // construction number
    uint64_t window_end_ = 0;  // the construction number current at the last register_* call
    bool registered_ = false;  // a child of some module (or kept out on purpose)
    mutable bool window_closed_ = false;  // parameters() was called: later registrations are not construction
    std::thread::id thread_ = std::this_thread::get_id();
    std::vector<std::unique_ptr<Module>> owned_modules_;   // submodule()'s
    std::vector<std::unique_ptr<Tensor<T>>> owned_params_;  // parameter()'s

    std::vector<std::pair<std::string, Tensor<T>*>> params_;
    std::vector<ParamRole> roles_;  // one per params_ entry
    std::vector<std::pair<std::string, Module*>> children_;
    bool training_ = true;
};

// Initialisers (in place, no history).
template <class T>
void init_normal(Tensor<T>& t, Generator& gen, double stddev) {
    t.copy_(Tensor<T>::randn(t.shape(), gen, 0.0, stddev));
}
template <class T>
void init_uniform(Tensor<T>& t, Generator& gen, double bound) {
    t.copy_(Tensor<T>::uniform(t.shape(), gen, -bound, bound));
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

// The projections-and-heads part of coefficient attention, the one module every attention layer
// builds on: query/key/value projections [dim -> dim] split into `heads`, and alpha [heads, heads]
// registered as "coeff_alpha" (the name adapters use; undefined: plain attention). attend() runs
// x [B, N, C] against context [B, M, C] (x itself when undefined) and returns the merged heads
// [B, N, C] in .out (before any output projection) and the maps when o.return_maps. The first
// constructor leaves zero weights for a loader (transformers' ViTSelfAttention is this module);
// the second initialises like torch.nn.Linear, in the order query, key, value.
template <class T>
class CoeffSelfAttention : public Module<T> {
public:
    Linear<T> query, key, value;
    Tensor<T> alpha;
    int64_t heads;

    CoeffSelfAttention(int64_t dim, int64_t heads_, bool bias = true)
        : query(dim, dim, bias), key(dim, dim, bias), value(dim, dim, bias), heads(heads_) {
        init(dim);
    }
    CoeffSelfAttention(int64_t dim, int64_t heads_, Generator& gen)
        : query(dim, dim, gen), key(dim, dim, gen), value(dim, dim, gen), heads(heads_) {
        init(dim);
    }

    // Coeff-Tuning on: a zero alpha (the layer is unchanged under the residual parameterisation),
    // trainable; off: no alpha.
    void enable_coeff(bool on) { alpha = on ? Tensor<T>::zeros({heads, heads}).set_requires_grad(true) : Tensor<T>(); }

    AttentionResult<T> attend(const Tensor<T>& x, const Tensor<T>& context, const AttentionOptions& o,
                              const Tensor<T>& key_mask = Tensor<T>()) const {
        const Tensor<T>& ctx = context.defined() ? context : x;
        const Tensor<T> q = split_heads(query(x), heads), k = split_heads(key(ctx), heads),
                        v = split_heads(value(ctx), heads);
        AttentionResult<T> r = alpha.defined() ? coeff_attention(q, k, v, alpha, o, Tensor<T>(), key_mask)
                                               : attention(q, k, v, o, Tensor<T>(), key_mask);
        r.out = merge_heads(r.out);
        return r;
    }

private:
    void init(int64_t dim) {
        check(heads > 0 && dim % heads == 0, "CoeffAttention: dim ", dim, " is not divisible by ", heads, " heads");
        this->register_module("query", query);
        this->register_module("key", key);
        this->register_module("value", value);
        this->register_parameter("coeff_alpha", alpha, ParamRole::alpha);
    }
};

// Multi-head attention with Coeff-Tuning's head mixing: CoeffSelfAttention plus an output
// projection "out". A new layer is plain attention; enable_coeff(true, spec) adds a zero alpha
// (so the layer is unchanged until alpha trains) with the spec's alpha dropout, as
// ViTModel::enable_coeff does for a whole model. The layer owns the generator its dropouts draw
// from in training (seeded from the constructor's), unless a call passes its own.
//
//     nn::CoeffAttention<float> attn(64, 8, gen);
//     attn.enable_coeff(true, {.alpha_dropout = 0.1});
//     auto y = attn(x);                                              // self-attention
//     auto r = attn.forward(x, {.context = memory, .key_mask = pad, .return_maps = true});
template <class T>
class CoeffAttention : public CoeffSelfAttention<T> {
public:
    // One call's inputs beside x, and its switches.
    struct Args {
        Tensor<T> context{};          // keys and values from here [B, M, C]; undefined: x itself
        Tensor<T> key_mask{};         // [B, M]: 1 for a token, 0 for padding
        bool causal = false;          // query n sees keys m <= n + (M - N)
        bool return_maps = false;     // fill the result's maps and mixed_maps
        Generator* generator = nullptr;  // the dropouts' draws in training; null: the layer's own
    };

    Linear<T> out;
    CoeffSpec coeff;            // alpha's dropout and parameterisation (set by enable_coeff)
    double attn_dropout = 0.0;  // dropout on the (mixed) maps in training
    mutable Generator rng;      // the layer's own dropout draws

    CoeffAttention(int64_t dim, int64_t heads_, Generator& gen)
        : CoeffSelfAttention<T>(dim, heads_, gen), out(dim, dim, gen), rng(derived_seed(gen)) {
        this->register_module("out", out);
    }

    // Coefficient mixing on (a zero, trainable alpha [heads, heads] and `spec`) or off (no alpha).
    void enable_coeff(bool on, const CoeffSpec& spec = {}) {
        CoeffSelfAttention<T>::enable_coeff(on);
        coeff = spec;
    }
    bool coeff_enabled() const { return this->alpha.defined(); }

    // x [B, N, C] attends to args.context (x itself when undefined); .out is [B, N, C].
    AttentionResult<T> forward(const Tensor<T>& x, const Args& args = {}) const {
        AttentionOptions o;
        o.causal = args.causal;
        o.training = this->training();
        o.coeff = coeff;
        o.attn_dropout = attn_dropout;
        o.generator = args.generator ? args.generator : &rng;
        o.return_maps = args.return_maps;
        AttentionResult<T> r = this->attend(x, args.context, o, args.key_mask);
        r.out = out(r.out);
        return r;
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return forward(x).out; }

private:
    // A seed drawn from gen (two words of its stream), so layers built from one generator differ.
    static Generator derived_seed(Generator& gen) {
        const uint64_t first = gen.reserve(2);
        return Generator((static_cast<uint64_t>(draw_bits(gen.seed, first, 0)) << 32) | draw_bits(gen.seed, first, 1));
    }
};

}  // namespace coeffnet::nn
