// cuda gemm_bench: the GEMMs of ViT-B/16 and Stable Diffusion 1.5 through coeffnet::cuda::gemm,
// next to the same cuBLAS call made directly on the same buffers in the same run.
//
// Shapes (row-major, C[M,N] = op(A) op(B), batch = number of matrices):
//   ViT-B/16 at batch 64 (64 x 197 = 12608 tokens, width 768, MLP 3072, 12 heads of 64):
//     qkv, proj, fc1, fc2 forward (x W^T), fc1's dX = G W and dW = G^T X, and the attention products
//     S = Q K^T and O = P V over 64 x 12 = 768 heads of 197 x 197.
//   SD-1.5 UNet, 64x64 latent, batch 2 (8192 tokens at width 320, 8 heads of 40): q/k/v projection,
//     GEGLU fc1 (320 -> 2560) and fc2 (1280 -> 320), cross-attention k/v from 2 x 77 text tokens
//     (768 -> 320), and S = Q K^T, O = P V over 2 x 8 = 16 heads of 4096 x 4096.
// Precisions: fp32 (float, CUBLAS_COMPUTE_32F), tf32 (float, CUBLAS_COMPUTE_32F_FAST_TF32) and bf16
// (bf16 storage, fp32 accumulation). FLOPs = 2 * batch * M * N * K.
//
// Each case is checked before it is timed: 64 sampled entries of C against a double-precision dot
// product of the stored (rounded) inputs, relative to sum_k |a_ik b_kj| (fp32 1e-5, tf32 4e-3,
// bf16 1.6e-2); a case whose check fails is timed all the same, "check_ok": false beside its
// timing, and the exit status is 1. Timing: cudaEvents on the context stream around a batch of calls lasting about
// 2 ms, after warm-up; the median of --reps such batches. coeffnet and direct cuBLAS alternate rep
// by rep so clock drift hits both. The ratio coeffnet / cuBLAS should be within 1.05.
// The L2 cache is not flushed between calls (these operands are large; cuBLAS's own benchmarks
// do not flush either).
//
// JSON (--json PATH): rewritten after every case (PATH.tmp, then renamed over PATH), so a run
// killed by a time limit keeps every case it finished; "complete" is false until every case ran
// (bench_cuda.hpp and bench::JsonLog in bench/bench_util.hpp say what the record holds).
//
// Measured: not yet measured on a GPU (no GPU lent as of 2026-12-06); command:
//   ./build/bench/cuda/gemm_bench --json gemm_bench.json
//
// Usage: gemm_bench [--quick] [--json PATH] [--reps N] [--filter STR] [--help]
// Exit status: 0 ok, 1 a check failed or a CUDA error, 2 no usable GPU, 64 bad arguments.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/gemm.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "bench_cuda.hpp"

using namespace coeffnet;
namespace cu = coeffnet::cuda;
namespace cb = bench::cuda;

namespace {

struct Case {
    std::string name;
    int64_t batch, M, N, K;
    bool ta, tb;
    bool quick;  // in the --quick subset
};

std::vector<Case> cases() {
    const int64_t vt = 64 * 197;  // ViT-B/16 tokens at batch 64
    const int64_t st = 2 * 4096;  // SD-1.5 tokens at the 64x64 level, batch 2
    return {
        {"vit_qkv", 1, vt, 2304, 768, false, true, true},
        {"vit_proj", 1, vt, 768, 768, false, true, false},
        {"vit_fc1", 1, vt, 3072, 768, false, true, true},
        {"vit_fc2", 1, vt, 768, 3072, false, true, false},
        {"vit_fc1_dx", 1, vt, 768, 3072, false, false, false},
        {"vit_fc1_dw", 1, 3072, 768, vt, true, false, false},
        {"vit_attn_qk", 64 * 12, 197, 197, 64, false, true, true},
        {"vit_attn_pv", 64 * 12, 197, 64, 197, false, false, false},
        {"sd_qkv", 1, st, 320, 320, false, true, false},
        {"sd_geglu_fc1", 1, st, 2560, 320, false, true, false},
        {"sd_geglu_fc2", 1, st, 320, 1280, false, true, false},
        {"sd_xattn_kv", 1, 2 * 77, 320, 768, false, true, false},
        {"sd_attn_qk", 2 * 8, 4096, 4096, 40, false, true, true},
        {"sd_attn_pv", 2 * 8, 4096, 40, 4096, false, false, false},
    };
}

using Options = cb::Options;

constexpr const char* kUsage =
        "gemm_bench: ViT-B/16 and SD-1.5 GEMMs through coeffnet::cuda::gemm vs cuBLAS called directly\n"
        "  --quick        a few shapes, fewer reps\n"
        "  --json PATH    write the results as JSON, rewritten after each case (PATH.tmp, then renamed)\n"
        "  --reps N       timed batches per case (median reported; default 15, --quick 5)\n"
        "  --filter STR   only cases whose name contains STR\n"
        "  --help         this text\n"
        "exit status: 0 ok, 1 a check failed or CUDA error, 2 no usable GPU, 64 bad arguments";

cudaDataType_t dtype_of(bool bf16) { return bf16 ? CUDA_R_16BF : CUDA_R_32F; }

cublasComputeType_t compute_of(cu::GemmPrecision p) {
    switch (p) {
        case cu::GemmPrecision::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
        case cu::GemmPrecision::fp32:
        case cu::GemmPrecision::bf16: break;
    }
    return CUBLAS_COMPUTE_32F;
}

Shape shape_a(const Case& c) {
    const Shape m = c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K};
    return c.batch == 1 ? m : Shape{c.batch, m[0], m[1]};
}
Shape shape_b(const Case& c) {
    const Shape m = c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N};
    return c.batch == 1 ? m : Shape{c.batch, m[0], m[1]};
}

