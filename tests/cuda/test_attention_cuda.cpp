// Fused coefficient attention on the GPU (kernels/coeff_attention.cuh, src/cuda/attention.cu).
//
// Every test runs the real launchers (src/cuda/attention.cu) and kernels: on a GPU, or under the
// block emulator (src/emulator/, ctest "emulated/..."; real thread counts, barriers, wmma warp
// collectives and shadow-checked shared memory), against the CPU coeff_attention (materialised):
//   - "plans": values and gradients for q, k, v and alpha, masks, tails, dropout words and
//     generator offsets, head groups and small tiles forced by a shared-memory cap
//     (AttentionConfig::max_smem), bf16 and fp16 storage, SIMT and tensor-core kernels;
//   - the device cases (N = 1, 7, 197, 1025; d = 40, 64, 80; H = 1, 8, 12): fp32 tight, bf16
//     against the CPU's bf16 rounding error. Without a GPU or the emulator, they report skipped.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/cuda/attention.hpp>
#include <coeffnet/cuda/launchers.hpp>
#include <coeffnet/cuda/runtime.hpp>

#include "../../kernels/coeff_attention.cuh"
#include "../test_util.hpp"
#include "testing.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
namespace attn = coeffnet::cuda::attn;

namespace {

constexpr int64_t kH200Smem = 232448;  // cudaDevAttrMaxSharedMemoryPerBlockOptin on H100 / H200
constexpr int64_t kA100Smem = 166912;

struct Case {
    int64_t B, H, N, M, d, dv;
    bool causal = false;
    int pad = 0;           // 1: trailing third of item 0's keys padded; 2: also every key of item B-1
    bool dropout = false;  // alpha dropout 0.3, Phat dropout 0.2, training
    bool plain = false;    // attention without alpha
    bool no_residual = false;  // alpha' = Dropout(alpha), without the identity (coeff.alpha_residual = false)
};

std::string describe(const Case& c) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "B=%lld H=%lld N=%lld M=%lld d=%lld dv=%lld causal=%d pad=%d dropout=%d plain=%d",
                  static_cast<long long>(c.B), static_cast<long long>(c.H), static_cast<long long>(c.N),
                  static_cast<long long>(c.M), static_cast<long long>(c.d), static_cast<long long>(c.dv), c.causal, c.pad,
                  c.dropout, c.plain);
    return buf;
}

struct Inputs {
    Tensor<float> q, k, v, alpha, dout, key_mask;
};

Inputs make_inputs(const Case& c, uint64_t seed) {
    Generator g(seed);
    Inputs in;
    in.q = Tensor<float>::randn({c.B, c.H, c.N, c.d}, g);
    in.k = Tensor<float>::randn({c.B, c.H, c.M, c.d}, g);
    in.v = Tensor<float>::randn({c.B, c.H, c.M, c.dv}, g);
    in.alpha = Tensor<float>::randn({c.H, c.H}, g, 0.0, 0.3);
    in.dout = Tensor<float>::randn({c.B, c.H, c.N, c.dv}, g);
    if (c.pad) {
        in.key_mask = Tensor<float>::ones({c.B, c.M});
        for (int64_t m = c.M - c.M / 3; m < c.M && m > 0; ++m) in.key_mask.at({0, m}) = 0;
        if (c.pad == 2)
            for (int64_t m = 0; m < c.M; ++m) in.key_mask.at({c.B - 1, m}) = 0;
    }
    return in;
}

Inputs bf16_inputs(const Inputs& in) {
    Inputs r = in;
    r.q = round_bf16(in.q);
    r.k = round_bf16(in.k);
    r.v = round_bf16(in.v);
    r.dout = round_bf16(in.dout);
    return r;
}

struct Result {
    std::vector<float> out, dq, dk, dv, dalpha;
    uint64_t offset = 0;
};

constexpr double kAlphaDrop = 0.3, kAttnDrop = 0.2;

// The reference: the CPU op (materialised backend), forward and backward.
Result cpu_reference(const Inputs& in, const Case& c) {
    Generator gen(99, 7);
    AttentionOptions o;
    o.causal = c.causal;
    o.backend = AttentionBackend::materialised;
    o.coeff.alpha_residual = !c.no_residual;
    if (c.dropout) {
        o.training = true;
        o.coeff.alpha_dropout = kAlphaDrop;
        o.attn_dropout = kAttnDrop;
        o.generator = &gen;
    }
    Tensor<float> q = in.q.clone(), k = in.k.clone(), v = in.v.clone(), alpha = in.alpha.clone();
    for (Tensor<float>* t : {&q, &k, &v, &alpha}) t->set_requires_grad(true);
    AttentionResult<float> r = c.plain ? attention(q, k, v, o, Tensor<float>(), in.key_mask)
                                       : coeff_attention(q, k, v, alpha, o, Tensor<float>(), in.key_mask);
    Result res;
    res.out = r.out.to_vector();
    r.out.backward(in.dout);
    res.dq = q.grad().to_vector();
    res.dk = k.grad().to_vector();
    res.dv = v.grad().to_vector();
    if (!c.plain) res.dalpha = alpha.grad().to_vector();
    res.offset = gen.offset;
    return res;
}

