// coeffnet/backend/backend.hpp: the backend table, the layer below record() where every op's
// arithmetic runs on the device its tensors live on.
//
//   op (ops/*.hpp)        checks shapes and devices, allocates the output on the inputs' device,
//                         calls the table, records the backward (written once, against tensor ops)
//   backend::ops<T>(dev)  the device's table of primitives: Ops<T> below
//   backend::memory(dev)  the device's memory: allocate, copy to and from the host, strided copy
//                         and fill of any element size
//
// One table per device kind. The CPU's (backend/cpu.hpp) is header-only and always present; other
// kinds are filled in at run time by their libraries (register_backend), because a static library
// cannot register itself from an object nothing references. The registry is an inline variable of
// plain pointers, constant-initialised (no static-initialisation order to get wrong); asking for a
// device whose table is not registered throws an Error that names what to link and call.
//
// Element types: Memory is untyped (every Tensor<T> can be created, moved and copied on every
// device). Ops<T> exists for the compute types, float and double.
//
// Lower precisions (the decision, not yet built): bfloat16_t and half_t will compute as
// Tensor<bfloat16_t> / Tensor<half_t>, statically typed like float and double, through an
// Ops<bfloat16_t> table that a backend may provide or not: capabilities(dev) (below) reports which
// element types a device computes, and an op on a type the device lacks throws naming both. The CPU would
// compute them by converting to float per tile (accumulating in float), the CUDA table with its
// existing bf16/fp16 kernels. A dynamic dtype (one Tensor class, the type a run-time tag) was
// rejected: every op would switch on the tag, autograd's typed graph (Node<T>) would become
// untyped, and the float/double code that exists would gain nothing. Only fp32/fp64 compute now.
//
// Primitives and their contracts (out is allocated by the caller, on the same device, with the
// shape the op computed, contiguous unless a primitive says otherwise; inputs are strided views,
// read in place). Each primitive's comment in Ops<T> below is its contract; in short:
//   unary(op, out, x, c) / unary_backward   out = f_op(x; c); dx = g * f_op'(x, y; c)
//   binary(op, out, a, b)                    out = a op b, NumPy broadcasting (out may alias a
//                                            when a has out's shape: in-place accumulation)
//   sum(out, x, reduce, factor)              sums over axes (acc_t<T> accumulation), kept as size 1
//   matmul(out, a, b)                        batched, broadcast batch axes, any strides
//   softmax, log_softmax, cross_entropy,     over the last axis, each with its backward; the
//   layer_norm                               forward returns what its backward reads (outputs or
//                                            xhat and rstd) through caller-allocated tensors
//   dropout_mask, embedding, max_min,        dropout masks from a Philox counter the op reserved on
//   isclose                                  the host (seed, first block), so every device draws
//                                            the same mask; gather/scatter-add; values + indices
//   coeff_attention_forward / _backward      fused coefficient attention (never the B*H*N*M maps),
//   alpha_prime / _backward                  the forward returning its saved state (row log-sum-exp)
//   sgd_step, adamw_step, add_squares        optimiser updates in place; clipping's sum of squares
// An op that reads values back to decide something (cross_entropy's and embedding's index checks,
// clipping's norm) copies them to the host through Memory; nothing else crosses.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/storage.hpp"
#include "../ops/coeff_spec.hpp"

