// coeffnet/ops/matmul.hpp: matmul (batched, broadcasting) and linear, on Eigen's GEMM.
//
// Every CPU matrix product in the library (these ops and the tiled attention) goes through
// detail::gemm, one call into Eigen's GEMM kernel. Operands are read in place whenever one of
// their last two strides is 1: a transposed view is a column-major matrix to Eigen, so the
// backward's A^T and B^T cost no copy. Batches of
// small matrices run in parallel (one GEMM per thread); a single large GEMM uses Eigen's own
// OpenMP threading. linear(x, W, b) = x W^T + b is one op so that a frozen W skips its
// weight-gradient GEMM, and the batch axes of x fold into one GEMM.
#pragma once

#include <algorithm>
#include <atomic>
#include <vector>

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
#if !EIGEN_VERSION_AT_LEAST(3, 4, 0)
#error "coeffnet needs Eigen 3.4 or newer (ops/matmul.hpp calls its GEMM kernel with the 3.4 signature)"
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
    MatRef t() const { return {p, cols, rows, cs, rs}; }  // the transpose, same memory
};

// A row-major rows x cols matrix with leading dimension ld.
template <class T>
MatRef<T> rows_ref(const T* p, int64_t rows, int64_t cols, int64_t ld) {
    return {p, rows, cols, ld, 1};
}

template <class T>
MatRef<T> last_two(const Tensor<T>& t, int64_t batch_offset) {
    const size_t r = t.shape().size();
    return {t.data() + batch_offset, t.shape()[r - 2], t.shape()[r - 1], t.strides()[r - 2], t.strides()[r - 1]};
}

// Eigen's GEMM kernel for one storage order of each operand, called directly: C (row-major,
// leading dimension ldc) += A B, with A [m, k] and B [k, n] read through their leading strides.
// Going below Eigen's product expressions instantiates the packing and micro-kernel code once
// per order pair instead of once per expression type (with gemv and coefficient-wise variants
// each), which is most of what a program including this header compiles. The threading is
// Eigen's own (parallelize_gemm, active under OpenMP) with the blocking its products use, so
// results equal those of `C.noalias() += A * B` on the same Maps above Eigen's small-size cutoff.
template <class T, int LhsOrder, int RhsOrder>
struct EigenGemm {
    using Index = Eigen::Index;
    using Kernel = Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false,
                                                                   Eigen::RowMajor, 1>;
    using Traits = typename Kernel::Traits;  // parallelize_gemm reads the kernel's register tile
    using Blocking = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                          Eigen::Dynamic>;
    const T* a;
    Index lda;
    const T* b;
    Index ldb;
    T* c;
    Index ldc, m, n, k;
    Blocking& blocking;

    void initParallelSession(Index threads) const {
        blocking.initParallel(m, n, k, threads);
        blocking.allocateA();
    }
    // Rows [row, row + rows) and columns [col, col + cols) of C, as Eigen's gemm_functor does.
    void operator()(Index row, Index rows, Index col = 0, Index cols = -1,
                    Eigen::internal::GemmParallelInfo<Index>* info = nullptr) const {
        if (cols == -1) cols = n;
        const T* ap = a + (LhsOrder == Eigen::RowMajor ? row * lda : row);
        const T* bp = b + (RhsOrder == Eigen::RowMajor ? col : col * ldb);
        Kernel::run(rows, cols, k, ap, lda, bp, ldb, c + row * ldc + col, 1, ldc, T(1), blocking, info);
    }

    static void run(const T* a, Index lda, const T* b, Index ldb, T* c, Index ldc, Index m, Index n, Index k) {
        Blocking blocking(m, n, k, 1, true);
        Eigen::internal::parallelize_gemm<true>(EigenGemm{a, lda, b, ldb, c, ldc, m, n, k, blocking}, m, n, k,
                                                /*transpose (row-major C)=*/true);
    }
};

// The storage order and leading stride Eigen reads m with: row-major when its columns are
// adjacent, column-major when its rows are; -1 when neither (the caller packs it).
template <class T>
int storage_order(const MatRef<T>& m, int64_t& ld) {
    if (m.cs == 1 || m.cols == 1) {
        ld = m.rows == 1 ? m.cols : m.rs;
        return Eigen::RowMajor;
    }
    if (m.rs == 1 || m.rows == 1) {
        ld = m.cols == 1 ? m.rows : m.cs;
        return Eigen::ColMajor;
    }
    return -1;
}

// m as a row-major contiguous copy in buf (for operands with no unit stride).
template <class T>
MatRef<T> packed(const MatRef<T>& m, std::vector<T>& buf) {
    buf.resize(static_cast<size_t>(m.rows * m.cols));
    for (int64_t i = 0; i < m.rows; ++i)
        for (int64_t j = 0; j < m.cols; ++j) buf[static_cast<size_t>(i * m.cols + j)] = m.p[i * m.rs + j * m.cs];
    return {buf.data(), m.rows, m.cols, m.cols, 1};
}

// The one CPU GEMM: C (row-major, leading dimension ldc) = A B, or += A B with accumulate.
// A [M, K] and B [K, N] are strided matrices read in place when one of their strides is 1.
template <class T>
void gemm(const MatRef<T>& a_in, const MatRef<T>& b_in, T* c, int64_t ldc, bool accumulate) {
    const int64_t M = a_in.rows, N = b_in.cols, K = a_in.cols;
    if (M == 0 || N == 0) return;
    if (!accumulate)
        for (int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, T(0));
    if (K == 0) return;
    std::vector<T> abuf, bbuf;
    int64_t lda = 0, ldb = 0;
    int ao = storage_order(a_in, lda), bo = storage_order(b_in, ldb);
    const MatRef<T> a = ao < 0 ? packed(a_in, abuf) : a_in;
    const MatRef<T> b = bo < 0 ? packed(b_in, bbuf) : b_in;
    if (ao < 0) ao = storage_order(a, lda);
    if (bo < 0) bo = storage_order(b, ldb);
    constexpr int R = Eigen::RowMajor, C = Eigen::ColMajor;
    if (ao == R && bo == R) EigenGemm<T, R, R>::run(a.p, lda, b.p, ldb, c, ldc, M, N, K);
    else if (ao == R) EigenGemm<T, R, C>::run(a.p, lda, b.p, ldb, c, ldc, M, N, K);
    else if (bo == R) EigenGemm<T, C, R>::run(a.p, lda, b.p, ldb, c, ldc, M, N, K);
    else EigenGemm<T, C, C>::run(a.p, lda, b.p, ldb, c, ldc, M, N, K);
}

// C (row-major, contiguous, M x N) = A B.
template <class T>
void gemm(const MatRef<T>& a, const MatRef<T>& b, T* c) {
    gemm(a, b, c, b.cols, false);
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
