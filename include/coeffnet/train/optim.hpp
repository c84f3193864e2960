// coeffnet/train/optim.hpp: SGD with momentum and AdamW, with parameter groups.
//
// Both follow PyTorch's update rules exactly (torch.optim.SGD and torch.optim.AdamW), so a
// run can be compared step by step. A parameter group carries its own learning rate and
// weight decay (Coeff-Tuning trains alpha with its own lr); unset fields take the
// optimiser's defaults. Parameters whose .grad() is undefined are skipped, state untouched.
//
// Built from a module instead of a list (AdamW<float> opt(model, {...})), an optimiser follows
// the module: before each step (and zero_grad, state, load_state) it takes the module's
// trainable parameters as they are then, so parameters added later (enable_coeff's alphas,
// enable_lora's factors) are trained and frozen ones are left alone, whatever the order of the
// calls. State follows each parameter tensor: a parameter frozen and unfrozen keeps its moments.
// GroupRule puts the parameters whose names match its patterns (Module::train_only's rules) in a
// group of their own, in order; the rest form the last group.
//
// Each step is one backend-table call per parameter (Ops::sgd_step, Ops::adamw_step), in place on
// the parameter's device, where its state buffers live too (load_state moves them there).
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sstream>

#include "../core/strings.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet {

template <class T>
struct ParamGroup {
    std::vector<Tensor<T>> params;
    std::optional<double> lr;
    std::optional<double> weight_decay;
    std::string name;
};

// A group of a module-following optimiser: the trainable parameters whose dotted names match one
// of `patterns` (name_matches' rules: "attn.out", a module prefix, "*.coeff_alpha"), with their
// own learning rate and weight decay (unset: the optimiser's).
struct GroupRule {
    std::vector<std::string> patterns{};
    std::optional<double> lr{};
    std::optional<double> weight_decay{};
    std::string name{};
};

// An optimiser's state as named tensors and named scalars (as strings), for checkpoints:
// "g<group>.p<param>.<buffer>" and "g<group>.lr", "g<group>.p<param>.step".
template <class T>
struct OptimizerState {
    std::vector<std::pair<std::string, Tensor<T>>> tensors;
    std::map<std::string, std::string> values;
};

template <class T>
class Optimizer {
public:
    virtual ~Optimizer() = default;
    virtual void step() = 0;

    void zero_grad() {
        refresh();
        for (auto& g : groups_)
            for (auto& p : g.params) p.zero_grad();
    }
    size_t num_groups() const { return groups_.size(); }
    double lr(size_t group) const { return *groups_.at(group).lr; }
    void set_lr(size_t group, double lr) { groups_.at(group).lr = lr; }
    const ParamGroup<T>& group(size_t i) const { return groups_.at(i); }

    // The state as named tensors and values (OptimizerState's keys), for a checkpoint.
    OptimizerState<T> state() {
        refresh();
        OptimizerState<T> s;
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            std::ostringstream os;
            os.precision(17);
            os << *groups_[gi].lr;
            s.values[group_key(gi) + ".lr"] = os.str();
            for (size_t pi = 0; pi < slots_[gi].size(); ++pi) {
                const Slot& sl = *slots_[gi][pi];
                if (counts_steps_) s.values[key(gi, pi, "step")] = std::to_string(sl.step);
                for (size_t b = 0; b < buffer_names_.size(); ++b)
                    if (sl.buffers[b].defined()) s.tensors.emplace_back(key(gi, pi, buffer_names_[b]), sl.buffers[b]);
            }
        }
        return s;
    }
    // Restores what state() returned for an optimiser of the same kind over the same parameters
    // (same groups, same shapes); anything else is an error naming the entry. A parameter's
    // buffers are all there or all absent (absent: it has not been stepped yet).
    void load_state(const OptimizerState<T>& s) {
        refresh();
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            auto it = s.values.find(group_key(gi) + ".lr");
            check(it != s.values.end(), "optimizer state: no learning rate for group ", gi);
            groups_[gi].lr = std::stod(it->second);
        }
        for (size_t gi = 0; gi < groups_.size(); ++gi)
            for (size_t pi = 0; pi < slots_[gi].size(); ++pi) {
                Slot& sl = *slots_[gi][pi];
                if (counts_steps_) {
                    auto it = s.values.find(key(gi, pi, "step"));
                    check(it != s.values.end(), "optimizer state: no step count for ", key(gi, pi, "step"));
                    sl.step = std::stoll(it->second);
                }
                size_t found = 0;
                for (size_t b = 0; b < buffer_names_.size(); ++b) {
                    sl.buffers[b] = find_tensor(s, key(gi, pi, buffer_names_[b]), groups_[gi].params[pi]);
                    found += sl.buffers[b].defined();
                }
                check((found == 0 || found == buffer_names_.size()) && !(counts_steps_ && sl.step > 0 && found == 0),
                      "optimizer state: incomplete state for ", key(gi, pi, ""));
            }
    }