template <class T>
std::vector<T> storage(const Tensor<float>& t) {
    std::vector<T> r;
    for (float x : t.to_vector()) r.push_back(T(x));
    return r;
}
template <class T>
std::vector<float> floats(const std::vector<T>& x) {
    std::vector<float> r;
    for (const T& e : x) r.push_back(static_cast<float>(e));
    return r;
}

template <class T>
Result run_device(const Inputs& in, const Case& c, bool tensor_cores = true, int64_t max_smem = 0);

// The launchers with their plan for `smem_limit` bytes of shared memory per block (below the
// device's limit: smaller tiles and head groups). On a GPU or under the block emulator.
template <class T>
Result run_plan(const Inputs& in, const Case& c, int64_t smem_limit, cuda::AttentionPlan* plan_out = nullptr,
                bool tensor_cores = true) {
    if (plan_out)
        *plan_out = cuda::plan_coeff_attention(c.B, c.H, c.N, c.M, c.d, c.dv, smem_limit, static_cast<int64_t>(sizeof(T)));
    return run_device<T>(in, c, tensor_cores, smem_limit);
}

// max |a - b| / max |b| (0 when both are zero); NaN anywhere fails.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double diff = 0, mag = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        mag = std::max(mag, std::abs(static_cast<double>(b[i])));
    }
    return mag > 0 ? diff / mag : diff;
}

// The error of storing `ref` in bf16 (max |bf16(x) - x| / max |x|): what rounding alone costs.
double bf16_rounding_err(const std::vector<float>& ref) {
    std::vector<float> r;
    for (float x : ref) r.push_back(static_cast<float>(bfloat16_t(x)));
    return rel_err(r, ref);
}

void check_close(const Result& got, const Result& want, double tol, const char* what) {
    INFO(what);
    CHECK(rel_err(got.out, want.out) <= tol);
    CHECK(rel_err(got.dq, want.dq) <= tol);
    CHECK(rel_err(got.dk, want.dk) <= tol);
    CHECK(rel_err(got.dv, want.dv) <= tol);
    CHECK(rel_err(got.dalpha, want.dalpha) <= tol);
}

