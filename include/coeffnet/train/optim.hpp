// coeffnet/train/optim.hpp: SGD with momentum and AdamW, with parameter groups.
//
// Both follow PyTorch's update rules exactly (torch.optim.SGD and torch.optim.AdamW), so a
// run can be compared step by step. A parameter group carries its own learning rate and
// weight decay (Coeff-Tuning trains alpha with its own lr); unset fields take the
// optimiser's defaults. Parameters whose .grad() is undefined are skipped, state untouched.
#pragma once

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sstream>

#include "../tensor/tensor.hpp"

namespace coeffnet {

template <class T>
struct ParamGroup {
    std::vector<Tensor<T>> params;
    std::optional<double> lr;
    std::optional<double> weight_decay;
    std::string name;
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
        for (auto& g : groups_)
            for (auto& p : g.params) p.zero_grad();
    }
    size_t num_groups() const { return groups_.size(); }
    double lr(size_t group) const { return *groups_.at(group).lr; }
    void set_lr(size_t group, double lr) { groups_.at(group).lr = lr; }
    const ParamGroup<T>& group(size_t i) const { return groups_.at(i); }

    // The state as named tensors and values (OptimizerState's keys), for a checkpoint.
    OptimizerState<T> state() const {
        OptimizerState<T> s;
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            std::ostringstream os;
            os.precision(17);
            os << *groups_[gi].lr;
            s.values[group_key(gi) + ".lr"] = os.str();
            for (size_t pi = 0; pi < slots_[gi].size(); ++pi) {
                const Slot& sl = slots_[gi][pi];
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
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            auto it = s.values.find(group_key(gi) + ".lr");
            check(it != s.values.end(), "optimizer state: no learning rate for group ", gi);
            groups_[gi].lr = std::stod(it->second);
        }
        for (size_t gi = 0; gi < groups_.size(); ++gi)
            for (size_t pi = 0; pi < slots_[gi].size(); ++pi) {
                Slot& sl = slots_[gi][pi];
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
        : groups_(std::move(groups)), buffer_names_(std::move(buffers)), counts_steps_(counts_steps) {
        for (auto& g : groups_) {
            if (!g.lr) g.lr = lr;
            if (!g.weight_decay) g.weight_decay = weight_decay;
            check(*g.lr >= 0 && std::isfinite(*g.lr), name, ": learning rate must be finite and >= 0, got ", *g.lr,
                  g.name.empty() ? "" : " in group '" + g.name + "'");
            check(*g.weight_decay >= 0, name, ": weight decay must be >= 0, got ", *g.weight_decay);
            for (auto& p : g.params)
                check(p.defined() && p.is_leaf(), name, ": parameters must be defined leaf tensors");
            slots_.emplace_back(g.params.size(), Slot{std::vector<Tensor<T>>(buffer_names_.size()), 0});
        }
    }

    // A parameter's state: its buffers (in buffer_names_' order; undefined until first used)
    // and its step count.
    struct Slot {
        std::vector<Tensor<T>> buffers;
        int64_t step = 0;
    };

    // Calls f(group, param, grad, slot) for each parameter with a gradient.
    template <class F>
    void for_each_with_grad(const char* name, F&& f) {
        NoGrad ng;
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
                Tensor<T>& p = groups_[gi].params[pi];
                const Tensor<T> grad = p.grad();
                if (!grad.defined()) continue;
                check(p.is_contiguous(), name, ": parameters must be contiguous");
                f(groups_[gi], p, grad, slots_[gi][pi]);
            }
        }
    }
    const Slot& slot(size_t group, size_t param) const { return slots_.at(group).at(param); }

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
    // The tensor named `name` in `s` (shape-checked against `like`), or undefined if absent.
    static Tensor<T> find_tensor(const OptimizerState<T>& s, const std::string& name, const Tensor<T>& like) {
        for (const auto& [n, t] : s.tensors)
            if (n == name) {
                check(t.shape() == like.shape(), "optimizer state: '", name, "' has shape ", shape_str(t.shape()),
                      ", the parameter has ", shape_str(like.shape()));
                return t.clone();
            }
        return Tensor<T>();
    }

    std::vector<const char*> buffer_names_;
    bool counts_steps_;
    std::vector<std::vector<Slot>> slots_;  // [group][param]
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
        check(o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
        check(!o.nesterov || (o.momentum > 0 && o.dampening == 0), "SGD: nesterov needs momentum > 0 and dampening 0");
    }
    SGD(std::vector<Tensor<T>> params, Options o) : SGD(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}

    void step() override {
        this->for_each_with_grad("SGD", [&](const ParamGroup<T>& g, Tensor<T>& p, const Tensor<T>& grad,
                                            typename Optimizer<T>::Slot& sl) {
            const T lr = static_cast<T>(*g.lr), wd = static_cast<T>(*g.weight_decay);
            const T mu = static_cast<T>(o_.momentum), damp = static_cast<T>(1.0 - o_.dampening);
            T* w = p.data();
            const T* d = grad.data();
            Tensor<T>& b = sl.buffers[0];
            const bool first = !b.defined();
            if (o_.momentum != 0.0 && first) b = Tensor<T>::zeros(p.shape());
            T* pb = b.defined() ? b.data() : nullptr;
            for (int64_t i = 0; i < p.numel(); ++i) {
                T step = d[i] + wd * w[i];
                if (pb) {
                    pb[i] = first ? step : mu * pb[i] + damp * step;
                    step = o_.nesterov ? step + mu * pb[i] : pb[i];
                }
                w[i] -= lr * step;
            }
        });
    }

private:
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
        check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas must be in [0, 1), got (",
              o.beta1, ", ", o.beta2, ")");
        check(o.eps >= 0, "AdamW: eps must be >= 0, got ", o.eps);
    }
    AdamW(std::vector<Tensor<T>> params, Options o) : AdamW(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}

    void step() override {
        this->for_each_with_grad("AdamW", [&](const ParamGroup<T>& g, Tensor<T>& p, const Tensor<T>& grad,
                                              typename Optimizer<T>::Slot& sl) {
            const double lr = *g.lr, wd = *g.weight_decay;
            if (!sl.buffers[0].defined()) {
                sl.buffers[0] = Tensor<T>::zeros(p.shape());
                sl.buffers[1] = Tensor<T>::zeros(p.shape());
            }
            ++sl.step;
            const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(sl.step));
            const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(sl.step));
            const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
            const T decay = static_cast<T>(1.0 - lr * wd), b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2),
                    eps = static_cast<T>(o_.eps);
            T *w = p.data(), *m = sl.buffers[0].data(), *v = sl.buffers[1].data();
            const T* d = grad.data();
            parallel_for(p.numel(), 16, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) {
                    w[i] *= decay;
                    m[i] = b1 * m[i] + (T(1) - b1) * d[i];
                    v[i] = b2 * v[i] + (T(1) - b2) * d[i] * d[i];
                    w[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
                }
            });
        });
    }

    using Optimizer<T>::state;
    State state(size_t group, size_t param) const {
        const auto& sl = this->slot(group, param);
        return State{sl.buffers[0], sl.buffers[1], sl.step};
    }

private:
    Options o_;
};

}  // namespace coeffnet
