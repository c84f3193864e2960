// A stand-in device for the tests: its memory is host memory that the tensor layer must treat as a
// device's (Tensor::data() refuses it), and its compute table runs the CPU table on host aliases of
// its tensors (the same memory, relabelled as the CPU's for the duration of one primitive).
//
// What it proves without a GPU: an op that still computes outside the table (reads data() of an
// input, allocates on the CPU, loops on the host) throws or leaves a tensor on the wrong device;
// every primitive must receive tensors on the stand-in device (checked), and its results equal the
// CPU's bit for bit. Registered for DeviceKind::emulated for as long as an AliasDevice lives (the
// registry entry before it is restored after), so it never meets the real emulated backend, which
// this test program does not link. Host <-> device transfers are counted at the memory layer.
//
// Every primitive of backend::Ops<T> is forwarded here by hand: a primitive added to the table
// without a line here does not compile (Ops<T> is abstract), which is the point.
#pragma once

#include <atomic>
#include <cstdlib>

#include <coeffnet/coeffnet.hpp>

namespace coeffnet::test {

class AliasMemory final : public backend::Memory {
public:
    mutable std::atomic<int64_t> to_host_calls{0}, from_host_calls{0};
    Storage allocate(size_t nbytes, Device device) const override {
        const Storage h = Storage::allocate_host(nbytes);
        return {h.handle(), nbytes, device};
    }
    void to_host(const Storage& s, size_t o, void* d, size_t n) const override {
        ++to_host_calls;
        backend::cpu_memory().to_host(s, o, d, n);
    }
    void from_host(const void* s, const Storage& d, size_t o, size_t n) const override {
        ++from_host_calls;
        backend::cpu_memory().from_host(s, d, o, n);
    }
    void copy(size_t e, const backend::RawView& d, const backend::RawView& s) const override {
        backend::cpu_memory().copy(e, d, s);
    }
    void fill(size_t e, const backend::RawView& d, const void* v) const override { backend::cpu_memory().fill(e, d, v); }
};

// t relabelled as a CPU tensor over the same memory; a tensor not on the stand-in device is a bug
// in the op that passed it (it computed or allocated elsewhere), reported by throwing.
template <class U>
Tensor<U> host_alias(const Tensor<U>& t) {
    if (!t.defined()) return t;
    check(t.device() == Device::emulated(), "alias backend: a primitive got a tensor on ", t.device().str(),
          " (the op allocated or computed off the device)");
    return detail::make_tensor<U>(Storage(t.storage().handle(), t.storage().nbytes(), Device::cpu()), t.shape(),
                                  t.strides(), t.offset());
}

// The inverse: memory the CPU table allocated, relabelled as the stand-in device's.
template <class U>
Tensor<U> device_alias(const Tensor<U>& t) {
    if (!t.defined()) return t;
    return detail::make_tensor<U>(Storage(t.storage().handle(), t.storage().nbytes(), Device::emulated()), t.shape(),
                                  t.strides(), t.offset());
}

template <class T>
class AliasOps final : public backend::Ops<T> {
    const backend::Ops<T>& c = backend::cpu_ops<T>();
    template <class U>
    static Tensor<U> h(const Tensor<U>& t) {
        return host_alias(t);
    }

public:
    void unary(backend::UnaryOp op, const Tensor<T>& o, const Tensor<T>& x, double k) const override {
        c.unary(op, h(o), h(x), k);
    }
    void unary_backward(backend::UnaryOp op, const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& x,
                        const Tensor<T>& y, double k) const override {
        c.unary_backward(op, h(dx), h(g), h(x), h(y), k);
    }
    void binary(backend::BinaryOp op, const Tensor<T>& o, const Tensor<T>& a, const Tensor<T>& b) const override {
        c.binary(op, h(o), h(a), h(b));
    }
    void sum(const Tensor<T>& o, const Tensor<T>& x, const std::vector<bool>& r, double f) const override {
        c.sum(h(o), h(x), r, f);
    }
    void matmul(const Tensor<T>& o, const Tensor<T>& a, const Tensor<T>& b) const override { c.matmul(h(o), h(a), h(b)); }

    void softmax(const Tensor<T>& o, const Tensor<T>& x, const Tensor<T>& m) const override { c.softmax(h(o), h(x), h(m)); }
    void softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const override {
        c.softmax_backward(h(dx), h(y), h(g));
    }
    void log_softmax(const Tensor<T>& o, const Tensor<T>& x) const override { c.log_softmax(h(o), h(x)); }
    void log_softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const override {
        c.log_softmax_backward(h(dx), h(y), h(g));
    }
    void cross_entropy(const Tensor<T>& loss, const Tensor<T>& probs, const Tensor<T>& logits,
                       const Tensor<int64_t>& targets, int64_t ignore, double denom) const override {
        c.cross_entropy(h(loss), h(probs), h(logits), h(targets), ignore, denom);
    }
    void cross_entropy_backward(const Tensor<T>& dx, const Tensor<T>& probs, const Tensor<int64_t>& targets,
                                const Tensor<T>& g, int64_t ignore, double denom) const override {
        c.cross_entropy_backward(h(dx), h(probs), h(targets), h(g), ignore, denom);
    }
    void layer_norm(const Tensor<T>& y, const Tensor<T>& xhat, const Tensor<T>& rstd, const Tensor<T>& x,
                    const Tensor<T>& w, const Tensor<T>& b, double eps) const override {
        c.layer_norm(h(y), h(xhat), h(rstd), h(x), h(w), h(b), eps);
    }
    void layer_norm_backward(const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& xhat, const Tensor<T>& rstd,
                             const Tensor<T>& w) const override {
        c.layer_norm_backward(h(dx), h(g), h(xhat), h(rstd), h(w));
    }