// The materialised op run in bf16 the way a bf16 framework runs it: the maps it multiplies with
// (Phat, mixed and dropped, and dS) stored in bf16, every GEMM accumulated in fp32 and its result
// stored in bf16. Its error against the fp32 op is the "CPU bf16 error" each bf16 result is judged
// by (the rounding of S and P, which such a framework also does, is left out: a stricter budget).
Result bf16_materialised(const Inputs& in, const Case& c) {
    Generator gen(99, 7);
    AttentionOptions o;
    o.causal = c.causal;
    o.backend = AttentionBackend::materialised;
    o.return_maps = true;
    const AttentionResult<float> r = c.plain ? attention(in.q, in.k, in.v, o, Tensor<float>(), in.key_mask)
                                             : coeff_attention(in.q, in.k, in.v, in.alpha, o, Tensor<float>(), in.key_mask);
    const int64_t B = c.B, H = c.H, N = c.N, M = c.M, d = c.d, dv = c.dv;
    const bool adrop = c.dropout && !c.plain;
    // alpha' with the alpha-dropout words of block 7 on, then Phat's draw.
    std::vector<float> ap(static_cast<size_t>(H * H), 0.0f);
    const std::vector<float> al = c.plain ? std::vector<float>(ap.size(), 0.0f) : in.alpha.to_vector();
    const float akeep = static_cast<float>(1.0 / (1.0 - kAlphaDrop)), pkeep = static_cast<float>(1.0 / (1.0 - kAttnDrop));
    for (int64_t j = 0; j < H * H; ++j) {
        const float kj = adrop ? (uniform_from_bits(draw_bits(99, 7, static_cast<uint64_t>(j))) >= static_cast<float>(kAlphaDrop) ? akeep : 0.0f) : 1.0f;
        ap[static_cast<size_t>(j)] = (j / H == j % H ? 1.0f : 0.0f) + (c.plain ? 0.0f : al[static_cast<size_t>(j)] * kj);
    }
    const uint64_t drop_first = 7 + (adrop ? static_cast<uint64_t>((H * H + 3) / 4) : 0);
    const std::vector<float> P = r.maps.to_vector(), mixed = r.mixed_maps.to_vector(), q = in.q.to_vector(),
                             k = in.k.to_vector(), v = in.v.to_vector(), dout = in.dout.to_vector();
    auto bf = [](float x) { return static_cast<float>(bfloat16_t(x)); };
    auto mult = [&](uint64_t idx) {
        return c.dropout ? (uniform_from_bits(draw_bits(99, drop_first, idx)) >= static_cast<float>(kAttnDrop) ? pkeep : 0.0f) : 1.0f;
    };
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    Result res;
    res.out.assign(static_cast<size_t>(B * H * N * dv), 0.0f);
    res.dq.assign(static_cast<size_t>(B * H * N * d), 0.0f);
    res.dk.assign(static_cast<size_t>(B * H * M * d), 0.0f);
    res.dv.assign(static_cast<size_t>(B * H * M * dv), 0.0f);
    std::vector<float> phat(static_cast<size_t>(H * N * M)), dphat(phat.size()), ds(phat.size());
    auto at = [&](int64_t h, int64_t n, int64_t m) { return static_cast<size_t>((h * N + n) * M + m); };
    for (int64_t b = 0; b < B; ++b) {
        const size_t base = static_cast<size_t>(b * H * N * M);
        for (int64_t h = 0; h < H; ++h)
            for (int64_t n = 0; n < N; ++n)
                for (int64_t m = 0; m < M; ++m) {
                    const uint64_t idx = base + at(h, n, m);
                    phat[at(h, n, m)] = mixed[idx] * mult(idx);
                    float g = 0.0f;
                    for (int64_t x = 0; x < dv; ++x)
                        g += dout[static_cast<size_t>(((b * H + h) * N + n) * dv + x)] * v[static_cast<size_t>(((b * H + h) * M + m) * dv + x)];
                    dphat[at(h, n, m)] = g * mult(idx);
                }
        for (int64_t i = 0; i < H; ++i)
            for (int64_t n = 0; n < N; ++n) {
                std::vector<float> dp(static_cast<size_t>(M));
                float D = 0.0f;
                for (int64_t m = 0; m < M; ++m) {
                    float s = 0.0f;
                    for (int64_t h = 0; h < H; ++h) s += ap[static_cast<size_t>(h * H + i)] * dphat[at(h, n, m)];
                    dp[static_cast<size_t>(m)] = s;
                    D += s * P[base + at(i, n, m)];
                }
                for (int64_t m = 0; m < M; ++m) {
                    const float p = P[base + at(i, n, m)];
                    ds[at(i, n, m)] = scale * p * (dp[static_cast<size_t>(m)] - D);
                }
            }
        for (int64_t h = 0; h < H; ++h) {
            const size_t bh = static_cast<size_t>(b * H + h);
            for (int64_t n = 0; n < N; ++n) {
                for (int64_t x = 0; x < dv; ++x) {
                    float o = 0.0f;
                    for (int64_t m = 0; m < M; ++m) o += bf(phat[at(h, n, m)]) * v[(bh * M + m) * dv + x];
                    res.out[(bh * N + n) * dv + x] = bf(o);
                }
                for (int64_t x = 0; x < d; ++x) {
                    float a = 0.0f;
                    for (int64_t m = 0; m < M; ++m) a += bf(ds[at(h, n, m)]) * k[(bh * M + m) * d + x];
                    res.dq[(bh * N + n) * d + x] = bf(a);
                }
            }
            for (int64_t m = 0; m < M; ++m) {
                for (int64_t x = 0; x < dv; ++x) {
                    float a = 0.0f;
                    for (int64_t n = 0; n < N; ++n) a += bf(phat[at(h, n, m)]) * dout[(bh * N + n) * dv + x];
                    res.dv[(bh * M + m) * dv + x] = bf(a);
                }
                for (int64_t x = 0; x < d; ++x) {
                    float a = 0.0f;
                    for (int64_t n = 0; n < N; ++n) a += bf(ds[at(h, n, m)]) * q[(bh * N + n) * d + x];
                    res.dk[(bh * M + m) * d + x] = bf(a);
                }
            }
        }
    }
    return res;
}

// bf16 results against the fp32 CPU op on the same (bf16-rounded) inputs: within twice the error
// of the bf16 materialised op (or of rounding the exact result to bf16, if larger), plus fp32
// summation noise. dalpha is fp32 (fp32 arithmetic on bf16 inputs): 1e-4.
void check_bf16(const Result& got, const Result& want, const Result& bf16_ref) {
    auto ok = [](const std::vector<float>& g, const std::vector<float>& w, const std::vector<float>& r16, const char* name) {
        const double ref_err = std::max(rel_err(r16, w), bf16_rounding_err(w));
        const double e = rel_err(g, w), budget = 2.0 * ref_err + 1e-4;
        INFO(name << ": error " << e << ", budget " << budget);
        CHECK(e <= budget);
    };
    ok(got.out, want.out, bf16_ref.out, "out");
    ok(got.dq, want.dq, bf16_ref.dq, "dq");
    ok(got.dk, want.dk, bf16_ref.dk, "dk");
    ok(got.dv, want.dv, bf16_ref.dv, "dv");
    CHECK(rel_err(got.dalpha, want.dalpha) <= 1e-4);
}