namespace coeffnet {

template <class T>
class Tensor;

namespace backend {

// ---- op codes -------------------------------------------------------------------------------

// Pointwise functions; c is the op's scalar (unused by most). The formulas: backend/pointwise.hpp.
enum class UnaryOp : uint8_t {
    neg,
    scale,         // v * T(c)
    scale_double,  // T(v * c): the product taken in double (mean's factor)
    add_scalar,    // v + c
    rsub_scalar,   // c - v
    rdiv_scalar,   // c / v
    exp,
    log,
    sqrt,
    square,
    tanh,
    sigmoid,
    relu,
    silu,
    gelu,       // x Phi(x)
    gelu_tanh,  // the tanh approximation
    count_
};

enum class BinaryOp : uint8_t {
    add,
    sub,
    mul,
    div,
    neg_div_square,  // -a / (b * b): d(a/b)/db without the upstream factor
    count_
};

inline const char* name(UnaryOp op) {
    static constexpr std::array<const char*, static_cast<size_t>(UnaryOp::count_)> names = {
        "neg", "scale", "scale_double", "add_scalar", "rsub_scalar", "rdiv_scalar", "exp", "log",
        "sqrt", "square", "tanh", "sigmoid", "relu", "silu", "gelu", "gelu_tanh"};
    return names[static_cast<size_t>(op)];
}

inline const char* name(BinaryOp op) {
    static constexpr std::array<const char*, static_cast<size_t>(BinaryOp::count_)> names = {
        "add", "sub", "mul", "div", "neg_div_square"};
    return names[static_cast<size_t>(op)];
}

// ---- the tables ------------------------------------------------------------------------------

// A strided view of raw memory on some device: element (i0, i1, ...) of the view is at
// data + elem_size * sum(i_k * strides[k]).
struct RawView {
    void* data;
    const Shape& shape;
    const Shape& strides;
};

// A device's memory, whatever the element type.
class Memory {
public:
    virtual ~Memory() = default;
    virtual Storage allocate(size_t nbytes, Device device) const = 0;
    // nbytes between host memory and `storage` at byte offset `offset` (a contiguous range).
    virtual void to_host(const Storage& src, size_t offset, void* dst, size_t nbytes) const = 0;
    virtual void from_host(const void* src, const Storage& dst, size_t offset, size_t nbytes) const = 0;
    // dst = src elementwise (same shape, elements of elem_size bytes, both on this device). Where dst
    // and src overlap, the caller copies src first.
    virtual void copy(size_t elem_size, const RawView& dst, const RawView& src) const = 0;
    // Every element of dst = the elem_size bytes at `value` (a host address).
    virtual void fill(size_t elem_size, const RawView& dst, const void* value) const = 0;
    // Waits for the device's queued work (a no-op on the CPU).
    virtual void synchronize(Device) const {}
};

// A device's arithmetic for element type T (float, double). Contracts: the header comment.
template <class T>
class Ops {
public:
    virtual ~Ops() = default;
    virtual void unary(UnaryOp op, const Tensor<T>& out, const Tensor<T>& x, double c) const = 0;
    virtual void unary_backward(UnaryOp op, const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& x,
                                const Tensor<T>& y, double c) const = 0;
    virtual void binary(BinaryOp op, const Tensor<T>& out, const Tensor<T>& a, const Tensor<T>& b) const = 0;
    virtual void sum(const Tensor<T>& out, const Tensor<T>& x, const std::vector<bool>& reduce,
                     double factor) const = 0;
    virtual void matmul(const Tensor<T>& out, const Tensor<T>& a, const Tensor<T>& b) const = 0;

    // ---- softmax, log-softmax, cross-entropy, layer norm ----
    // Over the last axis (rows); row sums accumulate in acc_t<T>; outputs contiguous, of the shapes below.

    // out = softmax(x + mask) per row (max-subtracted), out of x's shape; mask undefined or broadcast
    // to x's shape (a constant); a row whose every entry is -inf gives zeros.
    virtual void softmax(const Tensor<T>& out, const Tensor<T>& x, const Tensor<T>& mask) const = 0;
    // dx = y * (g - rowsum(g * y)), y a softmax output and g the upstream gradient, all of one shape.
    virtual void softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const = 0;
    // out = x - logsumexp(x) per row (max-subtracted), out of x's shape.
    virtual void log_softmax(const Tensor<T>& out, const Tensor<T>& x) const = 0;
    // dx = g - exp(y) * rowsum(g), y the log-softmax output, all of one shape.
    virtual void log_softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const = 0;
    // probs [..., C] = softmax(logits); loss (0-d) = sum over rows with targets [...] != ignore_index of
    // (logsumexp - logits[target]) in row order, / denom. Targets are in range (the op checks).
    virtual void cross_entropy(const Tensor<T>& loss, const Tensor<T>& probs, const Tensor<T>& logits,
                               const Tensor<int64_t>& targets, int64_t ignore_index, double denom) const = 0;
    // dx [..., C] = (probs - onehot(target)) * (g / denom) on rows not ignored, 0 on ignored rows; g the
    // 0-d upstream gradient (read on the device), the scale 0 when denom is 0.
    virtual void cross_entropy_backward(const Tensor<T>& dx, const Tensor<T>& probs, const Tensor<int64_t>& targets,
                                        const Tensor<T>& g, int64_t ignore_index, double denom) const = 0;
    // x [..., C]: xhat = (x - mean) * rstd, rstd [rows] = 1 / sqrt(var + eps) (two passes), y = xhat * weight
    // + bias; weight and bias [C] or undefined. y and xhat of x's shape; xhat and rstd are the backward's.
    virtual void layer_norm(const Tensor<T>& y, const Tensor<T>& xhat, const Tensor<T>& rstd, const Tensor<T>& x,
                            const Tensor<T>& weight, const Tensor<T>& bias, double eps) const = 0;
    // dx = rstd * (d - mean(d) - xhat * mean(d * xhat)) per row, d = g * weight (g when weight is
    // undefined); xhat and rstd from layer_norm. (dweight and dbias are tensor ops: sums of g * xhat, g.)
    virtual void layer_norm_backward(const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& xhat,
                                     const Tensor<T>& rstd, const Tensor<T>& weight) const = 0;

    // ---- dropout masks, embedding, max/min along an axis ----