// The same product as cu::gemm, written against cuBLAS directly (row-major via swapped operands).
template <class T>
void direct_cublas(const Case& c, const T* A, const T* B, T* C, cu::GemmPrecision p) {
    cu::Context& ctx = cu::Context::get();
    const float alpha = 1.0f, beta = 0.0f;
    const int m = static_cast<int>(c.N), n = static_cast<int>(c.M), k = static_cast<int>(c.K);
    const int lda = static_cast<int>(c.tb ? c.K : c.N), ldb = static_cast<int>(c.ta ? c.M : c.K);
    const cublasOperation_t opa = c.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = c.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cudaDataType_t dt = dtype_of(!std::is_same_v<T, float>);
    if (c.batch == 1) {
        COEFFNET_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), opa, opb, m, n, k, &alpha, B, dt, lda, A, dt, ldb, &beta, C,
                                           dt, m, compute_of(p), CUBLAS_GEMM_DEFAULT));
    } else {
        COEFFNET_CUBLAS_CHECK(cublasGemmStridedBatchedEx(ctx.cublas(), opa, opb, m, n, k, &alpha, B, dt, lda, c.K * c.N,
                                                         A, dt, ldb, c.M * c.K, &beta, C, dt, m, c.M * c.N,
                                                         static_cast<int>(c.batch), compute_of(p), CUBLAS_GEMM_DEFAULT));
    }
}

// Max over sampled entries of |C - exact| / sum_k |a b| (the stored inputs, in double).
double sampled_error(const Case& c, const std::vector<float>& a, const std::vector<float>& b,
                     const std::vector<float>& cg) {
    std::mt19937_64 rng(1234);
    double worst = 0;
    for (int s = 0; s < 64; ++s) {
        const int64_t bi = static_cast<int64_t>(rng() % static_cast<uint64_t>(c.batch));
        const int64_t i = static_cast<int64_t>(rng() % static_cast<uint64_t>(c.M));
        const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(c.N));
        double dot = 0, mag = 0;
        for (int64_t k = 0; k < c.K; ++k) {
            const double x = a[static_cast<size_t>(bi * c.M * c.K + (c.ta ? k * c.M + i : i * c.K + k))];
            const double y = b[static_cast<size_t>(bi * c.K * c.N + (c.tb ? j * c.K + k : k * c.N + j))];
            dot += x * y;
            mag += std::abs(x * y);
        }
        const double got = cg[static_cast<size_t>(bi * c.M * c.N + i * c.N + j)];
        worst = std::max(worst, std::abs(got - dot) / std::max(mag, 1e-30));
    }
    return worst;
}

