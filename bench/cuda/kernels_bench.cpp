// cuda kernels_bench: the hand-written memory-bound kernels (src/cuda/launchers.cu) on ViT-B/16
// and SD-1.5 shapes, each next to a device-to-device cudaMemcpy of the same traffic in the same run.
//
// Cases (fp32 and bf16 storage each):
//   ViT-B/16 at batch 64 (12608 tokens, width 768, MLP 3072, 12 heads, 197 x 197 maps):
//     softmax fwd/bwd on the maps [64*12*197, 197], layer norm fwd / bwd (dx, and dx + weight
//     grads) on [12608, 768], GELU(x + b) fwd/bwd on [12608, 3072], bias add and its gradient,
//     residual add, mixing fwd/bwd on [64, 12, 197, 197], cross-entropy fwd/bwd on [64, 1000],
//     head split permute [64, 197, 12, 64] -> [64, 12, 197, 64], patchify [64, 3, 224, 224],
//     AdamW over 86M parameters, sum over the last axis.
//   SD-1.5 (batch 2, 64x64 latent: 8192 tokens, width 320, 8 heads, 4096 x 4096 maps):
//     softmax fwd on [2*8*4096, 4096], layer norm on [8192, 320], GELU on [8192, 2560].
//   LM-style cross-entropy fwd/bwd [8192, 50257] (the streaming row variant), embedding [8192] x 768.
// Bytes: the traffic each kernel must move, written out per case ("bytes" in the JSON):
// inputs read once plus outputs written once (layer norm: + mean/rstd and the weights; AdamW:
// w, m, v read and written in fp32, g read and the T copy written). GB/s = bytes / time.
// Baseline: cudaMemcpyAsync device-to-device of bytes / 2 (a copy reads and writes each byte),
// timed the same way in the same run; "fraction_of_copy" = kernel GB/s / copy GB/s.
// The quality bar for these kernels is >= 0.85 of the copy on the large shapes.
//
// Inputs: no host draw of whole tensors (that was about 2.7 G normal samples before timing):
// each input is cb::filled_randn (bench_cuda.hpp), a 65537-element N(0, sd^2) pattern drawn on the
// host, uploaded once and tiled on the device by doubling device-to-device copies; the host keeps
// the rounded pattern, so the references read any input element without a copy back.
// Each case is checked, then timed: 9 sampled rows of the output, 8 spread and the last (AdamW:
// 256 runs of 16 weights; the copies: 512 or 256 whole output rows; mixing: 64 elements), fetched
// back alone, against a double-precision reference computed here from the stored (rounded)
// inputs (tolerance: fp32 1e-4, bf16 2e-2, relative to max(1, |ref|)). A case whose check fails
// is still timed: "check_ok": false beside the timing, and the exit status is 1.
// Timing: cudaEvents on the context stream around batches of calls lasting about 2 ms, after
// warm-up; the median of --reps batches. The L2 cache (50 MB on H100/H200) is not flushed:
// every ViT/SD case but the smallest moves more than that per call.
//
// JSON (--json PATH): rewritten after every case (PATH.tmp, then renamed over PATH), so a run
// killed by a time limit keeps every case it finished; "complete" is false until every case ran
// (bench_cuda.hpp and bench::JsonLog in bench/bench_util.hpp say what the record holds).
//
// Measured: not yet (no GPU lent as of 2026-12-06); measure with: ./build-gpu/bench/cuda/kernels_bench --json out.json
//
// Usage: kernels_bench [--quick] [--json PATH] [--reps N] [--filter STR] [--help]
// Exit status: 0 ok, 1 a check failed or a CUDA error, 2 no usable GPU, 64 bad arguments.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/launchers.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "bench_cuda.hpp"

using namespace coeffnet;
namespace cu = coeffnet::cuda;
namespace cb = bench::cuda;

