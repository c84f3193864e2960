// coeffnet/tensor/tensor.hpp: Tensor<T>, a shared handle to strided data plus autograd state.
//
// A Tensor is a view: (storage, shape, strides, offset), where the Storage (core/storage.hpp)
// knows its device. Copying a Tensor copies the handle, not the data (like torch.Tensor). Views
// (reshape, permute, slice, expand) share storage and are differentiable. Element types: float
// and double compute; half_t, bfloat16_t, int64_t, uint8_t and friends are storage types that can
// be created, moved between devices, converted and indexed.
//
// Devices: factories take a Device (default: the CPU); to(Device) moves a tensor; an op runs on
// its inputs' device through that device's backend table (backend/backend.hpp) and throws, naming
// both, when its inputs are on different devices. data() and at() are host pointers and throw on
// any other device; item(), to_vector() and printing copy to the host.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "../autograd/graph.hpp"
#include "../backend/backend.hpp"
#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"
#include "../core/storage.hpp"

namespace coeffnet {

// Calls f(first_row, last_row, offsets) once per chunk of rows, where a row is the last axis of
// `shape` and offsets[k] is operand k's element offset of row `first_row`; f walks the rows of
// its chunk with next_row(). Parallel over chunks of rows.
template <size_t K>
struct RowCursor {
    const Shape* shape;
    const std::array<const Shape*, K>* strides;
    Shape idx;
    std::array<int64_t, K> off{};

    RowCursor(const Shape& s, const std::array<const Shape*, K>& st, int64_t row) : shape(&s), strides(&st) {
        const int64_t r = static_cast<int64_t>(s.size());
        idx.assign(static_cast<size_t>(std::max<int64_t>(r - 1, 0)), 0);
        for (int64_t d = r - 2; d >= 0; --d) {
            const int64_t n = std::max<int64_t>(s[static_cast<size_t>(d)], 1);
            idx[static_cast<size_t>(d)] = row % n;
            row /= n;
        }
        for (size_t k = 0; k < K; ++k)
            for (size_t d = 0; d < idx.size(); ++d) off[k] += idx[d] * (*st[k])[d];
    }
    void next_row() {
        for (size_t d = idx.size(); d-- > 0;) {
            if (++idx[d] < (*shape)[d]) {
                for (size_t k = 0; k < K; ++k) off[k] += (*(*strides)[k])[d];
                return;
            }
            for (size_t k = 0; k < K; ++k) off[k] -= (idx[d] - 1) * (*(*strides)[k])[d];
            idx[d] = 0;
        }
    }
};

// For each row of `shape`: f(offsets, row_len, inner_strides). Rows run in parallel chunks.
template <size_t K, class F>
void for_each_row(const Shape& shape, const std::array<const Shape*, K>& strides, F&& f) {
    const int64_t total = shape_numel(shape);
    if (total == 0) return;
    const int64_t len = shape.empty() ? 1 : shape.back();
    const int64_t rows = total / len;
    std::array<int64_t, K> inner{};
    for (size_t k = 0; k < K; ++k) inner[k] = shape.empty() ? 0 : strides[k]->back();
    parallel_for(rows, len, [&](int64_t r0, int64_t r1) {
        RowCursor<K> cur(shape, strides, r0);
        for (int64_t r = r0; r < r1; ++r) {
            f(cur.off, len, inner);
            if (r + 1 < r1) cur.next_row();
        }
    });
}

// ---- the handle -------------------------------------------------------------------------

template <class T>
class Tensor {
public:
    using value_type = T;

    Tensor() = default;
    explicit Tensor(std::shared_ptr<TensorImpl<T>> impl) : impl_(std::move(impl)) {}