const Case kEmuCases[] = {
    {1, 1, 1, 1, 40, 40},
    {1, 12, 1, 9, 64, 64, true},                // one query, causal, cross
    {2, 8, 7, 7, 40, 40, true, 2},              // item 1 all padding (rows of zeros)
    {2, 12, 7, 197, 64, 64, false, 1},          // N < M, padding, key tails
    {1, 8, 197, 7, 80, 80, true},               // N > M causal: the top rows see no key
    {2, 8, 197, 197, 64, 64, true, 1, true},    // dropout, causal, padding
    {1, 12, 33, 50, 80, 64, false, 0, true},    // d != dv
    {1, 3, 40, 40, 40, 40, true, 0, true, true},  // plain attention, dropout
    {1, 20, 9, 33, 40, 40, true, 1, true},        // H > 16: the tensor-core mix's shared-memory path
};

// The tests that run the kEmuCases[5] shape several times (three shared-memory limits, two kernel
// families) take a smaller one of the same kind under the emulator: dropout, causal, padding, with
// several query and key tiles and a tail in each (16 x 32 tiles: 5 and 3). A GPU runs the original.
#if defined(COEFFNET_TEST_EMULATED)
const Case kBigCase = {2, 8, 67, 67, 64, 64, true, 1, true};
// Rows of many key tiles (11 of 32, a tail of 1; more keys than a block has threads).
constexpr int64_t kLongRow = 321;
#else
const Case kBigCase = kEmuCases[5];
constexpr int64_t kLongRow = 1025;
#endif

}  // namespace

TEST_CASE("cuda attention plans: the kernels' block functions equal the CPU coeff_attention (fp32)") {
    COEFFNET_REQUIRE_GPU();
    for (const Case& c : kEmuCases) {
        INFO(describe(c));
        const Inputs in = make_inputs(c, 1234 + static_cast<uint64_t>(c.N * 31 + c.M));
        const Result want = cpu_reference(in, c);
        const Result got = run_plan<float>(in, c, kH200Smem);
        check_close(got, want, 2e-5, "H200 plan");
        CHECK(got.offset == want.offset);
    }
}

TEST_CASE("cuda attention plans: drop_mult4 and for_each_tile_element give DropoutDraw::multiplier's values") {
    // M = 197 and M = 64: rows whose first word is and is not a multiple of 4 (1 and 2 Philox blocks).
    Generator gen(2024);
    for (int64_t M : {int64_t{197}, int64_t{64}, int64_t{5}}) {
        CAPTURE(M);
        attn::Params<float> p;
        p.B = 2, p.H = 3, p.N = 7, p.M = M, p.bq = 4, p.bk = 32;
        gen.reserve(5);  // an odd first block
        p.drop = coeff::reserve_dropout<float>(0.35, true, &gen, static_cast<uint64_t>(p.B * p.H * p.N * p.M), "test", "gen");
        REQUIRE(p.drop.on);
        int64_t checked = 0, kept = 0;
        for (int64_t b = 0; b < p.B; ++b)
            for (int64_t h = 0; h < p.H; ++h)
                for (int64_t n = 0; n < p.N; ++n)
                    for (int64_t m = 0; m < p.M; ++m) {
                        float got[4];
                        p.drop_mult4(b, h, n, m, got);
                        for (int64_t j = 0; j < 4 && m + j < p.M; ++j) {
                            const float want = p.drop.multiplier(coeff::phat_word(b, h, n, m + j, p.H, p.N, p.M));
                            if (got[j] != want) FAIL_CHECK("drop_mult4 word " << j << " at [" << b << ", " << h << ", " << n << ", " << m << "]");
                            ++checked;
                            kept += want != 0.0f;
                        }
                    }
        CHECK(checked > p.B * p.H * p.N * p.M);
        CHECK(kept > checked / 2);      // p = 0.35: both outcomes occur
        CHECK(kept < checked * 9 / 10);
        // Every element of a tile exactly once, with its multiplier; two "threads" of a block.
        for (int64_t m0 : {int64_t{0}, int64_t{32}}) {
            std::vector<int> seen(static_cast<size_t>(p.bq * p.bk), 0);
            for (int64_t tid = 0; tid < 2; ++tid) {
                struct TwoThreads {
                    int64_t tid, nthreads = 2;
                } blk{tid};
                attn::for_each_tile_element(blk, p, 1, 2, 4, m0, [&](int64_t r, int64_t c, float mult) {
                    ++seen[static_cast<size_t>(r * p.bk + c)];
                    if (4 + r < p.N && m0 + c < p.M)
                        CHECK(mult == p.drop.multiplier(coeff::phat_word(1, 2, 4 + r, m0 + c, p.H, p.N, p.M)));
                });
            }
            for (int v : seen) CHECK(v == 1);
        }
    }
}