template <class T>
nlohmann::json run_case(const Case& c, cu::GemmPrecision p, const Options& opt) {
    Generator gen(42);
    const auto ha = Tensor<float>::uniform(shape_a(c), gen, -1.0, 1.0);
    const auto hb = Tensor<float>::uniform(shape_b(c), gen, -1.0, 1.0);
    const auto A = cu::DeviceTensor<T>::from_host(ha), B = cu::DeviceTensor<T>::from_host(hb);
    auto C = cu::DeviceTensor<T>::empty(cu::gemm_output_shape(A.shape(), B.shape(), c.ta, c.tb));
    auto C2 = cu::DeviceTensor<T>::empty(C.shape());

    // Check both paths first.
    cu::gemm(A, B, C, c.ta, c.tb, 1.0f, 0.0f, p);
    direct_cublas<T>(c, A.data(), B.data(), C2.data(), p);
    const auto av = A.to_host_float().to_vector(), bv = B.to_host_float().to_vector();
    const double err = sampled_error(c, av, bv, C.to_host_float().to_vector());
    const double err_direct = sampled_error(c, av, bv, C2.to_host_float().to_vector());
    const double tol = p == cu::GemmPrecision::fp32 && std::is_same_v<T, float> ? 1e-5
                       : p == cu::GemmPrecision::tf32                          ? 4e-3
                                                                               : 1.6e-2;
    const bool checked = err <= tol && err_direct <= tol;

    nlohmann::json r = {{"name", c.name},           {"precision", cu::precision_name(p)},
                        {"storage", std::is_same_v<T, float> ? "float32" : "bfloat16"},
                        {"batch", c.batch},         {"M", c.M},
                        {"N", c.N},                 {"K", c.K},
                        {"trans_a", c.ta},          {"trans_b", c.tb},
                        {"flops", 2.0 * static_cast<double>(c.batch * c.M) * static_cast<double>(c.N * c.K)},
                        {"check_rel_err", err},     {"check_rel_err_cublas", err_direct},
                        {"check_tol", tol},         {"check_ok", checked}};
    if (!checked)  // timed all the same: the check's result stands beside the timing
        std::printf("%-14s %-5s CHECK FAILED: relative error %.3g (cuBLAS direct %.3g) > %.3g\n", c.name.c_str(),
                    cu::precision_name(p), err, err_direct, tol);

    auto ours = [&] { cu::gemm(A, B, C, c.ta, c.tb, 1.0f, 0.0f, p); };
    auto theirs = [&] { direct_cublas<T>(c, A.data(), B.data(), C2.data(), p); };
    for (int w = 0; w < 3; ++w) {
        ours();
        theirs();
    }
    const int iters = cb::iters_for_2ms(cb::median_ms(theirs, 3, 1));
    const int reps = opt.quick ? std::min(opt.reps, 5) : opt.reps;
    std::vector<double> t_ours, t_theirs;
    for (int rep = 0; rep < reps; ++rep) {
        t_ours.push_back(cb::median_ms(ours, 1, iters));
        t_theirs.push_back(cb::median_ms(theirs, 1, iters));
    }
    const double ms = cb::middle(t_ours), ms_direct = cb::middle(t_theirs);
    const double flops = r["flops"].get<double>();
    r["coeffnet_ms"] = ms;
    r["cublas_ms"] = ms_direct;
    r["ratio"] = ms / ms_direct;
    r["tflops"] = flops / (ms * 1e-3) / 1e12;
    r["cublas_tflops"] = flops / (ms_direct * 1e-3) / 1e12;
    r["iters_per_rep"] = iters;
    r["reps"] = reps;
    std::printf("%-14s %-5s batch %4lld M %6lld N %5lld K %6lld  coeffnet %8.4f ms %7.1f TFLOP/s  cuBLAS %8.4f ms  ratio %.3f%s\n",
                c.name.c_str(), cu::precision_name(p), static_cast<long long>(c.batch), static_cast<long long>(c.M),
                static_cast<long long>(c.N), static_cast<long long>(c.K), ms, r["tflops"].get<double>(), ms_direct,
                ms / ms_direct, ms / ms_direct > 1.05 ? "  (> 1.05)" : "");
    std::fflush(stdout);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    const char* prog = "gemm_bench";
    Options opt;
    if (const int rc = cb::parse_args(prog, kUsage, argc, argv, opt); rc >= 0) return rc;
    const cu::Status* st = cb::usable_gpu(prog);
    if (!st) return cb::kExitNoGpu;
    std::printf("gemm_bench on %s\n", cu::describe().c_str());

    bench::JsonLog log = cb::open_log("cuda/gemm_bench", *st, opt, argc, argv);
    log.head()["device"] = cu::describe();
    log.head()["built_for"] = st->built_for;
    if (!cb::start_log(prog, log)) return cb::kExitFailed;

    std::string error;
    const bool ran = cb::guarded(prog, [&] {
        for (const Case& c : cases()) {
            if (opt.quick && !c.quick) continue;
            if (!opt.selected(c.name)) continue;
            auto add = [&](nlohmann::json r) {
                const bool case_ok = r["check_ok"].get<bool>();
                cb::add_case(prog, log, std::move(r), case_ok);
            };
            add(run_case<float>(c, cu::GemmPrecision::fp32, opt));
            add(run_case<float>(c, cu::GemmPrecision::tf32, opt));
            add(run_case<bfloat16_t>(c, cu::GemmPrecision::bf16, opt));
            cu::Context::get().allocator().empty_cache();
        }
    }, &error);
    return cb::finish(prog, log, ran, ran, error);
}
