// coeffnet/autograd/engine.hpp: Tensor::backward, the reverse sweep over the tape.
//
// 1. Order: an iterative depth-first post-order from the root's Node (no recursion).
// 2. Sweep: Nodes in reverse post-order (every consumer before its producer); each Node's
//    incoming gradients are summed first, then its backward runs once.
// 3. Leaves: each leaf's gradients are summed over its uses, its hooks run, then the sum is
//    accumulated into .grad() (copied into fresh storage the first time, added in place later).
// The same sweep serves grad(outputs, inputs), which captures instead of accumulating.
// Part of tensor.hpp, which includes this file at its end; included alone, it includes tensor.hpp.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_AUTOGRAD_ENGINE_HPP
#define COEFFNET_AUTOGRAD_ENGINE_HPP

#include <unordered_map>
#include <unordered_set>


namespace coeffnet {
namespace detail {

// dst += src, elementwise, on their device; dst contiguous and owned by the caller, src any strides.
template <class T>
void add_into(const Tensor<T>& dst, const Tensor<T>& src) {
    const Device dev = same_device("backward (accumulating a gradient)", dst, src);
    backend::ops<T>(dev).binary(backend::BinaryOp::add, dst, dst, src);
}

// 0 + src: a contiguous copy that owns its storage (-0 becomes +0, as a sum would make it).
template <class T>
Tensor<T> fresh_copy(const Tensor<T>& src) {
    Tensor<T> out = Tensor<T>::zeros(src.shape(), src.device());
    add_into(out, src);
    return out;
}

template <class T>
void accumulate_leaf(TensorImpl<T>& leaf, const Tensor<T>& g) {
    if (!leaf.grad.defined()) leaf.grad = fresh_copy(g);
    else add_into(leaf.grad, g);
}

// Runs a tensor's hooks over its incoming gradient `g`; `owned` turns false when a hook replaced
// it (the replacement may be held by the caller). `what` names the tensor in errors.
template <class T>
Tensor<T> run_hooks(const GradHooks<T>* h, Tensor<T> g, bool& owned, const std::string& what, const char* who) {
    if (!h || h->hooks.empty()) return g;
    const auto hooks = h->hooks;  // a hook may register or remove hooks
    for (const auto& [id, fn] : hooks) {
        Tensor<T> r = fn(g);
        if (!r.defined()) continue;
        check(r.shape() == g.shape(), who, ": hook ", id, " on ", what, " returned a gradient of shape ",
              shape_str(r.shape()), " for a gradient of shape ", shape_str(g.shape()));
        g = std::move(r);
        owned = false;
    }
    return g;
}

// The inputs of grad(): where their gradients are captured instead of accumulated.
template <class T>
struct GradTargets {
    std::unordered_map<const Node<T>*, std::vector<size_t>> nodes;          // intermediates
    std::unordered_map<const TensorImpl<T>*, std::vector<size_t>> leaves;  // leaves
    std::vector<Tensor<T>> grads;                                          // one per input

