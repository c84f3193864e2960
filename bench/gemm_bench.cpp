// gemm_bench: float32 GEMM throughput through coeffnet's own ops, next to the machine's FMA peak.
//
// Shapes: the linear layers of ViT-B/16 at batch 8 (8 x 197 = 1576 tokens, width 768, MLP 3072),
// forward through coeffnet::linear and the two backward GEMMs (dX = G W, dW = G^T X) through
// coeffnet::matmul with the operand layouts linear's backward uses; and the two batched attention
// products (96 = 8 x 12 heads, 197 tokens, head dim 64) through coeffnet::matmul. Each shape is
// also run as a plain Eigen product on the same buffers (same layouts, output preallocated), so
// the cost of coeffnet's wrapper shows up as a ratio.
//
// The peak is measured, not looked up: a loop of independent FMAs (AVX-512 where the CPU has it,
// else AVX2+FMA) on one thread and on all OpenMP threads.
//
// Every result is checked against a double-precision dot product at sampled entries before it
// is timed. Timing: warm-up, then the median of several reps, each rep a batch of calls lasting
// at least --min-time seconds, on std::chrono::steady_clock.
//
// Usage: gemm_bench [--quick] [--json] [--reps N] [--min-time S] [--no-eigen] [--filter STR] [--help]

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>
#include <nlohmann/json.hpp>

#include <coeffnet/coeffnet.hpp>

#include "bench_util.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using coeffnet::Tensor;
using bench::Clock;
using bench::cpu_model;
using bench::loadavg_1min;
using bench::max_threads;
using bench::median;
using bench::seconds_since;
using bench::Timing;
using bench::TimingConfig;
using bench::utc_now;
using bench::time_calls;
using json = nlohmann::ordered_json;  // keys in the order written

// ---- FMA peak -----------------------------------------------------------------------------

volatile float g_sink = 0.0f;  // keeps results alive

// 12 independent accumulators: FMA latency (4 cycles on Zen 4/5 and Skylake-X onwards) times two
// FMA pipes needs at least 8 in flight. acc = acc * a + b stays bounded (a < 1).
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c0 = _mm512_set1_ps(0.0f), c1 = _mm512_set1_ps(0.1f), c2 = _mm512_set1_ps(0.2f),
           c3 = _mm512_set1_ps(0.3f), c4 = _mm512_set1_ps(0.4f), c5 = _mm512_set1_ps(0.5f),
           c6 = _mm512_set1_ps(0.6f), c7 = _mm512_set1_ps(0.7f), c8 = _mm512_set1_ps(0.8f),
           c9 = _mm512_set1_ps(0.9f), c10 = _mm512_set1_ps(1.0f), c11 = _mm512_set1_ps(1.1f);
    for (int64_t i = 0; i < iters; ++i) {
        c0 = _mm512_fmadd_ps(c0, a, b);
        c1 = _mm512_fmadd_ps(c1, a, b);
        c2 = _mm512_fmadd_ps(c2, a, b);
        c3 = _mm512_fmadd_ps(c3, a, b);
        c4 = _mm512_fmadd_ps(c4, a, b);
        c5 = _mm512_fmadd_ps(c5, a, b);
        c6 = _mm512_fmadd_ps(c6, a, b);
        c7 = _mm512_fmadd_ps(c7, a, b);
        c8 = _mm512_fmadd_ps(c8, a, b);
        c9 = _mm512_fmadd_ps(c9, a, b);
        c10 = _mm512_fmadd_ps(c10, a, b);
        c11 = _mm512_fmadd_ps(c11, a, b);
    }
    const __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                      _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
        _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    // Not _mm512_reduce_add_ps: GCC 12 warns inside it (bug 105593, -Wuninitialized).
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f),
           c3 = _mm256_set1_ps(0.3f), c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f),
           c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f), c8 = _mm256_set1_ps(0.8f),
           c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.0f), c11 = _mm256_set1_ps(1.1f);
    for (int64_t i = 0; i < iters; ++i) {
        c0 = _mm256_fmadd_ps(c0, a, b);
        c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b);
        c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b);
        c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b);
        c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b);
        c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b);
        c11 = _mm256_fmadd_ps(c11, a, b);
    }
    const __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                      _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7))),
        _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

