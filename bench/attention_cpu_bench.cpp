// attention_cpu_bench: coefficient attention on the CPU, materialised vs tiled backend.
//
// Shapes (float32, coeff_attention with a random alpha, no mask, evaluation mode):
//   vit197   B=8 H=12 N=M=197  d=64  (ViT-B/16 at batch 8)
//   sd1024   B=1 H=8  N=M=1024 d=40  (SD-1.5 UNet, 32x32 latent, attn1)
//   sd4096   B=1 H=8  N=M=4096 d=40  (SD-1.5 UNet, 64x64 latent, attn1)
// Modes: fwd (forward under NoGrad: inference) and fwd+bwd (forward with recording, then
// backward of a fixed upstream gradient into q, k, v and alpha).
// FLOPs by the standard attention formula: forward 4*B*H*N*M*d (QK^T and PV), backward 2.5x
// that, so fwd+bwd counts 3.5x; halved with --causal (N = M: half the scores are visible);
// the mixing and softmax work is not counted.
//
// Correctness before timing: for each shape and mode both backends run once and their outputs
// (and gradients) must agree to a relative max error of 1e-4, else exit 1.
// Timing: one call sizes a rep, a warm-up of half a rep, then the median of --reps reps, each a
// batch of calls lasting at least --min-time seconds (std::chrono::steady_clock).
// Peak memory: each (shape, mode, backend) runs once more in a fresh process (this program,
// re-executed with --child): it builds the inputs, warms OpenMP up on a tiny call, then reports
// VmHWM - VmRSS (Linux /proc/self/status) across one call: the peak resident growth, i.e.
// everything the call allocated and touched, Eigen's buffers included, inputs excluded.
//
// Variants (--variants): the tiled backend at block_q 16, 32, 64, 128, and a key-tiled
// two-pass forward (pass 1: streamed row log-sum-exp per head; pass 2: recompute the scores,
// P = exp(S - lse), mix, accumulate O; tiles of H x Bq x Bk), which is the GPU design ported as is.
//
// Usage: attention_cpu_bench [--quick] [--json] [--reps N] [--min-time S] [--filter STR]
//                            [--causal] [--block-q N] [--variants] [--no-memory] [--help]

#include <algorithm>
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
#include <limits>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/ops/attention_tiled.hpp>

#include "bench_util.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using coeffnet::AttentionBackend;
using coeffnet::AttentionOptions;
using coeffnet::Tensor;
using bench::Clock;
using bench::seconds_since;
using bench::Timing;
using bench::TimingConfig;
using bench::time_calls;
using json = nlohmann::ordered_json;

volatile float g_sink = 0.0f;

// ---- shapes and inputs ------------------------------------------------------------------------

struct Shape4 {
    std::string name;
    int64_t B, H, N, M, d;
    double fwd_flops() const { return 4.0 * static_cast<double>(B * H) * static_cast<double>(N) * M * d; }
};

const std::vector<Shape4> kShapes = {
    {"vit197", 8, 12, 197, 197, 64},
    {"sd1024", 1, 8, 1024, 1024, 40},
    {"sd4096", 1, 8, 4096, 4096, 40},
};

struct Inputs {
    Tensor<float> q, k, v, alpha, dout;
};

Inputs make_inputs(const Shape4& s) {
    coeffnet::Generator g(2024);
    Inputs in;
    in.q = Tensor<float>::randn({s.B, s.H, s.N, s.d}, g);
    in.k = Tensor<float>::randn({s.B, s.H, s.M, s.d}, g);
    in.v = Tensor<float>::randn({s.B, s.H, s.M, s.d}, g);
    in.alpha = Tensor<float>::randn({s.H, s.H}, g, 0.0, 0.2);
    in.dout = Tensor<float>::randn({s.B, s.H, s.N, s.d}, g);
    return in;
}

struct RunConfig {
    bool causal = false;
    int64_t block_q = 0;
};

