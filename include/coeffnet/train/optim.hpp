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
    virtual OptimizerState<T> state() const = 0;
    // Restores what state() returned for an optimiser over the same parameters (same groups,
    // same shapes); anything else is an error naming the entry.
    virtual void load_state(const OptimizerState<T>& s) = 0;

    void zero_grad() {
        for (auto& g : groups_)
            for (auto& p : g.params) p.zero_grad();
    }
    size_t num_groups() const { return groups_.size(); }
    double lr(size_t group) const { return *groups_.at(group).lr; }
    void set_lr(size_t group, double lr) { groups_.at(group).lr = lr; }
    const ParamGroup<T>& group(size_t i) const { return groups_.at(i); }

protected:
    Optimizer(std::vector<ParamGroup<T>> groups, double lr, double weight_decay, const char* name)
        : groups_(std::move(groups)) {
        for (auto& g : groups_) {
            if (!g.lr) g.lr = lr;
            if (!g.weight_decay) g.weight_decay = weight_decay;
            check(*g.lr >= 0 && std::isfinite(*g.lr), name, ": learning rate must be finite and >= 0, got ", *g.lr,
                  g.name.empty() ? "" : " in group '" + g.name + "'");
            check(*g.weight_decay >= 0, name, ": weight decay must be >= 0, got ", *g.weight_decay);
            for (auto& p : g.params)
                check(p.defined() && p.is_leaf(), name, ": parameters must be defined leaf tensors");
        }
    }
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
    void save_lrs(OptimizerState<T>& s) const {
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            std::ostringstream os;
            os.precision(17);
            os << *groups_[gi].lr;
            s.values[group_key(gi) + ".lr"] = os.str();
        }
    }
    void load_lrs(const OptimizerState<T>& s) {
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            auto it = s.values.find(group_key(gi) + ".lr");
            check(it != s.values.end(), "optimizer state: no learning rate for group ", gi);
            groups_[gi].lr = std::stod(it->second);
        }
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

    // Calls f(group, group_index, param_index, param, grad) for each parameter with a gradient.
    template <class F>
    void for_each_with_grad(const char* name, F&& f) {
        NoGrad ng;
        for (size_t gi = 0; gi < groups_.size(); ++gi) {
            for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
                Tensor<T>& p = groups_[gi].params[pi];
                const Tensor<T> grad = p.grad();
                if (!grad.defined()) continue;
                check(p.is_contiguous(), name, ": parameters must be contiguous");
                f(groups_[gi], gi, pi, p, grad);
            }
        }
    }
    std::vector<ParamGroup<T>> groups_;
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
    SGD(std::vector<ParamGroup<T>> groups, Options o) : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "SGD"), o_(o) {
        check(o.momentum >= 0, "SGD: momentum must be >= 0, got ", o.momentum);
        check(!o.nesterov || (o.momentum > 0 && o.dampening == 0), "SGD: nesterov needs momentum > 0 and dampening 0");
        for (auto& g : this->groups_) buf_.emplace_back(g.params.size());
    }
    SGD(std::vector<Tensor<T>> params, Options o) : SGD(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}

    void step() override {
        this->for_each_with_grad("SGD", [&](const ParamGroup<T>& g, size_t gi, size_t pi, Tensor<T>& p,
                                            const Tensor<T>& grad) {
            const T lr = static_cast<T>(*g.lr), wd = static_cast<T>(*g.weight_decay);
            const T mu = static_cast<T>(o_.momentum), damp = static_cast<T>(1.0 - o_.dampening);
            T* w = p.data();
            const T* d = grad.data();
            Tensor<T>& b = buf_[gi][pi];
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

    OptimizerState<T> state() const override {
        OptimizerState<T> s;
        this->save_lrs(s);
        for (size_t gi = 0; gi < buf_.size(); ++gi)
            for (size_t pi = 0; pi < buf_[gi].size(); ++pi)
                if (buf_[gi][pi].defined()) s.tensors.emplace_back(this->key(gi, pi, "momentum_buffer"), buf_[gi][pi]);
        return s;
    }
    void load_state(const OptimizerState<T>& s) override {
        this->load_lrs(s);
        for (size_t gi = 0; gi < buf_.size(); ++gi)
            for (size_t pi = 0; pi < buf_[gi].size(); ++pi)
                buf_[gi][pi] = this->find_tensor(s, this->key(gi, pi, "momentum_buffer"), this->groups_[gi].params[pi]);
    }

private:
    Options o_;
    std::vector<std::vector<Tensor<T>>> buf_;
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
    struct State {
        Tensor<T> m, v;
        int64_t step = 0;
    };

    AdamW(std::vector<ParamGroup<T>> groups, Options o) : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "AdamW"), o_(o) {
        check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas must be in [0, 1), got (",
              o.beta1, ", ", o.beta2, ")");
        check(o.eps >= 0, "AdamW: eps must be >= 0, got ", o.eps);
        for (auto& g : this->groups_) state_.emplace_back(g.params.size());
    }
    AdamW(std::vector<Tensor<T>> params, Options o) : AdamW(std::vector<ParamGroup<T>>{{std::move(params), {}, {}, ""}}, o) {}

    void step() override {
        this->for_each_with_grad("AdamW", [&](const ParamGroup<T>& g, size_t gi, size_t pi, Tensor<T>& p,
                                              const Tensor<T>& grad) {
            const double lr = *g.lr, wd = *g.weight_decay;
            State& s = state_[gi][pi];
            if (!s.m.defined()) {
                s.m = Tensor<T>::zeros(p.shape());
                s.v = Tensor<T>::zeros(p.shape());
            }
            ++s.step;
            const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(s.step));
            const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(s.step));
            const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
            const T decay = static_cast<T>(1.0 - lr * wd), b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2),
                    eps = static_cast<T>(o_.eps);
            T *w = p.data(), *m = s.m.data(), *v = s.v.data();
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

    const State& state(size_t group, size_t param) const { return state_.at(group).at(param); }
    State& state(size_t group, size_t param) { return state_.at(group).at(param); }

    OptimizerState<T> state() const override {
        OptimizerState<T> s;
        this->save_lrs(s);
        for (size_t gi = 0; gi < state_.size(); ++gi)
            for (size_t pi = 0; pi < state_[gi].size(); ++pi) {
                const State& st = state_[gi][pi];
                s.values[this->key(gi, pi, "step")] = std::to_string(st.step);
                if (!st.m.defined()) continue;
                s.tensors.emplace_back(this->key(gi, pi, "exp_avg"), st.m);
                s.tensors.emplace_back(this->key(gi, pi, "exp_avg_sq"), st.v);
            }
        return s;
    }
    void load_state(const OptimizerState<T>& s) override {
        this->load_lrs(s);
        for (size_t gi = 0; gi < state_.size(); ++gi)
            for (size_t pi = 0; pi < state_[gi].size(); ++pi) {
                State& st = state_[gi][pi];
                const Tensor<T>& p = this->groups_[gi].params[pi];
                auto it = s.values.find(this->key(gi, pi, "step"));
                check(it != s.values.end(), "optimizer state: no step count for ", this->key(gi, pi, "step"));
                st.step = std::stoll(it->second);
                st.m = this->find_tensor(s, this->key(gi, pi, "exp_avg"), p);
                st.v = this->find_tensor(s, this->key(gi, pi, "exp_avg_sq"), p);
                check(st.m.defined() == st.v.defined() && (st.step == 0 || st.m.defined()),
                      "optimizer state: incomplete Adam moments for ", this->key(gi, pi, ""));
            }
    }

private:
    Options o_;
    std::vector<std::vector<State>> state_;
};

}  // namespace coeffnet