    // Creation, on `device` (default: the CPU). Host data is 64-byte aligned; empty() leaves it
    // uninitialised. Random draws are made on the host (the same Philox stream on every device)
    // and copied.
    static Tensor empty(const Shape& shape, Device device = Device::cpu());
    static Tensor zeros(const Shape& shape, Device device = Device::cpu());
    static Tensor ones(const Shape& shape, Device device = Device::cpu()) {
        return full(shape, convert<T>(1.0f), device);
    }
    static Tensor full(const Shape& shape, T value, Device device = Device::cpu());
    static Tensor from(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
    static Tensor scalar(T value, Device device = Device::cpu()) { return from({value}, {}, device); }
    static Tensor eye(int64_t n, Device device = Device::cpu());
    static Tensor arange(int64_t n, Device device = Device::cpu());
    static Tensor randn(const Shape& shape, Generator& gen, double mean = 0.0, double stddev = 1.0,
                        Device device = Device::cpu());
    static Tensor uniform(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0,
                          Device device = Device::cpu());
    // Wraps memory owned elsewhere (a memory-mapped file, say) without copying; `owner` keeps
    // it alive as long as any view of it.
    static Tensor from_blob(T* data, const Shape& shape, std::shared_ptr<void> owner);

    // Introspection.
    bool defined() const { return static_cast<bool>(impl_); }
    const Shape& shape() const;
    const Shape& strides() const;
    int64_t dim() const { return static_cast<int64_t>(shape().size()); }
    int64_t size(int64_t axis) const;
    int64_t numel() const;
    int64_t offset() const;
    bool is_contiguous() const;
    Device device() const;
    const Storage& storage() const;
    // Element [0, ..., 0] as a host pointer; throws on a tensor that is not on the CPU (copy it
    // with to(Device::cpu()) first).
    T* data() const;
    // Element [0, ..., 0] as an address on the tensor's device: for backends, which know their memory.
    T* device_data() const;
    T& at(std::initializer_list<int64_t> index) const;  // host only, as data()
    T item() const;                                     // copies to the host
    std::vector<T> to_vector() const;                   // row-major order, whatever the strides; host copy
    std::shared_ptr<TensorImpl<T>>& impl() { return impl_; }
    const std::shared_ptr<TensorImpl<T>>& impl() const { return impl_; }

    // Autograd.
    bool requires_grad() const;
    Tensor& set_requires_grad(bool on = true);
    bool is_leaf() const;
    Tensor grad() const;
    void zero_grad() const;  // drops the gradient (like PyTorch's set_to_none)
    std::string grad_fn_name() const;
    // Backpropagates from this tensor: a scalar needs no `grad`; any other shape needs the
    // upstream gradient of its own shape. See autograd/graph.hpp for the semantics.
    void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
    Tensor detach() const;  // same data, no history
    // Keeps this intermediate's gradient in .grad() after backward, accumulating across calls
    // like a leaf's (after this tensor's hooks have run). A no-op on a leaf that requires grad;
    // throws on a tensor that does not require grad.
    void retain_grad() const;
    bool retains_grad() const;  // true for an intermediate after retain_grad(); false for leaves
    // Calls `hook(gradient)` each time backward() or grad() computes the gradient flowing into
    // this tensor (a leaf: the sum over its uses, before it is accumulated into .grad()). A
    // defined return value (same shape) replaces the gradient; hooks run in registration order.
    // Returns an id for remove_hook. Throws on a tensor that does not require grad.
    HookId register_hook(GradHook<T> hook) const;
    bool remove_hook(HookId id) const;  // false when this tensor has no hook with that id

    // Views and copies: differentiable (defined in tensor/views.hpp).
    Tensor reshape(const Shape& shape) const;
    Tensor flatten(int64_t start = 0, int64_t end = -1) const;
    Tensor permute(const Shape& order) const;
    Tensor transpose(int64_t a, int64_t b) const;
    Tensor mT() const { return transpose(-2, -1); }
    Tensor slice(int64_t axis, int64_t start, int64_t end, int64_t step = 1) const;
    Tensor select(int64_t axis, int64_t index) const;
    Tensor unsqueeze(int64_t axis) const;
    Tensor squeeze(int64_t axis) const;
    Tensor expand(const Shape& shape) const;
    Tensor contiguous() const;
    Tensor clone() const;

    // In-place writes, outside autograd (never recorded, like PyTorch's copy_ under no_grad):
    // the storage this tensor views gets src's values (same shape; another element type is a
    // compile error: convert with cast<U>() first) or `value`. Every holder of this tensor
    // sees them: an optimiser built before a load keeps training the loaded values. Throws on an
    // undefined tensor, a shape mismatch, or a destination with aliased elements (an expand()).
    Tensor& copy_(const Tensor& src);
    Tensor& fill_(T value);

    // Element type conversion; a new tensor without history, on the same device.
    template <class U>
    Tensor<U> cast() const;
    // This tensor on `device`: itself when it is there already, else a contiguous copy there.
    // Differentiable: the gradient goes back to this tensor's device.
    Tensor to(Device device) const;

private:
    void require_defined(const char* what) const {
        if (!impl_) fail(what, ": the tensor is undefined (default-constructed)");
    }
    std::shared_ptr<TensorImpl<T>> impl_;
};

template <class T>
struct TensorImpl {
    Storage storage;  // the memory, on its device; element 0 of the view is at offset
    Shape shape, strides;
    int64_t offset = 0;
    bool requires_grad = false;  // for leaves; a tensor with a grad_fn always requires grad
    Tensor<T> grad;
    std::shared_ptr<Node<T>> grad_fn;
    std::unique_ptr<GradHooks<T>> hooks;  // a leaf's gradient hooks (an intermediate's are in its Node)