// One call of the op. Returns the output and, for fwd+bwd, the gradients of q, k, v, alpha.
std::vector<Tensor<float>> call(const Inputs& in, bool backward, AttentionBackend backend, const RunConfig& rc) {
    AttentionOptions o;
    o.backend = backend;
    o.causal = rc.causal;
    auto op = [&](const Tensor<float>& q, const Tensor<float>& k, const Tensor<float>& v, const Tensor<float>& a) {
        if (backend == AttentionBackend::tiled && rc.block_q > 0)
            return coeffnet::coeff_attention_tiled(q, k, v, a, o, Tensor<float>(), Tensor<float>(),
                                                     coeffnet::TiledConfig{rc.block_q})
                .out;
        return coeffnet::coeff_attention(q, k, v, a, o).out;
    };
    if (!backward) {
        coeffnet::NoGrad ng;
        return {op(in.q, in.k, in.v, in.alpha)};
    }
    Tensor<float> q = in.q.detach(), k = in.k.detach(), v = in.v.detach(), a = in.alpha.detach();
    for (auto* t : {&q, &k, &v, &a}) t->set_requires_grad(true);
    Tensor<float> out = op(q, k, v, a);
    out.backward(in.dout);
    return {out, q.grad(), k.grad(), v.grad(), a.grad()};
}

// ---- the key-tiled two-pass forward (an experiment; see the header of ops/attention_tiled.hpp)

Tensor<float> two_pass_forward(const Inputs& in, int64_t Bq, int64_t Bk) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const RowMat>;
    using Map = Eigen::Map<RowMat>;
    const int64_t B = in.q.size(0), H = in.q.size(1), N = in.q.size(2), M = in.k.size(2), d = in.q.size(3);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    RowMat A = RowMat::Identity(H, H);
    for (int64_t i = 0; i < H * H; ++i) A.data()[i] += in.alpha.data()[i];
    Tensor<float> out = Tensor<float>::zeros({B, H, N, d});
    const int64_t nqb = (N + Bq - 1) / Bq;
#ifdef _OPENMP
#pragma omp parallel
#endif
    {
        RowMat S(H * Bq, Bk), Phat(H * Bq, Bk);
        std::vector<float> mx(static_cast<size_t>(H * Bq)), sum(static_cast<size_t>(H * Bq));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < B * nqb; ++t) {
            const int64_t b = t / nqb, n0 = (t % nqb) * Bq, R = std::min(Bq, N - n0);
            auto Q = [&](int64_t h) { return CMap(in.q.data() + ((b * H + h) * N + n0) * d, R, d); };
            auto K = [&](int64_t h, int64_t m0, int64_t c) { return CMap(in.k.data() + ((b * H + h) * M + m0) * d, c, d); };
            auto V = [&](int64_t h, int64_t m0, int64_t c) { return CMap(in.v.data() + ((b * H + h) * M + m0) * d, c, d); };
            std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
            std::fill(sum.begin(), sum.end(), 0.0f);
            // Pass 1: online log-sum-exp per head and row.
            for (int64_t m0 = 0; m0 < M; m0 += Bk) {
                const int64_t c = std::min(Bk, M - m0);
                for (int64_t h = 0; h < H; ++h) {
                    Map s(S.data() + h * R * c, R, c);
                    s.noalias() = scale * (Q(h) * K(h, m0, c).transpose());
                    for (int64_t r = 0; r < R; ++r) {
                        auto row = s.row(r).array();
                        const size_t i = static_cast<size_t>(h * R + r);
                        const float m_new = std::max(mx[i], row.maxCoeff());
                        sum[i] = sum[i] * std::exp(mx[i] - m_new) + (row - m_new).exp().sum();
                        mx[i] = m_new;
                    }
                }
            }
            for (size_t i = 0; i < mx.size(); ++i) mx[i] += std::log(sum[i]);  // now lse
            // Pass 2: P = exp(S - lse), Phat = alpha' P, O += Phat V.
            for (int64_t m0 = 0; m0 < M; m0 += Bk) {
                const int64_t c = std::min(Bk, M - m0);
                for (int64_t h = 0; h < H; ++h) {
                    Map s(S.data() + h * R * c, R, c);
                    s.noalias() = scale * (Q(h) * K(h, m0, c).transpose());
                    for (int64_t r = 0; r < R; ++r) s.row(r).array() = (s.row(r).array() - mx[static_cast<size_t>(h * R + r)]).exp();
                }
                Map(Phat.data(), H, R * c).noalias() = A * Map(S.data(), H, R * c);
                for (int64_t h = 0; h < H; ++h)
                    Map(out.data() + ((b * H + h) * N + n0) * d, R, d).noalias() +=
                        Map(Phat.data() + h * R * c, R, c) * V(h, m0, c);
            }
        }
    }
    return out;
}