protected:
    // `buffers`: the per-parameter state tensors by checkpoint name (PyTorch's state_dict
    // names); `counts_steps`: whether each parameter keeps a step count.
    Optimizer(std::vector<ParamGroup<T>> groups, double lr, double weight_decay, const char* name,
              std::vector<const char*> buffers, bool counts_steps)
        : groups_(std::move(groups)), name_(name), buffer_names_(std::move(buffers)), counts_steps_(counts_steps) {
        size_t n = 0;
        for (auto& g : groups_) {
            if (!g.lr) g.lr = lr;
            if (!g.weight_decay) g.weight_decay = weight_decay;
            check(*g.lr >= 0 && std::isfinite(*g.lr), name, ": learning rate must be finite and >= 0, got ", *g.lr,
                  g.name.empty() ? "" : " in group '" + g.name + "'");
            check(*g.weight_decay >= 0, name, ": weight decay must be >= 0, got ", *g.weight_decay);
            n += g.params.size();
        }
        // (PyTorch's rule too: an empty list is almost always a model whose members were not registered.)
        check(n > 0, name, ": no parameters to optimise (an empty list: does the model register its members "
              "with register_module / register_parameter?)");
        bind_slots();
    }
    // A module-following optimiser (see the top of this file): `rules` name its first groups.
    template <class M>
    Optimizer(M& module, std::vector<GroupRule> rules, double lr, double weight_decay, const char* name,
              std::vector<const char*> buffers, bool counts_steps)
        : Optimizer(std::vector<ParamGroup<T>>(rules.size() + 1), lr, weight_decay, name, std::move(buffers),
                    counts_steps, Following{}) {
        for (size_t i = 0; i < rules.size(); ++i) {
            groups_[i].name = rules[i].name;
            if (rules[i].lr) groups_[i].lr = rules[i].lr;
            if (rules[i].weight_decay) groups_[i].weight_decay = rules[i].weight_decay;
            check(*groups_[i].lr >= 0 && std::isfinite(*groups_[i].lr) && *groups_[i].weight_decay >= 0, name,
                  ": group rule ", i, " needs a finite learning rate and a weight decay >= 0");
        }
        source_ = [&module, rules = std::move(rules)] {
            std::vector<std::vector<Tensor<T>>> lists(rules.size() + 1);
            for (const auto& [pname, p] : module.named_parameters()) {
                if (!p.requires_grad()) continue;
                size_t gi = rules.size();
                for (size_t i = 0; i < rules.size() && gi == rules.size(); ++i)
                    for (const auto& pat : rules[i].patterns)
                        if (name_matches(pat, pname)) gi = i;
                lists[gi].push_back(p);
            }
            return lists;
        };
        refresh();
    }

    // A parameter's state: its buffers (in buffer_names_' order; undefined until first used)
    // and its step count.
    struct Slot {
        std::vector<Tensor<T>> buffers;
        int64_t step = 0;
    };

    // Calls f(group, param, grad (contiguous), slot) for each parameter with a gradient.
    template <class F>
    void for_each_with_grad(const char* name, F&& f) {
        refresh();
        NoGrad ng;
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
                Tensor<T>& p = groups_[gi].params[pi];
                if (!p.grad().defined()) continue;
                check(p.is_contiguous(), name, ": parameters must be contiguous");
                const Tensor<T> grad = detail::as_contiguous(p.grad());
                f(groups_[gi], p, grad, *slots_[gi][pi]);
            }
        }
    }
    const Slot& slot(size_t group, size_t param) const { return *slots_.at(group).at(param); }

    std::vector<ParamGroup<T>> groups_;

