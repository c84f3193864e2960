// coeffnet/nn/layers.hpp: the small layers a model is assembled from: Embedding, Dropout,
// activations, Sequential and MLP (torch.nn's names and parameter names).
//
// Sequential holds its layers as std::unique_ptr<Module<T>>, each with a type-erased call
// (a std::function taking and returning Tensor<T>), so any module with
// `Tensor<T> operator()(const Tensor<T>&)` can be a layer: Linear, LayerNorm, CoeffAttention
// from nn/module.hpp unchanged, these layers, a user's own module, another Sequential. No base
// class is needed, and nn/module.hpp's classes are not touched.
#pragma once

#include <cmath>
#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../ops/dropout.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/embedding.hpp"
#include "module.hpp"

namespace coeffnet::nn {

// torch.nn.Embedding: weight [num, dim] ~ N(0, 1), registered as "weight". The forward takes
// int64 indices of any shape and returns [..., dim]; an index outside [0, num) throws naming the
// index value and its position (the embedding op checks them all before any work).
// The Tensor<T> overload, for use inside a Sequential whose first layer this is, takes indices
// stored as whole numbers in T and throws naming the first one that is not.
template <class T>
class Embedding : public Module<T> {
public:
    Tensor<T> weight;

    Embedding(int64_t num, int64_t dim, Generator& gen) {
        check(num > 0 && dim > 0, "nn::Embedding: num_embeddings and dim must be positive, got ", num, " and ", dim);
        weight = Tensor<T>::randn({num, dim}, gen).set_requires_grad(true);
        this->register_parameter("weight", weight);
    }
    int64_t num_embeddings() const { return weight.shape()[0]; }
    int64_t embedding_dim() const { return weight.shape()[1]; }

    Tensor<T> operator()(const Tensor<int64_t>& indices) const { return embedding(indices, weight); }
    Tensor<T> operator()(const Tensor<T>& indices) const {
        check(indices.defined(), "nn::Embedding: undefined indices");
        const std::vector<T> v = indices.to_vector();
        std::vector<int64_t> idx(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            const double d = static_cast<double>(v[i]);
            check(std::isfinite(d) && d == std::floor(d), "nn::Embedding: index ", d, " at position ", i,
                  " is not a whole number");
            idx[i] = static_cast<int64_t>(d);
        }
        return embedding(Tensor<int64_t>::from(idx, indices.shape(), indices.device()), weight);
    }
};

// torch.nn.Dropout(p): zeroes elements with probability p and scales the rest by 1/(1-p) while
// the module is training (Module::train / eval); in eval mode it returns its input. The random
// stream comes from the Generator given at construction, held by reference: it must outlive the
// layer, and each training forward advances it (ops/dropout.hpp).
template <class T>
class Dropout : public Module<T> {
public:
    double p;

    Dropout(double p_, Generator& gen) : p(p_), gen_(&gen) { check_probability(p, "nn::Dropout"); }
    Tensor<T> operator()(const Tensor<T>& x) const { return dropout(x, p, *gen_, this->training()); }

private:
    Generator* gen_;
};

enum class Act { gelu, gelu_tanh, relu, silu, tanh, sigmoid };

// A pointwise activation as a layer (no parameters): nn.GELU(), nn.ReLU(), ...
template <class T>
class Activation : public Module<T> {
public:
    Act act;

    explicit Activation(Act a = Act::gelu) : act(a) {}
    Tensor<T> operator()(const Tensor<T>& x) const {
        switch (act) {
            case Act::gelu: return gelu(x);
            case Act::gelu_tanh: return gelu(x, GeluApprox::tanh);
            case Act::relu: return relu(x);
            case Act::silu: return silu(x);
            case Act::tanh: return coeffnet::tanh(x);
            case Act::sigmoid: return sigmoid(x);
        }
        fail("nn::Activation: unknown activation ", static_cast<int>(act));
    }
};

template <class T>
struct GELU : Activation<T> {
    GELU() : Activation<T>(Act::gelu) {}
};
template <class T>
struct ReLU : Activation<T> {
    ReLU() : Activation<T>(Act::relu) {}
};

// torch.nn.Sequential: layers run in order, registered as children "0", "1", ... so parameter
// names read "0.weight", "2.bias" as in PyTorch. Build it with the layers
// (Sequential<float> s(std::make_unique<Linear<float>>(4, 8, gen), std::make_unique<GELU<float>>())),
// or empty and push_back one at a time. A layer is any module callable on a Tensor<T>.
template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;
    template <class... M>
    explicit Sequential(std::unique_ptr<M>... layers) {
        (push_back(std::move(layers)), ...);
    }

    // Appends a layer (named by its position) and returns it.
    template <class M>
        requires std::derived_from<M, Module<T>> && std::invocable<const M&, const Tensor<T>&>
    M& push_back(std::unique_ptr<M> layer) {
        check(layer != nullptr, "nn::Sequential::push_back: null layer at position ", layers_.size());
        M& ref = *layer;
        this->adopt(std::to_string(layers_.size()), ref);
        calls_.push_back([&ref](const Tensor<T>& x) { return Tensor<T>(ref(x)); });
        layers_.push_back(std::move(layer));
        return ref;
    }

    size_t size() const { return layers_.size(); }
    Module<T>& operator[](size_t i) const {
        check(i < layers_.size(), "nn::Sequential: layer ", i, " out of range for ", layers_.size(), " layers");
        return *layers_[i];
    }
    // The layer at i as its own type; throws naming i when it is another type.
    template <class M>
    M& at(size_t i) const {
        M* m = dynamic_cast<M*>(&(*this)[i]);
        check(m != nullptr, "nn::Sequential::at: layer ", i, " is not of the requested type");
        return *m;
    }

    Tensor<T> forward(const Tensor<T>& x) const {
        Tensor<T> y = x;
        for (const auto& f : calls_) y = f(y);
        return y;
    }
    Tensor<T> operator()(const Tensor<T>& x) const { return forward(x); }

private:
    std::vector<std::unique_ptr<Module<T>>> layers_;
    std::vector<std::function<Tensor<T>(const Tensor<T>&)>> calls_;
};

// A multilayer perceptron: dims {in, h1, ..., out} gives Linear(in, h1), act, Linear(h1, h2),
// act, ..., Linear(h_k, out), no activation after the last Linear (torchvision.ops.MLP's layout
// without norm or dropout, so its names: "0.weight", "0.bias", "2.weight", ...). The Linear
// layers are initialised like torch.nn.Linear from `gen`, in order.
template <class T>
class MLP : public Sequential<T> {
public:
    MLP(const std::vector<int64_t>& dims, Generator& gen, Act act = Act::gelu, bool bias = true) {
        check(dims.size() >= 2, "nn::MLP: needs at least {in, out} dimensions, got ", dims.size());
        for (size_t i = 0; i < dims.size(); ++i)
            check(dims[i] > 0, "nn::MLP: dimension ", i, " is ", dims[i], ", must be positive");
        for (size_t i = 0; i + 1 < dims.size(); ++i) {
            this->push_back(std::make_unique<Linear<T>>(dims[i], dims[i + 1], gen, bias));
            if (i + 2 < dims.size()) this->push_back(std::make_unique<Activation<T>>(act));
        }
    }
};

}  // namespace coeffnet::nn
