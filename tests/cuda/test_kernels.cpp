// The hand-written CUDA kernels (src/cuda/launchers.cu, kernels/*.cuh) against the CPU ops.
//
// Runs everywhere: the host planning functions (row_launch, plan_copy), the alpha-dropout words
// (the host evaluation of the very function the kernel calls, against ops/attention.hpp's
// alpha_prime with the same Generator), and the clear errors of every launcher without a GPU.
// Needs a GPU (COEFFNET_REQUIRE_GPU(): reported as skipped where none is usable): every kernel
// forward and backward on rows 1, 7, 197, 1025 x widths 40, 64, 80, 768, 3072 (a subset per
// kernel, plus widths that take the block-per-row and streaming variants). fp32 is checked
// tightly against the CPU op; bf16 against the CPU op's own bf16 error: the CPU runs the op in
// fp32 on the bf16-rounded inputs and rounds its output to bf16, and the GPU's error against the
// fp32 result on the unrounded inputs may be at most bf16_factor times that error (plus a tiny
// floor for ops whose rounded result is exact).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/cuda/gemm.hpp>
#include <coeffnet/cuda/launchers.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "../test_util.hpp"
#include "testing.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
namespace cu = coeffnet::cuda;

namespace {

constexpr double bf16_factor = 2.0;
#if defined(COEFFNET_TEST_EMULATED)
// Under the block emulator every CUDA thread is a fiber: shapes that reach every launch variant
// (warp per row, block per row, streaming; VEC 1 and 16 bytes; row tails), no more.
const std::vector<int64_t> kRows = {1, 7, 37};
const std::vector<int64_t> kWidths = {5, 40, 80, 768, 3072};
constexpr int64_t kMaxElems = 60'000;
constexpr int64_t kPermuteTokens = 13;
#else
const std::vector<int64_t> kRows = {1, 7, 197, 1025};
const std::vector<int64_t> kWidths = {40, 64, 80, 768, 3072};
constexpr int64_t kMaxElems = 4'000'000;
constexpr int64_t kPermuteTokens = 197;
#endif

Tensor<float> rnd(const Shape& s, uint64_t seed, double stddev = 1.0) {
    Generator g(seed);
    return Tensor<float>::randn(s, g, 0.0, stddev);
}


// Max |a - b| over elements; NaN anywhere in a but not b (or vice versa) counts as infinite.
double max_diff(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    const auto x = a.to_vector(), y = b.to_vector();
    double m = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        if (std::isnan(x[i]) || std::isnan(y[i])) {
            if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
            continue;
        }
        if (std::isinf(x[i]) || std::isinf(y[i])) {
            if (x[i] != y[i]) return INFINITY;
            continue;
        }
        m = std::max(m, std::abs(static_cast<double>(x[i]) - y[i]));
    }
    return m;
}

// fp32: |gpu - cpu| <= atol + rtol * max|cpu| over the tensor.
void expect_fp32(const std::string& what, const Tensor<float>& gpu, const Tensor<float>& cpu, double rtol = 2e-5,
                 double atol = 1e-6) {
    const double err = max_diff(gpu, cpu), tol = atol + rtol * std::max(1.0, max_abs(cpu));
    INFO(what << ": max |gpu - cpu| = " << err << ", tolerance " << tol << " (" << err / tol << " of it)");
    CHECK(err <= tol);
}

// bf16: err(gpu vs truth) <= bf16_factor * err(round(op(round(inputs))) vs truth) + floor.
void expect_bf16(const std::string& what, const Tensor<float>& gpu, const Tensor<float>& truth,
                 const Tensor<float>& cpu_bf16) {
    const double ref = max_diff(round_bf16(cpu_bf16), truth), err = max_diff(gpu, truth);
    const double tol = bf16_factor * ref + 1e-5 * std::max(1.0, max_abs(truth));
    INFO(what << ": bf16 max error " << err << ", the CPU's bf16 error " << ref << ", tolerance " << tol << " ("
              << err / tol << " of it)");
    CHECK(err <= tol);
}

template <class T>
cu::DeviceTensor<T> dev(const Tensor<float>& t) {
    return cu::DeviceTensor<T>::from_host(t);
}

std::string shape_name(int64_t r, int64_t c) {
    std::ostringstream s;  // not "[" + std::to_string(r): g++ 12 warns falsely (-Wrestrict) on that when inlined
    s << '[' << r << ", " << c << ']';
    return s.str();
}

// Runs check(T-tag) for float, then bfloat16_t.
struct F32 {
    using T = float;
    static constexpr bool bf16 = false;
};
struct BF16 {
    using T = bfloat16_t;
    static constexpr bool bf16 = true;
};

// Judges a GPU result computed from inputs `in` (fp32) by op(inputs) on the CPU.
template <class D>
void judge(const std::string& what, const Tensor<float>& gpu, const std::function<Tensor<float>(bool rounded)>& cpu_op,
           double rtol = 2e-5) {
    if constexpr (!D::bf16) {
        expect_fp32(what, gpu, cpu_op(false), rtol);
    } else {
        expect_bf16(what, gpu, cpu_op(false), cpu_op(true));
    }
}

Tensor<float> maybe_round(const Tensor<float>& t, bool r) { return r ? round_bf16(t) : t; }

}  // namespace

// ---- host-only: runs on every machine --------------------------------------------------------

TEST_CASE("cuda kernels: row launch configuration") {
    using K = cu::RowLaunch;
    // Short rows: a warp per row, 4 rows per block, 16-byte vectors when the width allows.
    auto a = cu::row_launch(197, 64, 4, true);
    CHECK(a.kind == K::warp_per_row);
    CHECK(a.vec == 4);
    CHECK(a.rows_per_block == 4);
    CHECK(a.grid == 50);
    auto b = cu::row_launch(7, 197, 2, true);  // odd width: scalar accesses
    CHECK(b.kind == K::warp_per_row);
    CHECK(b.vec == 1);
    CHECK(cu::row_launch(1, 40, 2, true).vec == 8);
    CHECK(cu::row_launch(1, 40, 2, false).vec == 1);  // unaligned pointer: no vectors
    CHECK(cu::row_launch(1, 1024, 4, true).kind == K::warp_per_row);
    // Long rows: a block per row, the row in registers; every element has a slot.
    for (int bytes : {2, 4}) {
        for (int64_t cols : {1025, 1029, 3072, 5000, 8192}) {
            const auto L = cu::row_launch(1025, cols, bytes, true);
            INFO("cols " << cols << " bytes " << bytes);
            CHECK(L.kind == K::block_per_row);
            CHECK(L.threads % 32 == 0);
            CHECK(L.threads >= 128);
            CHECK(L.threads <= cu::row_block_max_threads);
            CHECK(int64_t{L.threads} * cu::row_block_elems_per_thread >= cols);
            CHECK(L.grid == 1025);
        }
    }
    CHECK(cu::row_launch(3, 8193, 4, true).kind == K::block_streaming);
    CHECK(cu::row_launch(3, 50257, 2, true).kind == K::block_streaming);
    // Row counts beyond one grid are walked grid-stride.
    const auto big = cu::row_launch(int64_t{1} << 31, 64, 4, true);
    CHECK(big.grid == int64_t{1} << 20);
    CHECK(cu::row_launch(0, 64, 4, true).grid == 1);
    CHECK(std::string(cu::row_kind_name(K::block_streaming)) == "block_streaming");
    CHECK(contains(error_of([] { cu::row_launch(1, 64, 8, true); }), "element size"));
}