private:
    // (Built with += : GCC 12 misreports "literal" + std::string&& under -Wrestrict, bug 105329.)
    static std::string key(size_t gi, size_t pi, const char* what) {
        std::string k = group_key(gi);
        k += ".p";
        k += std::to_string(pi);
        k += '.';
        k += what;
        return k;
    }
    static std::string group_key(size_t gi) {
        std::string k(1, 'g');
        k += std::to_string(gi);
        return k;
    }
    // The tensor named `name` in `s` (shape-checked against `like`), or undefined if absent: a copy on
    // `like`'s device.
    static Tensor<T> find_tensor(const OptimizerState<T>& s, const std::string& name, const Tensor<T>& like) {
        for (const auto& [n, t] : s.tensors)
            if (n == name) {
                check(t.shape() == like.shape(), "optimizer state: '", name, "' has shape ", shape_str(t.shape()),
                      ", the parameter has ", shape_str(like.shape()));
                return t.device() == like.device() ? t.clone() : t.detach().to(like.device());
            }
        return Tensor<T>();
    }

    struct Following {};
    Optimizer(std::vector<ParamGroup<T>> groups, double lr, double weight_decay, const char* name,
              std::vector<const char*> buffers, bool counts_steps, Following)
        : groups_(std::move(groups)), name_(name), buffer_names_(std::move(buffers)), counts_steps_(counts_steps) {
        for (auto& g : groups_) {
            g.lr = lr;
            g.weight_decay = weight_decay;
        }
        check(lr >= 0 && std::isfinite(lr) && weight_decay >= 0, name,
              ": learning rate must be finite and >= 0 and weight decay >= 0, got ", lr, " and ", weight_decay);
    }

    // One slot per listed parameter: its own state when the optimiser has seen that tensor before
    // (a module-following optimiser keeps the state of parameters that left the list), else new.
    void bind_slots() {
        std::unordered_map<const TensorImpl<T>*, std::shared_ptr<Slot>> fresh;
        slots_.assign(groups_.size(), {});
        for (size_t gi = 0; gi < groups_.size(); ++gi)
            for (const auto& p : groups_[gi].params) {
                check(p.defined() && p.is_leaf(), name_, ": parameters must be defined leaf tensors");
                auto it = by_tensor_.find(p.impl().get());
                std::shared_ptr<Slot> sl;
                if (it != by_tensor_.end() && it->second.first.lock() == p.impl()) sl = it->second.second;
                else sl = std::make_shared<Slot>(Slot{std::vector<Tensor<T>>(buffer_names_.size()), 0});
                slots_[gi].push_back(sl);
            }
        if (!source_) return;
        for (auto it = by_tensor_.begin(); it != by_tensor_.end();)  // tensors that are gone
            it = it->second.first.expired() ? by_tensor_.erase(it) : std::next(it);
        for (size_t gi = 0; gi < groups_.size(); ++gi)
            for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi)
                by_tensor_[groups_[gi].params[pi].impl().get()] = {groups_[gi].params[pi].impl(), slots_[gi][pi]};
    }
    // A module-following optimiser's parameter lists, as the module has them now.
    void refresh() {
        if (!source_) return;
        std::vector<std::vector<Tensor<T>>> lists = source_();
        for (size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].params = std::move(lists[gi]);
        bind_slots();
    }

    const char* name_;
    std::vector<const char*> buffer_names_;
    bool counts_steps_;
    std::vector<std::vector<std::shared_ptr<Slot>>> slots_;  // [group][param]
    std::function<std::vector<std::vector<Tensor<T>>>()> source_;  // module-following: the lists now
    std::unordered_map<const TensorImpl<T>*, std::pair<std::weak_ptr<TensorImpl<T>>, std::shared_ptr<Slot>>> by_tensor_;
};