// Without AVX2 the peak is that of scalar code; fine for a table, but then GEMM fractions
// above 1 are possible (Eigen uses SSE), and the table says so via the ISA column.
float fma_loop_scalar(int64_t iters) {
    float c[12];
    for (int k = 0; k < 12; ++k) c[k] = 0.1f * static_cast<float>(k);
    for (int64_t i = 0; i < iters; ++i)
        for (float& v : c) v = v * 0.9999999f + 1e-7f;
    float total = 0.0f;
    for (float v : c) total += v;
    return total;
}

struct Isa {
    std::string name;
    double flops_per_iter;
    float (*loop)(int64_t);
};

Isa pick_isa() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {"avx512f", 12.0 * 16 * 2, fma_loop_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2+fma", 12.0 * 8 * 2, fma_loop_avx2};
    return {"scalar", 12.0 * 2, fma_loop_scalar};
}

struct Peak {
    std::string isa;
    int threads = 1;
    double single_gflops = 0, all_gflops = 0;
};

// GFLOP/s of `threads` threads each running the FMA loop: median of reps, each ~min_rep_s.
double fma_gflops(const Isa& isa, int threads, const TimingConfig& cfg) {
    auto run = [&](int64_t iters) {
        float sum = 0.0f;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sum)
#endif
        sum += isa.loop(iters);
        g_sink = g_sink + sum;
    };
    // Size the loop: grow until one run takes a measurable time, then scale to min_rep_s.
    int64_t iters = 1 << 16;
    for (;;) {
        const auto t0 = Clock::now();
        run(iters);
        const double s = seconds_since(t0);
        if (s > 0.02 || iters > (int64_t{1} << 40)) {
            iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * cfg.min_rep_s / s));
            break;
        }
        iters *= 4;
    }
    run(iters / 2);  // warm-up (clocks settle)
    std::vector<double> rates;
    for (int r = 0; r < cfg.reps; ++r) {
        const auto t0 = Clock::now();
        run(iters);
        const double s = seconds_since(t0);
        rates.push_back(isa.flops_per_iter * static_cast<double>(iters) * threads / s * 1e-9);
    }
    return median(rates);
}

Peak measure_peak(const TimingConfig& cfg) {
    const Isa isa = pick_isa();
    Peak p;
    p.isa = isa.name;
    p.threads = max_threads();
    p.single_gflops = fma_gflops(isa, 1, cfg);
    p.all_gflops = p.threads == 1 ? p.single_gflops : fma_gflops(isa, p.threads, cfg);
    return p;
}

// ---- plain Eigen on the same buffers --------------------------------------------------------

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using OStride = Eigen::OuterStride<>;

// A strided matrix: element (i, j) is p[i * rs + j * cs]; one of rs, cs is 1.
struct Mat {
    const float* p;
    int64_t rows, cols, rs, cs;
    double at(int64_t i, int64_t j) const { return static_cast<double>(p[i * rs + j * cs]); }
};

// Matrix `bi` of a rank-2 or rank-3 tensor (a view: strides are honoured).
Mat mat_of(const Tensor<float>& t, int64_t bi) {
    const auto& s = t.shape();
    const auto& st = t.strides();
    const size_t r = s.size();
    const int64_t off = r == 3 ? bi * st[0] : 0;
    return {t.data() + off, s[r - 2], s[r - 1], st[r - 2], st[r - 1]};
}

template <class F>
void with_map(const Mat& m, F&& f) {
    if (m.cs == 1) f(Eigen::Map<const RowMat, 0, OStride>(m.p, m.rows, m.cols, OStride(m.rs)));
    else if (m.rs == 1) f(Eigen::Map<const ColMat, 0, OStride>(m.p, m.rows, m.cols, OStride(m.cs)));
    else {
        std::fprintf(stderr, "gemm_bench: internal error: operand with no unit stride\n");
        std::exit(1);
    }
}

void eigen_gemm(const Mat& a, const Mat& b, float* c) {
    Eigen::Map<RowMat> out(c, a.rows, b.cols);
    with_map(a, [&](const auto& ea) { with_map(b, [&](const auto& eb) { out.noalias() = ea * eb; }); });
}

// ---- the cases --------------------------------------------------------------------------------

// One benchmark row: out = a @ b (+ bias), a [batch?, M, K], b [batch?, K, N] (views).
struct Case {
    std::string name;  // e.g. "fc1 fwd"
    std::string op;    // the coeffnet call, for the table
    int64_t batch, M, K, N;
    Tensor<float> a, b, bias;                    // the logical operands
    std::function<Tensor<float>()> coeffnet_op;  // one call through coeffnet
    double flops() const { return 2.0 * static_cast<double>(batch) * static_cast<double>(M) * K * N; }
};