TEST_CASE("cuda kernels: copy plans merge contiguous dimensions") {
    // A head split [B, N, H, d] -> [B, H, N, d]: nothing merges, the innermost run is d.
    const int64_t B = 2, N = 197, H = 12, d = 64;
    const Shape out{B, H, N, d};
    const Shape src{N * H * d, d, H * d, 1}, dst{H * N * d, N * d, d, 1};
    auto p = cu::plan_copy(out, src, dst);
    CHECK(p.rank == 4);
    CHECK(p.shape[3] == d);
    CHECK(p.src_stride[3] == 1);
    CHECK(p.numel == B * H * N * d);
    // A contiguous copy is one dimension.
    auto q = cu::plan_copy({4, 5, 6}, {30, 6, 1}, {30, 6, 1});
    CHECK(q.rank == 1);
    CHECK(q.shape[0] == 120);
    // A concat part into the middle of the output: rows of the part's width.
    auto c = cu::plan_copy({3, 4, 5}, {20, 5, 1}, {4 * 9, 9, 1});
    CHECK(c.rank == 2);
    CHECK(c.shape[0] == 12);  // [3, 4] merged: the output's stride 36 = 4 * 9
    CHECK(c.shape[1] == 5);
    // Size-1 dims vanish; all-ones is one element.
    CHECK(cu::plan_copy({1, 7, 1}, {7, 1, 1}, {7, 1, 7}).rank == 1);
    auto one = cu::plan_copy({1, 1}, {1, 1}, {1, 1});
    CHECK(one.rank == 1);
    CHECK(one.numel == 1);
    CHECK(cu::plan_copy({3, 0}, {1, 1}, {1, 1}).numel == 0);
    // patchify's view of [B, C, H, W] as [B, hp, wp, C, ph, pw]: rank 6, nothing merges.
    const int64_t C = 3, Hh = 32, W = 48, ph = 16, pw = 16;
    auto pp = cu::plan_copy({2, Hh / ph, W / pw, C, ph, pw}, {C * Hh * W, ph * W, pw, Hh * W, W, 1},
                            {6 * C * ph * pw, 3 * C * ph * pw, C * ph * pw, ph * pw, pw, 1});
    CHECK(pp.rank == 6);
    CHECK(contains(error_of([] {
                       cu::plan_copy({2, 2, 2, 2, 2, 2, 2}, {1, 2, 4, 8, 16, 32, 64}, {64, 32, 16, 8, 4, 2, 1});
                   }),
                   "supports 6"));
}

TEST_CASE("cuda kernels: alpha-dropout words equal the CPU's") {
    // The kernels' alpha' is coeff::alpha_prime_element of a coeff::reserve_dropout draw
    // (ops/coeff_spec.hpp); here on the host, against the CPU op and the dropout op's mask.
    auto reserve = [](Generator* g, int64_t H, double p, bool training) {
        return coeff::reserve_dropout<float>(p, training, g, static_cast<uint64_t>(H * H), "cuda::alpha_prime",
                                             "a Generator");
    };
    for (int64_t H : {1, 3, 12, 16}) {
        for (double p : {0.1, 0.5, 0.9}) {
            const Tensor<float> alpha = rnd({H, H}, 100 + static_cast<uint64_t>(H), 0.5);
            Generator g_cpu(1234, 7), g_gpu(1234, 7), g_mask(1234, 7);
            AttentionOptions o;
            o.training = true;
            o.coeff.alpha_dropout = p;
            o.generator = &g_cpu;
            const Tensor<float> ref = alpha_prime(alpha, o);
            const DropoutDraw<float> d = reserve(&g_gpu, H, p, true);
            INFO("H " << H << " p " << p);
            CHECK(g_gpu.offset == g_cpu.offset);  // the same number of Philox blocks reserved
            CHECK(d.first_block == 7);
            const auto mask = dropout_mask<float>({H, H}, p, g_mask).to_vector();  // the dropout op's words
            const auto av = alpha.to_vector(), rv = ref.to_vector();
            int mismatches = 0;
            for (int64_t h = 0; h < H; ++h)
                for (int64_t i = 0; i < H; ++i) {
                    const size_t e = static_cast<size_t>(h * H + i);
                    if (d.multiplier(e) != mask[e]) ++mismatches;
                    const float got = coeff::alpha_prime_element(d, H, h, i, av[e], true);
                    if (got != rv[e]) ++mismatches;  // bit for bit
                }
            CHECK(mismatches == 0);
            // Without the residual, the CPU's Dropout(alpha).
            Generator g2(1234, 7), g3(1234, 7);
            o.coeff.alpha_residual = false;
            o.generator = &g2;
            const auto rv2 = alpha_prime(alpha, o).to_vector();
            const DropoutDraw<float> d2 = reserve(&g3, H, p, true);
            for (int64_t e = 0; e < H * H; ++e)
                CHECK(coeff::alpha_prime_element(d2, H, e / H, e % H, av[static_cast<size_t>(e)], false) ==
                      rv2[static_cast<size_t>(e)]);
        }
    }
    // Evaluation, or p = 0: no draw, generator untouched, alpha' = I + alpha.
    Generator g(5, 3);
    const DropoutDraw<float> none = reserve(&g, 12, 0.5, false);
    CHECK(g.offset == 3);
    CHECK_FALSE(none.on);
    CHECK(coeff::alpha_prime_element(none, 12, 2, 2, 0.25f, true) == 1.25f);
    CHECK_FALSE(reserve(&g, 12, 0.0, true).on);
    CHECK(g.offset == 3);
    // p = 1 drops everything.
    const DropoutDraw<float> all = reserve(&g, 4, 1.0, true);
    for (uint64_t e = 0; e < 16; ++e) CHECK(all.multiplier(e) == 0.f);
    CHECK(contains(error_of([&] { reserve(nullptr, 4, 0.5, true); }), "Generator"));
    CHECK(contains(error_of([&] { reserve(nullptr, 4, 1.5, true); }), "probability"));
}