namespace {

using Options = cb::Options;

constexpr const char* kUsage =
        "kernels_bench: coeffnet's memory-bound CUDA kernels vs a device-to-device copy of the same traffic\n"
        "  --quick        the ViT-B/16 cases only, fewer reps\n"
        "  --json PATH    write the results as JSON, rewritten after each case (PATH.tmp, then renamed)\n"
        "  --reps N       timed batches per case (median reported; default 15, --quick 5)\n"
        "  --filter STR   only cases whose name contains STR\n"
        "  --help         this text\n"
        "exit status: 0 ok, 1 a check failed or CUDA error, 2 no usable GPU, 64 bad arguments";

// A prepared case: run() enqueues one call; check() returns the worst sampled error / tolerance.
struct Prepared {
    std::function<void()> run;
    std::function<double()> check;
    double bytes = 0;
};

struct Case {
    std::string name;
    bool sd;  // not in --quick
    std::function<Prepared(bool bf16)> make;
};

// Three warm-up calls, then the middle of --reps batches of about 2 ms each (ms per call).
template <class F>
double time_it(F&& f, const Options& opt) {
    for (int w = 0; w < 3; ++w) f();
    const int iters = cb::iters_for_2ms(cb::median_ms(f, 3, 1));
    return cb::median_ms(f, opt.quick ? std::min(opt.reps, 5) : opt.reps, iters);
}

double tol_of(bool bf16) { return bf16 ? 2e-2 : 1e-4; }

// Worst |got - ref| / (tol * max(1, |ref|)) over a list of (got, ref) pairs.
struct Worst {
    double tol, v = 0;
    void add(double got, double ref) {
        const double e = std::isfinite(got) ? std::abs(got - ref) / (tol * std::max(1.0, std::abs(ref))) : INFINITY;
        v = std::max(v, e);
    }
};

std::vector<int64_t> sample_rows(int64_t rows) {
    std::vector<int64_t> r;
    for (int64_t k = 0; k < 8; ++k) r.push_back(std::min(rows - 1, (k * int64_t{2654435761}) % rows));
    r.push_back(rows - 1);
    return r;
}

// ---- the cases ------------------------------------------------------------------------------------
// Inputs: cb::filled_randn (bench_cuda.hpp), so x.at(i) is input element i as stored; outputs are
// fetched back only for the sampled rows (cb::fetch).

template <class T>
Prepared softmax_case(int64_t rows, int64_t cols, bool backward) {
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, cols}, 1, 0.0, 3.0);
    auto y = cu::DeviceTensor<T>::empty({rows, cols});
    const float s = 0.125f;
    cu::softmax_forward(x.dev, y, s);
    Prepared p;
    if (!backward) {
        p.run = [=]() mutable { cu::softmax_forward(x.dev, y, s); };
        p.bytes = 2.0 * rows * cols * sizeof(T);
        p.check = [=] {
            Worst w{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto yv = cb::fetch(y, r * cols, cols);
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, s * x.at(r * cols + j));
                for (int64_t j = 0; j < cols; ++j) sum += std::exp(s * x.at(r * cols + j) - mx);
                for (int64_t j = 0; j < cols; ++j)
                    w.add(yv[j] * cols, std::exp(s * x.at(r * cols + j) - mx) / sum * cols);
            }
            return w.v;
        };
    } else {
        const auto g = cb::filled_randn<T>({rows, cols}, 2);
        auto dx = cu::DeviceTensor<T>::empty({rows, cols});
        p.run = [=]() mutable { cu::softmax_backward(y, g.dev, dx, s); };
        p.bytes = 3.0 * rows * cols * sizeof(T);
        p.check = [=]() mutable {
            cu::softmax_backward(y, g.dev, dx, s);
            Worst w{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto yv = cb::fetch(y, r * cols, cols), dv = cb::fetch(dx, r * cols, cols);
                double dot = 0;
                for (int64_t j = 0; j < cols; ++j) dot += yv[j] * g.at(r * cols + j);
                for (int64_t j = 0; j < cols; ++j) w.add(dv[j] * cols, s * yv[j] * (g.at(r * cols + j) - dot) * cols);
            }
            return w.v;
        };
    }
    return p;
}

