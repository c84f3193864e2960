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
// Inputs: q, k, v, dout ~ N(0, 1) and alpha ~ N(0, 0.3^2) from cb::filled_randn (bench_cuda.hpp):
// a 65537-element pattern drawn on the host and tiled on the device, so no host draw of whole
// tensors and no copy back of the inputs (the host keeps the rounded pattern).
// Check, per path, before it is timed: against an fp64 CPU reference (attention_reference.hpp,
// itself tested against the CPU op's autograd in tests/test_bench.cpp) computed from the stored
// (rounded) inputs, never against the bf16 materialised path (which rounds S to bf16, putting P
// entries about 1.6% off at ViT shapes). out and dq on 8 sampled query rows of batch item 0 and
// the same rows of the last item, every head (a row's out and dq depend on dout only at that row,
// so this is the timed problem); then dk, dv (every batch item: items other than 0 must be zero)
// and dalpha in full from a second fwd+bwd whose dout is zero except at item 0's sampled rows,
// where only those rows contribute. Relative error: max |got - ref| / max |ref| per tensor;
// tolerance fp32 1e-3, bf16 3e-2. The host reference takes, per shape and item, 0.02 s
// (vit_b16), 0.3 s (sdxl) and 4.6 s (long) on one thread of the project's 2-core build machine
// while other builds ran (2026-12-06, -O3). The materialised path gets the out/dq check too,
// recorded but not gating the exit status (it is the baseline, bf16 maps and all).
// Every path is timed whatever its check said: each result carries its path's check ("check":
// {"out", "dq", "dk", "dv", "dalpha", "tol", "ok", ...}), and a failed fused check still makes
// "ok" false and the exit status 1. A path that runs out of device memory is recorded as "oom";
// the materialised path is "skipped" up front when its estimated memory exceeds the free memory.
// JSON (--json PATH): rewritten after every result (PATH.tmp, then renamed over PATH), so a run
// killed by a time limit keeps every result it finished; "complete" is false until every shape
// ran (bench_cuda.hpp and bench::JsonLog in bench/bench_util.hpp say what the record holds).
// Timing: cudaEvents on the context stream, after one warm-up call; the median of up to --reps
// calls, fewer when one call is long (each case gets about --budget seconds; at least 1 rep).
//
// Measured: not yet measured on a GPU (no GPU lent as of 2026-12-06); command:
//   ./build/bench/cuda/attention_bench --json attention_bench.json
//   python3 bench/torch_reference.py --json torch_reference.json
//   (same shapes and result fields; that script writes its JSON once, at the end)
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
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/cuda/attention.hpp>
#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/gemm.hpp>
#include <coeffnet/cuda/launchers.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "attention_reference.hpp"
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
        "  --json PATH    write the results as JSON, rewritten after each result (PATH.tmp, then renamed)\n"
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

// ---- the check: fp64 on sampled query rows (attention_reference.hpp) ---------------------------

using bench::attention_ref::Reference;
using bench::attention_ref::reference;
using bench::attention_ref::sampled_rows;

// Batch item b of a filled input, [H, N, d] in order, as stored (per: elements of one item).
template <class T>
std::vector<float> item(const cb::Filled<T>& t, int64_t b, int64_t per) {
    std::vector<float> v(static_cast<size_t>(per));
    for (int64_t i = 0; i < per; ++i) v[static_cast<size_t>(i)] = static_cast<float>(t.at(b * per + i));
    return v;
}

// max |got - ref| / max |ref| over what was added (infinite where got is not finite).
struct RelErr {
    double diff = 0, mag = 0;
    void add(double got, double ref) {
        diff = std::isfinite(got) ? std::max(diff, std::abs(got - ref)) : INFINITY;
        mag = std::max(mag, std::abs(ref));
    }
    double value() const { return mag > 0 ? diff / mag : diff; }
};

// out and dq of r at the sampled rows of batch item b against the reference (computed for item b).
template <class T>
void check_rows(const Materialised<T>& r, const Reference& ref, int64_t b, int64_t H, int64_t N, int64_t d, RelErr& e_out,
                RelErr& e_dq) {
    for (size_t ri = 0; ri < ref.rows.size(); ++ri)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t first = ((b * H + h) * N + ref.rows[ri]) * d;
            const auto out = cb::fetch(r.out, first, d), dq = cb::fetch(r.dq, first, d);
            for (int64_t x = 0; x < d; ++x) {
                const size_t k = ri * static_cast<size_t>(H * d) + static_cast<size_t>(h * d + x);
                e_out.add(out[static_cast<size_t>(x)], ref.out[k]);
                e_dq.add(dq[static_cast<size_t>(x)], ref.dq[k]);
            }
        }
}