TEST_CASE("cuda kernels: launchers without a GPU throw a clear error") {
    COEFFNET_REQUIRE_NO_GPU();
    cu::DeviceTensor<float> x, y, m, r;
    cu::DeviceTensor<bfloat16_t> xb, yb;
    cu::DeviceTensor<int64_t> idx;
    const std::vector<std::pair<std::string, std::function<void()>>> calls = {
        {"cuda::softmax_forward", [&] { cu::softmax_forward(x, y, 0.125f); }},
        {"cuda::softmax_backward", [&] { cu::softmax_backward(xb, xb, yb); }},
        {"cuda::layernorm_forward", [&] { cu::layernorm_forward<float>(x, nullptr, nullptr, 1e-5f, y, m, r); }},
        {"cuda::layernorm_backward", [&] { cu::layernorm_backward<float>(x, x, nullptr, m, r, &y, nullptr, nullptr); }},
        {"cuda::activation_forward", [&] { cu::activation_forward<float>(cu::Activation::gelu_erf, x, nullptr, y); }},
        {"cuda::activation_backward",
         [&] { cu::activation_backward<float>(cu::Activation::silu, x, nullptr, x, y); }},
        {"cuda::bias_add_backward", [&] { cu::bias_add_backward(x, y); }},
        {"cuda::residual_add", [&] { cu::residual_add(x, x, y); }},
        {"cuda::sum_last", [&] { cu::sum_last(x, y); }},
        {"cuda::mix_heads", [&] { cu::mix_heads(xb, m, yb); }},
        {"cuda::mix_heads_backward", [&] { cu::mix_heads_backward<float>(x, x, m, &y, &r); }},
        {"cuda::alpha_prime", [&] { cu::alpha_prime(x, y, DropoutDraw<float>{}); }},
        {"cuda::cross_entropy_forward", [&] { cu::cross_entropy_forward(x, idx, -100, m, r); }},
        {"cuda::adamw_step", [&] { cu::adamw_step(x, xb, m, r, cu::AdamWParams{}); }},
        {"cuda::permute", [&] { cu::permute(x, {0}, y); }},
        {"cuda::concat", [&] { cu::concat<float>({&x}, 0, y); }},
        {"cuda::patchify", [&] { cu::patchify(x, 16, 16, y); }},
        {"cuda::embedding_forward", [&] { cu::embedding_forward(idx, x, y); }},
        {"cuda::embedding_backward", [&] { cu::embedding_backward(idx, xb, m); }},
        {"cuda::convert", [&] { cu::convert(x, yb); }},
    };
    for (const auto& [name, call] : calls) {
        const std::string msg = error_of(call);
        INFO(name << " threw: " << msg);
        CHECK(contains(msg, name));
        CHECK(contains(msg, "no usable CUDA device"));
    }
}

// ---- GPU: every kernel against the CPU op -------------------------------------------------------

TEST_CASE_TEMPLATE("cuda kernels: softmax forward and backward", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    std::vector<int64_t> widths = kWidths;
    widths.push_back(1029);   // block per row, scalar accesses
    widths.push_back(10000);  // streaming
    for (int64_t rows : kRows) {
        for (int64_t cols : widths) {
            if (rows * cols > kMaxElems) continue;
            const std::string name = shape_name(rows, cols);
            const float s = 0.125f;
            const Tensor<float> x = rnd({rows, cols}, 1 + static_cast<uint64_t>(rows * 31 + cols), 4.0);
            auto dy = dev<T>(x);
            cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows, cols});
            cu::softmax_forward(dy, y, s);
            judge<D>("softmax " + name, y.to_host_float(),
                     [&](bool r) { return softmax(scale(maybe_round(x, r), s)); });
            // Backward from y (the CPU forward's output) and a random upstream gradient.
            const Tensor<float> yref = softmax(x);
            const Tensor<float> g = rnd({rows, cols}, 9 + static_cast<uint64_t>(cols));
            cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
            cu::softmax_backward(dev<T>(yref), dev<T>(g), dx, s);
            judge<D>("softmax backward " + name, dx.to_host_float(), [&](bool r) {
                return scale(softmax_backward(maybe_round(yref, r), maybe_round(g, r)), s);
            });
        }
    }
}

TEST_CASE_TEMPLATE("cuda kernels: softmax with a broadcast mask", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    for (int64_t M : {7, 64, 197, 1500}) {
        const int64_t B = 2, H = 3, N = 5;
        const Tensor<float> x = rnd({B, H, N, M}, 77 + static_cast<uint64_t>(M), 3.0);
        // A key mask [B, 1, 1, M] (batch 1 masks everything: its rows must come out as zeros) and a
        // causal-like [1, 1, N, M] mask.
        Tensor<float> km = Tensor<float>::zeros({B, 1, 1, M});
        for (int64_t m = 0; m < M; ++m) {
            if (m % 3 == 2) km.data()[m] = -INFINITY;
            km.data()[M + m] = -INFINITY;
        }
        Tensor<float> cm = Tensor<float>::zeros({1, 1, N, M});
        for (int64_t n = 0; n < N; ++n)
            for (int64_t m = n + M - N + 1; m < M; ++m) cm.data()[n * M + m] = -INFINITY;
        for (const Tensor<float>* mask : {&km, &cm}) {
            const auto dmask = cu::DeviceTensor<float>::from_host(*mask);
            cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({B, H, N, M});
            cu::softmax_forward(dev<T>(x), y, 0.5f, &dmask);
            judge<D>("masked softmax M=" + std::to_string(M), y.to_host_float(),
                     [&](bool r) { return softmax(scale(maybe_round(x, r), 0.5), *mask); });
        }
    }
}

TEST_CASE_TEMPLATE("cuda kernels: layer norm forward and backward", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    std::vector<int64_t> widths = kWidths;
    widths.push_back(1029);
    widths.push_back(9000);
    for (int64_t rows : kRows) {
        for (int64_t cols : widths) {
            if (rows * cols > kMaxElems) continue;
            for (bool affine : {true, false}) {
                if (!affine && rows != 7) continue;
                const std::string name = shape_name(rows, cols) + (affine ? "" : " no affine");
                const Tensor<float> x = rnd({rows, cols}, 3 + static_cast<uint64_t>(rows + cols), 2.0) + 0.5;
                const Tensor<float> w = rnd({cols}, 4, 0.5) + 1.0, b = rnd({cols}, 5, 0.5);
                const Tensor<float> g = rnd({rows, cols}, 6);
                const auto dw = dev<T>(w), db = dev<T>(b);
                cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows, cols});
                auto mean = cu::DeviceTensor<float>::empty({rows}), rstd = cu::DeviceTensor<float>::empty({rows});
                const auto dxin = dev<T>(x);
                cu::layernorm_forward(dxin, affine ? &dw : nullptr, affine ? &db : nullptr, 1e-5f, y, mean, rstd);
                auto cpu = [&](bool r, int which) {
                    Tensor<float> xr = maybe_round(x, r).detach().set_requires_grad(true);
                    Tensor<float> wr = affine ? maybe_round(w, r).detach().set_requires_grad(true) : Tensor<float>();
                    Tensor<float> br = affine ? maybe_round(b, r).detach().set_requires_grad(true) : Tensor<float>();
                    Tensor<float> out = layer_norm(xr, wr, br, 1e-5);
                    if (which == 0) return out.detach();
                    sum(out * maybe_round(g, r)).backward();
                    return which == 1 ? xr.grad() : which == 2 ? wr.grad() : br.grad();
                };
                judge<D>("layer_norm " + name, y.to_host_float(), [&](bool r) { return cpu(r, 0); }, 5e-5);
                cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
                cu::DeviceTensor<T> gw = cu::DeviceTensor<T>::empty({cols}), gb = cu::DeviceTensor<T>::empty({cols});
                cu::layernorm_backward(dev<T>(g), dxin, affine ? &dw : nullptr, mean, rstd, &dx, affine ? &gw : nullptr,
                                       affine ? &gb : nullptr);
                judge<D>("layer_norm dx " + name, dx.to_host_float(), [&](bool r) { return cpu(r, 1); }, 1e-4);
                if (affine) {
                    judge<D>("layer_norm dweight " + name, gw.to_host_float(), [&](bool r) { return cpu(r, 2); }, 1e-4);
                    judge<D>("layer_norm dbias " + name, gb.to_host_float(), [&](bool r) { return cpu(r, 3); }, 1e-4);
                }
            }
        }
    }
}