// Mean and 1 / sqrt(variance + 1e-5) of row r of the [rows, C] input x, in double.
template <class T>
std::pair<double, double> row_stats(const cb::Filled<T>& x, int64_t r, int64_t C) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < C; ++j) mu += x.at(r * C + j);
    mu /= C;
    for (int64_t j = 0; j < C; ++j) var += (x.at(r * C + j) - mu) * (x.at(r * C + j) - mu);
    return {mu, 1.0 / std::sqrt(var / C + 1e-5)};
}

template <class T>
Prepared layernorm_case(int64_t rows, int64_t C, int mode) {  // 0 fwd, 1 bwd dx, 2 bwd dx + dw + db
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, C}, 3, 0.0, 2.0);
    const auto w = cb::filled_randn<T>({C}, 4, 1.0, 0.2);
    const auto b = cb::filled_randn<T>({C}, 5, 0.0, 0.2);
    auto y = cu::DeviceTensor<T>::empty({rows, C});
    auto mean = cu::DeviceTensor<float>::empty({rows}), rstd = cu::DeviceTensor<float>::empty({rows});
    cu::layernorm_forward(x.dev, &w.dev, &b.dev, 1e-5f, y, mean, rstd);
    Prepared p;
    const double n = static_cast<double>(rows) * C;
    if (mode == 0) {
        p.run = [=]() mutable { cu::layernorm_forward(x.dev, &w.dev, &b.dev, 1e-5f, y, mean, rstd); };
        p.bytes = 2.0 * n * sizeof(T) + 8.0 * rows + 2.0 * C * sizeof(T);
        p.check = [=] {
            Worst wo{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto yv = cb::fetch(y, r * C, C);
                const auto [mu, rs] = row_stats(x, r, C);
                for (int64_t j = 0; j < C; ++j) wo.add(yv[j], (x.at(r * C + j) - mu) * rs * w.at(j) + b.at(j));
            }
            return wo.v;
        };
    } else {
        const auto g = cb::filled_randn<T>({rows, C}, 6);
        auto dx = cu::DeviceTensor<T>::empty({rows, C});
        auto dw = cu::DeviceTensor<T>::empty({C}), db = cu::DeviceTensor<T>::empty({C});
        const bool weights = mode == 2;
        p.run = [=]() mutable {
            cu::layernorm_backward(g.dev, x.dev, &w.dev, mean, rstd, &dx, weights ? &dw : nullptr, weights ? &db : nullptr);
        };
        p.bytes = 3.0 * n * sizeof(T) + 8.0 * rows + C * sizeof(T) + (weights ? 2.0 * n * sizeof(T) : 0.0);
        p.check = [=]() mutable {
            cu::layernorm_backward(g.dev, x.dev, &w.dev, mean, rstd, &dx, &dw, &db);
            const auto dbv = cb::fetch(db, 0, C);
            Worst wo{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto dv = cb::fetch(dx, r * C, C);
                const auto [mu, rs] = row_stats(x, r, C);
                double m1 = 0, m2 = 0;
                for (int64_t j = 0; j < C; ++j) {
                    const double d = g.at(r * C + j) * w.at(j), h = (x.at(r * C + j) - mu) * rs;
                    m1 += d;
                    m2 += d * h;
                }
                m1 /= C;
                m2 /= C;
                for (int64_t j = 0; j < C; ++j) {
                    const double d = g.at(r * C + j) * w.at(j), h = (x.at(r * C + j) - mu) * rs;
                    wo.add(dv[j], rs * (d - m1 - h * m2));
                }
            }
            for (int64_t j = 0; j < std::min<int64_t>(C, 16); ++j) {  // d_bias columns
                double s = 0;
                for (int64_t r = 0; r < rows; ++r) s += g.at(r * C + j);
                wo.add(dbv[j] / std::sqrt(static_cast<double>(rows)), s / std::sqrt(static_cast<double>(rows)));
            }
            return wo.v;
        };
    }
    return p;
}

double gelu_ref(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double gelu_grad(double v) { return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) * 0.39894228040143267794; }

