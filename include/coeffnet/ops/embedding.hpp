// coeffnet/ops/embedding.hpp: row lookup, weight[indices], and its scatter-add backward, both by
// the backend table (Ops::embedding, Ops::embedding_backward) on the operands' device.
#pragma once

#include "../tensor/tensor.hpp"

namespace coeffnet {

// indices of any shape (int64) into weight [V, D] -> [..., D]. Every index is checked
// against V before any work; the error names the position and the value.
template <class T>
Tensor<T> embedding(const Tensor<int64_t>& indices, const Tensor<T>& weight) {
    check(indices.defined() && weight.defined(), "embedding: undefined operand");
    check(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ", shape_str(weight.shape()));
    const int64_t V = weight.shape()[0], D = weight.shape()[1];
    const Device dev = detail::same_device("embedding", indices, weight);
    const std::vector<int64_t> idx = indices.to_vector();  // checked on the host (a copy off the CPU)
    for (size_t i = 0; i < idx.size(); ++i)
        check(idx[i] >= 0 && idx[i] < V, "embedding: index ", idx[i], " at position ", i, " is out of range for ", V,
              " embeddings");
    Shape out_shape = indices.shape();
    out_shape.push_back(D);
    Tensor<T> out = Tensor<T>::empty(out_shape, dev);
    backend::ops<T>(dev).embedding(out, indices, weight);
    // The backward reads the indices as they are now: a copy, as the caller may refill its tensor.
    const Tensor<int64_t> ix = GradMode::enabled() && weight.requires_grad() ? detail::contiguous_copy(indices)
                                                                             : indices.detach();
    return record<T>(out, "embedding", {weight}, [ix, V, D](const Tensor<T>& g, const std::vector<bool>&) {
        Tensor<T> dw = Tensor<T>::zeros({V, D}, ix.device());
        backend::ops<T>(ix.device()).embedding_backward(dw, ix, g);
        return std::vector<Tensor<T>>{dw};
    });
}

}  // namespace coeffnet
