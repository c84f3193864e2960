// coeffnet/tensor/views.hpp: reshape, permute, slice, expand and friends, with their backward.
//
// A view shares storage with its input (no copy); reshape of a non-contiguous tensor copies,
// as torch.reshape does. Each backward maps the gradient back onto the input's shape:
// permute by the inverse permutation, slice by scattering into zeros, expand by summing.
// Part of tensor.hpp, which includes this file at its end; included alone, it includes tensor.hpp.
#include "tensor.hpp"
#ifndef COEFFNET_TENSOR_VIEWS_HPP
#define COEFFNET_TENSOR_VIEWS_HPP

#include "loops.hpp"

namespace coeffnet {
namespace detail {

template <class T>
Tensor<T> view_of(const Tensor<T>& x, Shape shape, Shape strides, int64_t offset) {
    return make_tensor<T>(x.storage(), std::move(shape), std::move(strides), offset);
}

// Resolves one -1 in a requested shape against numel; the error names the op and both shapes.
inline Shape infer_shape(const Shape& from, Shape to, const char* op) {
    const int64_t n = shape_numel(from);
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < to.size(); ++i) {
        if (to[i] == -1) {
            check(infer < 0, op, ": more than one -1 in ", shape_str(to));
            infer = static_cast<int64_t>(i);
        } else {
            check(to[i] >= 0, op, ": negative size in ", shape_str(to));
            known *= to[i];
        }
    }
    if (infer >= 0) {
        check(known != 0 && n % known == 0, op, ": cannot reshape ", shape_str(from), " into ", shape_str(to));
        to[static_cast<size_t>(infer)] = n / known;
    }
    check(shape_numel(to) == n, op, ": cannot reshape ", shape_str(from), " (", n, " elements) into ", shape_str(to),
          " (", shape_numel(to), " elements)");
    return to;
}

// dst[...] = src[...] for two same-shaped, possibly strided tensors (dst must not overlap itself).
template <class T>
void copy_into(const Tensor<T>& dst, const Tensor<T>& src) {
    const Device dev = same_device("copy", dst, src);
    backend::memory(dev).copy(sizeof(T), raw_view(dst), raw_view(src));
}

}  // namespace detail

template <class T>
Tensor<T> Tensor<T>::reshape(const Shape& requested) const {
    require_defined("reshape");
    const Shape in_shape = shape();
    const Shape out_shape = detail::infer_shape(in_shape, requested, "reshape");
    Tensor out = is_contiguous() ? detail::view_of(*this, out_shape, contiguous_strides(out_shape), offset())
                                 : detail::view_of(detail::contiguous_copy(*this), out_shape,
                                                   contiguous_strides(out_shape), 0);
    return record<T>(out, "reshape", {*this}, [in_shape](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{g.reshape(in_shape)};
    });
}

template <class T>
Tensor<T> Tensor<T>::flatten(int64_t start, int64_t end) const {
    const int64_t r = dim();
    if (r == 0) return reshape({1});
    start = normalize_axis(start, r, "flatten");
    end = normalize_axis(end, r, "flatten");
    check(start <= end, "flatten: start axis ", start, " is after end axis ", end);
    Shape s;
    for (int64_t i = 0; i < start; ++i) s.push_back(shape()[static_cast<size_t>(i)]);
    int64_t merged = 1;
    for (int64_t i = start; i <= end; ++i) merged *= shape()[static_cast<size_t>(i)];
    s.push_back(merged);
    for (int64_t i = end + 1; i < r; ++i) s.push_back(shape()[static_cast<size_t>(i)]);
    return reshape(s);
}

template <class T>
Tensor<T> Tensor<T>::permute(const Shape& order) const {
    require_defined("permute");
    const int64_t r = dim();
    check(static_cast<int64_t>(order.size()) == r, "permute: order ", shape_str(order), " for a tensor of shape ",
          shape_str(shape()));
    Shape s(static_cast<size_t>(r)), st(static_cast<size_t>(r)), inverse(static_cast<size_t>(r), -1);
    for (int64_t i = 0; i < r; ++i) {
        const int64_t a = normalize_axis(order[static_cast<size_t>(i)], r, "permute");
        check(inverse[static_cast<size_t>(a)] < 0, "permute: axis ", a, " appears twice in ", shape_str(order));
        inverse[static_cast<size_t>(a)] = i;
        s[static_cast<size_t>(i)] = shape()[static_cast<size_t>(a)];
        st[static_cast<size_t>(i)] = strides()[static_cast<size_t>(a)];
    }
    Tensor out = detail::view_of(*this, s, st, offset());
    return record<T>(out, "permute", {*this}, [inverse](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{g.permute(inverse)};
    });
}