template <class T>
Prepared gelu_case(int64_t rows, int64_t C, bool backward) {
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, C}, 7, 0.0, 2.0);
    const auto b = cb::filled_randn<T>({C}, 8, 0.0, 0.5);
    auto y = cu::DeviceTensor<T>::empty({rows, C});
    Prepared p;
    const double n = static_cast<double>(rows) * C;
    if (!backward) {
        p.run = [=]() mutable { cu::activation_forward(cu::Activation::gelu_erf, x.dev, &b.dev, y); };
        p.bytes = 2.0 * n * sizeof(T);
        p.check = [=]() mutable {
            cu::activation_forward(cu::Activation::gelu_erf, x.dev, &b.dev, y);
            Worst w{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto yv = cb::fetch(y, r * C, C);
                for (int64_t j = 0; j < C; ++j) w.add(yv[j], gelu_ref(x.at(r * C + j) + b.at(j)));
            }
            return w.v;
        };
    } else {
        const auto g = cb::filled_randn<T>({rows, C}, 9);
        auto dx = cu::DeviceTensor<T>::empty({rows, C});
        p.run = [=]() mutable { cu::activation_backward(cu::Activation::gelu_erf, x.dev, &b.dev, g.dev, dx); };
        p.bytes = 3.0 * n * sizeof(T);
        p.check = [=]() mutable {
            cu::activation_backward(cu::Activation::gelu_erf, x.dev, &b.dev, g.dev, dx);
            Worst w{tol_of(bf16)};
            for (int64_t r : sample_rows(rows)) {
                const auto dv = cb::fetch(dx, r * C, C);
                for (int64_t j = 0; j < C; ++j) w.add(dv[j], g.at(r * C + j) * gelu_grad(x.at(r * C + j) + b.at(j)));
            }
            return w.v;
        };
    }
    return p;
}

template <class T>
Prepared bias_case(int64_t rows, int64_t C, int mode) {  // 0 bias add, 1 bias grad, 2 residual add
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, C}, 10);
    const auto x2 = cb::filled_randn<T>({rows, C}, 11);
    const auto b = cb::filled_randn<T>({C}, 12);
    auto y = cu::DeviceTensor<T>::empty({rows, C});
    auto db = cu::DeviceTensor<T>::empty({C});
    Prepared p;
    const double n = static_cast<double>(rows) * C;
    if (mode == 0) {
        p.run = [=]() mutable { cu::bias_add(x.dev, b.dev, y); };
        p.bytes = 2.0 * n * sizeof(T);
    } else if (mode == 1) {
        p.run = [=]() mutable { cu::bias_add_backward(x.dev, db); };
        p.bytes = n * sizeof(T);
    } else {
        p.run = [=]() mutable { cu::residual_add(x.dev, x2.dev, y); };
        p.bytes = 3.0 * n * sizeof(T);
    }
    p.check = [=]() mutable {
        p.run();
        Worst w{tol_of(bf16)};
        if (mode == 1) {
            const auto dbv = cb::fetch(db, 0, C);
            for (int64_t j = 0; j < C; j += std::max<int64_t>(1, C / 16)) {
                double s = 0;
                for (int64_t r = 0; r < rows; ++r) s += x.at(r * C + j);
                const double k = std::sqrt(static_cast<double>(rows));
                w.add(dbv[j] / k, s / k);
            }
        } else {
            for (int64_t r : sample_rows(rows)) {
                const auto yv = cb::fetch(y, r * C, C);
                for (int64_t j = 0; j < C; ++j)
                    w.add(yv[j], x.at(r * C + j) + (mode == 0 ? b.at(j) : x2.at(r * C + j)));
            }
        }
        return w.v;
    };
    return p;
}