TEST_CASE_TEMPLATE("cuda kernels: activations, bias and residual adds", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    const std::vector<std::pair<cu::Activation, std::string>> acts = {{cu::Activation::gelu_erf, "gelu"},
                                                                      {cu::Activation::gelu_tanh, "gelu_tanh"},
                                                                      {cu::Activation::silu, "silu"},
                                                                      {cu::Activation::identity, "identity"}};
    auto cpu_act = [](cu::Activation a, const Tensor<float>& v) {
        switch (a) {
            case cu::Activation::gelu_erf: return gelu(v);
            case cu::Activation::gelu_tanh: return gelu(v, GeluApprox::tanh);
            case cu::Activation::silu: return silu(v);
            default: return v * 1.0;
        }
    };
    for (int64_t rows : {int64_t{1}, int64_t{197}}) {
        for (int64_t cols : {int64_t{40}, int64_t{80}, int64_t{3072}, int64_t{13}}) {
            const Tensor<float> x = rnd({rows, cols}, 11 + static_cast<uint64_t>(cols), 3.0);
            const Tensor<float> bias = rnd({cols}, 12);
            const Tensor<float> g = rnd({rows, cols}, 13);
            const auto dxin = dev<T>(x), dbias = dev<T>(bias), dg = dev<T>(g);
            for (const auto& [a, an] : acts) {
                for (bool with_bias : {false, true}) {
                    const std::string name = an + (with_bias ? "+bias " : " ") + shape_name(rows, cols);
                    cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows, cols});
                    cu::activation_forward(a, dxin, with_bias ? &dbias : nullptr, y);
                    auto pre = [&](bool r) {
                        return with_bias ? maybe_round(x, r) + maybe_round(bias, r) : maybe_round(x, r);
                    };
                    judge<D>(name, y.to_host_float(), [&](bool r) { return cpu_act(a, pre(r)); }, 1e-5);
                    cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
                    cu::activation_backward(a, dxin, with_bias ? &dbias : nullptr, dg, dx);
                    judge<D>(name + " backward", dx.to_host_float(), [&](bool r) {
                        Tensor<float> v = pre(r).detach().set_requires_grad(true);
                        sum(cpu_act(a, v) * maybe_round(g, r)).backward();
                        return v.grad();
                    }, 1e-5);
                }
            }
            cu::DeviceTensor<T> gb = cu::DeviceTensor<T>::empty({cols});
            cu::bias_add_backward(dg, gb);
            judge<D>("bias grad " + shape_name(rows, cols), gb.to_host_float(),
                     [&](bool r) { return sum(maybe_round(g, r), {0}); }, 1e-5);
            cu::DeviceTensor<T> s = cu::DeviceTensor<T>::empty({rows, cols});
            cu::residual_add(dxin, dg, s);
            judge<D>("residual " + shape_name(rows, cols), s.to_host_float(),
                     [&](bool r) { return maybe_round(x, r) + maybe_round(g, r); });
        }
    }
}

TEST_CASE_TEMPLATE("cuda kernels: sums and means over the last axis", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    for (int64_t rows : kRows) {
        for (int64_t cols : {int64_t{40}, int64_t{768}, int64_t{3072}, int64_t{10000}}) {
            if (rows * cols > kMaxElems) continue;
            const Tensor<float> x = rnd({rows, cols}, 21 + static_cast<uint64_t>(cols));
            for (bool mean_ : {false, true}) {
                cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows});
                cu::sum_last(dev<T>(x), y, mean_);
                judge<D>(std::string(mean_ ? "mean " : "sum ") + shape_name(rows, cols), y.to_host_float(), [&](bool r) {
                    return mean_ ? mean(maybe_round(x, r), {-1}) : sum(maybe_round(x, r), {-1});
                }, 1e-5);
                const Tensor<float> g = rnd({rows}, 22);
                cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
                cu::sum_last_backward(dev<T>(g), dx, mean_);
                judge<D>("sum backward " + shape_name(rows, cols), dx.to_host_float(), [&](bool r) {
                    Tensor<float> v = x.detach().set_requires_grad(true);
                    Tensor<float> s = mean_ ? mean(v, {-1}) : sum(v, {-1});
                    sum(s * maybe_round(g, r)).backward();
                    return v.grad();
                });
            }
        }
    }
}

TEST_CASE_TEMPLATE("cuda kernels: fused cross-entropy", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    for (int64_t rows : kRows) {
        for (int64_t C : {int64_t{40}, int64_t{1000}, int64_t{3072}, int64_t{50257}}) {
            if (rows * C > 2 * kMaxElems) continue;
            const Tensor<float> x = rnd({rows, C}, 31 + static_cast<uint64_t>(C), 3.0);
            std::vector<int64_t> t(static_cast<size_t>(rows));
            for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = r % 5 == 3 ? -100 : (r * 7919) % C;
            const auto targets = Tensor<int64_t>::from(t, {rows});
            const auto dt = cu::DeviceTensor<int64_t>::from_host(targets);
            auto loss = cu::DeviceTensor<float>::empty({2}), lse = cu::DeviceTensor<float>::empty({rows});
            const auto dxin = dev<T>(x);
            cu::cross_entropy_forward(dxin, dt, -100, loss, lse);
            const Tensor<float> lh = loss.to_host();
            auto cpu = [&](bool r, bool grad) {
                Tensor<float> v = maybe_round(x, r).detach().set_requires_grad(true);
                Tensor<float> l = cross_entropy(v, targets);
                if (!grad) return l.reshape({1});
                l.backward();
                return v.grad();
            };
            const std::string name = "cross_entropy " + shape_name(rows, C);
            if (rows == 1 && t[0] == -100) {
                CHECK(std::isnan(lh.data()[0]));
            } else {
                // The loss is fp32 for both storage types: compare with the CPU on the stored inputs.
                expect_fp32(name, lh.reshape({2}).slice(0, 0, 1).contiguous(), cpu(D::bf16, false), 1e-5);
            }
            int64_t count = 0;
            for (int64_t v : t) count += v != -100;
            CHECK(lh.data()[1] == static_cast<float>(count));
            cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, C});
            cu::cross_entropy_backward(dxin, dt, -100, loss, lse, nullptr, dx);
            if (count > 0) judge<D>(name + " backward", dx.to_host_float(), [&](bool r) { return cpu(r, true); }, 1e-5);
        }
    }
}