    ~TensorImpl() {
        if (grad_fn) release_graph(std::move(grad_fn));
    }
};

namespace detail {

template <class T>
Tensor<T> make_tensor(Storage storage, Shape shape, Shape strides, int64_t offset) {
    auto impl = std::make_shared<TensorImpl<T>>();
    impl->storage = std::move(storage);
    impl->shape = std::move(shape);
    impl->strides = std::move(strides);
    impl->offset = offset;
    return Tensor<T>(std::move(impl));
}

// The device an op's defined inputs share (the CPU when none is defined); when two differ, an
// Error names the op and both devices.
template <class... Ts>
Device same_device(const char* op, const Ts&... tensors) {
    Device dev;
    bool seen = false;
    const auto visit = [&](const auto& t) {
        if (!t.defined()) return;
        const Device d = t.device();
        if (!seen) {
            dev = d;
            seen = true;
        } else if (d != dev) {
            fail(op, ": the inputs are on different devices (", dev.str(), " and ", d.str(),
                 "); move them to one with .to(device)");
        }
    };
    (visit(tensors), ...);
    return dev;
}

}  // namespace detail

// ---- recording an op ---------------------------------------------------------------------

// Attaches `backward` to `out` when recording is on and any input requires grad.
// `backward(grad_out, needs)` returns one gradient per input (undefined where !needs[i]);
// it must capture only detached tensors (see Tensor::detach), never `out` itself.
template <class T>
Tensor<T> record(Tensor<T> out, const char* name, const std::vector<Tensor<T>>& inputs, BackwardFn<T> backward) {
    if (!GradMode::enabled()) return out;
    bool any = false;
    for (const auto& in : inputs) any = any || (in.defined() && in.requires_grad());
    if (!any) return out;
    auto node = std::make_shared<Node<T>>();
    node->name = name;
    node->edges.resize(inputs.size());
    node->input_shapes.resize(inputs.size());
    node->needs.resize(inputs.size(), false);
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (!inputs[i].defined()) continue;
        node->input_shapes[i] = inputs[i].shape();
        if (!inputs[i].requires_grad()) continue;
        node->needs[i] = true;
        if (inputs[i].impl()->grad_fn) node->edges[i].node = inputs[i].impl()->grad_fn;
        else node->edges[i].leaf = inputs[i].impl();
    }
    node->backward = std::move(backward);
    out.impl()->grad_fn = std::move(node);
    return out;
}

// ---- simple members -------------------------------------------------------------------

namespace detail {

// Views of raw memory for the backend's Memory calls.
template <class T>
backend::RawView raw_view(const Tensor<T>& t) {
    return {static_cast<void*>(t.device_data()), t.shape(), t.strides()};
}

// `t` (made on the host) on `device`: itself for the CPU.
template <class T>
Tensor<T> host_to(Tensor<T> t, Device device) {
    return device.is_cpu() ? t : t.to(device);
}

}  // namespace detail

template <class T>
Tensor<T> Tensor<T>::empty(const Shape& shape, Device device) {
    const int64_t n = shape_numel(shape, "Tensor::empty");
    check(n <= INT64_MAX / static_cast<int64_t>(sizeof(T)), "Tensor::empty: ", shape_str(shape), " is too large");
    const size_t bytes = static_cast<size_t>(n) * sizeof(T);
    Storage st = device.is_cpu() ? Storage::allocate_host(bytes) : backend::memory(device).allocate(bytes, device);
    return detail::make_tensor<T>(std::move(st), shape, contiguous_strides(shape), 0);
}

template <class T>
Tensor<T> Tensor<T>::zeros(const Shape& shape, Device device) {
    Tensor t = empty(shape, device);
    if (device.is_cpu()) std::memset(static_cast<void*>(t.data()), 0, static_cast<size_t>(t.numel()) * sizeof(T));
    else t.fill_(T{});
    return t;
}

template <class T>
Tensor<T> Tensor<T>::full(const Shape& shape, T value, Device device) {
    Tensor t = empty(shape, device);
    if (device.is_cpu()) std::fill_n(t.data(), t.numel(), value);
    else t.fill_(value);
    return t;
}

template <class T>
Tensor<T> Tensor<T>::from(const std::vector<T>& values, const Shape& shape, Device device) {
    const int64_t n = shape_numel(shape, "Tensor::from");
    check(static_cast<int64_t>(values.size()) == n, "Tensor::from: ", values.size(), " values for shape ",
          shape_str(shape), " (", n, " elements)");
    Tensor t = empty(shape);
    std::copy(values.begin(), values.end(), t.data());
    return detail::host_to(t, device);
}

template <class T>
Tensor<T> Tensor<T>::eye(int64_t n, Device device) {
    Tensor t = zeros({n, n});
    for (int64_t i = 0; i < n; ++i) t.data()[i * n + i] = convert<T>(1.0f);
    return detail::host_to(t, device);
}

template <class T>
Tensor<T> Tensor<T>::arange(int64_t n, Device device) {
    Tensor t = empty({n});
    for (int64_t i = 0; i < n; ++i) t.data()[i] = convert<T>(static_cast<double>(i));
    return detail::host_to(t, device);
}

template <class T>
Tensor<T> Tensor<T>::randn(const Shape& shape, Generator& gen, double mean, double stddev, Device device) {
    Tensor t = empty(shape);
    const int64_t n = t.numel();
    const uint64_t first = gen.reserve(static_cast<uint64_t>(n));  // a block gives four normals
    T* p = t.data();
    for (int64_t b = 0; b * 4 < n; ++b) {
        const Philox4 w = philox_block(gen.seed, first + static_cast<uint64_t>(b));
        const auto z0 = box_muller(w[0], w[1]);
        const auto z1 = box_muller(w[2], w[3]);
        const double z[4] = {z0[0], z0[1], z1[0], z1[1]};
        for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j) p[b * 4 + j] = convert<T>(mean + stddev * z[j]);
    }
    return detail::host_to(t, device);
}