template <class T>
Prepared mix_case(int64_t B, int64_t H, int64_t N, bool backward) {
    const bool bf16 = !std::is_same_v<T, float>;
    const int64_t NM = N * N;
    const auto P = cb::filled_randn<T>({B, H, N, N}, 13, 0.0, 0.1);
    const auto ap = cb::filled_randn<float>({H, H}, 14, 0.0, 0.3);
    auto out = cu::DeviceTensor<T>::empty({B, H, N, N});
    const auto g = cb::filled_randn<T>({B, H, N, N}, 15);
    auto dP = cu::DeviceTensor<T>::empty({B, H, N, N});
    auto dap = cu::DeviceTensor<float>::empty({H, H});
    Prepared p;
    const double n = static_cast<double>(B) * H * NM;
    if (!backward) {
        p.run = [=]() mutable { cu::mix_heads(P.dev, ap.dev, out); };
        p.bytes = 2.0 * n * sizeof(T);
    } else {
        p.run = [=]() mutable { cu::mix_heads_backward(g.dev, P.dev, ap.dev, &dP, &dap); };
        p.bytes = 3.0 * n * sizeof(T);
    }
    p.check = [=]() mutable {
        p.run();
        const cu::DeviceTensor<T>& o = backward ? dP : out;
        Worst w{tol_of(bf16)};
        for (int64_t s = 0; s < 64; ++s) {
            const int64_t b = (s * 7) % B, h = (s * 5) % H, q = (s * int64_t{2654435761}) % NM;
            double ref = 0;
            for (int64_t i = 0; i < H; ++i)
                ref += backward ? ap.at(i * H + h) * g.at((b * H + i) * NM + q) : ap.at(h * H + i) * P.at((b * H + i) * NM + q);
            w.add(cb::fetch(o, (b * H + h) * NM + q, 1)[0], ref);
        }
        return w.v;
    };
    return p;
}

template <class T>
Prepared ce_case(int64_t rows, int64_t C, bool backward) {
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, C}, 16, 0.0, 2.0);
    std::vector<int64_t> t(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = (r * 7919) % C;
    auto tg = cu::DeviceTensor<int64_t>::from_host(Tensor<int64_t>::from(t, {rows}));
    auto loss = cu::DeviceTensor<float>::empty({2}), lse = cu::DeviceTensor<float>::empty({rows});
    auto dx = cu::DeviceTensor<T>::empty({rows, C});
    cu::cross_entropy_forward(x.dev, tg, -100, loss, lse);
    Prepared p;
    const double n = static_cast<double>(rows) * C;
    if (!backward) {
        p.run = [=]() mutable { cu::cross_entropy_forward(x.dev, tg, -100, loss, lse); };
        p.bytes = n * sizeof(T) + 16.0 * rows;
    } else {
        p.run = [=]() mutable { cu::cross_entropy_backward(x.dev, tg, -100, loss, lse, nullptr, dx); };
        p.bytes = 2.0 * n * sizeof(T) + 12.0 * rows;
    }
    p.check = [=]() mutable {
        p.run();
        Worst w{tol_of(bf16)};
        for (int64_t r : sample_rows(rows)) {
            double mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < C; ++j) mx = std::max(mx, x.at(r * C + j));
            for (int64_t j = 0; j < C; ++j) s += std::exp(x.at(r * C + j) - mx);
            const double l = mx + std::log(s);
            w.add(cb::fetch(lse, r, 1)[0], l);
            if (backward) {
                const auto dv = cb::fetch(dx, r * C, C);
                for (int64_t j = 0; j < C; ++j)
                    w.add(dv[j] * rows, (std::exp(x.at(r * C + j) - l) - (j == t[static_cast<size_t>(r)])));
            }
        }
        return w.v;
    };
    return p;
}