template <class T>
class SGD : public Optimizer<T> {
public:
    struct Options {
        double lr = 1e-2;
        double momentum = 0.0;
        double dampening = 0.0;
        double weight_decay = 0.0;  // L2, added to the gradient (PyTorch's SGD)
        bool nesterov = false;
    };
    SGD(std::vector<ParamGroup<T>> groups, Options o)
        : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "SGD", {"momentum_buffer"}, false), o_(o) {
        check_options(o);
    }
    SGD(std::vector<Tensor<T>> params, Options o) : SGD(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}
    // Follows `module`'s trainable parameters (see the top of this file).
    template <class M>
        requires requires(M& m) { m.named_parameters(); }
    SGD(M& module, Options o, std::vector<GroupRule> rules = {})
        : Optimizer<T>(module, std::move(rules), o.lr, o.weight_decay, "SGD", {"momentum_buffer"}, false), o_(o) {
        check_options(o);
    }

    void step() override {
        this->for_each_with_grad("SGD", [&](const ParamGroup<T>& g, Tensor<T>& p, const Tensor<T>& grad,
                                            typename Optimizer<T>::Slot& sl) {
            const T lr = static_cast<T>(*g.lr), wd = static_cast<T>(*g.weight_decay);
            const T mu = static_cast<T>(o_.momentum), damp = static_cast<T>(1.0 - o_.dampening);
            Tensor<T>& b = sl.buffers[0];
            const bool first = !b.defined();
            if (o_.momentum != 0.0 && first) b = Tensor<T>::zeros(p.shape(), p.device());
            const Device dev = detail::same_device("SGD", p, grad, b);
            backend::ops<T>(dev).sgd_step(p, grad, b, lr, wd, mu, damp, first, o_.nesterov);
        });
    }

private:
    static void check_options(const Options& o) {
        check(o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
        check(!o.nesterov || (o.momentum > 0 && o.dampening == 0), "SGD: nesterov needs momentum > 0 and dampening 0");
    }
    Options o_;
};

template <class T>
class AdamW : public Optimizer<T> {
public:
    struct Options {
        double lr = 1e-3;
        double beta1 = 0.9;
        double beta2 = 0.999;
        double eps = 1e-8;
        double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * wd before the Adam step
    };
    // One parameter's moments (views of the optimiser's own tensors) and step count.
    struct State {
        Tensor<T> m, v;
        int64_t step = 0;
    };

    AdamW(std::vector<ParamGroup<T>> groups, Options o)
        : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "AdamW", {"exp_avg", "exp_avg_sq"}, true), o_(o) {
        check_options(o);
    }
    AdamW(std::vector<Tensor<T>> params, Options o) : AdamW(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}
    // Follows `module`'s trainable parameters (see the top of this file).
    template <class M>
        requires requires(M& m) { m.named_parameters(); }
    AdamW(M& module, Options o, std::vector<GroupRule> rules = {})
        : Optimizer<T>(module, std::move(rules), o.lr, o.weight_decay, "AdamW", {"exp_avg", "exp_avg_sq"}, true), o_(o) {
        check_options(o);
    }

    void step() override {
        this->for_each_with_grad("AdamW", [&](const ParamGroup<T>& g, Tensor<T>& p, const Tensor<T>& grad,
                                              typename Optimizer<T>::Slot& sl) {
            const double lr = *g.lr, wd = *g.weight_decay;
            if (!sl.buffers[0].defined()) {
                sl.buffers[0] = Tensor<T>::zeros(p.shape(), p.device());
                sl.buffers[1] = Tensor<T>::zeros(p.shape(), p.device());
            }
            ++sl.step;
            const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(sl.step));
            const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(sl.step));
            const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
            const T decay = static_cast<T>(1.0 - lr * wd), b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2),
                    eps = static_cast<T>(o_.eps);
            const Device dev = detail::same_device("AdamW", p, grad, sl.buffers[0], sl.buffers[1]);
            backend::ops<T>(dev).adamw_step(p, grad, sl.buffers[0], sl.buffers[1], decay, b1, b2, step_size, bc2_sqrt,
                                            eps);
        });
    }

    using Optimizer<T>::state;
    State state(size_t group, size_t param) const {
        const auto& sl = this->slot(group, param);
        return State{sl.buffers[0], sl.buffers[1], sl.step};
    }

private:
    static void check_options(const Options& o) {
        check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas must be in [0, 1), got (",
              o.beta1, ", ", o.beta2, ")");
        check(o.eps >= 0, "AdamW: eps must be >= 0, got ", o.eps);
    }
    Options o_;
};

}  // namespace coeffnet
