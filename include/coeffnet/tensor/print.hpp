// coeffnet/tensor/print.hpp: `std::cout << t` in the style of PyTorch, summarised past 6 per axis.
#pragma once

#include <iomanip>
#include <ostream>
#include <sstream>

#include "tensor.hpp"

namespace coeffnet {
namespace detail {

template <class T>
void print_axis(std::ostream& os, const T* p, const Shape& s, const Shape& st, size_t axis, int indent) {
    auto elem = [&](int64_t i) {
        if (axis + 1 == s.size()) {
            if constexpr (std::is_integral_v<T>) os << static_cast<int64_t>(p[i * st[axis]]);
            else os << std::setprecision(4) << convert<double>(p[i * st[axis]]);
        } else {
            print_axis(os, p + i * st[axis], s, st, axis + 1, indent + 1);
        }
    };
    const int64_t n = s[axis];
    const bool last = axis + 1 == s.size();
    const std::string sep = last ? ", " : ",\n" + std::string(static_cast<size_t>(indent + 1), ' ');
    os << '[';
    for (int64_t i = 0; i < n; ++i) {
        if (n > 6 && i == 3) {
            os << "..." << sep;
            i = n - 3;
        }
        elem(i);
        if (i + 1 < n) os << sep;
    }
    os << ']';
}

}  // namespace detail

template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
    if (!t.defined()) return os << "tensor(undefined)";
    std::ostringstream body;
    const Tensor<T> h = t.device().is_cpu() ? t : t.detach().to(Device::cpu());  // printed from a host copy
    if (h.dim() == 0) body << convert<double>(h.item());
    else detail::print_axis(body, h.data(), h.shape(), h.strides(), 0, 7);
    os << "tensor(" << body.str() << ", shape=" << shape_str(t.shape()) << ", dtype=" << dtype_name<T>();
    if (!t.device().is_cpu()) os << ", device=" << t.device().str();
    if (t.requires_grad()) os << (t.is_leaf() ? ", requires_grad" : ", grad_fn=" + t.grad_fn_name());
    return os << ')';
}

}  // namespace coeffnet
