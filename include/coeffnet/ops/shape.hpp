// coeffnet/ops/shape.hpp: concat and split along an axis.
//
// split returns slice views (no copy), each differentiable; concat copies (the device's
// Memory::copy, on the inputs' device), and its backward hands each input the matching slice of
// the gradient.
#pragma once

#include "../tensor/tensor.hpp"

namespace coeffnet {

template <class T>
Tensor<T> concat(const std::vector<Tensor<T>>& parts, int64_t axis) {
    check(!parts.empty(), "concat: no tensors given");
    for (const auto& p : parts) check(p.defined(), "concat: undefined tensor in the list");
    const Shape& first = parts[0].shape();
    check(!first.empty(), "concat: cannot concatenate scalars");
    const int64_t a = normalize_axis(axis, static_cast<int64_t>(first.size()), "concat");
    Shape out_shape = first;
    out_shape[static_cast<size_t>(a)] = 0;
    std::vector<int64_t> sizes;
    for (size_t i = 0; i < parts.size(); ++i) {
        const Shape& s = parts[i].shape();
        bool ok = s.size() == first.size();
        for (size_t d = 0; ok && d < s.size(); ++d) ok = d == static_cast<size_t>(a) || s[d] == first[d];
        check(ok, "concat: tensor ", i, " has shape ", shape_str(s), ", incompatible with ", shape_str(first),
              " along axis ", a);
        sizes.push_back(s[static_cast<size_t>(a)]);
        out_shape[static_cast<size_t>(a)] += sizes.back();
    }
    const Device dev = parts[0].device();
    for (const auto& p : parts) detail::same_device("concat", parts[0], p);
    Tensor<T> out = Tensor<T>::empty(out_shape, dev);
    int64_t at = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
        const Tensor<T> dst = out.detach().slice(a, at, at + sizes[i]);
        backend::memory(dev).copy(sizeof(T), detail::raw_view(dst), detail::raw_view(parts[i]));
        at += sizes[i];
    }
    return record<T>(out, "concat", parts, [a, sizes](const Tensor<T>& g, const std::vector<bool>& needs) {
        std::vector<Tensor<T>> r(sizes.size());
        int64_t from = 0;
        for (size_t i = 0; i < sizes.size(); ++i) {
            if (needs[i]) r[i] = g.slice(a, from, from + sizes[i]);
            from += sizes[i];
        }
        return r;
    });
}

// Splits along `axis` into pieces of the given sizes, which must add up to the axis length.
template <class T>
std::vector<Tensor<T>> split(const Tensor<T>& x, const std::vector<int64_t>& sizes, int64_t axis) {
    check(x.defined() && x.dim() > 0, "split: expects a defined tensor of rank >= 1");
    const int64_t a = normalize_axis(axis, x.dim(), "split");
    int64_t total = 0;
    for (int64_t s : sizes) {
        check(s >= 0, "split: negative size ", s);
        total += s;
    }
    check(total == x.shape()[static_cast<size_t>(a)], "split: sizes add up to ", total, " but axis ", a, " of ",
          shape_str(x.shape()), " has ", x.shape()[static_cast<size_t>(a)]);
    std::vector<Tensor<T>> out;
    int64_t at = 0;
    for (int64_t s : sizes) {
        out.push_back(x.slice(a, at, at + s));
        at += s;
    }
    return out;
}

// Splits into `chunks` equal pieces (the axis length must divide evenly).
template <class T>
std::vector<Tensor<T>> chunk(const Tensor<T>& x, int64_t chunks, int64_t axis) {
    check(chunks > 0, "chunk: number of chunks must be positive, got ", chunks);
    const int64_t n = x.size(axis);
    check(n % chunks == 0, "chunk: axis ", axis, " of ", shape_str(x.shape()), " does not split into ", chunks,
          " equal pieces");
    return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), n / chunks), axis);
}

}  // namespace coeffnet
