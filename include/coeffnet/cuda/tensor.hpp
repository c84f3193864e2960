// coeffnet/cuda/tensor.hpp: DeviceTensor<T>, a contiguous row-major array in device memory.
//
// A DeviceTensor is a handle (like Tensor): copying it shares the storage, which goes back to the
// Context's CachingAllocator when the last handle is dropped. It has a shape and no strides: views
// are made by the launchers (reshape() shares storage). Element types: float, bfloat16_t, half_t,
// int32_t, int64_t, uint8_t. coeffnet::bfloat16_t and half_t are bit-compatible with CUDA's
// __nv_bfloat16 and __half; launchers reinterpret_cast data() to those.
//
// A default-constructed DeviceTensor is undefined (defined() == false, numel() == 0, data() ==
// nullptr); launchers take an undefined tensor for "no tensor" (linear's bias, say).
// Every factory throws coeffnet::Error when no usable device exists (see runtime.hpp).
//
// from_host / to_host use the CPU Tensor; this header includes tensor/tensor.hpp for g++ and only
// forward-declares Tensor under nvcc (a .cu file never instantiates them), so .cu files stay Eigen-free.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "runtime.hpp"

namespace coeffnet {
template <class T>
class Tensor;
}  // namespace coeffnet

#if !defined(__CUDACC__) && !defined(COEFFNET_EMULATED)
#include "../tensor/tensor.hpp"
#endif

namespace coeffnet::cuda {

template <class T>
inline constexpr bool is_device_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, bfloat16_t> || std::is_same_v<T, half_t> ||
    std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> || std::is_same_v<T, uint8_t>;

namespace detail {

// Element count of `shape` (core/shape.hpp's checks), and numel * elem_size fits in int64.
inline int64_t checked_numel(const Shape& shape, size_t elem_size, const char* where) {
    const int64_t n = shape_numel(shape, where);
    check(n <= INT64_MAX / static_cast<int64_t>(elem_size), where, ": ", shape_str(shape), " is too large");
    return n;
}

}  // namespace detail

template <class T>
class DeviceTensor {
    static_assert(is_device_type_v<T>, "DeviceTensor<T>: T must be float, bfloat16_t, half_t, int32_t, int64_t or uint8_t");

public:
    using value_type = T;

    DeviceTensor() = default;

    // Uninitialised storage of `shape` (numel 0 allocates nothing but still needs a usable device).
    static DeviceTensor empty(const Shape& shape) {
        const int64_t n = detail::checked_numel(shape, sizeof(T), "DeviceTensor::empty");
        require("DeviceTensor::empty(" + shape_str(shape) + ")");
        DeviceTensor t;
        t.shape_ = shape;
        t.numel_ = n;
        t.defined_ = true;
        if (n > 0) {
            Context& ctx = Context::get();
            t.storage_ = ctx.allocator().allocate_shared(static_cast<size_t>(n) * sizeof(T), ctx.stream());
        }
        return t;
    }
    // All bits zero (0.0 for the floating types), set asynchronously on the context stream.
    static DeviceTensor zeros(const Shape& shape) {
        DeviceTensor t = empty(shape);
        memset_zero(t.data(), t.bytes());
        return t;
    }
    // Converts `t` to T on the host (Tensor::to, any strides), then copies it to the device.
    template <class U>
    static DeviceTensor from_host(const Tensor<U>& t) {
        check(t.defined(), "DeviceTensor::from_host: the host tensor is undefined (default-constructed)");
        const Tensor<T> host = t.template cast<T>();  // contiguous copy in T
        DeviceTensor d = empty(host.shape());
        copy_host_to_device(d.data(), host.data(), d.bytes());
        return d;
    }
    // Synchronous copy back (waits for the work queued on the context stream).
    Tensor<T> to_host() const {
        require_defined("DeviceTensor::to_host");
        Tensor<T> host = Tensor<T>::empty(shape_);
        copy_device_to_host(host.data(), data(), bytes());
        return host;
    }
    Tensor<float> to_host_float() const;  // defined below for g++ only (Tensor<float> must be complete)

    // Copies to and from raw host memory of exactly numel() elements (synchronous).
    void copy_from_host(const T* src) { copy_host_to_device(data(), src, bytes()); }
    void copy_to_host(T* dst) const { copy_device_to_host(dst, data(), bytes()); }

    bool defined() const { return defined_; }
    const Shape& shape() const { return shape_; }
    int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
    int64_t size(int64_t axis) const {
        const int64_t r = dim();
        if (axis < -r || axis >= r) fail("DeviceTensor::size: axis ", axis, " is out of range for ", shape_str(shape_));
        return shape_[static_cast<size_t>(axis < 0 ? axis + r : axis)];
    }
    int64_t numel() const { return numel_; }
    size_t bytes() const { return static_cast<size_t>(numel_) * sizeof(T); }
    T* data() const { return static_cast<T*>(storage_.get()); }
    const std::shared_ptr<void>& storage() const { return storage_; }

    // The same storage with another shape of the same element count.
    DeviceTensor reshape(const Shape& shape) const {
        require_defined("DeviceTensor::reshape");
        const int64_t n = detail::checked_numel(shape, sizeof(T), "DeviceTensor::reshape");
        check(n == numel_, "DeviceTensor::reshape: ", shape_str(shape_), " (", numel_, " elements) cannot become ",
              shape_str(shape), " (", n, " elements)");
        DeviceTensor t = *this;
        t.shape_ = shape;
        return t;
    }

    void require_defined(const char* what) const {
        if (!defined_) fail(what, ": the DeviceTensor is undefined (default-constructed)");
    }

private:
    std::shared_ptr<void> storage_;
    Shape shape_;
    int64_t numel_ = 0;
    bool defined_ = false;

};

#if !defined(__CUDACC__) && !defined(COEFFNET_EMULATED)
template <class T>
Tensor<float> DeviceTensor<T>::to_host_float() const {
    return to_host().template cast<float>();
}
#endif

}  // namespace coeffnet::cuda