// alpha' (with dropout) and coefficient mixing forward and backward on the device, against the CPU
// ops (alpha_prime with the same generator; mix_heads, a GEMM, through autograd).
template <class D>
void check_mixing(const std::string& name, int64_t B, int64_t H, int64_t N, int64_t M, std::array<uint64_t, 3> seeds,
                  Generator gen_state) {
    using T = typename D::T;
    const Tensor<float> P = softmax(rnd({B, H, N, M}, seeds[0], 2.0));  // seeds: P, alpha, the output gradient
    const Tensor<float> alpha = rnd({H, H}, seeds[1], 0.3);
    const Tensor<float> g = rnd({B, H, N, M}, seeds[2]);
    Generator gc = gen_state, gg = gen_state;
    AttentionOptions o;
    o.training = true;
    o.coeff.alpha_dropout = 0.25;
    o.generator = &gc;
    const Tensor<float> ap_cpu = alpha_prime(alpha, o);
    const DropoutDraw<float> drop = coeff::reserve_dropout<float>(0.25, true, &gg, static_cast<uint64_t>(H * H),
                                                                  "cuda::alpha_prime", "a Generator");
    auto ap = cu::DeviceTensor<float>::empty({H, H});
    cu::alpha_prime(cu::DeviceTensor<float>::from_host(alpha), ap, drop);
    CHECK(max_diff(ap.to_host(), ap_cpu) == 0.0);
    auto mixed = cu::DeviceTensor<T>::empty({B, H, N, M});
    const auto dP = dev<T>(P);
    cu::mix_heads(dP, ap, mixed);
    auto cpu = [&](bool r, int which) {
        Tensor<float> p = maybe_round(P, r).detach().set_requires_grad(true);
        Tensor<float> a = ap_cpu.detach().set_requires_grad(true);
        Tensor<float> out = mix_heads(p, a);
        if (which == 0) return out.detach();
        sum(out * maybe_round(g, r)).backward();
        return which == 1 ? p.grad() : a.grad();
    };
    judge<D>(name, mixed.to_host_float(), [&](bool r) { return cpu(r, 0); }, 1e-5);
    auto dmaps = cu::DeviceTensor<T>::empty({B, H, N, M});
    auto dap = cu::DeviceTensor<float>::empty({H, H});
    cu::mix_heads_backward(dev<T>(g), dP, ap, &dmaps, &dap);
    judge<D>(name + " d_maps", dmaps.to_host_float(), [&](bool r) { return cpu(r, 1); }, 1e-5);
    // d_alpha' is fp32 for both storage types; its inputs were rounded for bf16.
    expect_fp32(name + " d_alpha_prime", dap.to_host(), cpu(D::bf16, 2), 1e-4, 1e-5);
    // alpha' backward: the dropout multiplier.
    auto dalpha = cu::DeviceTensor<float>::empty({H, H});
    cu::alpha_prime_backward(dap, dalpha, drop);
    Generator gc2 = gen_state;
    o.generator = &gc2;
    Tensor<float> al = alpha.detach().set_requires_grad(true);
    sum(alpha_prime(al, o) * dap.to_host()).backward();
    expect_fp32(name + " d_alpha", dalpha.to_host(), al.grad(), 1e-6, 0.0);
}

TEST_CASE_TEMPLATE("cuda kernels: coefficient mixing and alpha'", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    struct Case {
        int64_t B, H, N, M;
    };
    for (const Case c : {Case{2, 12, 7, 7}, Case{1, 8, 197, 197}, Case{2, 16, 40, 64}, Case{1, 24, 9, 80},
                         Case{1, 3, 1, 1}, Case{2, 64, 5, 13}}) {
        const std::string name = "mix B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " N" +
                                 std::to_string(c.N) + " M" + std::to_string(c.M);
        check_mixing<D>(name, c.B, c.H, c.N, c.M, {41 + static_cast<uint64_t>(c.H), 42, 43}, Generator(99, 2));
    }
}

TEST_CASE_TEMPLATE("cuda kernels: AdamW matches the CPU optimiser", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{197 * 64}, int64_t{1025 * 3 + 1}}) {
        const Tensor<float> w0 = rnd({n}, 51);
        Tensor<float> w = w0.detach().set_requires_grad(true);
        AdamW<float>::Options opt;
        opt.lr = 1e-2;
        opt.weight_decay = 0.05;
        AdamW<float> cpu_opt(std::vector<Tensor<float>>{w}, opt);
        auto master = cu::DeviceTensor<float>::from_host(w0);
        auto m = cu::DeviceTensor<float>::zeros({n}), v = cu::DeviceTensor<float>::zeros({n});
        auto copy = cu::DeviceTensor<T>::empty({n});
        for (int64_t step = 1; step <= 3; ++step) {
            const Tensor<float> g = rnd({n}, 60 + static_cast<uint64_t>(step));
            const Tensor<float> gq = maybe_round(g, D::bf16);  // the gradient as the device holds it
            cpu_opt.zero_grad();
            sum(w * gq).backward();  // w.grad() = gq exactly
            cpu_opt.step();
            cu::AdamWParams p;
            p.lr = opt.lr;
            p.weight_decay = opt.weight_decay;
            p.step = step;
            cu::adamw_step(master, dev<T>(gq), m, v, p, &copy);
        }
        const std::string name = "adamw n=" + std::to_string(n);
        expect_fp32(name, master.to_host(), w.detach(), 1e-5, 1e-6);
        expect_fp32(name + " exp_avg", m.to_host(), cpu_opt.state(0, 0).m, 1e-5, 1e-7);
        expect_fp32(name + " exp_avg_sq", v.to_host(), cpu_opt.state(0, 0).v, 1e-5, 1e-9);
        CHECK(max_diff(copy.to_host_float(), maybe_round(master.to_host(), D::bf16)) == 0.0);
    }
}