// ---- checks -----------------------------------------------------------------------------------

double rel_err(const Tensor<float>& a, const Tensor<float>& b) {
    const auto av = a.to_vector(), bv = b.to_vector();
    if (av.size() != bv.size()) return INFINITY;
    double diff = 0, mag = 0;
    for (size_t i = 0; i < av.size(); ++i) {
        const double x = av[i], y = bv[i];
        if (std::isnan(x) || std::isnan(y)) return INFINITY;
        diff = std::max(diff, std::abs(x - y));
        mag = std::max(mag, std::abs(y));
    }
    return mag > 0 ? diff / mag : diff;
}

double check_pair(const std::string& what, const std::vector<Tensor<float>>& got, const std::vector<Tensor<float>>& want) {
    static const char* names[] = {"out", "dq", "dk", "dv", "dalpha"};
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double e = rel_err(got[i], want[i]);
        worst = std::max(worst, e);
        if (!(e <= 1e-4)) {
            std::fprintf(stderr, "attention_cpu_bench: WRONG RESULT in %s: %s differs from the materialised path by %.3g (max rel)\n",
                         what.c_str(), names[i], e);
            std::exit(1);
        }
    }
    return worst;
}

// ---- memory: a fresh process per measurement ----------------------------------------------------

const char* backend_name(AttentionBackend b) { return b == AttentionBackend::tiled ? "tiled" : "materialised"; }

// Child side: prints the peak resident growth in KiB across one call.
int child_main(const std::string& shape, bool backward, const std::string& backend, const RunConfig& rc) {
    for (const Shape4& s : kShapes) {
        if (s.name != shape) continue;
        const Inputs in = make_inputs(s);
        {
            Shape4 tiny{"tiny", 1, 2, 64, 64, 8};
            const Inputs t = make_inputs(tiny);
            call(t, backward, AttentionBackend::tiled, rc);  // start the OpenMP team, fault in code pages
            call(t, backward, AttentionBackend::materialised, rc);
        }
        const long long before = bench::proc_status_kib("VmRSS:");
        {
            std::ofstream cr("/proc/self/clear_refs");
            cr << "5";  // reset VmHWM to the current RSS
        }
        const auto r = call(in, backward, backend == "tiled" ? AttentionBackend::tiled : AttentionBackend::materialised, rc);
        const long long hwm = bench::proc_status_kib("VmHWM:");
        g_sink = g_sink + r[0].data()[0];
        std::printf("%lld\n", hwm - before);
        return 0;
    }
    return 2;
}

// Parent side: peak resident growth in MiB (-1 on failure).
double peak_mib(const std::string& self, const Shape4& s, bool backward, AttentionBackend backend, const RunConfig& rc) {
    std::string cmd = self + " --child " + s.name + " " + (backward ? "fwdbwd" : "fwd") + " " + backend_name(backend) +
                      " --block-q " + std::to_string(rc.block_q) + (rc.causal ? " --causal" : "");
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    long long kib = -1;
    if (std::fscanf(p, "%lld", &kib) != 1) kib = -1;
    const int rc_ = pclose(p);
    if (rc_ != 0 || kib < 0) return -1;
    return static_cast<double>(kib) / 1024.0;
}