template <class T>
Tensor<T> Tensor<T>::transpose(int64_t a, int64_t b) const {
    const int64_t r = dim();
    a = normalize_axis(a, r, "transpose");
    b = normalize_axis(b, r, "transpose");
    Shape order(static_cast<size_t>(r));
    std::iota(order.begin(), order.end(), 0);
    std::swap(order[static_cast<size_t>(a)], order[static_cast<size_t>(b)]);
    return permute(order);
}

template <class T>
Tensor<T> Tensor<T>::slice(int64_t axis, int64_t start, int64_t end, int64_t step) const {
    require_defined("slice");
    axis = normalize_axis(axis, dim(), "slice");
    check(dim() > 0, "slice: cannot slice a scalar");
    check(step > 0, "slice: step must be positive, got ", step);
    const int64_t n = shape()[static_cast<size_t>(axis)];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::clamp<int64_t>(start, 0, n);
    end = std::clamp<int64_t>(end, start, n);
    Shape s = shape(), st = strides();
    s[static_cast<size_t>(axis)] = (end - start + step - 1) / step;
    st[static_cast<size_t>(axis)] *= step;
    Tensor out = detail::view_of(*this, s, st, offset() + start * strides()[static_cast<size_t>(axis)]);
    const Shape in_shape = shape();
    return record<T>(out, "slice", {*this}, [in_shape, axis, start, end, step](const Tensor& g, const std::vector<bool>&) {
        Tensor full = Tensor::zeros(in_shape, g.device());
        detail::copy_into(full.slice(axis, start, end, step), g);
        return std::vector<Tensor>{full};
    });
}

template <class T>
Tensor<T> Tensor<T>::select(int64_t axis, int64_t index) const {
    const int64_t a = normalize_axis(axis, dim(), "select");
    const int64_t n = shape()[static_cast<size_t>(a)];
    check(index >= -n && index < n, "select: index ", index, " out of range for axis ", a, " of shape ",
          shape_str(shape()));
    if (index < 0) index += n;
    return slice(a, index, index + 1).squeeze(a);
}

template <class T>
Tensor<T> Tensor<T>::unsqueeze(int64_t axis) const {
    require_defined("unsqueeze");
    const int64_t r = dim();
    check(axis >= -(r + 1) && axis <= r, "unsqueeze: axis ", axis, " is out of range for a tensor of rank ", r);
    if (axis < 0) axis += r + 1;
    Shape s = shape(), st = strides();
    const int64_t stride = axis < r ? st[static_cast<size_t>(axis)] * s[static_cast<size_t>(axis)] : 1;
    s.insert(s.begin() + axis, 1);
    st.insert(st.begin() + axis, stride);
    Tensor out = detail::view_of(*this, s, st, offset());
    const Shape in_shape = shape();
    return record<T>(out, "unsqueeze", {*this}, [in_shape](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{g.reshape(in_shape)};
    });
}

// Like torch.squeeze(dim): removes `axis` if its size is 1, else returns the tensor unchanged.
template <class T>
Tensor<T> Tensor<T>::squeeze(int64_t axis) const {
    require_defined("squeeze");
    if (dim() == 0) return *this;
    axis = normalize_axis(axis, dim(), "squeeze");
    if (shape()[static_cast<size_t>(axis)] != 1) return *this;
    Shape s = shape(), st = strides();
    s.erase(s.begin() + axis);
    st.erase(st.begin() + axis);
    Tensor out = detail::view_of(*this, s, st, offset());
    const Shape in_shape = shape();
    return record<T>(out, "squeeze", {*this}, [in_shape](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{g.reshape(in_shape)};
    });
}