    void capture(const std::vector<size_t>& idx, const Tensor<T>& g, bool owned) {
        for (size_t k = 0; k < idx.size(); ++k) {
            Tensor<T>& dst = grads[idx[k]];
            dst = (owned && k == 0) ? g : fresh_copy(g);  // what grad() returns owns its storage
        }
    }
};

// The reverse sweep from `roots` seeded with `seeds` (validated by the caller). Without targets
// (backward): gradients reach every leaf that requires grad and accumulate into .grad(); retained
// intermediates get theirs too. With targets (grad()): only the Nodes on a path to a target run,
// only the inputs on such paths get a gradient computed, and nothing is written to any .grad().
template <class T>
void run_backward(const std::vector<Tensor<T>>& roots, const std::vector<Tensor<T>>& seeds, bool retain_graph,
                  GradTargets<T>* targets, const char* who) {
    NoGrad no_grad;
    // 1. Order: iterative depth-first post-order over the Nodes reachable from the roots.
    std::vector<Node<T>*> order;
    std::unordered_set<Node<T>*> seen;
    for (const auto& r : roots) {
        Node<T>* root = r.impl()->grad_fn.get();
        if (!root || !seen.insert(root).second) continue;
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
    }
    // With targets: a Node is useful when it is a target or leads to one (children come first
    // in post-order, so one forward pass decides it).
    std::unordered_set<const Node<T>*> useful;
    auto edge_useful = [&](const Edge<T>& e) {
        return (e.node && useful.count(e.node.get())) || (e.leaf && targets->leaves.count(e.leaf.get()));
    };
    if (targets) {
        for (Node<T>* n : order) {
            bool u = targets->nodes.count(n) > 0;
            for (const auto& e : n->edges) u = u || edge_useful(e);
            if (u) useful.insert(n);
        }
    }

    // 2. Sweep. Gradients for a Node or a leaf are summed before they are used, so a hook sees
    // each tensor's total gradient once per sweep.
    struct Pending {
        Tensor<T> grad;
        bool owned;  // grad is a sum this sweep allocated, so it can be added to in place
    };
    std::unordered_map<Node<T>*, Pending> pending;
    std::unordered_map<TensorImpl<T>*, Pending> leaf_pending;
    std::vector<TensorImpl<T>*> leaf_order;  // first arrival: the order leaves are delivered in
    auto add = [](auto& map, auto* key, const Tensor<T>& g) {
        auto [slot, inserted] = map.try_emplace(key, Pending{g, false});
        if (inserted) return true;
        Pending& p = slot->second;
        if (!p.owned) p = Pending{fresh_copy(p.grad), true};
        add_into(p.grad, g);
        return false;
    };
    auto add_leaf = [&](TensorImpl<T>* leaf, const Tensor<T>& g) {
        if (targets && !targets->leaves.count(leaf)) return;
        if (!targets && (!leaf->hooks || leaf->hooks->hooks.empty())) {
            accumulate_leaf(*leaf, g);  // no hook to see the sum: accumulate now, hold nothing
            return;
        }
        if (add(leaf_pending, leaf, g)) leaf_order.push_back(leaf);
    };
    for (size_t r = 0; r < roots.size(); ++r) {
        const auto& impl = roots[r].impl();
        if (impl->grad_fn) add(pending, impl->grad_fn.get(), seeds[r]);
        else add_leaf(impl.get(), seeds[r]);
    }

    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node<T>* n = *it;
        auto found = pending.find(n);
        if (found == pending.end()) continue;  // no gradient reached it (all contributions undefined)
        bool owned = found->second.owned;
        Tensor<T> g = std::move(found->second.grad);
        pending.erase(found);
        if (n->hooks) {
            g = run_hooks(n->hooks.get(), std::move(g), owned, "the output of '" + n->name + "'", who);
            if (!targets)
                if (auto kept = n->hooks->retain.lock()) accumulate_leaf(*kept, g);
        }
        std::vector<bool> needs = n->needs;
        if (targets) {
            if (auto t = targets->nodes.find(n); t != targets->nodes.end()) targets->capture(t->second, g, owned);
            bool any = false;
            for (size_t i = 0; i < needs.size(); ++i) {
                needs[i] = needs[i] && edge_useful(n->edges[i]);
                any = any || needs[i];
            }
            if (!any) continue;  // nothing below it is wanted: it does not run (and is not freed)
        }
        check(!n->freed, who, ": the graph through '", n->name,
              "' was freed by an earlier backward() or grad(); pass retain_graph=true to that call to "
              "backpropagate twice");
        std::vector<Tensor<T>> gin = n->backward(g, needs);
        check(gin.size() == n->edges.size(), who, ": op '", n->name, "' returned ", gin.size(),
              " gradients for ", n->edges.size(), " inputs");
        for (size_t i = 0; i < gin.size(); ++i) {
            if (!needs[i] || !gin[i].defined()) continue;
            check(gin[i].shape() == n->input_shapes[i], who, ": op '", n->name, "' produced a gradient of shape ",
                  shape_str(gin[i].shape()), " for input ", i, " of shape ", shape_str(n->input_shapes[i]));
            const Edge<T>& e = n->edges[i];
            if (e.node) add(pending, e.node.get(), gin[i]);
            else add_leaf(e.leaf.get(), gin[i]);
        }
        if (!retain_graph) n->free_saved();
    }

    // 3. Leaves with hooks (and grad()'s leaf inputs), whose gradients were held until now:
    // hooks, then accumulation into .grad() (the first gradient is copied into fresh storage
    // unless the sweep allocated it) or capture. Leaves without hooks were accumulated as their
    // gradients arrived, holding no extra memory.
    for (TensorImpl<T>* leaf : leaf_order) {
        Pending& p = leaf_pending.at(leaf);
        bool owned = p.owned;
        Tensor<T> g = std::move(p.grad);
        if (leaf->hooks)
            g = run_hooks(leaf->hooks.get(), std::move(g), owned, "a leaf of shape " + shape_str(leaf->shape), who);
        if (targets) targets->capture(targets->leaves.at(leaf), g, owned);
        else if (!leaf->grad.defined()) leaf->grad = owned ? g : fresh_copy(g);
        else add_into(leaf->grad, g);
    }
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
        seed = Tensor::ones(shape(), device());
    } else {
        check(seed.shape() == shape(), "backward: upstream gradient of shape ", shape_str(seed.shape()),
              " for an output of shape ", shape_str(shape()));
    }
    detail::run_backward<T>({*this}, {seed}, retain_graph, nullptr, "backward");
}