template <class T>
Tensor<T> Tensor<T>::uniform(const Shape& shape, Generator& gen, double lo, double hi, Device device) {
    Tensor t = empty(shape);
    const int64_t n = t.numel();
    const uint64_t first = gen.reserve(static_cast<uint64_t>(n));
    T* p = t.data();
    for_each_draw(gen.seed, first, n, [&](int64_t i, uint32_t w) {
        p[i] = convert<T>(lo + (hi - lo) * static_cast<double>(uniform_from_bits(w)));
    });
    return detail::host_to(t, device);
}

template <class T>
Tensor<T> Tensor<T>::from_blob(T* data, const Shape& shape, std::shared_ptr<void> owner) {
    const int64_t n = shape_numel(shape, "Tensor::from_blob");
    return detail::make_tensor<T>(Storage(std::shared_ptr<void>(std::move(owner), data), static_cast<size_t>(n) * sizeof(T),
                                          Device::cpu()),
                                  shape, contiguous_strides(shape), 0);
}

template <class T>
const Shape& Tensor<T>::shape() const {
    require_defined("Tensor::shape");
    return impl_->shape;
}
template <class T>
const Shape& Tensor<T>::strides() const {
    require_defined("Tensor::strides");
    return impl_->strides;
}
template <class T>
int64_t Tensor<T>::size(int64_t axis) const {
    return shape()[static_cast<size_t>(normalize_axis(axis, dim(), "Tensor::size"))];
}
template <class T>
int64_t Tensor<T>::numel() const {
    return shape_numel(shape());
}
template <class T>
int64_t Tensor<T>::offset() const {
    require_defined("Tensor::offset");
    return impl_->offset;
}
template <class T>
bool Tensor<T>::is_contiguous() const {
    const Shape& s = shape();
    const Shape& st = strides();
    int64_t expect = 1;
    for (size_t i = s.size(); i-- > 0;) {
        if (s[i] != 1 && st[i] != expect) return false;
        expect *= s[i];
    }
    return true;
}
template <class T>
Device Tensor<T>::device() const {
    require_defined("Tensor::device");
    return impl_->storage.device();
}
template <class T>
const Storage& Tensor<T>::storage() const {
    require_defined("Tensor::storage");
    return impl_->storage;
}
template <class T>
T* Tensor<T>::data() const {
    require_defined("Tensor::data");
    if (!impl_->storage.device().is_cpu()) [[unlikely]]
        fail("Tensor::data: the tensor is on ", impl_->storage.device().str(),
             "; data() gives host pointers only: copy it to the host with .to(Device::cpu()) first");
    return static_cast<T*>(impl_->storage.data()) + impl_->offset;
}
template <class T>
T* Tensor<T>::device_data() const {
    require_defined("Tensor::device_data");
    return static_cast<T*>(impl_->storage.data()) + impl_->offset;
}
template <class T>
T& Tensor<T>::at(std::initializer_list<int64_t> index) const {
    check(static_cast<int64_t>(index.size()) == dim(), "Tensor::at: ", index.size(), " indices for a tensor of shape ",
          shape_str(shape()));
    int64_t off = 0, d = 0;
    for (int64_t i : index) {
        const int64_t n = shape()[static_cast<size_t>(d)];
        check(i >= -n && i < n, "Tensor::at: index ", i, " out of range for axis ", d, " of shape ", shape_str(shape()));
        off += (i < 0 ? i + n : i) * strides()[static_cast<size_t>(d)];
        ++d;
    }
    return data()[off];
}
template <class T>
T Tensor<T>::item() const {
    check(numel() == 1, "Tensor::item: needs one element, the tensor has shape ", shape_str(shape()));
    if (!device().is_cpu()) return to(Device::cpu()).item();
    return data()[0];
}
template <class T>
std::vector<T> Tensor<T>::to_vector() const {
    if (!device().is_cpu()) return to(Device::cpu()).to_vector();
    std::vector<T> out(static_cast<size_t>(numel()));
    const Shape cs = contiguous_strides(shape());
    T* dst = out.data();
    const T* src = data();
    for_each_row<2>(shape(), {&cs, &strides()}, [&](const std::array<int64_t, 2>& off, int64_t len,
                                                    const std::array<int64_t, 2>& inner) {
        for (int64_t j = 0; j < len; ++j) dst[off[0] + j] = src[off[1] + j * inner[1]];
    });
    return out;
}