void usage() {
    std::puts(
        "attention_cpu_bench: coefficient attention on the CPU, materialised vs tiled backend (float32).\n"
        "  --quick        3 reps of >= 0.05 s (default 5 of >= 0.2 s)\n"
        "  --json         one JSON object on stdout instead of the table\n"
        "  --reps N       timed reps per measurement\n"
        "  --min-time S   minimum seconds per rep\n"
        "  --filter STR   only shapes whose name contains STR (vit197, sd1024, sd4096)\n"
        "  --causal       causal masks\n"
        "  --block-q N    query rows per tile of the tiled backend (0: its default rule)\n"
        "  --variants     also time the tiled backend at block_q 16/32/64/128 and a key-tiled two-pass forward\n"
        "  --no-memory    skip the peak-memory runs (each is a fresh process)\n"
        "  --help");
}

}  // namespace

int main(int argc, char** argv) {
    TimingConfig tc;
    RunConfig rc;
    bool as_json = false, variants = false, memory = true;
    std::string filter;
    std::vector<std::string> child;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "attention_cpu_bench: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--quick") tc = {3, 0.05};
        else if (a == "--json") as_json = true;
        else if (a == "--reps") tc.reps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--min-time") tc.min_rep_s = std::atof(next().c_str());
        else if (a == "--filter") filter = next();
        else if (a == "--causal") rc.causal = true;
        else if (a == "--block-q") rc.block_q = std::max<int64_t>(0, std::atoll(next().c_str()));
        else if (a == "--variants") variants = true;
        else if (a == "--no-memory") memory = false;
        else if (a == "--child") {
            child = {next(), next(), next()};
        } else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            std::fprintf(stderr, "attention_cpu_bench: unknown argument %s (try --help)\n", a.c_str());
            return 2;
        }
    }
    if (!child.empty()) return child_main(child[0], child[1] == "fwdbwd", child[2], rc);

    const std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
    json doc;
    doc["machine"] = {{"cpu", bench::cpu_model()},
                      {"threads", bench::max_threads()},
                      {"eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                                            "." + std::to_string(EIGEN_MINOR_VERSION)},
                      {"eigen_simd", Eigen::SimdInstructionSetsInUse()},
                      {"compiler", __VERSION__},
                      {"loadavg_1min_at_start", bench::loadavg_1min()}};
    doc["config"] = {{"reps", tc.reps}, {"min_rep_s", tc.min_rep_s}, {"causal", rc.causal}, {"block_q", rc.block_q},
                     {"flops", "forward 4*B*H*N*M*d; fwd+bwd 3.5x that; halved when causal"},
                     {"memory", "VmHWM - VmRSS across one call, fresh process per measurement"}};
    json results = json::array();
    if (!as_json) {
        std::printf("attention_cpu_bench: %s, %d threads, Eigen %s; load average %.2f\n", bench::cpu_model().c_str(),
                    bench::max_threads(), doc["machine"]["eigen_version"].get<std::string>().c_str(), bench::loadavg_1min());
        std::printf("%-8s %-8s %-13s %10s %9s %10s %9s %9s\n", "shape", "mode", "backend", "ms", "GFLOP/s", "peak MiB",
                    "speedup", "mem ratio");
    }
    for (const Shape4& s : kShapes) {
        if (!filter.empty() && s.name.find(filter) == std::string::npos) continue;
        const Inputs in = make_inputs(s);
        for (bool backward : {false, true}) {
            const std::string mode = backward ? "fwd+bwd" : "fwd";
            const double flops = s.fwd_flops() * (backward ? 3.5 : 1.0) * (rc.causal ? 0.5 : 1.0);
            double err;
            {
                const auto want = call(in, backward, AttentionBackend::materialised, rc);
                const auto got = call(in, backward, AttentionBackend::tiled, rc);
                err = check_pair(s.name + " " + mode, got, want);
            }
            json row = {{"shape", s.name}, {"B", s.B}, {"H", s.H}, {"N", s.N}, {"M", s.M}, {"d", s.d}, {"mode", mode},
                        {"flops", flops}, {"max_rel_err_tiled_vs_materialised", err}};
            double ms[2] = {0, 0}, mib[2] = {-1, -1};
            for (int bi = 0; bi < 2; ++bi) {
                const AttentionBackend be = bi == 0 ? AttentionBackend::materialised : AttentionBackend::tiled;
                const Timing t = time_calls([&] { g_sink = g_sink + call(in, backward, be, rc)[0].data()[0]; }, tc);
                ms[bi] = t.median_s * 1e3;
                if (memory) mib[bi] = peak_mib(self, s, backward, be, rc);
                row[backend_name(be)] = {{"ms", ms[bi]},
                                         {"ms_min", t.min_s * 1e3},
                                         {"ms_max", t.max_s * 1e3},
                                         {"calls_per_rep", t.calls_per_rep},
                                         {"gflops", flops / t.median_s * 1e-9},
                                         {"peak_mib", mib[bi]}};
                if (!as_json)
                    std::printf("%-8s %-8s %-13s %10.2f %9.1f %10.1f %9s %9s\n", s.name.c_str(), mode.c_str(),
                                backend_name(be), ms[bi], flops / t.median_s * 1e-9, mib[bi],
                                bi == 1 ? (std::to_string(ms[0] / ms[1]).substr(0, 5) + "x").c_str() : "",
                                bi == 1 && mib[1] > 0 ? (std::to_string(mib[0] / mib[1]).substr(0, 6) + "x").c_str() : "");
                std::fflush(stdout);
            }
            row["tiled_speedup"] = ms[0] / ms[1];
            if (variants) {
                json vs = json::array();
                for (int64_t bq : {16, 32, 64, 128}) {
                    RunConfig v = rc;
                    v.block_q = bq;
                    check_pair(s.name + " " + mode + " block_q " + std::to_string(bq), call(in, backward, AttentionBackend::tiled, v),
                               call(in, backward, AttentionBackend::tiled, rc));
                    const Timing t = time_calls([&] { g_sink = g_sink + call(in, backward, AttentionBackend::tiled, v)[0].data()[0]; }, tc);
                    const double vmib = memory ? peak_mib(self, s, backward, AttentionBackend::tiled, v) : -1;
                    vs.push_back({{"variant", "tiled block_q " + std::to_string(bq)}, {"ms", t.median_s * 1e3},
                                  {"gflops", flops / t.median_s * 1e-9}, {"peak_mib", vmib}});
                    if (!as_json)
                        std::printf("%-8s %-8s %-13s %10.2f %9.1f %10.1f\n", "", mode.c_str(), ("  bq=" + std::to_string(bq)).c_str(),
                                    t.median_s * 1e3, flops / t.median_s * 1e-9, vmib);
                }
                if (!backward && !rc.causal)
                    for (int64_t bk : {128, 512}) {
                        const int64_t bq = 64;
                        check_pair(s.name + " two-pass", {two_pass_forward(in, bq, bk)},
                                   call(in, false, AttentionBackend::materialised, rc));
                        const Timing t = time_calls([&] { g_sink = g_sink + two_pass_forward(in, bq, bk).data()[0]; }, tc);
                        const std::string name = "2pass Bk=" + std::to_string(bk);
                        vs.push_back({{"variant", "two-pass key-tiled, Bq 64, Bk " + std::to_string(bk)},
                                      {"ms", t.median_s * 1e3}, {"gflops", flops / t.median_s * 1e-9}});
                        if (!as_json)
                            std::printf("%-8s %-8s %-13s %10.2f %9.1f\n", "", mode.c_str(), ("  " + name).c_str(),
                                        t.median_s * 1e3, flops / t.median_s * 1e-9);
                    }
                row["variants"] = vs;
            }
            results.push_back(row);
        }
    }
    doc["machine"]["loadavg_1min_at_end"] = bench::loadavg_1min();
    doc["results"] = results;
    if (as_json) std::cout << doc.dump(2) << "\n";
    else std::printf("load average at end %.2f\n", bench::loadavg_1min());
    return 0;
}