TEST_CASE("cuda attention plans: long rows (N = M = 321 emulated, 1025 on a GPU), causal, dropout across tiles") {
    COEFFNET_REQUIRE_GPU();
    const Case c{1, 2, kLongRow, kLongRow, 40, 40, true, 0, true};
    const Inputs in = make_inputs(c, 77);
    const Result want = cpu_reference(in, c);
    check_close(run_plan<float>(in, c, kH200Smem), want, 5e-5, "H200 plan");
}

TEST_CASE("cuda attention plans: head groups and small tiles (forced by a small shared-memory limit)") {
    COEFFNET_REQUIRE_GPU();
    for (const Case& c : {kEmuCases[3], kBigCase, kEmuCases[6]}) {
        INFO(describe(c));
        const Inputs in = make_inputs(c, 99 + static_cast<uint64_t>(c.N));
        const Result want = cpu_reference(in, c);
        for (int64_t limit : {int64_t{48 * 1024}, int64_t{64 * 1024}, kA100Smem}) {
            INFO("smem limit " << limit);
            cuda::AttentionPlan plan;
            const Result got = run_plan<float>(in, c, limit, &plan);
            if (limit == 48 * 1024) CHECK((plan.fwd_out.groups > 1 || plan.bwd_kv.groups > 1));
            check_close(got, want, 2e-5, "small limit");
        }
    }
}

TEST_CASE("cuda attention plans: bf16 storage within the bf16 error of the materialised op (SIMT and tensor-core kernels)") {
    COEFFNET_REQUIRE_GPU();
    for (const Case& c : {kEmuCases[0], kEmuCases[2], kEmuCases[3], kEmuCases[4], kBigCase, kEmuCases[6], kEmuCases[7],
                          kEmuCases[8]}) {
        INFO(describe(c));
        const Inputs in = bf16_inputs(make_inputs(c, 4321 + static_cast<uint64_t>(c.N)));
        const Result want = cpu_reference(in, c);
        for (bool tc : {false, true}) {
            INFO("tensor cores " << tc);
            cuda::AttentionPlan plan;
            const Result got = run_plan<bfloat16_t>(in, c, kH200Smem, &plan, tc);
            CHECK(plan.use_tc);
            check_bf16(got, want, bf16_materialised(in, c));
            CHECK(got.offset == want.offset);
        }
    }
}

TEST_CASE("cuda attention plans: tensor-core kernels with head groups (small shared-memory limit), fp16") {
    COEFFNET_REQUIRE_GPU();
    const Case c = kBigCase;
    const Inputs in = make_inputs(c, 17);
    Inputs h = in;
    for (Tensor<float>* t : {&h.q, &h.k, &h.v, &h.dout}) *t = t->cast<half_t>().cast<float>();
    const Result want = cpu_reference(h, c);
    cuda::AttentionPlan plan;
    const Result got = run_plan<half_t>(h, c, 48 * 1024, &plan, true);
    CHECK(plan.use_tc);
    CHECK(plan.fwd_out_tc.groups > 1);
    CHECK(rel_err(got.out, want.out) <= 2e-3);
    CHECK(rel_err(got.dq, want.dq) <= 2e-3);
}