namespace detail {

template <class T>
std::vector<Tensor<T>> grad_impl(const std::vector<Tensor<T>>& outputs, const std::vector<Tensor<T>>& inputs,
                                 const std::vector<Tensor<T>>& grad_outputs, bool retain_graph, bool allow_unused) {
    check(!outputs.empty(), "grad: no outputs given");
    check(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "grad: ", grad_outputs.size(),
          " grad_outputs for ", outputs.size(), " outputs (give one per output, or none for scalar outputs)");
    std::vector<Tensor<T>> seeds(outputs.size());
    for (size_t i = 0; i < outputs.size(); ++i) {
        const Tensor<T>& y = outputs[i];
        check(y.defined(), "grad: output ", i, " is undefined");
        check(y.requires_grad(), "grad: output ", i, " (shape ", shape_str(y.shape()),
              ") does not require grad (no input of its graph has requires_grad set)");
        const Tensor<T> g = grad_outputs.empty() ? Tensor<T>() : grad_outputs[i];
        if (!g.defined()) {
            check(y.numel() == 1, "grad: output ", i, " has shape ", shape_str(y.shape()),
                  "; a non-scalar output needs a grad_outputs entry of that shape");
            seeds[i] = Tensor<T>::ones(y.shape(), y.device());
        } else {
            check(g.shape() == y.shape(), "grad: grad_outputs[", i, "] has shape ", shape_str(g.shape()),
                  " for output ", i, " of shape ", shape_str(y.shape()));
            seeds[i] = g;
        }
    }
    check(!inputs.empty(), "grad: no inputs given");
    GradTargets<T> targets;
    targets.grads.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor<T>& x = inputs[i];
        check(x.defined(), "grad: input ", i, " is undefined");
        check(x.requires_grad(), "grad: input ", i, " (shape ", shape_str(x.shape()),
              ") does not require grad, so no gradient can reach it");
        if (x.impl()->grad_fn) targets.nodes[x.impl()->grad_fn.get()].push_back(i);
        else targets.leaves[x.impl().get()].push_back(i);
    }
    run_backward<T>(outputs, seeds, retain_graph, &targets, "grad");
    for (size_t i = 0; i < inputs.size(); ++i)
        check(allow_unused || targets.grads[i].defined(), "grad: input ", i, " (shape ", shape_str(inputs[i].shape()),
              inputs[i].is_leaf() ? ", a leaf" : ", the output of '" + inputs[i].grad_fn_name() + "'",
              ") was not used to compute the outputs (no gradient reached it); pass allow_unused=true to get an "
              "undefined tensor for it instead");
    return std::move(targets.grads);
}

}  // namespace detail

// The gradients of the outputs with respect to `inputs` (leaves or intermediates), like
// torch.autograd.grad: d(sum_i <outputs[i], grad_outputs[i]>)/d(inputs[j]), one tensor per input.
// No .grad() is written (neither leaves' nor retained intermediates'); hooks on the inputs and on
// the tensors in between run. Only the part of the graph between the outputs and the inputs runs.
// - grad_outputs: empty, or one per output; an undefined entry (or none) means ones, for a
//   scalar output only.
// - retain_graph=false frees the saved tensors of the ops that ran, as backward() does.
// - An input the outputs do not depend on throws (PyTorch's default); with allow_unused=true
//   its entry is an undefined Tensor instead. An input that does not require grad throws.
// Gradients are computed without recording (no create_graph: no higher-order derivatives).
// (The two overloads take braced lists, grad({y}, {x}); they are templates only so that a program
// that never calls them does not instantiate the engine for both types.)
template <int = 0>
std::vector<Tensor<double>> grad(const std::vector<Tensor<double>>& outputs,
                                 const std::vector<Tensor<double>>& inputs,
                                 const std::vector<Tensor<double>>& grad_outputs = {},
                                 bool retain_graph = false, bool allow_unused = false) {
    return detail::grad_impl<double>(outputs, inputs, grad_outputs, retain_graph, allow_unused);
}
template <int = 0>
std::vector<Tensor<float>> grad(const std::vector<Tensor<float>>& outputs,
                                const std::vector<Tensor<float>>& inputs,
                                const std::vector<Tensor<float>>& grad_outputs = {},
                                bool retain_graph = false, bool allow_unused = false) {
    return detail::grad_impl<float>(outputs, inputs, grad_outputs, retain_graph, allow_unused);
}
// One output, one input: grad(y, x) is grad({y}, {x})[0].
template <class T>
Tensor<T> grad(const Tensor<T>& output, const Tensor<T>& input, const Tensor<T>& grad_output = Tensor<T>(),
               bool retain_graph = false, bool allow_unused = false) {
    std::vector<Tensor<T>> go;
    if (grad_output.defined()) go.push_back(grad_output);
    return detail::grad_impl<T>({output}, {input}, go, retain_graph, allow_unused)[0];
}

}  // namespace coeffnet

#endif  // COEFFNET_AUTOGRAD_ENGINE_HPP
