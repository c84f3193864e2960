// cuda attention_bench: fused coefficient attention (coeffnet::cuda::coeff_attention_forward /
// _backward, kernels/coeff_attention.cuh) against the materialised path built from the other
// CUDA launchers (cuda::gemm for S = Q K^T and O = Phat V, cuda::softmax_forward, cuda::alpha_prime,
// cuda::mix_heads and their backwards), forward and forward+backward.
//
// Shapes (q, k, v [B, H, N, d], self-attention, no mask, alpha ~ N(0, 0.3^2), no dropout):
//   vit_b16  B=64 H=12 N=197   d=64    ViT-B/16 at batch 64
//   sd15     B=2  H=8  N=4096  d=40    SD-1.5 UNet, 64x64 latent
//   sdxl     B=2  H=10 N=4096  d=64    SDXL UNet, the 64x64 level
//   long     B=1  H=16 N=16384 d=128
// FLOPs as for standard attention: forward 4*B*H*N^2*d, backward 2.5x that (fwd+bwd = 3.5x).
// Peak memory: the caching allocator's peak bytes in use during the path, minus the bytes in use
// before it (the inputs), and cudaMemGetInfo's device-wide used bytes at the end beside it.
//
// Paths: fused (pass 2 of the forward on tensor cores for bf16), fused_simt (bf16 only: every kernel
// SIMT, variant 1 of kernels/coeff_attention.cuh), materialised.
// Each result is checked before it is timed: the fused path against the materialised one where
// the latter fits (out, dq, dk, dv, dalpha; max abs difference over max abs reference), and at
// N = 16384 on 8 sampled query rows of batch item 0 (every head) against an fp64 CPU reference
// computed from the stored (rounded) inputs (out and dq; the SIMT variant's out against the
// tensor-core one's everywhere). A path that runs out of device memory
// is recorded as "oom"; the materialised path is "skipped" up front when its estimated memory
// exceeds the free memory.
// Timing: cudaEvents on the context stream, after one warm-up call; the median of up to --reps
// calls, fewer when one call is long (each case gets about --budget seconds; at least 1 rep).
//
// Measured: not yet measured on a GPU (no GPU lent as of 2026-11-29); command:
//   ./build/bench/cuda/attention_bench --json attention_bench.json
//   python3 bench/torch_reference.py --json torch_reference.json   (same shapes, same JSON format)
//
// Usage: attention_bench [--quick] [--json PATH] [--reps N] [--budget S] [--filter STR] [--dtype bf16|fp32] [--help]
// Exit status: 0 ok, 1 a check failed or a CUDA error, 2 no usable GPU, 64 bad arguments.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/cuda/attention.hpp>
#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/gemm.hpp>
#include <coeffnet/cuda/launchers.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "bench_cuda.hpp"

using namespace coeffnet;
namespace cu = coeffnet::cuda;
namespace cb = bench::cuda;

namespace {

struct Shape4 {
    std::string name;
    int64_t B, H, N, d;
    bool quick;
};

std::vector<Shape4> shapes() {
    return {{"vit_b16", 64, 12, 197, 64, true},
            {"sd15", 2, 8, 4096, 40, true},
            {"sdxl", 2, 10, 4096, 64, false},
            {"long", 1, 16, 16384, 128, false}};
}

struct Options : cb::Options {
    std::string dtype = "bf16";
    double budget = 3.0;  // seconds of timed calls per case
    Options() { reps = 10; }
};

constexpr const char* kUsage =
        "attention_bench: fused vs materialised coefficient attention on the GPU (fwd and fwd+bwd)\n"
        "  --quick        vit_b16 and sd15 only, at most 3 reps\n"
        "  --json PATH    write the results as JSON (written to PATH.tmp, then renamed)\n"
        "  --reps N       timed calls per case at most (median reported; default 10)\n"
        "  --budget S     seconds of timed calls per case (default 3; at least one call)\n"
        "  --filter STR   only shapes whose name contains STR\n"
        "  --dtype T      bf16 (default) or fp32\n"
        "  --help         this text\n"
        "exit status: 0 ok, 1 a check failed or CUDA error, 2 no usable GPU, 64 bad arguments";

double fwd_flops(const Shape4& s) {
    return 4.0 * static_cast<double>(s.B * s.H) * static_cast<double>(s.N) * static_cast<double>(s.N) *
           static_cast<double>(s.d);
}

// Milliseconds of one call of f: one warm-up, then the median of up to `reps` timed calls
// (fewer when a call is long, so that the case takes about `budget` seconds).
double median_ms(const std::function<void()>& f, int reps, double budget) {
    cb::EventTimer ev;
    const double first = ev.ms_per_call(f);  // warm-up (also sizes the rep count)
    const int n = std::clamp(static_cast<int>(budget * 1e3 / std::max(first, 1e-3)), 1, reps);
    std::vector<double> t;
    for (int r = 0; r < n; ++r) t.push_back(ev.ms_per_call(f));
    return cb::middle(std::move(t));
}

// max |a - b| / max |b| over all elements.
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double diff = 0, mag = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        mag = std::max(mag, std::abs(static_cast<double>(b[i])));
    }
    return mag > 0 ? diff / mag : diff;
}