template <class T>
Prepared adamw_case(int64_t n) {
    const bool bf16 = !std::is_same_v<T, float>;
    const auto w = cb::filled_randn<float>({n}, 17);  // w.at(i): the weights before the first step
    const auto g = cb::filled_randn<T>({n}, 18);
    auto m = cu::DeviceTensor<float>::zeros({n}), v = cu::DeviceTensor<float>::zeros({n});
    auto copy = cu::DeviceTensor<T>::empty({n});
    cu::AdamWParams prm;
    prm.lr = 1e-4;
    Prepared p;
    p.bytes = n * (6.0 * 4 + 2.0 * sizeof(T));
    p.check = [=]() mutable {
        auto wd = w.dev;  // shares w's storage
        cu::adamw_step(wd, g.dev, m, v, prm, &copy);  // step 1 from zero moments: w -= lr * g / (|g| + eps)
        Worst wo{bf16 ? 1e-4 : 1e-5};
        const int64_t stride = std::max<int64_t>(1, n / 256);
        for (int64_t i0 = 0; i0 < n; i0 += stride) {  // 256 runs of 16 consecutive weights
            const int64_t len = std::min<int64_t>(16, n - i0);
            const auto wv = cb::fetch(w.dev, i0, len);
            for (int64_t k = 0; k < len; ++k) {
                const double gi = g.at(i0 + k);
                const double ref = w.at(i0 + k) * (1 - prm.lr * prm.weight_decay) - prm.lr * gi / (std::abs(gi) + prm.eps);
                wo.add(wv[static_cast<size_t>(k)], ref);
            }
        }
        return wo.v;
    };
    p.run = [=]() mutable {
        auto wd = w.dev;
        cu::adamw_step(wd, g.dev, m, v, prm, &copy);
    };
    return p;
}

template <class T>
Prepared copy_case(int mode) {  // 0 head-split permute, 1 patchify, 2 embedding
    Prepared p;
    if (mode == 0) {
        const auto x = cb::filled_randn<T>({64, 197, 12, 64}, 19);
        auto y = cu::DeviceTensor<T>::empty({64, 12, 197, 64});
        p.run = [=]() mutable { cu::permute(x.dev, {0, 2, 1, 3}, y); };
        p.bytes = 2.0 * x.dev.numel() * sizeof(T);
        p.check = [=]() mutable {
            p.run();
            Worst w{1e-30};
            for (int64_t s = 0; s < 512; ++s) {  // whole output rows y[b, h, n, :]
                const int64_t b = s % 64, n = (s * 13) % 197, h = (s * 7) % 12;
                const auto yv = cb::fetch(y, ((b * 12 + h) * 197 + n) * 64, 64);
                for (int64_t d = 0; d < 64; ++d) w.add(yv[d], x.at(((b * 197 + n) * 12 + h) * 64 + d));
            }
            return w.v;
        };
    } else if (mode == 1) {
        const auto x = cb::filled_randn<T>({64, 3, 224, 224}, 20);
        auto y = cu::DeviceTensor<T>::empty({64, 196, 768});
        p.run = [=]() mutable { cu::patchify(x.dev, 16, 16, y); };
        p.bytes = 2.0 * x.dev.numel() * sizeof(T);
        p.check = [=]() mutable {
            p.run();
            Worst w{1e-30};
            for (int64_t s = 0; s < 256; ++s) {  // whole patches y[b, pi, :]
                const int64_t b = s % 64, pi = (s * 13) % 196;
                const auto yv = cb::fetch(y, (b * 196 + pi) * 768, 768);
                for (int64_t c = 0; c < 3; ++c)
                    for (int64_t py = 0; py < 16; ++py)
                        for (int64_t px = 0; px < 16; ++px) {
                            const int64_t yy = (pi / 14) * 16 + py, xx = (pi % 14) * 16 + px;
                            w.add(yv[c * 256 + py * 16 + px], x.at(((b * 3 + c) * 224 + yy) * 224 + xx));
                        }
            }
            return w.v;
        };
    } else {
        const int64_t V = 50257, D = 768, rows = 8192;
        const auto wt = cb::filled_randn<T>({V, D}, 21);
        std::vector<int64_t> iv(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) iv[static_cast<size_t>(r)] = (r * 48271) % V;
        auto idx = cu::DeviceTensor<int64_t>::from_host(Tensor<int64_t>::from(iv, {rows}));
        auto out = cu::DeviceTensor<T>::empty({rows, D});
        p.run = [=]() mutable { cu::embedding_forward(idx, wt.dev, out); };
        p.bytes = 2.0 * rows * D * sizeof(T) + 8.0 * rows;
        p.check = [=]() mutable {
            p.run();
            Worst w{1e-30};
            for (int64_t r : sample_rows(rows)) {
                const auto ov = cb::fetch(out, r * D, D);
                for (int64_t j = 0; j < D; ++j) w.add(ov[j], wt.at(iv[static_cast<size_t>(r)] * D + j));
            }
            return w.v;
        };
    }
    return p;
}