TEST_CASE_TEMPLATE("cuda kernels: permute, concat, split, patchify and convert are exact", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    // Copies move bits: compare the rounded input's permutation exactly.
    const Tensor<float> x = maybe_round(rnd({2, kPermuteTokens, 12, 64}, 71), D::bf16);
    for (const std::vector<int64_t>& perm : std::vector<std::vector<int64_t>>{{0, 2, 1, 3}, {3, 1, 2, 0}, {0, 1, 2, 3}}) {
        const Tensor<float> ref = x.permute(perm).contiguous();
        auto y = cu::DeviceTensor<T>::empty(ref.shape());
        cu::permute(dev<T>(x), perm, y);
        CHECK(max_diff(y.to_host_float(), ref) == 0.0);
    }
    for (int64_t axis : {0, 1, 2, 3, -1}) {
        const int64_t a = axis < 0 ? axis + 4 : axis;
        const int64_t n = x.shape()[static_cast<size_t>(a)];
        const std::vector<int64_t> sizes = n >= 3 ? std::vector<int64_t>{1, n - 3, 2} : std::vector<int64_t>{1, 1};
        const auto ref_parts = split(x, sizes, axis);
        std::vector<cu::DeviceTensor<T>> parts;
        for (const auto& p : ref_parts) parts.push_back(cu::DeviceTensor<T>::empty(p.shape()));
        std::vector<cu::DeviceTensor<T>*> outs;
        for (auto& p : parts) outs.push_back(&p);
        const auto dx = dev<T>(x);
        cu::split(dx, axis, outs);
        for (size_t i = 0; i < parts.size(); ++i) CHECK(max_diff(parts[i].to_host_float(), ref_parts[i].contiguous()) == 0.0);
        std::vector<const cu::DeviceTensor<T>*> ins(outs.begin(), outs.end());
        auto back = cu::DeviceTensor<T>::empty(x.shape());
        cu::concat(ins, axis, back);
        CHECK(max_diff(back.to_host_float(), x) == 0.0);
    }
    // patchify as models/vit.hpp (a 16x16 ViT patch; and an image with a ragged border).
    for (const Shape& img : std::vector<Shape>{{2, 3, 224, 224}, {1, 3, 40, 56}}) {
        const Tensor<float> px = maybe_round(rnd(img, 72), D::bf16);
        const Tensor<float> ref = models::patchify(px, 16, 16).contiguous();
        auto out = cu::DeviceTensor<T>::empty(ref.shape());
        cu::patchify(dev<T>(px), 16, 16, out);
        CHECK(max_diff(out.to_host_float(), ref) == 0.0);
        const Tensor<float> g = maybe_round(rnd(ref.shape(), 73), D::bf16);
        Tensor<float> pv = px.detach().set_requires_grad(true);
        sum(models::patchify(pv, 16, 16) * g).backward();
        auto dpx = cu::DeviceTensor<T>::empty(img);
        cu::patchify_backward(dev<T>(g), 16, 16, dpx);
        CHECK(max_diff(dpx.to_host_float(), pv.grad()) == 0.0);
    }
    if constexpr (D::bf16) {
        const Tensor<float> f = rnd({1025, 80}, 74);
        auto b = cu::DeviceTensor<bfloat16_t>::empty({1025, 80});
        cu::convert(cu::DeviceTensor<float>::from_host(f), b);
        CHECK(max_diff(b.to_host_float(), round_bf16(f)) == 0.0);
        auto back = cu::DeviceTensor<float>::empty({1025, 80});
        cu::convert(b, back);
        CHECK(max_diff(back.to_host(), round_bf16(f)) == 0.0);
    }
}

TEST_CASE_TEMPLATE("cuda kernels: embedding gather and scatter-add", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    for (int64_t Dm : {int64_t{40}, int64_t{768}, int64_t{13}}) {
        const int64_t V = 50;
        const Tensor<float> w = maybe_round(rnd({V, Dm}, 81), D::bf16);
        std::vector<int64_t> iv;
        for (int64_t i = 0; i < 197; ++i) iv.push_back((i * 17) % V);  // repeated indices
        const auto idx = Tensor<int64_t>::from(iv, {1, 197});
        const auto didx = cu::DeviceTensor<int64_t>::from_host(idx);
        auto out = cu::DeviceTensor<T>::empty({1, 197, Dm});
        cu::embedding_forward(didx, dev<T>(w), out);
        CHECK(max_diff(out.to_host_float(), embedding(idx, w)) == 0.0);
        const Tensor<float> g = maybe_round(rnd({1, 197, Dm}, 82), D::bf16);
        Tensor<float> wv = w.detach().set_requires_grad(true);
        sum(embedding(idx, wv) * g).backward();
        auto dw = cu::DeviceTensor<float>::zeros({V, Dm});
        cu::embedding_backward(didx, dev<T>(g), dw);
        expect_fp32("embedding backward D=" + std::to_string(Dm), dw.to_host(), wv.grad(), 1e-6, 1e-6);
    }
}

// ---- (coverage): branches only these shapes reach (tests/README.md, "Emulated CUDA kernels: line coverage")

namespace {
// Lowers every launcher's grid cap for the scope (cuda::set_max_grid_for_testing).
struct GridCap {
    explicit GridCap(int64_t blocks) { cu::set_max_grid_for_testing(blocks); }
    ~GridCap() { cu::set_max_grid_for_testing(0); }
    GridCap(const GridCap&) = delete;
    GridCap& operator=(const GridCap&) = delete;
};

// Softmax and layer norm forward and backward on [rows, cols] against the CPU ops.
template <class D>
void softmax_layernorm_case(int64_t rows, int64_t cols) {
    using T = typename D::T;
    const std::string name = shape_name(rows, cols);
    const Tensor<float> x = rnd({rows, cols}, 901 + static_cast<uint64_t>(rows * 7 + cols), 3.0);
    const Tensor<float> g = rnd({rows, cols}, 902);
    cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows, cols});
    cu::softmax_forward(dev<T>(x), y, 0.25f);
    judge<D>("softmax " + name, y.to_host_float(), [&](bool r) { return softmax(scale(maybe_round(x, r), 0.25)); });
    const Tensor<float> yref = softmax(x);
    cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
    cu::softmax_backward(dev<T>(yref), dev<T>(g), dx, 1.0f);
    judge<D>("softmax backward " + name, dx.to_host_float(),
             [&](bool r) { return softmax_backward(maybe_round(yref, r), maybe_round(g, r)); });
    const Tensor<float> w = rnd({cols}, 903, 0.5) + 1.0, b = rnd({cols}, 904, 0.5);
    const auto dw = dev<T>(w), db = dev<T>(b), dxin = dev<T>(x);
    auto mean = cu::DeviceTensor<float>::empty({rows}), rstd = cu::DeviceTensor<float>::empty({rows});
    cu::layernorm_forward(dxin, &dw, &db, 1e-5f, y, mean, rstd);
    auto cpu = [&](bool r, int which) {
        Tensor<float> xr = maybe_round(x, r).detach().set_requires_grad(true);
        Tensor<float> wr = maybe_round(w, r).detach().set_requires_grad(true);
        Tensor<float> br = maybe_round(b, r).detach().set_requires_grad(true);
        Tensor<float> out = layer_norm(xr, wr, br, 1e-5);
        if (which == 0) return out.detach();
        sum(out * maybe_round(g, r)).backward();
        return which == 1 ? xr.grad() : which == 2 ? wr.grad() : br.grad();
    };
    judge<D>("layer_norm " + name, y.to_host_float(), [&](bool r) { return cpu(r, 0); }, 5e-5);
    cu::DeviceTensor<T> gw = cu::DeviceTensor<T>::empty({cols}), gb = cu::DeviceTensor<T>::empty({cols});
    cu::layernorm_backward(dev<T>(g), dxin, &dw, mean, rstd, &dx, &gw, &gb);
    judge<D>("layer_norm dx " + name, dx.to_host_float(), [&](bool r) { return cpu(r, 1); }, 1e-4);
    judge<D>("layer_norm dweight " + name, gw.to_host_float(), [&](bool r) { return cpu(r, 2); }, 1e-4);
    judge<D>("layer_norm dbias " + name, gb.to_host_float(), [&](bool r) { return cpu(r, 3); }, 1e-4);
}
}  // namespace