template <class T>
struct Problem {
    cu::DeviceTensor<T> q, k, v, dout;
    cu::DeviceTensor<float> alpha;
};

// The materialised path: S, P, Phat (and in the backward dPhat, dP, dS) of B*H*N*N elements each.
template <class T>
struct Materialised {
    cu::DeviceTensor<T> out, dq, dk, dv;
    cu::DeviceTensor<float> dalpha;
};

template <class T>
Materialised<T> materialised(const Problem<T>& p, bool backward) {
    const Shape& qs = p.q.shape();
    const int64_t B = qs[0], H = qs[1], N = qs[2], d = qs[3];
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    const coeffnet::DropoutDraw<float> none;  // no alpha dropout (ops/coeff_spec.hpp)
    auto ap = cu::DeviceTensor<float>::empty({H, H});
    cu::alpha_prime(p.alpha, ap, none, true);
    Materialised<T> r;
    cu::DeviceTensor<T> P = cu::DeviceTensor<T>::empty({B, H, N, N});
    {
        cu::DeviceTensor<T> S = cu::DeviceTensor<T>::empty({B, H, N, N});
        cu::gemm(p.q, p.k, S, false, true);
        cu::softmax_forward(S, P, scale);
    }
    cu::DeviceTensor<T> Phat = cu::DeviceTensor<T>::empty({B, H, N, N});
    cu::mix_heads(P, ap, Phat);
    r.out = cu::DeviceTensor<T>::empty({B, H, N, d});
    cu::gemm(Phat, p.v, r.out, false, false);
    if (!backward) return r;
    cu::DeviceTensor<T> dPhat = cu::DeviceTensor<T>::empty({B, H, N, N});
    cu::gemm(p.dout, p.v, dPhat, false, true);
    r.dv = cu::DeviceTensor<T>::empty({B, H, N, d});
    cu::gemm(Phat, p.dout, r.dv, true, false);
    Phat = {};
    cu::DeviceTensor<T> dP = cu::DeviceTensor<T>::empty({B, H, N, N});
    auto dap = cu::DeviceTensor<float>::empty({H, H});
    cu::mix_heads_backward(dPhat, P, ap, &dP, &dap);
    dPhat = {};
    cu::softmax_backward(P, dP, dP, scale);  // dS in place
    r.dq = cu::DeviceTensor<T>::empty({B, H, N, d});
    r.dk = cu::DeviceTensor<T>::empty({B, H, N, d});
    cu::gemm(dP, p.k, r.dq, false, false);
    cu::gemm(dP, p.q, r.dk, true, false);
    r.dalpha = cu::DeviceTensor<float>::empty({H, H});
    cu::alpha_prime_backward(dap, r.dalpha, none);
    return r;
}

template <class T>
Materialised<T> fused(const Problem<T>& p, bool backward, bool tensor_cores = true) {
    cu::AttentionConfig cfg;
    cfg.tensor_cores = tensor_cores;
    auto f = cu::coeff_attention_forward(p.q, p.k, p.v, p.alpha, cfg);
    Materialised<T> r;
    r.out = f.out;
    if (!backward) return r;
    auto g = cu::coeff_attention_backward(p.q, p.k, p.v, p.dout, f.saved);
    r.dq = g.dq, r.dk = g.dk, r.dv = g.dv, r.dalpha = g.dalpha;
    return r;
}