// dk, dv (every batch item) and dalpha of r, run on the sparse dout, against the reference.
template <class T>
void check_sparse(const Materialised<T>& r, const Reference& ref, nlohmann::json& check) {
    auto whole = [&](const cu::DeviceTensor<T>& t, const std::vector<double>& item0_ref) {
        const std::vector<float> got = t.to_host_float().to_vector();
        RelErr e;
        for (size_t i = 0; i < got.size(); ++i) e.add(got[i], i < item0_ref.size() ? item0_ref[i] : 0.0);
        return e.value();
    };
    check["dk"] = whole(r.dk, ref.dk);
    check["dv"] = whole(r.dv, ref.dv);
    const std::vector<float> da = r.dalpha.to_host().to_vector();
    RelErr e;
    for (size_t i = 0; i < da.size(); ++i) e.add(da[i], ref.dalpha[i]);
    check["dalpha"] = e.value();
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
void run_shape(const char* prog, const Shape4& s, const Options& opt, bench::JsonLog& log) {
    const char* dtype = std::is_same_v<T, float> ? "float32" : "bfloat16";
    const int64_t per = s.H * s.N * s.d;  // elements of one batch item
    const auto q = cb::filled_randn<T>({s.B, s.H, s.N, s.d}, 1), k = cb::filled_randn<T>({s.B, s.H, s.N, s.d}, 2);
    const auto v = cb::filled_randn<T>({s.B, s.H, s.N, s.d}, 3), dout = cb::filled_randn<T>({s.B, s.H, s.N, s.d}, 4);
    const auto alpha = cb::filled_randn<float>({s.H, s.H}, 5, 0.0, 0.3);
    Problem<T> p{q.dev, k.dev, v.dev, dout.dev, alpha.dev};
    cu::Context& ctx = cu::Context::get();

    // dout zero except at the sampled query rows of item 0 (every head), there equal to dout.
    const std::vector<int64_t> rows = sampled_rows(s.N);
    Problem<T> sparse = p;
    sparse.dout = cu::DeviceTensor<T>::zeros({s.B, s.H, s.N, s.d});
    for (int64_t n : rows)
        for (int64_t h = 0; h < s.H; ++h)
            cu::copy_device_to_device(sparse.dout.data() + (h * s.N + n) * s.d, p.dout.data() + (h * s.N + n) * s.d,
                                      static_cast<size_t>(s.d) * sizeof(T));
    ctx.synchronize();
    const Reference ref = reference(item(q, 0, per), item(k, 0, per), item(v, 0, per), item(dout, 0, per), alpha.pattern,
                                    s.H, s.N, s.d, rows);
    // The same rows of the last batch item (out and dq only), so a batch offset error shows.
    const int64_t last = s.B - 1;
    const Reference ref_last = last == 0 ? Reference{} : reference(item(q, last, per), item(k, last, per), item(v, last, per),
                                                                   item(dout, last, per), alpha.pattern, s.H, s.N, s.d, rows);
    auto check_both_items = [&](const Materialised<T>& r, nlohmann::json& check) {
        RelErr e_out, e_dq;
        check_rows(r, ref, 0, s.H, s.N, s.d, e_out, e_dq);
        if (last > 0) check_rows(r, ref_last, last, s.H, s.N, s.d, e_out, e_dq);
        check["out"] = e_out.value();
        check["dq"] = e_dq.value();
    };

    // The materialised path holds ~5 maps of B*H*N*N elements at once in its backward.
    const double map_bytes = static_cast<double>(s.B * s.H) * static_cast<double>(s.N) * static_cast<double>(s.N) * sizeof(T);
    size_t free_b = 0, total_b = 0;
    COEFFNET_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const bool mat_fits = 5.0 * map_bytes < 0.9 * static_cast<double>(free_b);

    // ---- checks, one per path ------------------------------------------------------------
    const double tol = std::is_same_v<T, float> ? 1e-3 : 3e-2;
    const std::string rows_of = std::to_string(rows.size()) + " sampled query rows of batch item 0" +
                                (last > 0 ? " and of item " + std::to_string(last) : std::string());
    const std::string against = "fp64 CPU: out, dq on " + rows_of +
                                "; dk, dv (every item), dalpha with dout zero but for item 0's sampled rows";
    auto check_path = [&](const std::string& path) {
        nlohmann::json check = {{"against", against}, {"tol", tol}};
        bool passed = true;
        try {
            if (path == "materialised") {  // the baseline's own error; it does not gate the exit status
                check["against"] = "fp64 CPU: out, dq on " + rows_of;
                check["gates_exit_status"] = false;
                if (!mat_fits) {
                    check["status"] = "skipped";
                    return std::pair{check, true};
                }
                check_both_items(materialised(p, true), check);
                passed = check["out"].get<double>() <= tol && check["dq"].get<double>() <= tol;
            } else {
                const bool tc = path == "fused";
                check_both_items(fused(p, true, tc), check);
                check_sparse(fused(sparse, true, tc), ref, check);
                for (const char* f : {"out", "dq", "dk", "dv", "dalpha"}) passed = passed && check[f].get<double>() <= tol;
            }
        } catch (const std::exception& e) {
            check["error"] = e.what();
            passed = false;
            ctx.allocator().empty_cache();
        }
        check["ok"] = passed;
        std::printf("%-8s B=%lld H=%lld N=%lld d=%lld %s %s: check %s\n", s.name.c_str(), static_cast<long long>(s.B),
                    static_cast<long long>(s.H), static_cast<long long>(s.N), static_cast<long long>(s.d), dtype,
                    path.c_str(),
                    passed ? "ok"
                    : path == "materialised" ? ("beyond tol (the baseline's own error; not gating) " + check.dump()).c_str()
                                             : ("FAILED " + check.dump()).c_str());
        return std::pair{check, path == "materialised" || passed};
    };

    // ---- timing, after each path's check, whatever it said -------------------------------
    // fused: the default launch (pass 2 on tensor cores for bf16); fused_simt: every kernel SIMT.
    std::vector<std::string> paths{"fused", "materialised"};
    if (!std::is_same_v<T, float>) paths.insert(paths.begin() + 1, "fused_simt");
    for (const std::string& path : paths) {
        const std::pair<nlohmann::json, bool> checked = check_path(path);
        const nlohmann::json& check = checked.first;
        const bool check_ok = checked.second;
        for (bool backward : {false, true}) {
            nlohmann::json r = {{"shape", s.name}, {"B", s.B},           {"H", s.H},       {"N", s.N},
                                {"d", s.d},        {"dtype", dtype},      {"path", path},   {"pass", backward ? "fwd+bwd" : "fwd"},
                                {"flops", fwd_flops(s) * (backward ? 3.5 : 1.0)}, {"check", check}};
            const bool is_fused = path != "materialised", simt = path == "fused_simt";
            bool case_ok = check_ok;
            if (!is_fused && !mat_fits) {
                r["status"] = "skipped";
                r["note"] = "estimated " + std::to_string(5.0 * map_bytes / 1e9) + " GB of maps exceeds free memory";
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
                    if (!is_oom(e)) case_ok = false;
                    ctx.allocator().empty_cache();
                }
            }
            const char* flag = check["ok"].get<bool>() ? "" : is_fused ? "  (check FAILED)" : "  (beyond tol, not gating)";
            if (r["status"] == "ok")
                std::printf("  %-13s %-8s %10.3f ms %8.2f TFLOP/s  peak %8.1f MiB%s\n", path.c_str(), backward ? "fwd+bwd" : "fwd",
                            r["ms"].get<double>(), r["tflops"].get<double>(),
                            static_cast<double>(r["peak_bytes"].get<size_t>()) / 1048576.0, flag);
            else
                std::printf("  %-13s %-8s %s %s%s\n", path.c_str(), backward ? "fwd+bwd" : "fwd", r["status"].get<std::string>().c_str(),
                            r.value("note", std::string()).c_str(), flag);
            std::fflush(stdout);
            cb::add_case(prog, log, std::move(r), case_ok);
        }
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

    bench::JsonLog log = cb::open_log("cuda/attention_bench", *st, opt, argc, argv);
    log.head()["device"] = cu::describe();
    log.head()["dtype"] = opt.dtype;
    log.head()["flop_formula"] = "fwd 4*B*H*N^2*d; fwd+bwd 3.5x that";
    if (!cb::start_log(prog, log)) return cb::kExitFailed;
    std::string error;
    const bool ran = cb::guarded(prog, [&] {
        for (const Shape4& s : shapes()) {
            if (opt.quick && !s.quick) continue;
            if (!opt.selected(s.name)) continue;
            if (opt.dtype == "fp32") run_shape<float>(prog, s, opt, log);
            else run_shape<bfloat16_t>(prog, s, opt, log);
        }
    }, &error);
    return cb::finish(prog, log, ran, ran, error);
}