TEST_CASE_TEMPLATE("cuda kernels (coverage): streaming softmax and layer norm with scalar accesses (VEC = 1)", D, F32,
                   BF16) {
    COEFFNET_REQUIRE_GPU();
    const int64_t cols = 8195;  // > 8192: streaming; odd: no 16-byte vectors
    const auto L = cu::row_launch(2, cols, sizeof(typename D::T), true);
    CHECK(L.kind == cu::RowLaunch::block_streaming);
    CHECK(L.vec == 1);
    softmax_layernorm_case<D>(2, cols);
}

TEST_CASE_TEMPLATE("cuda kernels (coverage): grid-stride loops that run more than once (set_max_grid_for_testing)", D,
                   F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    const GridCap cap(2);  // every launcher launches at most 2 blocks
    CHECK(cu::max_grid_for_testing() == 2);
    CHECK(cu::row_launch(37, 40, 4, true).grid == 2);
    // Row kernels: warp per row (37 rows, 4 per block), block per row, streaming (VEC 16 bytes and 1).
    for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 40}, {37, 5}, {5, 1029}, {3, 8200}, {3, 8195}})
        softmax_layernorm_case<D>(rows, cols);
    // Sums over the last axis.
    for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 40}, {5, 3072}}) {
        const Tensor<float> x = rnd({rows, cols}, 911 + static_cast<uint64_t>(cols));
        cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows});
        cu::sum_last(dev<T>(x), y, true);
        judge<D>("mean " + shape_name(rows, cols), y.to_host_float(), [&](bool r) { return mean(maybe_round(x, r), {-1}); },
                 1e-5);
        const Tensor<float> g = rnd({rows}, 912);
        cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, cols});
        cu::sum_last_backward(dev<T>(g), dx, false);
        judge<D>("sum backward " + shape_name(rows, cols), dx.to_host_float(), [&](bool r) {
            Tensor<float> v = x.detach().set_requires_grad(true);
            sum(sum(v, {-1}) * maybe_round(g, r)).backward();
            return v.grad();
        });
    }
    // Cross-entropy: 37 rows, some ignored.
    {
        const int64_t rows = 37, C = 40;
        const Tensor<float> x = rnd({rows, C}, 913, 3.0);
        std::vector<int64_t> t(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = r % 5 == 3 ? -100 : (r * 7919) % C;
        const auto targets = Tensor<int64_t>::from(t, {rows});
        const auto dt = cu::DeviceTensor<int64_t>::from_host(targets);
        auto loss = cu::DeviceTensor<float>::empty({2}), lse = cu::DeviceTensor<float>::empty({rows});
        const auto dxin = dev<T>(x);
        cu::cross_entropy_forward(dxin, dt, -100, loss, lse);
        auto cpu = [&](bool r, bool grad) {
            Tensor<float> v = maybe_round(x, r).detach().set_requires_grad(true);
            Tensor<float> l = cross_entropy(v, targets);
            if (!grad) return l.reshape({1});
            l.backward();
            return v.grad();
        };
        expect_fp32("cross_entropy", loss.to_host().slice(0, 0, 1).contiguous(), cpu(D::bf16, false), 1e-5);
        cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, C});
        cu::cross_entropy_backward(dxin, dt, -100, loss, lse, nullptr, dx);
        judge<D>("cross_entropy backward", dx.to_host_float(), [&](bool r) { return cpu(r, true); }, 1e-5);
    }
    // Flat kernels: activation with bias forward and backward, residual add (VEC 16 bytes and 1).
    for (int64_t cols : {int64_t{80}, int64_t{13}}) {
        const int64_t rows = 37;
        const Tensor<float> x = rnd({rows, cols}, 914 + static_cast<uint64_t>(cols), 3.0), bias = rnd({cols}, 915),
                            g = rnd({rows, cols}, 916);
        const auto dxin = dev<T>(x), dbias = dev<T>(bias), dg = dev<T>(g);
        cu::DeviceTensor<T> y = cu::DeviceTensor<T>::empty({rows, cols}), dx = cu::DeviceTensor<T>::empty({rows, cols});
        cu::activation_forward(cu::Activation::gelu_erf, dxin, &dbias, y);
        judge<D>("gelu+bias " + shape_name(rows, cols), y.to_host_float(),
                 [&](bool r) { return gelu(maybe_round(x, r) + maybe_round(bias, r)); }, 1e-5);
        cu::activation_backward(cu::Activation::gelu_erf, dxin, &dbias, dg, dx);
        judge<D>("gelu+bias backward " + shape_name(rows, cols), dx.to_host_float(), [&](bool r) {
            Tensor<float> v = (maybe_round(x, r) + maybe_round(bias, r)).detach().set_requires_grad(true);
            sum(gelu(v) * maybe_round(g, r)).backward();
            return v.grad();
        }, 1e-4);
        cu::residual_add(dxin, dg, y);
        judge<D>("residual " + shape_name(rows, cols), y.to_host_float(),
                 [&](bool r) { return maybe_round(x, r) + maybe_round(g, r); });
    }
    // Mixing with several tiles per mix_bwd block (2 x ceil(9 * 20 / 64) = 6 tiles on 2 blocks), alpha'
    // over 40 x 40 = 1600 elements (7 blocks' worth).
    for (int64_t H : {int64_t{3}, int64_t{40}})
        check_mixing<D>("mix H" + std::to_string(H), 2, H, 9, 20, {917, 918, 919}, Generator(7, 1));
    // AdamW, copies, conversion, embedding.
    {
        const int64_t n = 1025 * 3 + 1;
        const Tensor<float> w0 = rnd({n}, 920);
        Tensor<float> w = w0.detach().set_requires_grad(true);
        AdamW<float>::Options opt;
        opt.lr = 1e-2;
        opt.weight_decay = 0.05;
        AdamW<float> cpu_opt(std::vector<Tensor<float>>{w}, opt);
        auto master = cu::DeviceTensor<float>::from_host(w0);
        auto m = cu::DeviceTensor<float>::zeros({n}), v = cu::DeviceTensor<float>::zeros({n});
        const Tensor<float> gq = maybe_round(rnd({n}, 921), D::bf16);
        sum(w * gq).backward();
        cpu_opt.step();
        cu::AdamWParams p;
        p.lr = opt.lr;
        p.weight_decay = opt.weight_decay;
        p.step = 1;
        cu::adamw_step(master, dev<T>(gq), m, v, p);
        expect_fp32("adamw", master.to_host(), w.detach(), 1e-5, 1e-6);
        const Tensor<float> x = maybe_round(rnd({2, 13, 12, 8}, 922), D::bf16);
        const Tensor<float> ref = x.permute({0, 2, 1, 3}).contiguous();
        auto y = cu::DeviceTensor<T>::empty(ref.shape());
        cu::permute(dev<T>(x), {0, 2, 1, 3}, y);
        CHECK(max_diff(y.to_host_float(), ref) == 0.0);
        if constexpr (D::bf16) {
            auto f = cu::DeviceTensor<float>::empty(x.shape());
            cu::convert(dev<T>(x), f);
            CHECK(max_diff(f.to_host(), x) == 0.0);
        }
        const int64_t V = 50, Dm = 40;
        const Tensor<float> emb = maybe_round(rnd({V, Dm}, 923), D::bf16);
        std::vector<int64_t> iv;
        for (int64_t i = 0; i < 37; ++i) iv.push_back((i * 17) % V);
        const auto idx = Tensor<int64_t>::from(iv, {37});
        const auto didx = cu::DeviceTensor<int64_t>::from_host(idx);
        auto out = cu::DeviceTensor<T>::empty({37, Dm});
        cu::embedding_forward(didx, dev<T>(emb), out);
        CHECK(max_diff(out.to_host_float(), embedding(idx, emb)) == 0.0);
        const Tensor<float> ge = maybe_round(rnd({37, Dm}, 924), D::bf16);
        Tensor<float> ev = emb.detach().set_requires_grad(true);
        sum(embedding(idx, ev) * ge).backward();
        auto dw = cu::DeviceTensor<float>::zeros({V, Dm});
        cu::embedding_backward(didx, dev<T>(ge), dw);
        expect_fp32("embedding backward", dw.to_host(), ev.grad(), 1e-6, 1e-6);
    }
}

