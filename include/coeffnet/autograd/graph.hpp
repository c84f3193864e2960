// coeffnet/autograd/graph.hpp: the tape, in one page.
//
// Every op that reads a tensor which requires grad records a Node: the op's name, one Edge
// per input (the input's own Node, or for a leaf the leaf itself, where its gradient is
// accumulated), and a backward function that maps the output's gradient to the inputs'.
// A Node holds no input tensors, only what its backward saved (detached tensors), so the
// activations of a graph live exactly as long as the backward functions that need them.
//
// Semantics, written down:
// - Gradients accumulate (+=) into leaves' .grad(); call zero_grad() between steps.
// - backward() frees each Node's saved tensors as it goes. A second backward() through the
//   same Nodes throws, unless the first passed retain_graph=true; then the second
//   accumulates the same gradients again (leaf grads double).
// - Gradients are computed without recording (no higher-order derivatives).
// - Inputs that do not require grad get no gradient, and a backward function is told which
//   inputs need one, so frozen weights cost no weight-gradient GEMM.
// - Graphs are walked and freed with explicit stacks: a 100,000-op chain neither overflows
//   the stack in backward() nor when its last tensor is destroyed.
// - Beyond backward() (PyTorch's semantics): Tensor::retain_grad() keeps an intermediate's
//   gradient, Tensor::register_hook() sees (and may replace) the gradient flowing into a tensor,
//   and coeffnet::grad() (engine.hpp) returns gradients without writing any .grad().
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace coeffnet {

template <class T>
class Tensor;
template <class T>
struct TensorImpl;
template <class T>
struct Node;

// Recording is on by default; NoGrad turns it off for a scope on this thread.
struct GradMode {
    static bool& enabled_ref() {
        thread_local bool enabled = true;
        return enabled;
    }
    static bool enabled() { return enabled_ref(); }
};

class NoGrad {
public:
    NoGrad() : prev_(GradMode::enabled_ref()) { GradMode::enabled_ref() = false; }
    ~NoGrad() { GradMode::enabled_ref() = prev_; }
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool prev_;
};

template <class T>
struct Edge {
    std::shared_ptr<Node<T>> node;        // the input's producer, or
    std::shared_ptr<TensorImpl<T>> leaf;  // the leaf whose .grad receives the gradient
    bool needed() const { return node || leaf; }
};

template <class T>
using BackwardFn = std::function<std::vector<Tensor<T>>(const Tensor<T>& grad_out, const std::vector<bool>& needs)>;

template <class T>
void release_graph(std::shared_ptr<Node<T>> node);

// A gradient hook: called with the gradient flowing into a tensor during backward; returns a
// replacement of the same shape, or an undefined Tensor to keep the gradient as it is.
template <class T>
using GradHook = std::function<Tensor<T>(const Tensor<T>&)>;

// What Tensor::register_hook returns; pass it to Tensor::remove_hook. Ids are unique in the
// process, so an id never removes another tensor's hook.
using HookId = uint64_t;

// The hooks of one tensor, and for an intermediate with retain_grad() the tensor whose .grad
// collects its gradient. A leaf keeps them in its TensorImpl, an intermediate in its Node (so
// they run even after the last handle to the intermediate is gone, as in PyTorch).
template <class T>
struct GradHooks {
    std::vector<std::pair<HookId, GradHook<T>>> hooks;  // run in registration order
    std::weak_ptr<TensorImpl<T>> retain;                // set by retain_grad() on an intermediate

    static HookId next_id() {
        static std::atomic<HookId> counter{0};
        return ++counter;
    }
};

template <class T>
struct Node {
    std::string name;
    std::vector<Edge<T>> edges;
    std::vector<Shape> input_shapes;
    std::vector<bool> needs;
    BackwardFn<T> backward;
    bool freed = false;
    std::unique_ptr<GradHooks<T>> hooks;  // the output tensor's hooks and retain_grad (usually none)

    // Drops what the backward saved; the edges stay so the graph can still be walked.
    void free_saved() {
        backward = nullptr;
        freed = true;
    }
    ~Node() {
        for (auto& e : edges)
            if (e.node) release_graph(std::move(e.node));
    }
};

// Destroys the Nodes reachable from `node` that nobody else holds, with an explicit stack.
template <class T>
void release_graph(std::shared_ptr<Node<T>> node) {
    std::vector<std::shared_ptr<Node<T>>> stack;
    stack.push_back(std::move(node));
    while (!stack.empty()) {
        std::shared_ptr<Node<T>> cur = std::move(stack.back());
        stack.pop_back();
        if (!cur || cur.use_count() > 1) continue;  // still shared: its last holder frees it
        std::vector<Edge<T>> edges = std::move(cur->edges);
        cur->edges.clear();
        cur.reset();  // destroys the Node: its saved tensors are detached, so nothing recurses
        for (auto& e : edges)
            if (e.node) stack.push_back(std::move(e.node));
    }
}

}  // namespace coeffnet