struct Result {
    Timing cn;
    std::optional<Timing> eigen;
};

[[noreturn]] void mismatch(const std::string& what, const Case& c, int64_t bi, int64_t i, int64_t j, double got,
                           double want, double tol) {
    std::fprintf(stderr,
                 "gemm_bench: WRONG RESULT from %s for '%s' (batch=%lld M=%lld K=%lld N=%lld) at [%lld, %lld, %lld]: "
                 "got %.9g, double-precision reference %.9g (|diff| %.3g > tolerance %.3g)\n",
                 what.c_str(), c.name.c_str(), static_cast<long long>(c.batch), static_cast<long long>(c.M),
                 static_cast<long long>(c.K), static_cast<long long>(c.N), static_cast<long long>(bi),
                 static_cast<long long>(i), static_cast<long long>(j), got, want, std::fabs(got - want), tol);
    std::exit(1);
}

// Compares sampled entries (corners included) of out [batch*M, N] (contiguous) with a
// double-precision dot product; exits on a mismatch.
void check_result(const std::string& what, const Case& c, const float* out) {
    std::mt19937_64 rng(12345);
    std::vector<std::array<int64_t, 3>> idx = {{0, 0, 0}, {c.batch - 1, c.M - 1, c.N - 1}, {0, c.M - 1, 0},
                                               {c.batch - 1, 0, c.N - 1}};
    for (int s = 0; s < 60; ++s)
        idx.push_back({static_cast<int64_t>(rng() % static_cast<uint64_t>(c.batch)),
                       static_cast<int64_t>(rng() % static_cast<uint64_t>(c.M)),
                       static_cast<int64_t>(rng() % static_cast<uint64_t>(c.N))});
    for (const auto& [bi, i, j] : idx) {
        const Mat a = mat_of(c.a, bi), b = mat_of(c.b, bi);
        double want = 0, mag = 0;
        for (int64_t k = 0; k < c.K; ++k) {
            want += a.at(i, k) * b.at(k, j);
            mag += std::fabs(a.at(i, k) * b.at(k, j));
        }
        if (c.bias.defined()) {
            want += static_cast<double>(c.bias.data()[j]);
            mag += std::fabs(static_cast<double>(c.bias.data()[j]));
        }
        // float accumulation: error grows like sqrt(K) eps |a||b| in practice; allow far more.
        const double tol = 1e-5 * mag + 1e-6;
        const double got = static_cast<double>(out[(bi * c.M + i) * c.N + j]);
        if (!(std::fabs(got - want) <= tol)) mismatch(what, c, bi, i, j, got, want, tol);
    }
}

Result run_case(const Case& c, const TimingConfig& cfg, bool with_eigen) {
    Result r;
    {
        const Tensor<float> out = c.coeffnet_op();
        const coeffnet::Shape want = c.a.dim() == 3 ? coeffnet::Shape{c.batch, c.M, c.N} : coeffnet::Shape{c.M, c.N};
        if (out.shape() != want || !out.is_contiguous()) {
            std::fprintf(stderr, "gemm_bench: '%s': coeffnet returned shape %s (contiguous: %d), expected %s\n",
                         c.name.c_str(), coeffnet::shape_str(out.shape()).c_str(), out.is_contiguous() ? 1 : 0,
                         coeffnet::shape_str(want).c_str());
            std::exit(1);
        }
        check_result("coeffnet::" + c.op, c, out.data());
    }
    r.cn = time_calls(
        [&] {
            const Tensor<float> out = c.coeffnet_op();
            g_sink = g_sink + out.data()[0];
        },
        cfg);

    if (with_eigen && !c.bias.defined()) {
        std::vector<float> out(static_cast<size_t>(c.batch * c.M * c.N));
        float* po = out.data();
        auto call = [&] {
            if (c.batch == 1) {
                eigen_gemm(mat_of(c.a, 0), mat_of(c.b, 0), po);  // Eigen threads it
            } else {
                // One GEMM per thread (Eigen runs single-threaded inside a parallel region).
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
                for (int64_t bi = 0; bi < c.batch; ++bi) eigen_gemm(mat_of(c.a, bi), mat_of(c.b, bi), po + bi * c.M * c.N);
            }
        };
        call();
        check_result("plain Eigen", c, po);
        r.eigen = time_calls(
            [&] {
                call();
                g_sink = g_sink + po[0];
            },
            cfg);
    }
    return r;
}