TEST_CASE_TEMPLATE("cuda kernels (coverage): cross-entropy where every target is ignored", D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    const int64_t rows = 3, C = 40;
    const Tensor<float> x = rnd({rows, C}, 931, 3.0);
    const auto targets = Tensor<int64_t>::from(std::vector<int64_t>(static_cast<size_t>(rows), -100), {rows});
    const auto dt = cu::DeviceTensor<int64_t>::from_host(targets);
    auto loss = cu::DeviceTensor<float>::empty({2}), lse = cu::DeviceTensor<float>::empty({rows});
    const auto dxin = dev<T>(x);
    cu::cross_entropy_forward(dxin, dt, -100, loss, lse);
    const Tensor<float> lh = loss.to_host();
    // The CPU op: the mean over no target is NaN (as PyTorch); the count is 0.
    CHECK(std::isnan(cross_entropy(x, targets).item()));
    CHECK(std::isnan(lh.data()[0]));
    CHECK(lh.data()[1] == 0.0f);
    // Backward: every row ignored, so the gradient is zero (not NaN).
    cu::DeviceTensor<T> dx = cu::DeviceTensor<T>::empty({rows, C});
    cu::cross_entropy_backward(dxin, dt, -100, loss, lse, nullptr, dx);
    CHECK(max_diff(dx.to_host_float(), Tensor<float>::zeros({rows, C})) == 0.0);
}

TEST_CASE_TEMPLATE("cuda kernels (coverage): the rest of the launchers' paths: bias_add, empty sums, out-of-range indices, names",
                   D, F32, BF16) {
    COEFFNET_REQUIRE_GPU();
    using T = typename D::T;
    CHECK(std::string(cu::row_kind_name(cu::RowLaunch::block_per_row)) == "block_per_row");
    CHECK(std::string(cu::precision_name(cu::GemmPrecision::tf32)) == "tf32");
    CHECK(std::string(cu::precision_name(cu::GemmPrecision::bf16)) == "bf16");
    CHECK(std::string(cu::precision_name(cu::GemmPrecision::fp32)) == "fp32");
    auto ya = cu::DeviceTensor<T>::empty({2, 8});
    CHECK_THROWS_WITH_AS(cu::activation_forward<T>(static_cast<cu::Activation>(7), dev<T>(rnd({2, 8}, 1)), nullptr, ya),
                         doctest::Contains("unknown activation 7"), Error);
    // bias_add: y = x + b, row by row.
    const Tensor<float> x = maybe_round(rnd({5, 24}, 951), D::bf16), b = maybe_round(rnd({24}, 952), D::bf16);
    auto y = cu::DeviceTensor<T>::empty({5, 24});
    cu::bias_add(dev<T>(x), dev<T>(b), y);
    judge<D>("bias_add", y.to_host_float(), [&](bool r) { return maybe_round(x + b, r); });
    // A sum over an empty last axis is zero (the CPU's sum too); a mean over it is an error.
    auto ys = cu::DeviceTensor<T>::empty({3});
    cu::sum_last(cu::DeviceTensor<T>::empty({3, 0}), ys, false);
    CHECK(max_diff(ys.to_host_float(), sum(Tensor<float>::zeros({3, 0}), {-1})) == 0.0);
    CHECK_THROWS_AS(cu::sum_last(cu::DeviceTensor<T>::empty({3, 0}), ys, true), Error);
    // Out-of-range indices: the kernels cannot throw, so the row is NaN (the CPU ops throw).
    const Tensor<float> w = maybe_round(rnd({6, 16}, 953), D::bf16);
    const auto idx = Tensor<int64_t>::from(std::vector<int64_t>{2, 6, -1}, {3});
    auto out = cu::DeviceTensor<T>::empty({3, 16});
    cu::embedding_forward(cu::DeviceTensor<int64_t>::from_host(idx), dev<T>(w), out);
    const Tensor<float> oh = out.to_host_float();
    CHECK(max_diff(oh.slice(0, 0, 1), w.slice(0, 2, 3)) == 0.0);
    for (int64_t j = 16; j < 48; ++j) CHECK(std::isnan(oh.data()[j]));
    CHECK_THROWS_AS((void)embedding(idx, w), Error);
    const auto bad = Tensor<int64_t>::from(std::vector<int64_t>{1, 40}, {2});
    auto loss = cu::DeviceTensor<float>::empty({2}), lse = cu::DeviceTensor<float>::empty({2});
    cu::cross_entropy_forward(dev<T>(rnd({2, 40}, 954)), cu::DeviceTensor<int64_t>::from_host(bad), -100, loss, lse);
    CHECK(std::isnan(loss.to_host().data()[0]));
    CHECK(loss.to_host().data()[1] == 2.0f);
    CHECK_THROWS_AS((void)cross_entropy(rnd({2, 40}, 954), bad), Error);
}

TEST_CASE("cuda gemm (coverage): an empty inner dimension gives beta C, and linear gives the bias") {
    COEFFNET_REQUIRE_GPU();
    auto a = cu::DeviceTensor<float>::empty({3, 0}), bm = cu::DeviceTensor<float>::empty({0, 4});
    auto c = cu::DeviceTensor<float>::from_host(Tensor<float>::ones({3, 4}));
    cu::gemm(a, bm, c, false, false, 1.0f, 0.0f);
    CHECK(max_diff(c.to_host(), Tensor<float>::zeros({3, 4})) == 0.0);
    const Tensor<float> bias = rnd({4}, 955);
    auto y = cu::DeviceTensor<float>::empty({3, 4});
    cu::linear(a, cu::DeviceTensor<float>::empty({4, 0}), cu::DeviceTensor<float>::from_host(bias), y);
    CHECK(max_diff(y.to_host(), Tensor<float>::zeros({3, 4}) + bias) == 0.0);
    cu::linear(a, cu::DeviceTensor<float>::empty({4, 0}), cu::DeviceTensor<float>(), y);
    CHECK(max_diff(y.to_host(), Tensor<float>::zeros({3, 4})) == 0.0);
}
