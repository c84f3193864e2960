// coeffnet/backend/cpu.hpp: the CPU table, header-only. Memory is 64-byte aligned host memory;
// loops run in parallel chunks (core/parallel.hpp, OpenMP when enabled); GEMMs are Eigen's
// (backend/cpu_gemm.hpp). Part of tensor.hpp, which includes this file at its end.
#include "../tensor/tensor.hpp"
#ifndef COEFFNET_BACKEND_CPU_HPP
#define COEFFNET_BACKEND_CPU_HPP

#include <algorithm>
#include <cstring>

#include "backend.hpp"
#include "cpu_attention.hpp"
#include "cpu_gemm.hpp"
#include "cpu_misc.hpp"
#include "cpu_norm.hpp"
#include "pointwise.hpp"

namespace coeffnet::backend {

namespace cpu_detail {

// Calls f(uintN_t{}) with the unsigned type of elem_size bytes (1, 2, 4 or 8); 0 for other sizes.
template <class F>
bool with_word(size_t elem_size, F&& f) {
    switch (elem_size) {
        case 1: f(uint8_t{}); return true;
        case 2: f(uint16_t{}); return true;
        case 4: f(uint32_t{}); return true;
        case 8: f(uint64_t{}); return true;
        default: return false;
    }
}

}  // namespace cpu_detail

class CpuMemory final : public Memory {
public:
    Storage allocate(size_t nbytes, Device) const override { return Storage::allocate_host(nbytes); }
    void to_host(const Storage& src, size_t offset, void* dst, size_t nbytes) const override {
        if (nbytes) std::memcpy(dst, static_cast<const char*>(src.data()) + offset, nbytes);
    }
    void from_host(const void* src, const Storage& dst, size_t offset, size_t nbytes) const override {
        if (nbytes) std::memcpy(static_cast<char*>(dst.data()) + offset, src, nbytes);
    }
    void copy(size_t elem_size, const RawView& dst, const RawView& src) const override {
        const bool ok = cpu_detail::with_word(elem_size, [&](auto word) {
            using W = decltype(word);
            W* d = static_cast<W*>(dst.data);
            const W* s = static_cast<const W*>(src.data);
            for_each_row<2>(dst.shape, {&dst.strides, &src.strides},
                            [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& in) {
                                W* dr = d + off[0];
                                const W* sr = s + off[1];
                                if (in[0] == 1 && in[1] == 1) std::copy_n(sr, len, dr);
                                else if (in[0] == 1)  // a contiguous destination row: the common gather
                                    for (int64_t j = 0; j < len; ++j) dr[j] = sr[j * in[1]];
                                else
                                    for (int64_t j = 0; j < len; ++j) dr[j * in[0]] = sr[j * in[1]];
                            });
        });
        if (!ok) {
            char* d = static_cast<char*>(dst.data);
            const char* s = static_cast<const char*>(src.data);
            const auto e = static_cast<int64_t>(elem_size);
            for_each_row<2>(dst.shape, {&dst.strides, &src.strides},
                            [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& in) {
                                for (int64_t j = 0; j < len; ++j)
                                    std::memcpy(d + (off[0] + j * in[0]) * e, s + (off[1] + j * in[1]) * e, elem_size);
                            });
        }
    }
    void fill(size_t elem_size, const RawView& dst, const void* value) const override {
        const bool ok = cpu_detail::with_word(elem_size, [&](auto word) {
            using W = decltype(word);
            W v;
            std::memcpy(&v, value, sizeof(W));
            W* d = static_cast<W*>(dst.data);
            for_each_row<1>(dst.shape, {&dst.strides},
                            [&](const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& in) {
                                for (int64_t j = 0; j < len; ++j) d[off[0] + j * in[0]] = v;
                            });
        });
        if (!ok) {
            char* d = static_cast<char*>(dst.data);
            const auto e = static_cast<int64_t>(elem_size);
            for_each_row<1>(dst.shape, {&dst.strides},
                            [&](const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& in) {
                                for (int64_t j = 0; j < len; ++j) std::memcpy(d + (off[0] + j * in[0]) * e, value, elem_size);
                            });
        }
    }
};

template <class T>
class CpuOps final : public Ops<T> {
public:
    void unary(UnaryOp op, const Tensor<T>& out, const Tensor<T>& x, double c) const override {
        const Tensor<T> xc = detail::as_contiguous(x);
        const T* s = xc.data();
        T* d = out.data();
        with_unary(op, [&](auto code) {
            constexpr UnaryOp k = decltype(code)::value;
            const auto cc = unary_scalar<k, T>(c);
            parallel_for(out.numel(), 8, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) d[i] = Unary<k>::f(s[i], cc);
            });
        });
    }

    void unary_backward(UnaryOp op, const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y,
                        double c) const override {
        const Tensor<T> xc = detail::as_contiguous(x), yc = detail::as_contiguous(y), gc = detail::as_contiguous(g);
        const T *px = xc.data(), *py = yc.data(), *pg = gc.data();
        T* pd = dx.data();
        with_unary(op, [&](auto code) {
            constexpr UnaryOp k = decltype(code)::value;
            const auto cc = unary_scalar<k, T>(c);
            parallel_for(dx.numel(), 8, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) pd[i] = pg[i] * Unary<k>::df(px[i], py[i], cc);
            });
        });
    }

    void binary(BinaryOp op, const Tensor<T>& out, const Tensor<T>& a, const Tensor<T>& b) const override {
        with_binary(op, [&](auto code) {
            using F = Binary<decltype(code)::value>;
            const Shape& shape = out.shape();
            T* d = out.data();
            const T* pa = a.data();
            const T* pb = b.data();
            if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
                parallel_for(out.numel(), 4, [&](int64_t lo, int64_t hi) {
                    for (int64_t i = lo; i < hi; ++i) d[i] = F::f(pa[i], pb[i]);
                });
                return;
            }
            const Shape sa = broadcast_strides(a.shape(), a.strides(), shape);
            const Shape sb = broadcast_strides(b.shape(), b.strides(), shape);
            for_each_row<3>(shape, {&out.strides(), &sa, &sb},
                            [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& in) {
                                T* dr = d + off[0];
                                const T* ar = pa + off[1];
                                const T* br = pb + off[2];
                                if (in[0] == 1 && in[1] == 1 && in[2] == 1) {  // rows of unit stride: vectorised
                                    for (int64_t j = 0; j < len; ++j) dr[j] = F::f(ar[j], br[j]);
                                } else if (in[0] == 1) {  // a contiguous output row, strided inputs
                                    for (int64_t j = 0; j < len; ++j) dr[j] = F::f(ar[j * in[1]], br[j * in[2]]);
                                } else {
                                    for (int64_t j = 0; j < len; ++j) dr[j * in[0]] = F::f(ar[j * in[1]], br[j * in[2]]);
                                }
                            });
        });
    }

    // Splits the axes into a kept block and a reduced block: when the reduced axes are a suffix
    // (rows) or a prefix (columns) of a contiguous x, no reordering copy is needed.
    void sum(const Tensor<T>& out, const Tensor<T>& x, const std::vector<bool>& reduce, double factor) const override {
        using A = acc_t<T>;
        if (out.numel() == 0) return;
        const Shape& s = x.shape();
        const size_t r = s.size();
        size_t first_reduced = r, last_kept = 0;
        bool any_kept = false;
        for (size_t i = 0; i < r; ++i) {
            if (reduce[i] && s[i] != 1) first_reduced = std::min(first_reduced, i);
            if (!reduce[i] && s[i] != 1) {
                last_kept = i;
                any_kept = true;
            }
        }
        const bool suffix = !any_kept || first_reduced > last_kept;
        size_t last_reduced = 0, first_kept = r;
        bool any_reduced = false;
        for (size_t i = 0; i < r; ++i) {
            if (reduce[i] && s[i] != 1) {
                last_reduced = i;
                any_reduced = true;
            }
            if (!reduce[i] && s[i] != 1) first_kept = std::min(first_kept, i);
        }
        const bool prefix = !any_reduced || last_reduced < first_kept;
        const int64_t kept = out.numel();
        const int64_t red = x.numel() / kept;
        T* o = out.data();
        // The sum rounded to T, then scaled (in double) and rounded again: mean's two roundings.
        const auto store = [factor](A acc) {
            const T v = static_cast<T>(acc);
            return factor == 1.0 ? v : static_cast<T>(v * factor);
        };

        if (prefix && !suffix) {  // columns: out[c] = sum_r x[r, c]
            const Tensor<T> xc = detail::as_contiguous(x);
            const T* p = xc.data();
            parallel_for(kept, red, [&](int64_t c0, int64_t c1) {
                std::vector<A> acc(static_cast<size_t>(c1 - c0), A(0));
                for (int64_t row = 0; row < red; ++row) {
                    const T* src = p + row * kept;
                    for (int64_t c = c0; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += static_cast<A>(src[c]);
                }
                for (int64_t c = c0; c < c1; ++c) o[c] = store(acc[static_cast<size_t>(c - c0)]);
            });
            return;
        }
        Tensor<T> xc;
        if (suffix) {
            xc = detail::as_contiguous(x);
        } else {  // move the reduced axes last, then sum rows
            Shape order;
            for (size_t i = 0; i < r; ++i)
                if (!reduce[i]) order.push_back(static_cast<int64_t>(i));
            for (size_t i = 0; i < r; ++i)
                if (reduce[i]) order.push_back(static_cast<int64_t>(i));
            Shape ps(r), pst(r);
            for (size_t i = 0; i < r; ++i) {
                ps[i] = s[static_cast<size_t>(order[i])];
                pst[i] = x.strides()[static_cast<size_t>(order[i])];
            }
            xc = detail::contiguous_copy(detail::view_of(x, ps, pst, x.offset()));
        }
        const T* p = xc.data();
        parallel_for(kept, red, [&](int64_t k0, int64_t k1) {
            for (int64_t k = k0; k < k1; ++k) {
                A acc(0);
                const T* src = p + k * red;
                COEFFNET_SIMD_REDUCE(+, acc)
                for (int64_t j = 0; j < red; ++j) acc += static_cast<A>(src[j]);
                o[k] = store(acc);
            }
        });
    }

    // Batched C[i] = A[i] B[i]: one GEMM when the batch axes of a fold into its rows (b shared),
    // else one per batch item, in parallel when there are enough items (else each threaded by Eigen).
    void matmul(const Tensor<T>& out, const Tensor<T>& a, const Tensor<T>& b) const override {
        if (out.numel() == 0) return;
        const Shape& as = a.shape();
        const Shape& bs = b.shape();
        const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
        const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
        const Shape batch(out.shape().begin(), out.shape().end() - 2);
        if (bbatch.empty() || shape_numel(bbatch) == 1) {
            const Shape& ast = a.strides();
            bool foldable = true;
            int64_t expect = ast[as.size() - 2];
            for (size_t i = as.size() - 2; i-- > 0;) {
                expect *= as[i + 1];
                if (as[i] != 1 && ast[i] != expect) foldable = false;
            }
            if (foldable && (ast.back() == 1 || K == 1)) {
                const detail::MatRef<T> ar{a.data(), shape_numel(abatch) * M, K, ast[as.size() - 2], 1};
                detail::gemm(ar, last_two(b, 0), out.data());
                return;
            }
        }
        const int64_t nb = shape_numel(batch);
        const Shape sa = broadcast_strides(abatch, Shape(a.strides().begin(), a.strides().end() - 2), batch);
        const Shape sb = broadcast_strides(bbatch, Shape(b.strides().begin(), b.strides().end() - 2), batch);
        T* o = out.data();
        auto run = [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                int64_t rem = i, oa = 0, ob = 0;
                for (size_t d = batch.size(); d-- > 0;) {
                    const int64_t idx = rem % batch[d];
                    rem /= batch[d];
                    oa += idx * sa[d];
                    ob += idx * sb[d];
                }
                detail::gemm(last_two(a, oa), last_two(b, ob), o + i * M * N);
            }
        };
        if (nb >= 2 * num_threads() || M * N * K < (1 << 18)) parallel_for(nb, M * N * K, run);
        else run(0, nb);
    }

    // ---- softmax, log-softmax, cross-entropy, layer norm ----
    // The loops: backend/cpu_norm.hpp.

    void softmax(const Tensor<T>& out, const Tensor<T>& x, const Tensor<T>& mask) const override {
        cpu_impl::softmax(out, x, mask);
    }
    void softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const override {
        cpu_impl::softmax_backward(dx, y, g);
    }
    void log_softmax(const Tensor<T>& out, const Tensor<T>& x) const override { cpu_impl::log_softmax(out, x); }
    void log_softmax_backward(const Tensor<T>& dx, const Tensor<T>& y, const Tensor<T>& g) const override {
        cpu_impl::log_softmax_backward(dx, y, g);
    }
    void cross_entropy(const Tensor<T>& loss, const Tensor<T>& probs, const Tensor<T>& logits,
                       const Tensor<int64_t>& targets, int64_t ignore_index, double denom) const override {
        cpu_impl::cross_entropy(loss, probs, logits, targets, ignore_index, denom);
    }
    void cross_entropy_backward(const Tensor<T>& dx, const Tensor<T>& probs, const Tensor<int64_t>& targets,
                                const Tensor<T>& g, int64_t ignore_index, double denom) const override {
        cpu_impl::cross_entropy_backward(dx, probs, targets, g, ignore_index, denom);
    }
    void layer_norm(const Tensor<T>& y, const Tensor<T>& xhat, const Tensor<T>& rstd, const Tensor<T>& x,
                    const Tensor<T>& weight, const Tensor<T>& bias, double eps) const override {
        cpu_impl::layer_norm(y, xhat, rstd, x, weight, bias, eps);
    }
    void layer_norm_backward(const Tensor<T>& dx, const Tensor<T>& g, const Tensor<T>& xhat, const Tensor<T>& rstd,
                             const Tensor<T>& weight) const override {
        cpu_impl::layer_norm_backward(dx, g, xhat, rstd, weight);
    }

    // ---- dropout masks, embedding, max/min along an axis ----

    void dropout_mask(const Tensor<T>& out, uint64_t seed, uint64_t first_block, double p) const override {
        cpu_impl::dropout_mask(out, seed, first_block, p);
    }
    void embedding(const Tensor<T>& out, const Tensor<int64_t>& indices, const Tensor<T>& weight) const override {
        cpu_impl::embedding(out, indices, weight);
    }
    void embedding_backward(const Tensor<T>& dweight, const Tensor<int64_t>& indices,
                            const Tensor<T>& g) const override {
        cpu_impl::embedding_backward(dweight, indices, g);
    }
    void max_min(const Tensor<T>& values, const Tensor<int64_t>& indices, const Tensor<T>& x, int64_t axis,
                 bool want_max) const override {
        cpu_impl::max_min(values, indices, x, axis, want_max);
    }
    void max_min_backward(const Tensor<T>& dx, const Tensor<int64_t>& indices, const Tensor<T>& g,
                          int64_t axis) const override {
        cpu_impl::max_min_backward(dx, indices, g, axis);
    }
    void isclose(const Tensor<uint8_t>& out, const Tensor<T>& a, const Tensor<T>& b, double rtol,
                 double atol) const override {
        cpu_impl::isclose(out, a, b, rtol, atol);
    }

    // ---- coefficient attention ----
    // (backend/cpu_attention.hpp; fused attention runs the registered tiled kernels, see there)

    using typename Ops<T>::AttentionDraw;
    using typename Ops<T>::AttentionArgs;
    using typename Ops<T>::AttentionSaved;
    using typename Ops<T>::AttentionGrads;

    AttentionSaved coeff_attention_forward(const Tensor<T>& out, const AttentionArgs& a) const override {
        return cpu_impl::coeff_attention_forward<T>(out, a);
    }
    void coeff_attention_backward(const AttentionGrads& g, const Tensor<T>& dout, const AttentionArgs& a,
                                  const AttentionSaved& saved) const override {
        cpu_impl::coeff_attention_backward<T>(g, dout, a, saved);
    }
    void alpha_prime(const Tensor<T>& out, const Tensor<T>& alpha, const AttentionDraw& draw,
                     bool residual) const override {
        cpu_impl::alpha_prime<T>(out, alpha, draw, residual);
    }
    void alpha_prime_backward(const Tensor<T>& dalpha, const Tensor<T>& g, const AttentionDraw& draw) const override {
        cpu_impl::alpha_prime_backward<T>(dalpha, g, draw);
    }

    // ---- optimiser steps ----

    void sgd_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& buf, T lr, T wd, T mu, T damp,
                  bool first, bool nesterov) const override {
        cpu_impl::sgd_step(param, grad, buf, lr, wd, mu, damp, first, nesterov);
    }
    void adamw_step(const Tensor<T>& param, const Tensor<T>& grad, const Tensor<T>& m, const Tensor<T>& v, T decay,
                    T b1, T b2, T step_size, T bc2_sqrt, T eps) const override {
        cpu_impl::adamw_step(param, grad, m, v, decay, b1, b2, step_size, bc2_sqrt, eps);
    }
    void add_squares(const Tensor<double>& acc, const Tensor<T>& x) const override { cpu_impl::add_squares(acc, x); }

private:
    static detail::MatRef<T> last_two(const Tensor<T>& t, int64_t batch_offset) {
        const size_t r = t.shape().size();
        return {t.data() + batch_offset, t.shape()[r - 2], t.shape()[r - 1], t.strides()[r - 2], t.strides()[r - 1]};
    }
};

inline const Memory& cpu_memory() {
    static const CpuMemory m;
    return m;
}

template <class T>
const Ops<T>& cpu_ops() {
    static const CpuOps<T> o;
    return o;
}

}  // namespace coeffnet::backend

#endif  // COEFFNET_BACKEND_CPU_HPP
