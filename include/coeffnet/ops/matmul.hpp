// coeffnet/ops/matmul.hpp: matmul (batched, broadcasting) and linear, on Eigen's GEMM.
//
// Operands are read in place whenever one of their last two strides is 1: a transposed view
// is a column-major matrix to Eigen, so the backward's A^T and B^T cost no copy. Batches of
// small matrices run in parallel (one GEMM per thread); a single large GEMM uses Eigen's own
// OpenMP threading. linear(x, W, b) = x W^T + b is one op so that a frozen W skips its
// weight-gradient GEMM, and the batch axes of x fold into one GEMM.
#pragma once

#include <atomic>

// GCC 12 reports its own AVX-512 intrinsics as reading uninitialised values (GCC bug 105593,
// the `__Y = __Y` idiom) when Eigen's GEMM is inlined; silence that for Eigen only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "../tensor/tensor.hpp"

namespace coeffnet {

// Counts GEMM calls (one per matmul/linear product, however many batch items); tests use it
// to check that frozen weights cost no weight-gradient work.
inline std::atomic<int64_t>& gemm_count() {
    static std::atomic<int64_t> count{0};
    return count;
}

namespace detail {

// A strided matrix: element (i, j) is p[i * rs + j * cs].
template <class T>
struct MatRef {
    const T* p;
    int64_t rows, cols, rs, cs;
};

template <class T>
MatRef<T> last_two(const Tensor<T>& t, int64_t batch_offset) {
    const size_t r = t.shape().size();
    return {t.data() + batch_offset, t.shape()[r - 2], t.shape()[r - 1], t.strides()[r - 2], t.strides()[r - 1]};
}

// Calls f with an Eigen expression for m (a Map when one stride is 1, else a packed copy).
template <class T, class F>
void with_eigen(const MatRef<T>& m, F&& f) {
    using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
    using Stride = Eigen::OuterStride<>;
    if (m.cs == 1 || m.cols == 1) {
        f(Eigen::Map<const RowMat, 0, Stride>(m.p, m.rows, m.cols, Stride(m.rows == 1 ? m.cols : m.rs)));
    } else if (m.rs == 1 || m.rows == 1) {
        f(Eigen::Map<const ColMat, 0, Stride>(m.p, m.rows, m.cols, Stride(m.cols == 1 ? m.rows : m.cs)));
    } else {
        RowMat packed(m.rows, m.cols);
        for (int64_t i = 0; i < m.rows; ++i)
            for (int64_t j = 0; j < m.cols; ++j) packed(i, j) = m.p[i * m.rs + j * m.cs];
        f(packed);
    }
}

// C (row-major, contiguous, M x N) = A B.
template <class T>
void gemm(const MatRef<T>& a, const MatRef<T>& b, T* c) {
    using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<RowMat> out(c, a.rows, b.cols);
    if (a.cols == 0) {
        out.setZero();
        return;
    }
    with_eigen(a, [&](const auto& ea) { with_eigen(b, [&](const auto& eb) { out.noalias() = ea * eb; }); });
}

// Batched C[i] = A[i] B[i] over `batch` (already broadcast), both operands strided.
template <class T>
Tensor<T> matmul_raw(const Tensor<T>& a, const Tensor<T>& b, const char* op) {
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    check(as.size() >= 2 && bs.size() >= 2, op, ": expects tensors of rank >= 2, got ", shape_str(as), " and ",
          shape_str(bs));
    const int64_t M = as[as.size() - 2], K = as.back(), K2 = bs[bs.size() - 2], N = bs.back();
    check(K == K2, op, ": inner dimensions differ: ", shape_str(as), " @ ", shape_str(bs), " (", K, " vs ", K2, ")");
    const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    const Shape batch = broadcast_shapes(abatch, bbatch, op);
    Shape out_shape = batch;
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor<T> out = Tensor<T>::empty(out_shape);
    gemm_count().fetch_add(1, std::memory_order_relaxed);
    if (out.numel() == 0) return out;

    // One GEMM when the batch axes of a fold into its rows (b shared, a contiguous rows).
    if (bbatch.empty() || shape_numel(bbatch) == 1) {
        const Shape ast = a.strides();
        bool foldable = true;
        int64_t expect = ast[as.size() - 2];
        for (size_t i = as.size() - 2; i-- > 0;) {
            expect *= as[i + 1];
            if (as[i] != 1 && ast[i] != expect) foldable = false;
        }
        if (foldable && (ast.back() == 1 || K == 1)) {
            const MatRef<T> ar{a.data(), shape_numel(abatch) * M, K, ast[as.size() - 2], 1};
            gemm(ar, last_two(b, 0), out.data());
            return out;
        }
    }
    const int64_t nb = shape_numel(batch);
    const Shape sa = broadcast_strides(abatch, Shape(a.strides().begin(), a.strides().end() - 2), batch);
    const Shape sb = broadcast_strides(bbatch, Shape(b.strides().begin(), b.strides().end() - 2), batch);
    auto run = [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            int64_t rem = i, oa = 0, ob = 0;
            for (size_t d = batch.size(); d-- > 0;) {
                const int64_t idx = rem % batch[d];
                rem /= batch[d];
                oa += idx * sa[d];
                ob += idx * sb[d];
            }
            gemm(last_two(a, oa), last_two(b, ob), out.data() + i * M * N);
        }
    };
    // Parallel over the batch when there are enough items; else one GEMM at a time, each
    // threaded by Eigen.
    if (nb >= 2 * num_threads() || M * N * K < (1 << 18)) parallel_for(nb, M * N * K, run);
    else run(0, nb);
    return out;
}

}  // namespace detail