// fp64 reference of out and dq for query row n of batch item 0, every head, from the stored inputs.
struct RowRef {
    std::vector<double> out, dq;  // [H][d]
};
RowRef reference_row(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                     const std::vector<float>& dout, const std::vector<float>& alpha, int64_t H, int64_t N, int64_t d,
                     int64_t n) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const int64_t M = N;
    std::vector<double> P(static_cast<size_t>(H * M)), G(static_cast<size_t>(H * M));
    for (int64_t i = 0; i < H; ++i) {
        double mx = -INFINITY;
        for (int64_t m = 0; m < M; ++m) {
            double s = 0;
            for (int64_t x = 0; x < d; ++x) s += static_cast<double>(q[((i * N) + n) * d + x]) * k[((i * M) + m) * d + x];
            P[i * M + m] = s * scale;
            mx = std::max(mx, P[i * M + m]);
        }
        double sum = 0;
        for (int64_t m = 0; m < M; ++m) sum += (P[i * M + m] = std::exp(P[i * M + m] - mx));
        for (int64_t m = 0; m < M; ++m) P[i * M + m] /= sum;
        for (int64_t m = 0; m < M; ++m) {  // dPhat_i = dO_i V_i^T (head i as a target)
            double s = 0;
            for (int64_t x = 0; x < d; ++x) s += static_cast<double>(dout[((i * N) + n) * d + x]) * v[((i * M) + m) * d + x];
            G[i * M + m] = s;
        }
    }
    auto ap = [&](int64_t h, int64_t i) { return (h == i ? 1.0 : 0.0) + alpha[h * H + i]; };
    RowRef r;
    r.out.assign(static_cast<size_t>(H * d), 0.0);
    r.dq.assign(static_cast<size_t>(H * d), 0.0);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t m = 0; m < M; ++m) {
            double ph = 0;
            for (int64_t i = 0; i < H; ++i) ph += ap(h, i) * P[i * M + m];
            for (int64_t x = 0; x < d; ++x) r.out[h * d + x] += ph * v[((h * M) + m) * d + x];
        }
    for (int64_t i = 0; i < H; ++i) {
        std::vector<double> dP(static_cast<size_t>(M));
        double D = 0;
        for (int64_t m = 0; m < M; ++m) {
            double s = 0;
            for (int64_t h = 0; h < H; ++h) s += ap(h, i) * G[h * M + m];
            dP[m] = s;
            D += s * P[i * M + m];
        }
        for (int64_t m = 0; m < M; ++m) {
            const double ds = scale * P[i * M + m] * (dP[m] - D);
            for (int64_t x = 0; x < d; ++x) r.dq[i * d + x] += ds * k[((i * M) + m) * d + x];
        }
    }
    return r;
}

struct Memory {
    size_t peak_extra = 0, device_used = 0;
};
Memory memory_after(size_t baseline) {
    Memory m;
    const cu::AllocatorStats st = cu::Context::get().allocator().stats();
    m.peak_extra = st.peak_in_use > baseline ? st.peak_in_use - baseline : 0;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) m.device_used = total_b - free_b;
    return m;
}

bool is_oom(const std::exception& e) {
    const std::string w = e.what();
    return w.find("out of memory") != std::string::npos || w.find("cudaErrorMemoryAllocation") != std::string::npos;
}