// The cases whose name contains `filter` (all when empty); operands are drawn only for those,
// each group from its own seed, so a filtered run sees the same data as a full one.
std::vector<Case> make_cases(const std::string& filter) {
    auto wanted = [&](const std::string& name) { return filter.empty() || name.find(filter) != std::string::npos; };
    std::vector<Case> cases;
    const int64_t tokens = 8 * 197;  // batch 8 x 197 tokens (196 patches + CLS)

    struct Lin {
        const char* name;
        int64_t in, out;
    };
    const Lin lins[] = {{"qkv", 768, 2304}, {"proj", 768, 768}, {"fc1", 768, 3072}, {"fc2", 3072, 768}};
    uint64_t seed = 2024;
    for (const Lin& l : lins) {
        coeffnet::Generator gen(seed++);
        const std::string n = l.name;
        const bool bias_case = n == "fc1";
        if (!wanted(n + " fwd") && !wanted(n + " bwd dX") && !wanted(n + " bwd dW") &&
            !(bias_case && wanted(n + " fwd +bias")))
            continue;
        const Tensor<float> x = Tensor<float>::randn({tokens, l.in}, gen);
        const Tensor<float> w = Tensor<float>::randn({l.out, l.in}, gen, 0.0, 0.02);
        const Tensor<float> g = Tensor<float>::randn({tokens, l.out}, gen);
        // forward: y = x W^T (linear without bias: the GEMM alone)
        if (wanted(n + " fwd"))
            cases.push_back({n + " fwd", "linear(x, W)", 1, tokens, l.in, l.out, x, w.mT(), {},
                             [x, w] { return coeffnet::linear(x, w); }});
        // backward, as linear's backward calls it: dX = G W, dW = G^T X
        if (wanted(n + " bwd dX"))
            cases.push_back({n + " bwd dX", "matmul(G, W)", 1, tokens, l.out, l.in, g, w, {},
                             [g, w] { return coeffnet::matmul(g, w); }});
        if (wanted(n + " bwd dW"))
            cases.push_back({n + " bwd dW", "matmul(G.mT(), x)", 1, l.out, tokens, l.in, g.mT(), x, {},
                             [g, x] { return coeffnet::matmul(g.mT(), x); }});
        if (bias_case && wanted(n + " fwd +bias")) {
            const Tensor<float> bias = Tensor<float>::randn({l.out}, gen);
            cases.push_back({n + " fwd +bias", "linear(x, W, b)", 1, tokens, l.in, l.out, x, w.mT(), bias,
                             [x, w, bias] { return coeffnet::linear(x, w, bias); }});
        }
    }

    const int64_t bh = 8 * 12, n = 197, d = 64;
    if (wanted("attn scores Q K^T")) {
        coeffnet::Generator gen(seed);
        const Tensor<float> q = Tensor<float>::randn({bh, n, d}, gen);
        const Tensor<float> k = Tensor<float>::randn({bh, n, d}, gen);
        cases.push_back({"attn scores Q K^T", "matmul(q, k.mT())", bh, n, d, n, q, k.mT(), {},
                         [q, k] { return coeffnet::matmul(q, k.mT()); }});
    }
    if (wanted("attn P V")) {
        coeffnet::Generator gen(seed + 1);
        const Tensor<float> p = Tensor<float>::uniform({bh, n, n}, gen, 0.0, 2.0 / n);  // rows sum to ~1
        const Tensor<float> v = Tensor<float>::randn({bh, n, d}, gen);
        cases.push_back({"attn P V", "matmul(p, v)", bh, n, n, d, p, v, {}, [p, v] { return coeffnet::matmul(p, v); }});
    }
    return cases;
}