TEST_CASE("cuda attention plan: bench shapes fit H200 and A100, groups balanced, layouts agree with the kernels") {
    struct S {
        int64_t B, H, N, d;
    };
    for (const S& s : {S{64, 12, 197, 64}, S{2, 8, 4096, 40}, S{2, 10, 4096, 64}, S{1, 16, 16384, 128}, S{1, 1, 1, 32},
                       S{3, 12, 1025, 80}, S{1, 64, 7, 128}}) {
        for (int64_t limit : {kH200Smem, kA100Smem}) {
            INFO("B=" << s.B << " H=" << s.H << " N=" << s.N << " d=" << s.d << " limit=" << limit);
            const cuda::AttentionPlan p = cuda::plan_coeff_attention(s.B, s.H, s.N, s.N, s.d, s.d, limit);
            for (const cuda::AttentionKernelPlan* k : {&p.fwd_lse, &p.fwd_out, &p.bwd_pre, &p.bwd_kv}) {
                CHECK(k->smem_bytes > 0);
                CHECK(k->smem_bytes <= limit);
                CHECK(k->grid >= 1);
            }
            for (const cuda::AttentionKernelPlan* k : {&p.fwd_out, &p.bwd_kv}) {
                CHECK(k->group * k->groups >= s.H);
                CHECK((k->group - 1) * k->groups < s.H);  // balanced: the last group is not empty
            }
            attn::Params<float> prm;
            prm.H = s.H, prm.d = s.d, prm.dv = s.d;
            CHECK(attn::smem_fwd_lse(attn::with_plan(prm, p.fwd_lse)) * 4 == p.fwd_lse.smem_bytes);
            CHECK(attn::smem_fwd_out(attn::with_plan(prm, p.fwd_out)) * 4 == p.fwd_out.smem_bytes);
            CHECK(attn::smem_bwd_pre(attn::with_plan(prm, p.bwd_pre)) * 4 == p.bwd_pre.smem_bytes);
            CHECK(attn::smem_bwd_kv(attn::with_plan(prm, p.bwd_kv)) * 4 == p.bwd_kv.smem_bytes);
            CHECK(p.fwd_lse.grid == s.B * s.H * ((s.N + 31) / 32));
            CHECK(!p.use_tc);
            const cuda::AttentionPlan p2 = cuda::plan_coeff_attention(s.B, s.H, s.N, s.N, s.d, s.d, limit, 2);
            CHECK((p2.use_tc || s.H > 16));  // the tensor-core kernels fit every head count the bench uses
            if (p2.use_tc) {
                for (const cuda::AttentionKernelPlan* k : {&p2.fwd_lse_tc, &p2.fwd_out_tc, &p2.bwd_pre_tc, &p2.bwd_kv_tc}) {
                    CHECK(k->smem_bytes <= limit);
                    CHECK(k->bq % 16 == 0);
                    CHECK(k->bk % 16 == 0);
                }
                CHECK(p2.fwd_out_tc.group * p2.fwd_out_tc.groups >= s.H);
                CHECK(p2.bwd_kv_tc.group * p2.bwd_kv_tc.groups >= s.H);
                attn::Params<uint16_t> p16;
                p16.H = s.H, p16.d = s.d, p16.dv = s.d;
                CHECK(attn::tc_layout(attn::with_plan(p16, p2.fwd_out_tc), 2).bytes == p2.fwd_out_tc.smem_bytes);
            }
        }
    }
    // ViT-B/16 keeps all 12 target heads in one CTA on an H200 (no recomputed score tiles).
    CHECK(cuda::plan_coeff_attention(64, 12, 197, 197, 64, 64, kH200Smem).fwd_out.groups == 1);
    CHECK_THROWS_AS(cuda::plan_coeff_attention(1, 65, 8, 8, 64, 64, kH200Smem), Error);
    CHECK_THROWS_AS(cuda::plan_coeff_attention(1, 8, 8, 8, 64, 64, 4096), Error);
}

// ---- (coverage): branches only these shapes reach (tests/README.md, "Emulated CUDA kernels: line coverage")

TEST_CASE("cuda attention plans (coverage): backward tiles with bq = 8, forward with bk = 16, alpha_residual = false") {
    COEFFNET_REQUIRE_GPU();
    // H = 3, d = 8, dv = 40 under a cap of 11.3 KiB: pass 1 keeps its 32 x 32 tiles, pass 2 falls back to
    // bk = 16 (dv = 40 makes bk = 32 too big), both backward kernels to bq = 8, bk = 16 (their 2H
    // score tiles do not fit with bq = 16). Item 0 part padding, causal, dropout: several query and
    // key tiles with tails.
    const Case c{2, 3, 20, 21, 8, 40, true, 1, true};
    INFO(describe(c));
    const Inputs in = make_inputs(c, 2468);
    const Result want = cpu_reference(in, c);
    cuda::AttentionPlan plan;
    const Result got = run_plan<float>(in, c, 11584, &plan);
    CHECK(plan.fwd_lse.bq == 32);
    CHECK(plan.fwd_out.bq == 16);
    CHECK(plan.fwd_out.bk == 16);
    CHECK(plan.bwd_pre.bq == 8);
    CHECK(plan.bwd_pre.bk == 16);
    CHECK(plan.bwd_kv.bq == 8);
    CHECK(plan.bwd_kv.bk == 16);
    CHECK(!plan.use_tc);
    check_close(got, want, 2e-5, "bq 8 / bk 16 plan");
    CHECK(got.offset == want.offset);
    // The fused launcher with alpha' = Dropout(alpha) (no identity): with and without dropout.
    for (bool dropout : {false, true}) {
        Case nr{1, 4, 9, 11, 16, 16, true, 0, dropout};
        nr.no_residual = true;
        INFO(describe(nr) << " alpha_residual=false");
        const Inputs ni = make_inputs(nr, 1357);
        const Result w = cpu_reference(ni, nr);
        const Result g = run_plan<float>(ni, nr, kH200Smem);
        check_close(g, w, 2e-5, "alpha_residual = false");
        CHECK(g.offset == w.offset);
        // The residual matters: with it the result differs.
        Case with = nr;
        with.no_residual = false;
        CHECK(rel_err(g.out, cpu_reference(ni, with).out) > 1e-2);
    }
}