template <class T>
void run_shape(const Shape4& s, const Options& opt, nlohmann::json& results, bool& ok) {
    const char* dtype = std::is_same_v<T, float> ? "float32" : "bfloat16";
    Generator gen(2026);
    Problem<T> p;
    p.q = cu::DeviceTensor<T>::from_host(Tensor<float>::randn({s.B, s.H, s.N, s.d}, gen));
    p.k = cu::DeviceTensor<T>::from_host(Tensor<float>::randn({s.B, s.H, s.N, s.d}, gen));
    p.v = cu::DeviceTensor<T>::from_host(Tensor<float>::randn({s.B, s.H, s.N, s.d}, gen));
    p.dout = cu::DeviceTensor<T>::from_host(Tensor<float>::randn({s.B, s.H, s.N, s.d}, gen));
    const Tensor<float> alpha_host = Tensor<float>::randn({s.H, s.H}, gen, 0.0, 0.3);
    p.alpha = cu::DeviceTensor<float>::from_host(alpha_host);
    cu::Context& ctx = cu::Context::get();
    ctx.synchronize();

    // The materialised path holds ~5 maps of B*H*N*N elements at once in its backward.
    const double map_bytes = static_cast<double>(s.B * s.H) * static_cast<double>(s.N) * static_cast<double>(s.N) * sizeof(T);
    size_t free_b = 0, total_b = 0;
    COEFFNET_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const bool mat_fits = 5.0 * map_bytes < 0.9 * static_cast<double>(free_b);

    // ---- checks --------------------------------------------------------------------------
    // At N = 16384 (or where the materialised path does not fit) against fp64 on sampled rows.
    const bool sampled = s.N >= 16384 || !mat_fits;
    nlohmann::json check = {{"against", sampled ? "fp64 CPU, 8 sampled query rows of item 0" : "materialised"}};
    const double tol = std::is_same_v<T, float> ? 1e-3 : 3e-2;
    bool checked = true;
    try {
        Materialised<T> f = fused(p, true);
        if (!std::is_same_v<T, float>) {  // the SIMT pass 2 against the tensor-core one
            const double e = rel_diff(fused(p, false, false).out.to_host_float().to_vector(), f.out.to_host_float().to_vector());
            check["out_simt_vs_tc"] = e;
            checked = checked && e <= tol;
        }
        if (!sampled) {
            Materialised<T> m = materialised(p, true);
            auto cmp = [&](const char* name, const auto& a, const auto& b) {
                const double e = rel_diff(a.to_host_float().to_vector(), b.to_host_float().to_vector());
                check[name] = e;
                checked = checked && e <= tol;
            };
            cmp("out", f.out, m.out);
            cmp("dq", f.dq, m.dq);
            cmp("dk", f.dk, m.dk);
            cmp("dv", f.dv, m.dv);
            const double e = rel_diff(f.dalpha.to_host().to_vector(), m.dalpha.to_host().to_vector());
            check["dalpha"] = e;
            checked = checked && e <= tol;
        } else {
            const int64_t per = s.H * s.N * s.d;  // batch item 0
            auto item0 = [&](const cu::DeviceTensor<T>& t) {
                std::vector<float> all = t.to_host_float().to_vector();
                return std::vector<float>(all.begin(), all.begin() + per);
            };
            const auto q = item0(p.q), k = item0(p.k), v = item0(p.v), dout = item0(p.dout);
            const auto out = item0(f.out), dq = item0(f.dq);
            const auto alpha = alpha_host.to_vector();
            double e_out = 0, e_dq = 0, m_out = 0, m_dq = 0;
            for (int r = 0; r < 8; ++r) {
                const int64_t n = (static_cast<int64_t>(r) * 2654435761LL + 17) % s.N;
                const RowRef ref = reference_row(q, k, v, dout, alpha, s.H, s.N, s.d, n);
                for (int64_t h = 0; h < s.H; ++h)
                    for (int64_t x = 0; x < s.d; ++x) {
                        const size_t gi = static_cast<size_t>((h * s.N + n) * s.d + x), ri = static_cast<size_t>(h * s.d + x);
                        e_out = std::max(e_out, std::abs(out[gi] - ref.out[ri]));
                        e_dq = std::max(e_dq, std::abs(dq[gi] - ref.dq[ri]));
                        m_out = std::max(m_out, std::abs(ref.out[ri]));
                        m_dq = std::max(m_dq, std::abs(ref.dq[ri]));
                    }
            }
            check["out"] = m_out > 0 ? e_out / m_out : e_out;
            check["dq"] = m_dq > 0 ? e_dq / m_dq : e_dq;
            checked = check["out"].get<double>() <= tol && check["dq"].get<double>() <= tol;
        }
    } catch (const std::exception& e) {
        check["error"] = e.what();
        checked = false;
        ctx.allocator().empty_cache();
    }
    check["tol"] = tol;
    check["ok"] = checked;
    ok = ok && checked;
    std::printf("%-8s B=%lld H=%lld N=%lld d=%lld %s: check vs %s %s\n", s.name.c_str(), static_cast<long long>(s.B),
                static_cast<long long>(s.H), static_cast<long long>(s.N), static_cast<long long>(s.d), dtype,
                check["against"].get<std::string>().c_str(), checked ? "ok" : ("FAILED " + check.dump()).c_str());

    // ---- timing ----------------------------------------------------------------------------
    // fused: the default launch (pass 2 on tensor cores for bf16); fused_simt: every kernel SIMT.
    std::vector<std::string> paths{"fused", "materialised"};
    if (!std::is_same_v<T, float>) paths.insert(paths.begin() + 1, "fused_simt");
    for (const std::string& path : paths)
        for (bool backward : {false, true}) {
            nlohmann::json r = {{"shape", s.name}, {"B", s.B},           {"H", s.H},       {"N", s.N},
                                {"d", s.d},        {"dtype", dtype},      {"path", path},   {"pass", backward ? "fwd+bwd" : "fwd"},
                                {"flops", fwd_flops(s) * (backward ? 3.5 : 1.0)}, {"check", check}};
            const bool is_fused = path != "materialised", simt = path == "fused_simt";
            if (!is_fused && !mat_fits) {
                r["status"] = "skipped";
                r["note"] = "estimated " + std::to_string(5.0 * map_bytes / 1e9) + " GB of maps exceeds free memory";
            } else if (!checked) {
                r["status"] = "check_failed";
            } else {
                try {
                    ctx.synchronize();
                    const size_t base = ctx.allocator().stats().bytes_in_use;
                    ctx.allocator().reset_peak();
                    auto call = [&] {
                        if (is_fused) (void)fused(p, backward, !simt);
                        else (void)materialised(p, backward);
                    };
                    const double ms = median_ms(call, opt.quick ? std::min(opt.reps, 3) : opt.reps, opt.budget);
                    const Memory mem = memory_after(base);
                    r["status"] = "ok";
                    r["ms"] = ms;
                    r["tflops"] = r["flops"].get<double>() / (ms * 1e-3) / 1e12;
                    r["peak_bytes"] = mem.peak_extra;
                    r["device_used_bytes"] = mem.device_used;
                } catch (const std::exception& e) {
                    r["status"] = is_oom(e) ? "oom" : "error";
                    r["note"] = e.what();
                    if (!is_oom(e)) ok = false;
                    ctx.allocator().empty_cache();
                }
            }
            if (r["status"] == "ok")
                std::printf("  %-13s %-8s %10.3f ms %8.2f TFLOP/s  peak %8.1f MiB\n", path.c_str(), backward ? "fwd+bwd" : "fwd",
                            r["ms"].get<double>(), r["tflops"].get<double>(),
                            static_cast<double>(r["peak_bytes"].get<size_t>()) / 1048576.0);
            else
                std::printf("  %-13s %-8s %s %s\n", path.c_str(), backward ? "fwd+bwd" : "fwd", r["status"].get<std::string>().c_str(),
                            r.value("note", std::string()).c_str());
            std::fflush(stdout);
            results.push_back(r);
        }
    ctx.allocator().empty_cache();
}

}  // namespace

