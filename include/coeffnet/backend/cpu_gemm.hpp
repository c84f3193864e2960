// coeffnet/backend/cpu_gemm.hpp: the one CPU GEMM (detail::gemm), on Eigen's GEMM kernel.
//
// Every CPU matrix product in the library (the CPU table's matmul, and the tiled attention) goes
// through detail::gemm, one call into Eigen's GEMM kernel. Operands are read in place whenever
// one of their last two strides is 1: a transposed view is a column-major matrix to Eigen, so a
// backward's A^T and B^T cost no copy; an operand with no unit stride is packed first.
#pragma once

#include <algorithm>
#include <cstdint>
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
#error "coeffnet needs Eigen 3.4 or newer (backend/cpu_gemm.hpp calls its GEMM kernel with the 3.4 signature)"
#endif

namespace coeffnet::detail {

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

}  // namespace coeffnet::detail