TEST_CASE("cuda attention plans (coverage): bf16 with a one-block grid cap (the dq conversion's grid-stride loop)") {
    COEFFNET_REQUIRE_GPU();
    const Case c{1, 2, 9, 9, 16, 16, true};  // dq: 288 elements, 2 blocks of 256 without the cap
    const Inputs in = bf16_inputs(make_inputs(c, 97531));
    const Result want = cpu_reference(in, c);
    cuda::set_max_grid_for_testing(1);
    Result got;
    try {
        got = run_plan<bfloat16_t>(in, c, kH200Smem, nullptr, false);
    } catch (...) {
        cuda::set_max_grid_for_testing(0);
        throw;
    }
    cuda::set_max_grid_for_testing(0);
    check_bf16(got, want, bf16_materialised(in, c));
}

TEST_CASE_TEMPLATE("cuda attention (coverage): tile_mma in all four operand layouts equals the CPU matmul", T, bfloat16_t,
                   half_t) {
    COEFFNET_REQUIRE_GPU();
    // The attention kernels use three layouts (A row-major with B row- or column-major, A
    // column-major with B row-major); A and B both column-major is reached only here.
    const int64_t K = 32;  // two 16-wide k steps
    Generator g(8642);
    const Tensor<float> a = Tensor<float>::randn({16, K}, g).template cast<T>().template cast<float>();
    const Tensor<float> b = Tensor<float>::randn({K, 16}, g).template cast<T>().template cast<float>();
    const Tensor<float> want = matmul(a, b);  // products of 16-bit values are exact in fp32
    for (bool a_col : {false, true})
        for (bool b_col : {false, true}) {
            INFO("A col-major " << a_col << ", B col-major " << b_col);
            const auto da = cuda::DeviceTensor<T>::from_host(a_col ? a.transpose(0, 1).contiguous() : a);
            const auto db = cuda::DeviceTensor<T>::from_host(b_col ? b.transpose(0, 1).contiguous() : b);
            auto c = cuda::DeviceTensor<float>::empty({16, 16});
            cuda::tile_mma_for_testing(da, a_col, db, b_col, c);
            CHECK(rel_err(c.to_host().to_vector(), want.to_vector()) <= 1e-6);
        }
    auto c = cuda::DeviceTensor<float>::empty({16, 16});
    const auto bad = cuda::DeviceTensor<T>::from_host(Tensor<float>::zeros({16, 24}));
    CHECK_THROWS_AS(cuda::tile_mma_for_testing(bad, false, bad, true, c), Error);  // K = 24: not a multiple of 16
}

TEST_CASE("cuda attention plans (coverage): tensor cores with more than 16 heads and no dropout (the shared-memory mix)") {
    COEFFNET_REQUIRE_GPU();
    const Case c{1, 20, 9, 33, 40, 40, true, 1, false};  // H > kRegHeads, Phat dropout off
    const Inputs in = bf16_inputs(make_inputs(c, 2020));
    const Result want = cpu_reference(in, c);
    cuda::AttentionPlan plan;
    const Result got = run_plan<bfloat16_t>(in, c, kH200Smem, &plan, true);
    CHECK(plan.use_tc);
    check_bf16(got, want, bf16_materialised(in, c));
}

TEST_CASE("cuda attention: without a usable GPU the launchers throw a clear Error") {
    COEFFNET_REQUIRE_NO_GPU();  // on a GPU the device tests cover the launchers
    cuda::DeviceTensor<float> none;
    try {
        (void)cuda::coeff_attention_forward<float>(none, none, none, cuda::DeviceTensor<float>());
        FAIL("no exception");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("cuda::coeff_attention_forward") != std::string::npos);
        CHECK(msg.find("no usable CUDA device") != std::string::npos);
    }
    CHECK_THROWS_AS((void)cuda::coeff_attention_backward<bfloat16_t>({}, {}, {}, {}, cuda::CoeffAttentionSaved{}), Error);
}

// ---- device tests ---------------------------------------------------------------------------