template <class T>
Prepared sum_case(int64_t rows, int64_t C) {
    const bool bf16 = !std::is_same_v<T, float>;
    const auto x = cb::filled_randn<T>({rows, C}, 22);
    auto y = cu::DeviceTensor<T>::empty({rows});
    Prepared p;
    p.run = [=]() mutable { cu::sum_last(x.dev, y, true); };
    p.bytes = static_cast<double>(rows) * C * sizeof(T);
    p.check = [=]() mutable {
        p.run();
        Worst w{tol_of(bf16)};
        for (int64_t r : sample_rows(rows)) {
            double s = 0;
            for (int64_t j = 0; j < C; ++j) s += x.at(r * C + j);
            w.add(cb::fetch(y, r, 1)[0], s / C);
        }
        return w.v;
    };
    return p;
}

template <class F>
std::function<Prepared(bool)> both(F f) {
    return [f](bool bf16) { return bf16 ? f(bfloat16_t{}) : f(float{}); };
}

std::vector<Case> cases() {
    const int64_t vt = 64 * 197, maps = 64 * 12 * 197;
    std::vector<Case> c;
    auto add = [&](std::string name, bool sd, std::function<Prepared(bool)> f) { c.push_back({std::move(name), sd, std::move(f)}); };
#define COEFFNET_BENCH_CASE(NAME, SD, EXPR) \
    add(NAME, SD, both([=](auto tag) { using T = decltype(tag); return EXPR; }))
    COEFFNET_BENCH_CASE("vit_softmax_fwd", false, softmax_case<T>(maps, 197, false));
    COEFFNET_BENCH_CASE("vit_softmax_bwd", false, softmax_case<T>(maps, 197, true));
    COEFFNET_BENCH_CASE("vit_layernorm_fwd", false, layernorm_case<T>(vt, 768, 0));
    COEFFNET_BENCH_CASE("vit_layernorm_bwd_dx", false, layernorm_case<T>(vt, 768, 1));
    COEFFNET_BENCH_CASE("vit_layernorm_bwd_all", false, layernorm_case<T>(vt, 768, 2));
    COEFFNET_BENCH_CASE("vit_gelu_bias_fwd", false, gelu_case<T>(vt, 3072, false));
    COEFFNET_BENCH_CASE("vit_gelu_bias_bwd", false, gelu_case<T>(vt, 3072, true));
    COEFFNET_BENCH_CASE("vit_bias_add", false, bias_case<T>(vt, 768, 0));
    COEFFNET_BENCH_CASE("vit_bias_grad", false, bias_case<T>(vt, 3072, 1));
    COEFFNET_BENCH_CASE("vit_residual_add", false, bias_case<T>(vt, 768, 2));
    COEFFNET_BENCH_CASE("vit_mix_fwd", false, mix_case<T>(64, 12, 197, false));
    COEFFNET_BENCH_CASE("vit_mix_bwd", false, mix_case<T>(64, 12, 197, true));
    COEFFNET_BENCH_CASE("vit_cross_entropy_fwd", false, ce_case<T>(64, 1000, false));
    COEFFNET_BENCH_CASE("vit_cross_entropy_bwd", false, ce_case<T>(64, 1000, true));
    COEFFNET_BENCH_CASE("vit_head_split_permute", false, copy_case<T>(0));
    COEFFNET_BENCH_CASE("vit_patchify", false, copy_case<T>(1));
    COEFFNET_BENCH_CASE("vit_adamw_86M", false, adamw_case<T>(86'000'000));
    COEFFNET_BENCH_CASE("vit_mean_last", false, sum_case<T>(vt, 768));
    COEFFNET_BENCH_CASE("sd_softmax_fwd", true, softmax_case<T>(2 * 8 * 4096, 4096, false));
    COEFFNET_BENCH_CASE("sd_layernorm_fwd", true, layernorm_case<T>(8192, 320, 0));
    COEFFNET_BENCH_CASE("sd_gelu_fwd", true, gelu_case<T>(8192, 2560, false));
    COEFFNET_BENCH_CASE("lm_cross_entropy_fwd", true, ce_case<T>(8192, 50257, false));
    COEFFNET_BENCH_CASE("lm_cross_entropy_bwd", true, ce_case<T>(8192, 50257, true));
    COEFFNET_BENCH_CASE("lm_embedding_fwd", true, copy_case<T>(2));
#undef COEFFNET_BENCH_CASE
    return c;
}