void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: gemm_bench [--quick] [--json] [--reps N] [--min-time S] [--no-eigen] [--filter STR] [--help]\n"
                 "\n"
                 "float32 GEMM GFLOP/s through coeffnet::linear / coeffnet::matmul for the ViT-B/16 shapes\n"
                 "(8 x 197 tokens; linear layers 768->2304, 768->768, 768->3072, 3072->768, forward and\n"
                 "the dX/dW backward GEMMs; batched attention 96 x [197x64]@[64x197] and [197x197]@[197x64]),\n"
                 "next to a plain Eigen product on the same buffers and the measured FMA peak.\n"
                 "\n"
                 "  --quick       short run: 3 reps of >= 0.05 s (default: 5 reps of >= 0.2 s)\n"
                 "  --json        print one JSON object instead of the table\n"
                 "  --reps N      timed reps per measurement (median reported)\n"
                 "  --min-time S  minimum seconds per rep\n"
                 "  --no-eigen    skip the plain-Eigen peer\n"
                 "  --filter STR  run only the shapes whose name contains STR (e.g. 'fc1', 'attn', 'bwd')\n"
                 "  --help        this text\n"
                 "\n"
                 "Threads: OMP_NUM_THREADS (default: all cores). Every result is checked against a\n"
                 "double-precision reference at sampled entries before it is timed; exit 1 on a mismatch.\n");
}

bool parse_number(const char* s, double& out) {
    char* end = nullptr;
    out = std::strtod(s, &end);
    return end != s && *end == '\0' && std::isfinite(out);
}

}  // namespace