    void dropout_mask(const Tensor<T>& o, uint64_t s, uint64_t f, double p) const override {
        c.dropout_mask(h(o), s, f, p);
    }
    void embedding(const Tensor<T>& o, const Tensor<int64_t>& i, const Tensor<T>& w) const override {
        c.embedding(h(o), h(i), h(w));
    }
    void embedding_backward(const Tensor<T>& d, const Tensor<int64_t>& i, const Tensor<T>& g) const override {
        c.embedding_backward(h(d), h(i), h(g));
    }
    void max_min(const Tensor<T>& v, const Tensor<int64_t>& i, const Tensor<T>& x, int64_t a, bool m) const override {
        c.max_min(h(v), h(i), h(x), a, m);
    }
    void max_min_backward(const Tensor<T>& d, const Tensor<int64_t>& i, const Tensor<T>& g, int64_t a) const override {
        c.max_min_backward(h(d), h(i), h(g), a);
    }
    void isclose(const Tensor<uint8_t>& o, const Tensor<T>& a, const Tensor<T>& b, double r, double t) const override {
        c.isclose(h(o), h(a), h(b), r, t);
    }

    using typename backend::Ops<T>::AttentionArgs;
    using typename backend::Ops<T>::AttentionSaved;
    using typename backend::Ops<T>::AttentionGrads;
    using typename backend::Ops<T>::AttentionDraw;
    static AttentionArgs h(const AttentionArgs& a) {
        AttentionArgs r = a;
        for (Tensor<T>* t : {&r.q, &r.k, &r.v, &r.alpha_prime, &r.key_mask, &r.attn_mask}) *t = host_alias(*t);
        return r;
    }
    AttentionSaved coeff_attention_forward(const Tensor<T>& out, const AttentionArgs& a) const override {
        AttentionSaved s = c.coeff_attention_forward(h(out), h(a));
        s.lse = device_alias(s.lse);
        return s;
    }
    void coeff_attention_backward(const AttentionGrads& g, const Tensor<T>& dout, const AttentionArgs& a,
                                  const AttentionSaved& saved) const override {
        AttentionGrads gh = g;
        for (Tensor<T>* t : {&gh.dq, &gh.dk, &gh.dv, &gh.dalpha_prime}) *t = host_alias(*t);
        AttentionSaved sh = saved;
        sh.lse = host_alias(sh.lse);
        c.coeff_attention_backward(gh, h(dout), h(a), sh);
    }
    void alpha_prime(const Tensor<T>& o, const Tensor<T>& alpha, const AttentionDraw& d, bool residual) const override {
        c.alpha_prime(h(o), h(alpha), d, residual);
    }
    void alpha_prime_backward(const Tensor<T>& d, const Tensor<T>& g, const AttentionDraw& draw) const override {
        c.alpha_prime_backward(h(d), h(g), draw);
    }

    void sgd_step(const Tensor<T>& p, const Tensor<T>& g, const Tensor<T>& b, T lr, T wd, T mu, T damp, bool first,
                  bool nest) const override {
        c.sgd_step(h(p), h(g), h(b), lr, wd, mu, damp, first, nest);
    }
    void adamw_step(const Tensor<T>& p, const Tensor<T>& g, const Tensor<T>& m, const Tensor<T>& v, T d, T b1, T b2,
                    T ss, T bc, T e) const override {
        c.adamw_step(h(p), h(g), h(m), h(v), d, b1, b2, ss, bc, e);
    }
    void add_squares(const Tensor<double>& acc, const Tensor<T>& x) const override { c.add_squares(h(acc), h(x)); }
};

// Registers the stand-in for DeviceKind::emulated while it lives.
struct AliasDevice {
    AliasMemory memory;
    AliasOps<float> f32;
    AliasOps<double> f64;
    backend::Entry saved = backend::registry[backend::kind_index(DeviceKind::emulated)];
    AliasDevice() { backend::register_backend(DeviceKind::emulated, {&memory, &f32, &f64}); }
    ~AliasDevice() { backend::register_backend(DeviceKind::emulated, saved); }
    AliasDevice(const AliasDevice&) = delete;
    AliasDevice& operator=(const AliasDevice&) = delete;
    int64_t transfers() const { return memory.to_host_calls + memory.from_host_calls; }
};

}  // namespace coeffnet::test