// One case: checked, then timed whatever the check said (the check's result beside the timing).
nlohmann::json run_case(const Case& c, bool bf16, const Options& opt) {
    const char* storage = bf16 ? "bfloat16" : "float32";
    Prepared p = c.make(bf16);
    const double err = p.check();
    const bool checked = err <= 1.0;
    nlohmann::json r = {{"name", c.name}, {"storage", storage}, {"bytes", p.bytes}, {"check_err_over_tol", err},
                        {"check_ok", checked}};
    if (!checked)
        std::printf("%-24s %-8s CHECK FAILED: worst error %.3g of the tolerance (timed all the same)\n", c.name.c_str(),
                    storage, err);
    const double ms = time_it(p.run, opt);
    // The copy baseline: bytes / 2 read and written by cudaMemcpyAsync, in the same run.
    const size_t half = static_cast<size_t>(std::max(p.bytes / 2.0, 1.0));
    auto src = cu::DeviceTensor<uint8_t>::empty({static_cast<int64_t>(half)});
    auto dst = cu::DeviceTensor<uint8_t>::empty({static_cast<int64_t>(half)});
    cudaStream_t s = cu::Context::get().stream();
    const double ms_copy = time_it([&] { COEFFNET_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), half, cudaMemcpyDeviceToDevice, s)); }, opt);
    const double gbs = p.bytes / (ms * 1e-3) / 1e9, gbs_copy = 2.0 * half / (ms_copy * 1e-3) / 1e9;
    r["ms"] = ms;
    r["gb_per_s"] = gbs;
    r["copy_ms"] = ms_copy;
    r["copy_gb_per_s"] = gbs_copy;
    r["fraction_of_copy"] = gbs / gbs_copy;
    std::printf("%-24s %-8s %9.4f ms %8.1f GB/s  copy %8.1f GB/s  %5.2f of copy%s%s\n", c.name.c_str(), storage, ms, gbs,
                gbs_copy, gbs / gbs_copy, gbs / gbs_copy < 0.85 ? "  (< 0.85)" : "", checked ? "" : "  CHECK FAILED");
    std::fflush(stdout);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    const char* prog = "kernels_bench";
    Options opt;
    if (const int rc = cb::parse_args(prog, kUsage, argc, argv, opt); rc >= 0) return rc;
    const cu::Status* st = cb::usable_gpu(prog);
    if (!st) return cb::kExitNoGpu;
    std::printf("kernels_bench on %s\n", st->name.c_str());
    bench::JsonLog log = cb::open_log("cuda/kernels_bench", *st, opt, argc, argv);
    if (!cb::start_log(prog, log)) return cb::kExitFailed;
    std::string error;
    const bool ran = cb::guarded(prog, [&] {
        for (const Case& c : cases()) {
            if (opt.quick && c.sd) continue;
            if (!opt.selected(c.name)) continue;
            for (bool bf16 : {false, true}) {
                nlohmann::json r = run_case(c, bf16, opt);
                const bool case_ok = r["check_ok"].get<bool>();
                cb::add_case(prog, log, std::move(r), case_ok);
            }
            cu::Context::get().allocator().empty_cache();
        }
    }, &error);
    return cb::finish(prog, log, ran, ran, error);
}