int main(int argc, char** argv) {
    const char* prog = "attention_bench";
    Options opt;
    auto extra = [&](const std::string& a, auto&& value) {
        if (a == "--budget") {
            opt.budget = std::max(0.0, std::atof(value("--budget").c_str()));
        } else if (a == "--dtype") {
            opt.dtype = value("--dtype");
            if (opt.dtype != "bf16" && opt.dtype != "fp32") {
                std::fprintf(stderr, "attention_bench: --dtype must be bf16 or fp32, got %s\n", opt.dtype.c_str());
                std::exit(cb::kExitUsage);
            }
        } else {
            return false;
        }
        return true;
    };
    if (const int rc = cb::parse_args(prog, kUsage, argc, argv, opt, extra); rc >= 0) return rc;
    const cu::Status* st = cb::usable_gpu(prog);
    if (!st) return cb::kExitNoGpu;
    std::printf("attention_bench on %s\n", cu::describe().c_str());

    bool ok = true;
    nlohmann::json results = nlohmann::json::array();
    const bool ran = cb::guarded(prog, [&] {
        for (const Shape4& s : shapes()) {
            if (opt.quick && !s.quick) continue;
            if (!opt.selected(s.name)) continue;
            if (opt.dtype == "fp32") run_shape<float>(s, opt, results, ok);
            else run_shape<bfloat16_t>(s, opt, results, ok);
        }
    });
    ok = ok && ran;
    nlohmann::json j = cb::record("cuda/attention_bench", *st, opt, ok, results);
    j["device"] = cu::describe();
    j["flop_formula"] = "fwd 4*B*H*N^2*d; fwd+bwd 3.5x that";
    return cb::finish(prog, opt, ok, j);
}