    // out (contiguous) = the inverted-dropout multiplier of element i: 1/(1-p) where the i-th word
    // of Philox(seed) from block first_block, as uniform_from_bits, is >= float(p), else 0 (p = 1: 0).
    virtual void dropout_mask(const Tensor<T>& out, uint64_t seed, uint64_t first_block, double p) const = 0;
    // out [..., D] (contiguous) row i = weight [V, D] row indices[i], indices in their logical order
    // (the op has checked them against V); weight any strides.
    virtual void embedding(const Tensor<T>& out, const Tensor<int64_t>& indices, const Tensor<T>& weight) const = 0;
    // dweight [V, D] (contiguous, zeroed by the op) row indices[i] += g [..., D] row i, i ascending (a
    // repeated index adds in that order).
    virtual void embedding_backward(const Tensor<T>& dweight, const Tensor<int64_t>& indices,
                                    const Tensor<T>& g) const = 0;
    // Along axis `axis` (normalised) of x: indices = the position of the largest (want_max) or
    // smallest element of each slice (ties: the first; a NaN beats every number: the first NaN) and
    // values (undefined: not wanted) = that element; both contiguous, x's shape without the axis.
    virtual void max_min(const Tensor<T>& values, const Tensor<int64_t>& indices, const Tensor<T>& x, int64_t axis,
                         bool want_max) const = 0;
    // dx (x's shape, contiguous, zeroed by the op) at position indices[k] along `axis` of slice k
    // += g[k]: max_min's values' gradient.
    virtual void max_min_backward(const Tensor<T>& dx, const Tensor<int64_t>& indices, const Tensor<T>& g,
                                  int64_t axis) const = 0;
    // out (uint8, contiguous) = 1 where |a - b| <= atol + rtol |b| in double (a NaN: 0; equal
    // infinities: 1), else 0; a and b broadcast to out's shape.
    virtual void isclose(const Tensor<uint8_t>& out, const Tensor<T>& a, const Tensor<T>& b, double rtol,
                         double atol) const = 0;

    // ---- coefficient attention ----
    // (The rules these follow are ops/coeff_spec.hpp's; the ops are in ops/attention.hpp.)

    // A dropout draw the op reserved on the host (coeff::reserve_dropout): multiplier i is `keep`
    // where word i of Philox(seed) from block first_block keeps, else 0; every one is 1 when !on.
    using AttentionDraw = DropoutDraw<T>;

    // What fused attention reads besides the upstream gradient: its inputs (views on one device,
    // read in place) and the op's resolved options.
    struct AttentionArgs {
        Tensor<T> q, k, v;      // [B, H, N, d], [B, H, M, d], [B, H, M, dv]
        Tensor<T> alpha_prime;  // [H, H], row = target head; undefined: plain attention (Phat = P)
        Tensor<T> key_mask;     // [B, M], nonzero = token; may be undefined
        Tensor<T> attn_mask;    // additive, broadcasts to [B, H, N, M]; may be undefined
        T scale = T(1);         // the score scale (coeff::score_scale)
        bool causal = false;    // query n sees the keys m < coeff::causal_key_end(n, N, M)
        AttentionDraw drop;     // Phat's dropout: element [b, h, n, m] uses word ((b*H + h)*N + n)*M + m
        int64_t block_q = 0;    // the CPU's query rows per tile (0: its rule; TiledConfig); others ignore it
    };

    // What the forward returns for its backward, allocated by the backend on the inputs' device.
    struct AttentionSaved {
        Tensor<T> lse;        // [B, H, N]: log-sum-exp of each masked score row (-inf: no visible key)
        int64_t block_q = 0;  // the CPU's tile height as the forward chose it (the backward reuses it)
    };

    // The backward's outputs: allocated by the caller, contiguous, each the shape of its input
    // (dalpha_prime [H, H]); an undefined one is not computed.
    struct AttentionGrads {
        Tensor<T> dq, dk, dv, dalpha_prime;
    };

    // Fused (coefficient) attention, never forming the [B, H, N, M] maps: out [B, H, N, dv] (contiguous)
    // = Dropout(alpha' P) V, P_i = softmax(scale Q_i K_i^T + masks), zeros for a row with no visible key.
    virtual AttentionSaved coeff_attention_forward(const Tensor<T>& out, const AttentionArgs& a) const = 0;
    // Its gradients, from dout [B, H, N, dv] (contiguous) and the forward's args and saved state.
    virtual void coeff_attention_backward(const AttentionGrads& g, const Tensor<T>& dout, const AttentionArgs& a,
                                          const AttentionSaved& saved) const = 0;
    // out [H, H] (contiguous) = alpha' of alpha [H, H], element h*H + i = coeff::alpha_prime_element:
    // (h == i) + alpha * multiplier with residual, alpha * multiplier without.
    virtual void alpha_prime(const Tensor<T>& out, const Tensor<T>& alpha, const AttentionDraw& draw,
                             bool residual) const = 0;
    // dalpha [H, H] (contiguous) = g [H, H] * the draw's multipliers (alpha' = I + alpha * multiplier).
    virtual void alpha_prime_backward(const Tensor<T>& dalpha, const Tensor<T>& g, const AttentionDraw& draw) const = 0;