template <class T>
Tensor<T> Tensor<T>::expand(const Shape& target) const {
    require_defined("expand");
    const size_t r = target.size(), own = shape().size();
    check(r >= own, "expand: cannot expand ", shape_str(shape()), " to fewer dimensions ", shape_str(target));
    Shape s(r), st(r, 0);
    for (size_t i = 0; i < r; ++i) {
        if (i < r - own) {
            check(target[i] >= 0, "expand: size -1 is not allowed for a new leading axis in ", shape_str(target));
            s[i] = target[i];
            continue;
        }
        const int64_t have = shape()[i - (r - own)];
        const int64_t want = target[i] == -1 ? have : target[i];
        check(have == want || have == 1, "expand: cannot expand ", shape_str(shape()), " to ", shape_str(target),
              " (axis ", i, ": ", have, " vs ", want, ")");
        s[i] = want;
        st[i] = have == want ? strides()[i - (r - own)] : 0;
    }
    Tensor out = detail::view_of(*this, s, st, offset());
    const Shape in_shape = shape();
    return record<T>(out, "expand", {*this}, [in_shape](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{detail::sum_to(g, in_shape)};
    });
}

template <class T>
Tensor<T> Tensor<T>::contiguous() const {
    require_defined("contiguous");
    if (is_contiguous()) return *this;
    return clone();
}

template <class T>
Tensor<T> Tensor<T>::clone() const {
    require_defined("clone");
    return record<T>(detail::contiguous_copy(*this), "clone", {*this},
                     [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

namespace detail {
// Throws naming `op` when t has an axis of stride 0 and size > 1: writing to it would write the
// same element twice.
template <class T>
void check_writable(const Tensor<T>& t, const char* op) {
    for (size_t i = 0; i < t.shape().size(); ++i)
        check(t.strides()[i] != 0 || t.shape()[i] <= 1, op, ": the destination ", shape_str(t.shape()),
              " has aliased elements (stride 0 on axis ", i, ", an expand()); write into a contiguous tensor");
}
}  // namespace detail

template <class T>
Tensor<T>& Tensor<T>::copy_(const Tensor& src) {
    require_defined("Tensor::copy_");
    check(src.defined(), "Tensor::copy_: the source is undefined");
    check(src.shape() == shape(), "Tensor::copy_: source ", shape_str(src.shape()), " does not match destination ",
          shape_str(shape()));
    detail::check_writable(*this, "Tensor::copy_");
    detail::same_device("Tensor::copy_", *this, src);
    // A source sharing this storage is read from a copy first, so overlapping views copy right.
    const Tensor<T> s = src.storage().same_memory(storage()) ? detail::contiguous_copy(src) : src.detach();
    backend::memory(device()).copy(sizeof(T), detail::raw_view(*this), detail::raw_view(s));
    return *this;
}

template <class T>
Tensor<T>& Tensor<T>::fill_(T value) {
    require_defined("Tensor::fill_");
    detail::check_writable(*this, "Tensor::fill_");
    backend::memory(device()).fill(sizeof(T), detail::raw_view(*this), &value);
    return *this;
}

template <class T>
Tensor<T> Tensor<T>::to(Device dst) const {
    require_defined("Tensor::to");
    const Device src_dev = device();
    if (dst == src_dev) return *this;
    const Tensor<T> src = detail::as_contiguous(*this);
    Tensor<T> out = empty(shape(), dst);
    const size_t bytes = static_cast<size_t>(numel()) * sizeof(T);
    const size_t src_off = static_cast<size_t>(src.offset()) * sizeof(T);
    if (src_dev.is_cpu()) {
        backend::memory(dst).from_host(src.device_data(), out.storage(), 0, bytes);
    } else if (dst.is_cpu()) {
        backend::memory(src_dev).to_host(src.storage(), src_off, out.data(), bytes);
    } else {  // between two devices, through the host
        std::vector<T> staging(static_cast<size_t>(numel()));
        backend::memory(src_dev).to_host(src.storage(), src_off, staging.data(), bytes);
        backend::memory(dst).from_host(staging.data(), out.storage(), 0, bytes);
    }
    if constexpr (is_compute_type_v<T>) {
        return record<T>(out, "to", {*this}, [src_dev](const Tensor& g, const std::vector<bool>&) {
            return std::vector<Tensor>{g.to(src_dev)};
        });
    } else {
        return out;
    }
}

}  // namespace coeffnet

#endif  // COEFFNET_TENSOR_VIEWS_HPP
