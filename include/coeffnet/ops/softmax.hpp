// coeffnet/ops/softmax.hpp: softmax (with an additive mask), log-softmax and cross-entropy.
//
// All over the last axis, max-subtracted so logits of +-1e4 stay finite, with the row sums
// accumulated in double for float; softmax's exp is vmath::exp, which vectorises. A row whose
// every entry is masked to -inf gives zeros (not NaN): an all-padding query attends to nothing.
// The mask is a constant: no gradient flows into it. Each op runs on its inputs' device through
// the backend table's primitives (backend/backend.hpp; the CPU loops: backend/cpu_norm.hpp).
#pragma once

#include <vector>

#include "../tensor/tensor.hpp"

namespace coeffnet {

namespace detail {

// y[row] = softmax(x[row] + mask[row]) on x's device; mask may be undefined (no autograd).
template <class T>
Tensor<T> softmax_raw(const Tensor<T>& x, const Tensor<T>& mask, const char* op) {
    check(x.dim() >= 1, op, ": expects rank >= 1, got a scalar");
    if (mask.defined())
        check(broadcasts_to(mask.shape(), x.shape()), op, ": mask ", shape_str(mask.shape()),
              " does not broadcast to the input ", shape_str(x.shape()));
    const Device dev = same_device(op, x, mask);
    Tensor<T> y = Tensor<T>::empty(x.shape(), dev);
    backend::ops<T>(dev).softmax(y, x, mask);
    return y;
}

}  // namespace detail

// The softmax backward on values, outside autograd: dx = y * (g - rowsum(g * y)) over the last axis,
// from the softmax output y and the upstream gradient g.
template <class T>
Tensor<T> softmax_backward(const Tensor<T>& y, const Tensor<T>& g) {
    check(y.shape() == g.shape(), "softmax_backward: the output ", shape_str(y.shape()), " and the gradient ",
          shape_str(g.shape()), " differ in shape");
    const Device dev = detail::same_device("softmax_backward", y, g);
    Tensor<T> dx = Tensor<T>::empty(y.shape(), dev);
    backend::ops<T>(dev).softmax_backward(dx, y, g);
    return dx;
}

// softmax over the last axis of x + mask (mask broadcastable to x, e.g. [B, 1, 1, N]).
template <class T>
Tensor<T> softmax(const Tensor<T>& x, const Tensor<T>& mask = Tensor<T>()) {
    check(x.defined(), "softmax: undefined input");
    Tensor<T> y = detail::softmax_raw(x, mask, "softmax");
    const Tensor<T> sy = y.detach();
    return record<T>(y, "softmax", {x}, [sy](const Tensor<T>& g, const std::vector<bool>&) {
        return std::vector<Tensor<T>>{softmax_backward(sy, g)};
    });
}

template <class T>
Tensor<T> log_softmax(const Tensor<T>& x) {
    check(x.defined() && x.dim() >= 1, "log_softmax: expects a defined tensor of rank >= 1");
    const Device dev = x.device();
    Tensor<T> y = Tensor<T>::empty(x.shape(), dev);
    backend::ops<T>(dev).log_softmax(y, x);
    const Tensor<T> sy = y.detach();
    return record<T>(y, "log_softmax", {x}, [sy](const Tensor<T>& g, const std::vector<bool>&) {
        Tensor<T> dx = Tensor<T>::empty(sy.shape(), sy.device());
        backend::ops<T>(sy.device()).log_softmax_backward(dx, sy, g);
        return std::vector<Tensor<T>>{dx};
    });
}

enum class Reduction { mean, sum };

// Cross-entropy of logits [..., C] against class indices [...] (PyTorch's F.cross_entropy).
// Targets equal to ignore_index contribute nothing; the mean is over the other targets
// (NaN when every target is ignored, as in PyTorch). The targets are checked on the host.
template <class T>
Tensor<T> cross_entropy(const Tensor<T>& logits, const Tensor<int64_t>& targets, int64_t ignore_index = -100,
                        Reduction reduction = Reduction::mean) {
    check(logits.defined() && targets.defined(), "cross_entropy: undefined operand");
    check(logits.dim() >= 1, "cross_entropy: logits must have a class axis, got a scalar");
    const Shape expect(logits.shape().begin(), logits.shape().end() - 1);
    check(targets.shape() == expect, "cross_entropy: targets ", shape_str(targets.shape()), " do not match logits ",
          shape_str(logits.shape()), " (expected ", shape_str(expect), ")");
    const Device dev = detail::same_device("cross_entropy", logits, targets);
    const int64_t C = logits.shape().back(), rows = targets.numel();
    const std::vector<int64_t> tv = targets.to_vector();
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = tv[static_cast<size_t>(r)];
        if (t == ignore_index) continue;
        check(t >= 0 && t < C, "cross_entropy: target ", t, " at position ", r, " is out of range for ", C, " classes");
        ++count;
    }
    const double denom = reduction == Reduction::mean ? static_cast<double>(count) : 1.0;
    Tensor<T> probs = Tensor<T>::empty(logits.shape(), dev);
    Tensor<T> out = Tensor<T>::empty({}, dev);
    const Tensor<int64_t> st = detail::contiguous_copy(targets);  // as they are now, whatever happens to targets
    backend::ops<T>(dev).cross_entropy(out, probs, logits, st, ignore_index, denom);
    return record<T>(out, "cross_entropy", {logits},
                     [probs, st, ignore_index, denom](const Tensor<T>& g, const std::vector<bool>&) {
                         Tensor<T> dx = Tensor<T>::empty(probs.shape(), probs.device());
                         backend::ops<T>(probs.device()).cross_entropy_backward(dx, probs, st, g, ignore_index, denom);
                         return std::vector<Tensor<T>>{dx};
                     });
}

}  // namespace coeffnet