int main(int argc, char** argv) {
    TimingConfig cfg;
    bool as_json = false, quick = false, with_eigen = true;
    std::optional<int> reps;
    std::optional<double> min_time;
    std::string filter;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "gemm_bench: %s needs a value (try --help)\n", flag);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else if (a == "--json") {
            as_json = true;
        } else if (a == "--quick") {
            quick = true;
        } else if (a == "--filter") {
            filter = value("--filter");
        } else if (a == "--no-eigen") {
            with_eigen = false;
        } else if (a == "--reps") {
            double v = 0;
            if (!parse_number(value("--reps"), v) || v < 1 || v > 1000 || v != std::floor(v)) {
                std::fprintf(stderr, "gemm_bench: --reps needs an integer in [1, 1000], got '%s'\n", argv[i]);
                return 2;
            }
            reps = static_cast<int>(v);
        } else if (a == "--min-time") {
            double v = 0;
            if (!parse_number(value("--min-time"), v) || v <= 0 || v > 60) {
                std::fprintf(stderr, "gemm_bench: --min-time needs seconds in (0, 60], got '%s'\n", argv[i]);
                return 2;
            }
            min_time = v;
        } else {
            std::fprintf(stderr, "gemm_bench: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (quick) {
        cfg.reps = 3;
        cfg.min_rep_s = 0.05;
    }
    if (reps) cfg.reps = *reps;
    if (min_time) cfg.min_rep_s = *min_time;

    try {
        coeffnet::NoGrad no_grad;
        const std::vector<Case> cases = make_cases(filter);
        if (cases.empty()) {
            std::fprintf(stderr,
                         "gemm_bench: --filter '%s' matches no shape (names: {qkv,proj,fc1,fc2} {fwd,bwd dX,bwd dW}, "
                         "fc1 fwd +bias, attn scores Q K^T, attn P V)\n",
                         filter.c_str());
            return 2;
        }

        const double load_before = loadavg_1min();
        const Peak peak = measure_peak(cfg);
        const char* omp_env = std::getenv("OMP_NUM_THREADS");
        json j;
        j["benchmark"] = "gemm_bench";
        j["date_utc"] = utc_now();
        j["machine"] = {{"cpu", cpu_model()},
                        {"threads", max_threads()},
                        {"omp_num_threads_env", omp_env ? json(omp_env) : json(nullptr)},
                        {"peak_isa", peak.isa},
                        {"eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                                              "." + std::to_string(EIGEN_MINOR_VERSION)},
                        {"eigen_simd", Eigen::SimdInstructionSetsInUse()},
                        {"compiler", bench::compiler_name()},
                        {"loadavg_1min_at_start", load_before}};
        j["peak"] = {{"isa", peak.isa},
                     {"threads", peak.threads},
                     {"single_thread_gflops", peak.single_gflops},
                     {"all_threads_gflops", peak.all_gflops}};
        j["config"] = {{"reps", cfg.reps}, {"min_rep_s", cfg.min_rep_s}, {"quick", quick}};
        j["results"] = json::array();

        if (!as_json) {
            std::printf("gemm_bench  %s\n", j["date_utc"].get<std::string>().c_str());
            std::printf("cpu: %s | threads: %d%s | Eigen %s (%s)\n", j["machine"]["cpu"].get<std::string>().c_str(),
                        peak.threads, omp_env ? " (OMP_NUM_THREADS)" : "",
                        j["machine"]["eigen_version"].get<std::string>().c_str(), Eigen::SimdInstructionSetsInUse());
            std::printf("FMA peak (%s): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n", peak.isa.c_str(),
                        peak.single_gflops, peak.threads, peak.all_gflops);
            std::printf("timing: median of %d reps, each >= %.2f s; %%peak is of the %d-thread FMA peak; "
                        "spread = (max - min) / median over reps; load average at start %.2f\n\n",
                        cfg.reps, cfg.min_rep_s, peak.threads, load_before);
            std::printf("%-18s %-19s %5s %5s %5s %5s %9s %8s %6s %6s %8s %6s %7s\n", "shape", "coeffnet op", "batch",
                        "M", "K", "N", "ms", "GFLOP/s", "%peak", "spread", "Eigen", "%peak", "cn/eig");
            std::fflush(stdout);
        }
        double worst_spread = 0;
        for (const Case& c : cases) {
            const Result r = run_case(c, cfg, with_eigen);
            worst_spread = std::max(worst_spread, (r.cn.max_s - r.cn.min_s) / r.cn.median_s);
            if (r.eigen) worst_spread = std::max(worst_spread, (r.eigen->max_s - r.eigen->min_s) / r.eigen->median_s);
            const double gf = c.flops() / r.cn.median_s * 1e-9;
            json row = {{"name", c.name},
                        {"op", c.op},
                        {"M", c.M},
                        {"K", c.K},
                        {"N", c.N},
                        {"batch", c.batch},
                        {"flops", c.flops()},
                        {"ms", r.cn.median_s * 1e3},
                        {"ms_min", r.cn.min_s * 1e3},
                        {"ms_max", r.cn.max_s * 1e3},
                        {"calls_per_rep", r.cn.calls_per_rep},
                        {"gflops", gf},
                        {"fraction_of_peak", gf / peak.all_gflops}};
            double egf = 0;
            if (r.eigen) {
                egf = c.flops() / r.eigen->median_s * 1e-9;
                row["eigen"] = {{"ms", r.eigen->median_s * 1e3},
                                {"gflops", egf},
                                {"fraction_of_peak", egf / peak.all_gflops},
                                {"coeffnet_over_eigen", gf / egf}};
            }
            j["results"].push_back(row);
            if (!as_json) {
                const double spread = (r.cn.max_s - r.cn.min_s) / r.cn.median_s * 100.0;
                std::printf("%-18s %-19s %5lld %5lld %5lld %5lld %9.3f %8.1f %5.1f%% %5.1f%%", c.name.c_str(),
                            c.op.c_str(), static_cast<long long>(c.batch), static_cast<long long>(c.M),
                            static_cast<long long>(c.K), static_cast<long long>(c.N), r.cn.median_s * 1e3, gf,
                            100.0 * gf / peak.all_gflops, spread);
                if (r.eigen)
                    std::printf(" %8.1f %5.1f%% %7.2f\n", egf, 100.0 * egf / peak.all_gflops, gf / egf);
                else
                    std::printf(" %8s %6s %7s\n", "-", "-", "-");
                std::fflush(stdout);
            }
        }
        const double load_after = loadavg_1min();
        j["machine"]["loadavg_1min_at_end"] = load_after;
        j["worst_spread"] = worst_spread;
        // Another process on the cores shows up as a wide spread between reps, or as an FMA peak
        // that does not scale with the threads.
        if (peak.threads > 1 && peak.all_gflops < 0.8 * peak.threads * peak.single_gflops)
            std::fprintf(stderr,
                         "gemm_bench: warning: the %d-thread FMA peak (%.1f GFLOP/s) is well under %d x the 1-thread "
                         "peak (%.1f GFLOP/s): are the cores shared with another process or SMT siblings?\n",
                         peak.threads, peak.all_gflops, peak.threads, peak.single_gflops);
        if (worst_spread > 0.25)
            std::fprintf(stderr,
                         "gemm_bench: warning: timings varied by up to %.0f%% between reps (load average %.2f at "
                         "start, %.2f at end); is something else running? Numbers may be low.\n",
                         100.0 * worst_spread, load_before, load_after);
        if (as_json) std::printf("%s\n", j.dump(2).c_str());
        else
            std::printf("\nAll results matched a double-precision reference at %d sampled entries each.\n", 64);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gemm_bench: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