    // ---- optimiser steps ----

    // One SGD step on one parameter, in place, elementwise (p, grad, buf contiguous, one shape):
    // s = grad + wd p; with buf defined, buf = first ? s : mu buf + damp s, s = nesterov ? s + mu buf
    // : buf; p -= lr s.
    virtual void sgd_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& buf, T lr, T wd, T mu,
                          T damp, bool first, bool nesterov) const = 0;
    // One AdamW step on one parameter, in place, elementwise (all contiguous, one shape): p *= decay;
    // m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g; p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
    virtual void adamw_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& m, const Tensor<T>& v,
                            T decay, T b1, T b2, T step_size, T bc2_sqrt, T eps) const = 0;
    // acc (a double scalar on x's device) += the sum of double(x)^2 over x's elements, one running
    // sum in x's logical order: gradient-norm clipping's norm.
    virtual void add_squares(const Tensor<double>& acc, const Tensor<T>& x) const = 0;
};

// What a device's tables are: its memory, and the element types it computes.
struct Entry {
    const Memory* memory = nullptr;
    const Ops<float>* f32 = nullptr;
    const Ops<double>* f64 = nullptr;
};

// One entry per DeviceKind; the CPU's is filled in by backend/cpu.hpp on first use. Zero-initialised
// (constant initialisation): register_backend may run from any static initialiser.
inline std::array<Entry, 3> registry{};

inline constexpr size_t kind_index(DeviceKind k) { return static_cast<size_t>(k); }

// Installs (or replaces) a device kind's tables: a backend library's init() calls this.
inline void register_backend(DeviceKind kind, Entry entry) { registry[kind_index(kind)] = entry; }

// What a program must do to use `d`: named in the error for a device with no table. The tables of
// the CUDA and emulated backends are not written yet (their kernels are: the CUDA backend's own API
// is include/coeffnet/cuda/), so for now the message says that too.
inline std::string how_to_link(Device d) {
    switch (d.kind) {
        case DeviceKind::cuda:
            return "the CUDA backend (the CMake target coeffnet::cuda, COEFFNET_CUDA=ON) registers its table "
                   "with register_backend(); this version's coeffnet::cuda has no tensor table yet, so use its "
                   "own API (coeffnet/cuda/launchers.hpp, DeviceTensor) for GPU work";
        case DeviceKind::emulated:
            return "the emulated GPU's table (the emulator library coeffnet_emulated, tests only) registers "
                   "itself with register_backend(); this version has none yet";
        case DeviceKind::cpu: break;
    }
    return "the CPU backend is header-only and always present";
}

// The CPU's tables (backend/cpu.hpp defines these).
const Memory& cpu_memory();
template <class T>
const Ops<T>& cpu_ops();

[[noreturn]] inline void not_linked(Device d, const char* what) {
    fail("device ", d.str(), ": no ", what, " backend is registered for it in this program: ", how_to_link(d));
}

inline const Memory& memory(Device d) {
    if (d.is_cpu()) return cpu_memory();
    const Memory* m = registry[kind_index(d.kind)].memory;
    if (!m) not_linked(d, "memory");
    return *m;
}

// What a device's table computes (fp32/fp64 today; bf16/fp16 when a table provides them, see the
// lower-precision note at the top). Nothing registered: every field false, except on the CPU.
struct Capabilities {
    bool memory = false;  // tensors of any element type can live there and move there
    bool f32 = false, f64 = false;
    bool bf16 = false, f16 = false;  // no table computes these yet
};

inline Capabilities capabilities(Device d) {
    if (d.is_cpu()) return {true, true, true, false, false};
    const Entry& e = registry[kind_index(d.kind)];
    return {e.memory != nullptr, e.f32 != nullptr, e.f64 != nullptr, false, false};
}

template <class T>
const Ops<T>& ops(Device d) {
    static_assert(is_compute_type_v<T>, "backend::ops<T>: float and double compute (see the lower-precision note)");
    if (d.is_cpu()) return cpu_ops<T>();
    const Entry& e = registry[kind_index(d.kind)];
    const Ops<T>* o;
    if constexpr (std::is_same_v<T, float>) o = e.f32;
    else o = e.f64;
    if (!o) {
        if (!e.memory) not_linked(d, "compute");
        fail("device ", d.str(), ": its backend does not compute ", dtype_name<T>(), " tensors");
    }
    return *o;
}

}  // namespace backend
}  // namespace coeffnet
