// coeffnet/autograd/engine.hpp: Tensor::backward, the reverse sweep over the tape.
//
// 1. Order: an iterative depth-first post-order from the root's Node (no recursion).
// 2. Sweep: Nodes in reverse post-order (every consumer before its producer); each Node's
//    incoming gradients are summed first, then its backward runs once.
// 3. Leaves: the first gradient is copied into fresh storage, later ones are added in place.
// Part of tensor.hpp, which includes this file at its end; included alone, it includes tensor.hpp.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_AUTOGRAD_ENGINE_HPP
#define COEFFNET_AUTOGRAD_ENGINE_HPP

#include <unordered_map>
#include <unordered_set>


namespace coeffnet {
namespace detail {

// dst += src, elementwise; dst contiguous and owned by the caller, src any strides.
template <class T>
void add_into(const Tensor<T>& dst, const Tensor<T>& src) {
    T* d = dst.data();
    const T* s = src.data();
    const Shape cs = contiguous_strides(dst.shape());
    for_each_row<2>(dst.shape(), {&cs, &src.strides()},
                    [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& inner) {
                        for (int64_t j = 0; j < len; ++j) d[off[0] + j] += s[off[1] + j * inner[1]];
                    });
}

template <class T>
Tensor<T> fresh_copy(const Tensor<T>& src) {
    Tensor<T> out = Tensor<T>::zeros(src.shape());
    add_into(out, src);
    return out;
}

template <class T>
void accumulate_leaf(TensorImpl<T>& leaf, const Tensor<T>& g) {
    if (!leaf.grad.defined()) leaf.grad = fresh_copy(g);
    else add_into(leaf.grad, g);
}

}  // namespace detail

template <class T>
void Tensor<T>::backward(const Tensor& grad, bool retain_graph) const {
    require_defined("backward");
    check(requires_grad(), "backward: the tensor does not require grad (no input of its graph has requires_grad set)");
    Tensor seed = grad;
    if (!seed.defined()) {
        check(numel() == 1, "backward: the output has shape ", shape_str(shape()),
              "; a non-scalar output needs an explicit upstream gradient of that shape");
        seed = Tensor::ones(shape());
    } else {
        check(seed.shape() == shape(), "backward: upstream gradient of shape ", shape_str(seed.shape()),
              " for an output of shape ", shape_str(shape()));
    }
    NoGrad no_grad;
    if (!impl_->grad_fn) {
        detail::accumulate_leaf(*impl_, seed);
        return;
    }

    Node<T>* root = impl_->grad_fn.get();
    std::vector<Node<T>*> order;
    std::unordered_set<Node<T>*> seen{root};
    std::vector<std::pair<Node<T>*, size_t>> stack{{root, 0}};
    while (!stack.empty()) {
        Node<T>* n = stack.back().first;
        const size_t i = stack.back().second++;
        if (i < n->edges.size()) {
            Node<T>* child = n->edges[i].node.get();
            if (child && seen.insert(child).second) stack.push_back({child, 0});
        } else {
            order.push_back(n);
            stack.pop_back();
        }
    }

    struct Pending {
        Tensor grad;
        bool owned;  // grad is a sum this sweep allocated, so it can be added to in place
    };
    std::unordered_map<Node<T>*, Pending> pending;
    pending.emplace(root, Pending{seed, false});
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node<T>* n = *it;
        auto found = pending.find(n);
        if (found == pending.end()) continue;  // no gradient reached it (all contributions undefined)
        const Tensor g = std::move(found->second.grad);
        pending.erase(found);
        check(!n->freed, "backward: the graph through '", n->name,
              "' was freed by an earlier backward(); pass retain_graph=true to that call to backpropagate twice");
        std::vector<Tensor> gin = n->backward(g, n->needs);
        check(gin.size() == n->edges.size(), "backward: op '", n->name, "' returned ", gin.size(),
              " gradients for ", n->edges.size(), " inputs");
        for (size_t i = 0; i < gin.size(); ++i) {
            if (!n->needs[i] || !gin[i].defined()) continue;
            check(gin[i].shape() == n->input_shapes[i], "backward: op '", n->name, "' produced a gradient of shape ",
                  shape_str(gin[i].shape()), " for input ", i, " of shape ", shape_str(n->input_shapes[i]));
            const Edge<T>& e = n->edges[i];
            if (e.node) {
                auto [slot, inserted] = pending.try_emplace(e.node.get(), Pending{gin[i], false});
                if (!inserted) {
                    Pending& p = slot->second;
                    if (!p.owned) p = Pending{detail::fresh_copy(p.grad), true};
                    detail::add_into(p.grad, gin[i]);
                }
            } else {
                detail::accumulate_leaf(*e.leaf, gin[i]);
            }
        }
        if (!retain_graph) n->free_saved();
    }
}

}  // namespace coeffnet

#endif  // COEFFNET_AUTOGRAD_ENGINE_HPP