// torch.matmul for rank >= 2: a [..., M, K] @ b [..., K, N] with broadcast batch axes.
template <class T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b) {
    check(a.defined() && b.defined(), "matmul: undefined operand");
    Tensor<T> out = detail::matmul_raw(a, b, "matmul");
    const Tensor<T> sa = a.detach(), sb = b.detach();
    return record<T>(out, "matmul", {a, b}, [sa, sb](const Tensor<T>& g, const std::vector<bool>& needs) {
        std::vector<Tensor<T>> r(2);
        if (needs[0]) r[0] = detail::sum_to(detail::matmul_raw(g, sb.mT(), "matmul backward"), sa.shape());
        if (needs[1]) {
            if (sb.dim() == 2 && sa.dim() > 2) {  // fold a's batch: dB = A_flat^T G_flat
                const int64_t K = sa.shape().back(), N = g.shape().back();
                r[1] = detail::matmul_raw(sa.reshape({-1, K}).mT(), g.reshape({-1, N}), "matmul backward");
            } else {
                r[1] = detail::sum_to(detail::matmul_raw(sa.mT(), g, "matmul backward"), sb.shape());
            }
        }
        return r;
    });
}

// PyTorch's F.linear: x [..., in] W^T [in, out] + b [out].
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias = Tensor<T>()) {
    check(x.defined() && weight.defined(), "linear: undefined operand");
    check(weight.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight.shape()));
    check(x.dim() >= 1 && x.shape().back() == weight.shape()[1], "linear: input ", shape_str(x.shape()),
          " does not match weight ", shape_str(weight.shape()), " (last axis must be ", weight.shape()[1], ")");
    const int64_t in = weight.shape()[1], out_f = weight.shape()[0];
    check(!bias.defined() || bias.shape() == Shape{out_f}, "linear: bias ",
          bias.defined() ? shape_str(bias.shape()) : std::string(), " does not match weight ",
          shape_str(weight.shape()), " (expected [", out_f, "])");
    const Tensor<T> x2 = detail::as_contiguous(x).reshape({-1, in}).detach();
    Tensor<T> y = detail::matmul_raw(x2, weight.detach().mT(), "linear");
    if (bias.defined()) {
        T* py = y.data();
        const Tensor<T> bc = detail::as_contiguous(bias);
        const T* pb = bc.data();
        const int64_t rows = y.shape()[0];
        parallel_for(rows, out_f, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t j = 0; j < out_f; ++j) py[r * out_f + j] += pb[j];
        });
    }
    Shape out_shape = x.shape();
    out_shape.back() = out_f;
    Tensor<T> out = detail::view_of(y, out_shape, contiguous_strides(out_shape), 0);
    const Tensor<T> sw = weight.detach();
    const Shape x_shape = x.shape();
    return record<T>(out, "linear", {x, weight, bias},
                     [x2, sw, x_shape, out_f](const Tensor<T>& g, const std::vector<bool>& needs) {
                         std::vector<Tensor<T>> r(3);
                         const Tensor<T> g2 = g.reshape({-1, out_f});
                         if (needs[0]) r[0] = detail::matmul_raw(g2, sw, "linear backward").reshape(x_shape);
                         if (needs[1]) r[1] = detail::matmul_raw(g2.mT(), x2, "linear backward");
                         if (needs[2]) r[2] = detail::sum_to(g2, {out_f});
                         return r;
                     });
}

}  // namespace coeffnet