template <class T>
bool Tensor<T>::requires_grad() const {
    require_defined("Tensor::requires_grad");
    return impl_->requires_grad || impl_->grad_fn != nullptr;
}
template <class T>
Tensor<T>& Tensor<T>::set_requires_grad(bool on) {
    require_defined("Tensor::set_requires_grad");
    check(!impl_->grad_fn, "Tensor::set_requires_grad: only leaves can be marked; this tensor is the output of ",
          impl_->grad_fn ? impl_->grad_fn->name : std::string());
    static_assert(is_compute_type_v<T>, "only float and double tensors can require grad");
    impl_->requires_grad = on;
    return *this;
}
template <class T>
bool Tensor<T>::is_leaf() const {
    require_defined("Tensor::is_leaf");
    return !impl_->grad_fn;
}
template <class T>
Tensor<T> Tensor<T>::grad() const {
    require_defined("Tensor::grad");
    return impl_->grad;
}
template <class T>
void Tensor<T>::zero_grad() const {
    require_defined("Tensor::zero_grad");
    impl_->grad = Tensor<T>();
}
template <class T>
std::string Tensor<T>::grad_fn_name() const {
    require_defined("Tensor::grad_fn_name");
    return impl_->grad_fn ? impl_->grad_fn->name : std::string();
}
template <class T>
void Tensor<T>::retain_grad() const {
    require_defined("Tensor::retain_grad");
    check(requires_grad(), "Tensor::retain_grad: the tensor does not require grad, so it never gets a gradient");
    if (!impl_->grad_fn) return;  // a leaf keeps its gradient anyway
    auto& h = impl_->grad_fn->hooks;
    if (!h) h = std::make_unique<GradHooks<T>>();
    h->retain = impl_;
}
template <class T>
bool Tensor<T>::retains_grad() const {
    require_defined("Tensor::retains_grad");
    if (!impl_->grad_fn || !impl_->grad_fn->hooks) return false;
    return impl_->grad_fn->hooks->retain.lock() == impl_;
}
template <class T>
HookId Tensor<T>::register_hook(GradHook<T> hook) const {
    require_defined("Tensor::register_hook");
    check(requires_grad(), "Tensor::register_hook: the tensor does not require grad, so no gradient reaches it");
    check(static_cast<bool>(hook), "Tensor::register_hook: the hook is empty");
    auto& h = impl_->grad_fn ? impl_->grad_fn->hooks : impl_->hooks;
    if (!h) h = std::make_unique<GradHooks<T>>();
    const HookId id = GradHooks<T>::next_id();
    h->hooks.emplace_back(id, std::move(hook));
    return id;
}
template <class T>
bool Tensor<T>::remove_hook(HookId id) const {
    require_defined("Tensor::remove_hook");
    auto& h = impl_->grad_fn ? impl_->grad_fn->hooks : impl_->hooks;
    if (!h) return false;
    auto& list = h->hooks;
    const auto it = std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.first == id; });
    if (it == list.end()) return false;
    list.erase(it);
    return true;
}
template <class T>
Tensor<T> Tensor<T>::detach() const {
    require_defined("Tensor::detach");
    return detail::make_tensor<T>(impl_->storage, impl_->shape, impl_->strides, impl_->offset);
}

template <class T>
template <class U>
Tensor<U> Tensor<T>::cast() const {
    // Off the CPU: converted on the host for now (the backends have no conversion primitive yet).
    if (!device().is_cpu()) return to(Device::cpu()).template cast<U>().to(device());
    Tensor<U> out = Tensor<U>::empty(shape());
    const Tensor<T> src = contiguous().detach();
    const T* s = src.data();
    U* d = out.data();
    parallel_for(src.numel(), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = convert<U>(s[i]);
    });
    return out;
}

}  // namespace coeffnet

// The rest of the Tensor class lives in these files (each includes this one first).
#include "../autograd/engine.hpp"
#include "loops.hpp"
#include "views.hpp"
#include "../backend/cpu.hpp"
