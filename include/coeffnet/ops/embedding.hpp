// coeffnet/ops/embedding.hpp: row lookup, weight[indices], and its scatter-add backward.
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
    const std::vector<int64_t> idx = indices.to_vector();
    for (size_t i = 0; i < idx.size(); ++i)
        check(idx[i] >= 0 && idx[i] < V, "embedding: index ", idx[i], " at position ", i, " is out of range for ", V,
              " embeddings");
    Shape out_shape = indices.shape();
    out_shape.push_back(D);
    Tensor<T> out = Tensor<T>::empty(out_shape);
    const Tensor<T> wc = detail::as_contiguous(weight);
    const T* pw = wc.data();
    T* po = out.data();
    const int64_t n = static_cast<int64_t>(idx.size());
    parallel_for(n, D, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) std::copy_n(pw + idx[static_cast<size_t>(i)] * D, D, po + i * D);
    });
    return record<T>(out, "embedding", {weight}, [idx, V, D](const Tensor<T>& g, const std::vector<bool>&) {
        const Tensor<T> gc = detail::as_contiguous(g);
        Tensor<T> dw = Tensor<T>::zeros({V, D});
        const T* pg = gc.data();
        T* pd = dw.data();
        // Sequential over indices (repeated indices add into the same row), parallel over D.
        parallel_for(D, static_cast<int64_t>(idx.size()), [&](int64_t c0, int64_t c1) {
            for (size_t i = 0; i < idx.size(); ++i)
                for (int64_t c = c0; c < c1; ++c) pd[idx[i] * D + c] += pg[static_cast<int64_t>(i) * D + c];
        });
        return std::vector<Tensor<T>>{dw};
    });
}

}  // namespace coeffnet
