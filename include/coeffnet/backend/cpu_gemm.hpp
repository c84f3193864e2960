// coeffnet/backend/cpu_gemm.hpp: the one CPU GEMM (detail::gemm), on BLIS where the build has it
// (COEFFNET_BLIS, set by the CMake target coeffnet::blis), else on Eigen's GEMM kernel.
//
// Every CPU matrix product in the library (the CPU table's matmul, and the tiled attention) goes
// through detail::gemm, one call into the GEMM kernel. Operands are read in place whenever one of
// their last two strides is 1: a transposed view is a column-major matrix, so a backward's A^T and
// B^T cost no copy; an operand with no unit stride (or a broadcast one, stride 0) is packed first.
//
// Measured on ViT-B/16's batch-8 linear shapes, fp32, 2 threads, AMD Zen 4 (2 cores, AVX-512),
// Debian 12 packages (bench/cblas_probe.cpp, bench/gemm_bench.cpp, 2026-12-07): BLIS 0.9 194-204
// GFLOP/s, 83-87% of the measured FMA peak (230.9); OpenBLAS 0.3.21 171-194; Eigen 3.4 146-163.
// BLIS splits the m and n loops among threads, never k, so a product's value does not depend on
// the thread count; one called inside a parallel region (per-item products) runs on one thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/parallel.hpp"

#ifdef COEFFNET_BLIS
#include <blis.h>
#endif

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

// The storage order and leading stride the kernel reads m with: row-major when its columns are
// adjacent and its rows do not overlap, column-major when its rows are adjacent and its columns do
// not overlap; -1 when neither (no unit stride, or a broadcast one: the caller packs it).
template <class T>
int storage_order(const MatRef<T>& m, int64_t& ld) {
    if (m.cs == 1 || m.cols == 1) {
        ld = m.rows == 1 ? m.cols : m.rs;
        if (ld >= m.cols) return Eigen::RowMajor;
    }
    if (m.rs == 1 || m.rows == 1) {
        ld = m.cols == 1 ? m.rows : m.cs;
        if (ld >= m.rows) return Eigen::ColMajor;
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

#ifdef COEFFNET_BLIS
// Which products BLIS computes; the rest go to Eigen's kernel. By shape and storage order only,
// never by thread count, so a product's value does not depend on the threads either. Measured
// per call, fp32, AMD Zen 4, BLIS 0.9 against Eigen 3.4 (2026-12-08, one thread unless said):
//   - below 2^18 multiply-adds BLIS's fixed cost (about 1 us a call: its objects, its memory
//     pool's lock) loses: 17x17x16 1.25 us against 0.29, 32^3 2.25 against 1.19; 64^3 is even;
//   - A row-major times B column-major (A B^T: linear's forward, attention's Q K^T): BLIS's
//     small-matrix path ("sup", no packing) reads it with dot-product kernels, slower than Eigen
//     (197x197x64 64 GFLOP/s against 79); its packed path is faster from about 2^19 (96^3 86
//     against 78, 197x197x64 88, 544x128x128 101 against 84; at two threads 544x128x128 186
//     against 114) and slower below (64^3 58 against 75). So: Eigen below 2^19, BLIS packed above;
//   - every other order from 2^18 up: BLIS as it chooses (sup for small), equal or faster: 1-thread
//     197x64x197 with B row-major 107 against 87; at two threads 2448x128x384 202 against 155;
//     ViT-B/16's linear layers 89-97% of the FMA peak against 69-78% (bench/gemm_bench --quick).
enum class BlisPath { none, any, packed };
inline BlisPath blis_path(int64_t M, int64_t N, int64_t K, int ao, int bo) {
    const int64_t macs = M * N * K;
    if (ao == Eigen::RowMajor && bo == Eigen::ColMajor)
        return macs < (int64_t(1) << 19) ? BlisPath::none : BlisPath::packed;
    return macs < (int64_t(1) << 18) ? BlisPath::none : BlisPath::any;
}

// C (row-major, leading dimension ldc) = A B, or += with accumulate, by BLIS's typed expert API
// (any strides; its threads set per call, one inside a parallel region).
template <class T>
void blis_gemm(const MatRef<T>& a, int ao, int64_t lda, const MatRef<T>& b, int bo, int64_t ldb, T* c, int64_t ldc,
               bool accumulate, BlisPath path) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "BLIS GEMM: float or double");
    const int64_t M = a.rows, N = b.cols, K = a.cols;
    T one(1), beta(accumulate ? 1 : 0);  // beta 0: C is written, never read
    // One thread per 2^18 multiply-adds at most (about 5 us of one core's work): a parallel region
    // costs microseconds, and BLIS's threads wait for each other at barriers by spinning.
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(static_cast<dim_t>(std::clamp<int64_t>(M * N * K >> 18, 1, num_threads())), &rntm);
    if (path == BlisPath::packed) bli_rntm_disable_l3_sup(&rntm);
    auto* ap = const_cast<T*>(a.p);  // BLIS's typed API takes non-const operands; it only reads them
    auto* bp = const_cast<T*>(b.p);
    constexpr int R = Eigen::RowMajor;
    const inc_t rsa = ao == R ? lda : 1, csa = ao == R ? 1 : lda;
    const inc_t rsb = bo == R ? ldb : 1, csb = bo == R ? 1 : ldb;
    const inc_t rsc = M == 1 ? N : ldc;
    if constexpr (std::is_same_v<T, float>)
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, M, N, K, &one, ap, rsa, csa, bp, rsb, csb, &beta, c, rsc, 1,
                     nullptr, &rntm);
    else
        bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, M, N, K, &one, ap, rsa, csa, bp, rsb, csb, &beta, c, rsc, 1,
                     nullptr, &rntm);
}
#endif

// The one CPU GEMM: C (row-major, leading dimension ldc) = A B, or += A B with accumulate.
// A [M, K] and B [K, N] are strided matrices read in place when one of their strides is 1.
template <class T>
void gemm(const MatRef<T>& a_in, const MatRef<T>& b_in, T* c, int64_t ldc, bool accumulate) {
    const int64_t M = a_in.rows, N = b_in.cols, K = a_in.cols;
    if (M == 0 || N == 0) return;
    auto zero_c = [&] {
        for (int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, T(0));
    };
    if (K == 0) {
        if (!accumulate) zero_c();
        return;
    }
    std::vector<T> abuf, bbuf;
    int64_t lda = 0, ldb = 0;
    int ao = storage_order(a_in, lda), bo = storage_order(b_in, ldb);
    const MatRef<T> a = ao < 0 ? packed(a_in, abuf) : a_in;
    const MatRef<T> b = bo < 0 ? packed(b_in, bbuf) : b_in;
    if (ao < 0) ao = storage_order(a, lda);
    if (bo < 0) bo = storage_order(b, ldb);
#ifdef COEFFNET_BLIS
    if (const BlisPath path = blis_path(M, N, K, ao, bo); path != BlisPath::none) {
        blis_gemm(a, ao, lda, b, bo, ldb, c, ldc, accumulate, path);
        return;
    }
#endif
    if (!accumulate) zero_c();
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