namespace {

template <class T>
Result run_device(const Inputs& in, const Case& c, bool tensor_cores, int64_t max_smem) {
    Generator gen(99, 7);
    cuda::AttentionConfig cfg;
    cfg.causal = c.causal;
    cfg.tensor_cores = tensor_cores;
    cfg.max_smem = max_smem;
    cfg.coeff.alpha_residual = !c.no_residual;
    if (c.dropout) {
        cfg.training = true;
        cfg.coeff.alpha_dropout = kAlphaDrop;
        cfg.attn_dropout = kAttnDrop;
        cfg.generator = &gen;
    }
    auto q = cuda::DeviceTensor<T>::from_host(in.q), k = cuda::DeviceTensor<T>::from_host(in.k),
         v = cuda::DeviceTensor<T>::from_host(in.v), dout = cuda::DeviceTensor<T>::from_host(in.dout);
    cuda::DeviceTensor<float> alpha = c.plain ? cuda::DeviceTensor<float>() : cuda::DeviceTensor<float>::from_host(in.alpha);
    cuda::DeviceTensor<uint8_t> km;
    if (in.key_mask.defined()) km = cuda::DeviceTensor<uint8_t>::from_host(in.key_mask);
    const auto* kmp = in.key_mask.defined() ? &km : nullptr;
    const auto fwd = cuda::coeff_attention_forward(q, k, v, alpha, cfg, kmp);
    const auto g = cuda::coeff_attention_backward(q, k, v, dout, fwd.saved, kmp);
    Result r;
    r.out = fwd.out.to_host_float().to_vector();
    r.dq = g.dq.to_host_float().to_vector();
    r.dk = g.dk.to_host_float().to_vector();
    r.dv = g.dv.to_host_float().to_vector();
    if (!c.plain) r.dalpha = g.dalpha.to_host().to_vector();
    r.offset = gen.offset;
    return r;
}

std::vector<Case> device_cases() {
    std::vector<Case> cs;
    for (int64_t N : {1, 7, 197, 1025})
        for (int64_t d : {40, 64, 80})
            for (int64_t H : {1, 8, 12}) {
                if (N == 1025 && H != 8) continue;  // keep the CPU reference quick
                Case c{N == 1025 ? 1 : 2, H, N, N, d, d};
                c.causal = (N + d) % 2 == 1;
                c.pad = N > 1 && d == 64 ? 1 : 0;
                cs.push_back(c);
            }
    cs.push_back({2, 12, 197, 197, 64, 64, true, 1, true});  // dropout
    cs.push_back({2, 8, 7, 7, 40, 40, true, 2});             // an all-padding item
    cs.push_back({1, 8, 197, 7, 80, 80, true});              // N > M causal
    cs.push_back({1, 12, 33, 50, 80, 64, false, 0, true});   // d != dv
    cs.push_back({1, 3, 40, 40, 40, 40, true, 0, true, true});  // plain attention
    return cs;
}

}  // namespace

TEST_CASE("cuda coeff_attention fp32 equals the CPU op: values and gradients (q, k, v, alpha), masks, dropout") {
    COEFFNET_REQUIRE_REAL_GPU();
    for (const Case& c : device_cases()) {
        INFO(describe(c));
        const Inputs in = make_inputs(c, 555 + static_cast<uint64_t>(c.N * 7 + c.d + c.H));
        const Result want = cpu_reference(in, c);
        const Result got = run_device<float>(in, c);
        check_close(got, want, 1e-4, "fp32");
        CHECK(got.offset == want.offset);
    }
}

TEST_CASE("cuda coeff_attention bf16 within the bf16 error of the materialised op (tensor-core and SIMT kernels)") {
    COEFFNET_REQUIRE_REAL_GPU();
    for (const Case& c : device_cases()) {
        INFO(describe(c));
        const Inputs in = bf16_inputs(make_inputs(c, 777 + static_cast<uint64_t>(c.N * 7 + c.d + c.H)));
        const Result want = cpu_reference(in, c), ref16 = bf16_materialised(in, c);
        for (bool tc : {true, false}) {
            INFO("tensor cores " << tc);
            const Result got = run_device<bfloat16_t>(in, c, tc);
            check_bf16(got, want, ref16);
            CHECK(got.offset == want.offset);
        }
    }
}

TEST_CASE("cuda coeff_attention fp16 within the CPU's rounding error") {
    COEFFNET_REQUIRE_REAL_GPU();
    const Case c{2, 8, 197, 197, 64, 64, true, 1};
    Inputs in = make_inputs(c, 31);
    for (Tensor<float>* t : {&in.q, &in.k, &in.v, &in.dout}) *t = t->cast<half_t>().cast<float>();
    const Result want = cpu_reference(in, c);
    const Result got = run_device<half_t>(in, c);
    CHECK(rel_err(got.out, want.out) <= 2e-3);  // fp16 rounding (2^-11) with a 4x margin
    CHECK(rel_err(got.dq, want.dq) <= 2e-3);
    CHECK(rel_err(got.dk, want.dk) <= 2e-3);
    CHECK(rel_err(got.dv, want.dv) <= 2e-3);
    CHECK(rel_err(got.dalpha, want.dalpha) <= 1e-4);
}

