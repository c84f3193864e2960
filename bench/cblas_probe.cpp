// cblas_probe: cblas_sgemm GFLOP/s on ViT-B/16's batch-8 GEMM shapes (row-major, the layouts of
// linear's forward and backward, and the 96 per-head attention products one after another), to
// choose a BLAS for coeffnet's CPU GEMM (issue 15). Not built by CMake: it links whichever CBLAS
// is named on the command line, e.g. (Debian 12 packages libblis-openmp-dev, libopenblas-openmp-dev):
// (each command one line: a backslash would continue this comment)
//   g++ -O2 -march=native bench/cblas_probe.cpp -I/usr/include/x86_64-linux-gnu/blis-openmp /usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4 -o cblas_probe_blis
//   g++ -O2 -march=native bench/cblas_probe.cpp -I/usr/include/x86_64-linux-gnu/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so -o cblas_probe_openblas
//   OMP_NUM_THREADS=2 BLIS_NUM_THREADS=2 ./cblas_probe_blis
// Each shape: two untimed calls, then the median of 5 reps of at least 0.2 s each. Compare with
// `build/bench/gemm_bench --quick` (coeffnet's Eigen GEMM and the FMA peak) run right after.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

struct Case { const char* name; int M, K, N; CBLAS_TRANSPOSE ta, tb; };
int main() {
    const int T = 1576;
    Case cs[] = {
        {"qkv fwd", T, 768, 2304, CblasNoTrans, CblasTrans}, {"qkv bwd dX", T, 2304, 768, CblasNoTrans, CblasNoTrans},
        {"qkv bwd dW", 2304, T, 768, CblasTrans, CblasNoTrans}, {"proj fwd", T, 768, 768, CblasNoTrans, CblasTrans},
        {"fc1 fwd", T, 768, 3072, CblasNoTrans, CblasTrans}, {"fc1 bwd dX", T, 3072, 768, CblasNoTrans, CblasNoTrans},
        {"fc1 bwd dW", 3072, T, 768, CblasTrans, CblasNoTrans}, {"fc2 fwd", T, 3072, 768, CblasNoTrans, CblasTrans},
        {"fc2 bwd dX", T, 768, 3072, CblasNoTrans, CblasNoTrans}, {"fc2 bwd dW", 768, T, 3072, CblasTrans, CblasNoTrans},
        {"attn QK^T x96", 197, 64, 197, CblasNoTrans, CblasTrans}, {"attn PV x96", 197, 197, 64, CblasNoTrans, CblasNoTrans}};
    std::mt19937 g(1); std::normal_distribution<float> nd;
    for (auto& c : cs) {
        const int batch = c.name[0] == 'a' ? 96 : 1;
        std::vector<float> A((size_t)c.M * c.K * batch), B((size_t)c.K * c.N * batch), C((size_t)c.M * c.N * batch);
        for (auto& v : A) v = nd(g);
        for (auto& v : B) v = nd(g);
        const int lda = c.ta == CblasNoTrans ? c.K : c.M, ldb = c.tb == CblasNoTrans ? c.N : c.K;
        auto call = [&] { for (int b = 0; b < batch; ++b)
            cblas_sgemm(CblasRowMajor, c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data() + (size_t)b*c.M*c.K, lda, B.data() + (size_t)b*c.K*c.N, ldb, 0.f, C.data() + (size_t)b*c.M*c.N, c.N); };
        call(); call();
        std::vector<double> r;
        for (int rep = 0; rep < 5; ++rep) { int n = 0; auto t0 = std::chrono::steady_clock::now(); double s;
            do { call(); ++n; s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); } while (s < 0.2);
            r.push_back(s / n); }
        std::sort(r.begin(), r.end());
        std::printf("%-14s %8.1f GFLOP/s\n", c.name, 2.0 * c.M * c.K * c.N * batch / r[2] * 1e-9);
    }
}
