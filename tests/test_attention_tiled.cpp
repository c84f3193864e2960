// The tiled attention backend (ops/attention_tiled.hpp) against the materialised reference
// (ops/attention.hpp): outputs, gradients, dropout streams and generator offsets on odd sizes,
// masks of every kind, finite differences of the tiled node itself, the backend switch, and
// a memory check that fails if the tiled path ever allocates the [B, H, N, M] maps.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/core/sanitizers.hpp>
#include <coeffnet/ops/attention_tiled.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "test_util.hpp"

using namespace coeffnet;

namespace {

struct Config {
    int64_t B, H, N, M, d, dv;
    bool causal = false;
    int pad = 0;           // 0 none; 1 trailing keys of item 0 padded; 2 also every key of item B-1 (all rows masked)
    int add_mask = 0;      // 0 none; 1 [B,1,1,M]; 2 [1,H,N,M] with one all -inf query row; 3 [B,H,N,1]; 4 [N,M]
    bool dropout = false;  // alpha dropout 0.3 and attention dropout 0.2, training
    bool strided = false;  // q as split_heads of [B,N,H*d] (strided rows), v with a non-unit last stride
    int64_t block_q = 0;   // tiled block rows; 0 = the default rule
};

template <class T>
struct Inputs {
    Tensor<T> q, k, v, alpha, dout, attn_mask, key_mask;
};

template <class T>
Inputs<T> make_inputs(const Config& c, uint64_t seed) {
    Generator g(seed);
    Inputs<T> in;
    if (c.strided) {
        in.q = split_heads(Tensor<T>::randn({c.B, c.N, c.H * c.d}, g), c.H);
        in.v = Tensor<T>::randn({c.B, c.H, c.dv, c.M}, g).mT();
    } else {
        in.q = Tensor<T>::randn({c.B, c.H, c.N, c.d}, g);
        in.v = Tensor<T>::randn({c.B, c.H, c.M, c.dv}, g);
    }
    in.k = Tensor<T>::randn({c.B, c.H, c.M, c.d}, g);
    in.alpha = Tensor<T>::randn({c.H, c.H}, g, 0.0, 0.3);
    in.dout = Tensor<T>::randn({c.B, c.H, c.N, c.dv}, g);
    const T neg_inf = -std::numeric_limits<T>::infinity();
    if (c.pad) {
        in.key_mask = Tensor<T>::ones({c.B, c.M});
        for (int64_t m = c.M - c.M / 3; m < c.M && m > 0; ++m) in.key_mask.at({0, m}) = 0;
        if (c.pad == 2)
            for (int64_t m = 0; m < c.M; ++m) in.key_mask.at({c.B - 1, m}) = 0;
    }
    switch (c.add_mask) {
        case 1: in.attn_mask = Tensor<T>::randn({c.B, 1, 1, c.M}, g, 0.0, 0.5); break;
        case 2:
            in.attn_mask = Tensor<T>::randn({1, c.H, c.N, c.M}, g, 0.0, 0.5);
            for (int64_t m = 0; m < c.M; ++m) in.attn_mask.at({0, c.H - 1, c.N / 2, m}) = neg_inf;
            in.attn_mask.at({0, 0, 0, 0}) = neg_inf;
            break;
        case 3: in.attn_mask = Tensor<T>::randn({c.B, c.H, c.N, 1}, g, 0.0, 0.5); break;
        case 4: in.attn_mask = Tensor<T>::randn({c.N, c.M}, g, 0.0, 0.5); break;
        default: break;
    }
    return in;
}

template <class T>
struct Outcome {
    std::vector<T> out, dq, dk, dv, dalpha;
    uint64_t offset = 0;
    std::string grad_fn;
};

// One forward + backward through the public op (or the tiled op with an explicit block size).
template <class T>
Outcome<T> run(const Inputs<T>& in, const Config& c, AttentionBackend backend, bool plain) {
    Generator gen(99, 7);
    AttentionOptions o;
    o.causal = c.causal;
    o.backend = backend;
    if (c.dropout) {
        o.training = true;
        o.coeff.alpha_dropout = 0.3;
        o.attn_dropout = 0.2;
        o.generator = &gen;
    }
    Tensor<T> q = in.q.detach(), k = in.k.detach(), v = in.v.detach(), alpha = in.alpha.clone();
    q.set_requires_grad(true);  // leaves that share the inputs' (possibly strided) storage
    k.set_requires_grad(true);
    v.set_requires_grad(true);
    alpha.set_requires_grad(true);
    AttentionResult<T> r;
    if (backend == AttentionBackend::tiled && c.block_q > 0)
        r = coeff_attention_tiled(q, k, v, plain ? Tensor<T>() : alpha, o, in.attn_mask, in.key_mask,
                                    TiledConfig{c.block_q});
    else
        r = plain ? attention(q, k, v, o, in.attn_mask, in.key_mask)
                  : coeff_attention(q, k, v, alpha, o, in.attn_mask, in.key_mask);
    Outcome<T> res;
    res.grad_fn = r.out.grad_fn_name();
    res.out = r.out.to_vector();
    r.out.backward(in.dout);
    res.dq = q.grad().to_vector();
    res.dk = k.grad().to_vector();
    res.dv = v.grad().to_vector();
    if (!plain) res.dalpha = alpha.grad().to_vector();
    res.offset = gen.offset;
    return res;
}

// max |a - b| / max |b| (0 when both are all zeros).
template <class T>
double rel_err(const std::vector<T>& a, const std::vector<T>& b) {
    REQUIRE(a.size() == b.size());
    double diff = 0, mag = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
        mag = std::max(mag, std::abs(static_cast<double>(b[i])));
        if (std::isnan(static_cast<double>(a[i])) != std::isnan(static_cast<double>(b[i]))) return INFINITY;
    }
    return mag > 0 ? diff / mag : diff;
}

template <class T>
void compare_backends(const Config& c, bool plain) {
    const double tol = std::is_same_v<T, double> ? 1e-11 : 2e-5;
    const Inputs<T> in = make_inputs<T>(c, 1234 + static_cast<uint64_t>(c.N * 31 + c.M));
    const Outcome<T> want = run(in, c, AttentionBackend::materialised, plain);
    const Outcome<T> got = run(in, c, AttentionBackend::tiled, plain);
    CHECK(got.grad_fn == (plain ? "attention_tiled" : "coeff_attention_tiled"));
    CHECK(want.grad_fn == "matmul");
    CHECK(rel_err(got.out, want.out) <= tol);
    CHECK(rel_err(got.dq, want.dq) <= tol);
    CHECK(rel_err(got.dk, want.dk) <= tol);
    CHECK(rel_err(got.dv, want.dv) <= tol);
    if (!plain) CHECK(rel_err(got.dalpha, want.dalpha) <= tol);
    CHECK(got.offset == want.offset);
    if (c.dropout) CHECK(got.offset > 7);
}

const Config kConfigs[] = {
    {1, 1, 1, 1, 40, 40},
    {1, 12, 1, 9, 64, 64, true},                                    // one query, causal, cross
    {2, 8, 7, 7, 40, 40, true, 2, 0, false, false, 3},              // item 1 all padding; blocks of 3
    {2, 12, 7, 197, 64, 64, false, 1, 1},                           // cross N < M, trailing padding
    {1, 8, 197, 7, 80, 80, true, 0, 2, false, true},                // N > M causal: top rows fully masked
    {2, 8, 197, 197, 64, 64, true, 1, 0, true},                     // dropout, causal, padding
    {1, 12, 33, 50, 80, 64, false, 0, 3, true, true, 5},            // d != dv, [B,H,N,1] mask, strided
    {2, 1, 23, 23, 40, 40, false, 0, 4, true},                      // [N, M] mask
    {1, 2, 1025, 1025, 40, 40, true, 0, 0, true},                   // long rows, dropout across blocks
};

std::string describe(const Config& c) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "B=%lld H=%lld N=%lld M=%lld d=%lld dv=%lld causal=%d pad=%d mask=%d drop=%d strided=%d bq=%lld",
                  static_cast<long long>(c.B), static_cast<long long>(c.H), static_cast<long long>(c.N),
                  static_cast<long long>(c.M), static_cast<long long>(c.d), static_cast<long long>(c.dv), c.causal,
                  c.pad, c.add_mask, c.dropout, c.strided, static_cast<long long>(c.block_q));
    return buf;
}

}  // namespace

TEST_CASE("tiled coeff_attention equals the materialised path: outputs, gradients, dropout, offsets (double)") {
    for (const Config& c : kConfigs) {
        INFO(describe(c));
        compare_backends<double>(c, false);
    }
}

TEST_CASE("tiled coeff_attention equals the materialised path to float accuracy") {
    for (const Config& c : kConfigs) {
        INFO(describe(c));
        compare_backends<float>(c, false);
    }
}

TEST_CASE("tiled plain attention equals the materialised attention(), dropout included") {
    for (const Config& c : {kConfigs[2], kConfigs[4], kConfigs[5], kConfigs[6]}) {
        INFO(describe(c));
        compare_backends<double>(c, true);
        compare_backends<float>(c, true);
    }
}

TEST_CASE("tiled: alpha = 0 reproduces tiled plain attention bit for bit") {
    Generator g(5);
    auto q = Tensor<float>::randn({2, 6, 37, 16}, g), k = Tensor<float>::randn({2, 6, 41, 16}, g),
         v = Tensor<float>::randn({2, 6, 41, 8}, g);
    AttentionOptions o;
    o.backend = AttentionBackend::tiled;
    o.causal = true;
    o.training = true;
    o.attn_dropout = 0.25;
    Generator g1(3), g2(3);
    o.generator = &g1;
    const auto plain = attention(q, k, v, o).out.to_vector();
    o.generator = &g2;
    const auto mixed = coeff_attention(q, k, v, Tensor<float>::zeros({6, 6}), o).out.to_vector();
    CHECK(plain == mixed);
    CHECK(g1.offset == g2.offset);
}

TEST_CASE("tiled: the backward of the tiled node matches central finite differences (double)") {
    // Everything on at once: causal cross attention with padding, an additive mask, both dropouts.
    const Config c{2, 3, 5, 6, 4, 3, true, 1, 1, true};
    const Inputs<double> in = make_inputs<double>(c, 77);
    auto loss = [&](const std::vector<Tensor<double>>& x, bool grad) {
        Generator gen(11, 2);  // the same masks on every evaluation
        AttentionOptions o;
        o.causal = true;
        o.training = true;
        o.coeff.alpha_dropout = 0.3;
        o.attn_dropout = 0.2;
        o.generator = &gen;
        auto r = coeff_attention_tiled(x[0], x[1], x[2], x[3], o, in.attn_mask, in.key_mask, TiledConfig{2});
        if (grad) r.out.backward(in.dout);
        double s = 0;
        const auto ov = r.out.to_vector(), wv = in.dout.to_vector();
        for (size_t i = 0; i < ov.size(); ++i) s += ov[i] * wv[i];
        return s;
    };
    std::vector<Tensor<double>> x{in.q.clone(), in.k.clone(), in.v.contiguous().clone(), in.alpha.clone()};
    for (auto& t : x) t.set_requires_grad(true);
    loss(x, true);
    double worst = 0;
    for (size_t a = 0; a < x.size(); ++a) {
        const auto g = x[a].grad().to_vector();
        for (int64_t i = 0; i < x[a].numel(); ++i) {
            const double h = 1e-6, x0 = x[a].data()[i];
            x[a].data()[i] = x0 + h;
            const double up = loss(x, false);
            x[a].data()[i] = x0 - h;
            const double down = loss(x, false);
            x[a].data()[i] = x0;
            const double fd = (up - down) / (2 * h);
            const double err = std::abs(fd - g[static_cast<size_t>(i)]) / std::max(1.0, std::abs(fd));
            worst = std::max(worst, err);
        }
    }
    INFO("tiled attention: worst finite-difference error ", worst);
    CHECK(worst <= 1e-6);
}

TEST_CASE("the backend switch: automatic rule, explicit choices, return_maps") {
    Generator g(1);
    auto q = Tensor<float>::randn({1, 2, 9, 4}, g), k = Tensor<float>::randn({1, 2, 9, 4}, g),
         v = Tensor<float>::randn({1, 2, 9, 4}, g), alpha = Tensor<float>::zeros({2, 2});
    q.set_requires_grad(true);
    AttentionOptions o;
    CHECK(coeff_attention(q, k, v, alpha, o).out.grad_fn_name() == "matmul");  // small: materialised
    o.backend = AttentionBackend::tiled;
    CHECK(coeff_attention(q, k, v, alpha, o).out.grad_fn_name() == "coeff_attention_tiled");
    CHECK(attention(q, k, v, o).out.grad_fn_name() == "attention_tiled");
    o.return_maps = true;
    CHECK_THROWS_WITH_AS(coeff_attention(q, k, v, alpha, o), doctest::Contains("return_maps needs the materialised"),
                         Error);
    CHECK_THROWS_WITH_AS(attention(q, k, v, o), doctest::Contains("return_maps"), Error);
    // The automatic rule: tiled above 2^24 map elements, unless the maps are asked for.
    auto big_q = Tensor<float>::zeros({1, 1, 4097, 1}), big_k = Tensor<float>::zeros({1, 1, 4097, 1});
    AttentionOptions a;
    CHECK(use_tiled_backend(big_q, big_k, a));
    CHECK_FALSE(use_tiled_backend(q, k, a));
    a.return_maps = true;
    CHECK_FALSE(use_tiled_backend(big_q, big_k, a));
    a.return_maps = false;
    a.backend = AttentionBackend::materialised;
    CHECK_FALSE(use_tiled_backend(big_q, big_k, a));
    // ...and the public op takes it: 4097 x 4097 maps, run tiled (a materialised run would need 64 MiB per map).
    big_q.set_requires_grad(true);
    CHECK(attention(big_q, big_k, big_k).out.grad_fn_name() == "attention_tiled");
    // Errors name the op and the problem, as the materialised path does.
    o.return_maps = false;
    CHECK_THROWS_WITH_AS(coeff_attention(q, k, v, Tensor<float>::zeros({3, 3}), o), doctest::Contains("[heads, heads]"),
                         Error);
    CHECK_THROWS_WITH_AS(attention(q, k, v, o, Tensor<float>(), Tensor<float>::ones({1, 8})),
                         doctest::Contains("key mask"), Error);
    CHECK_THROWS_WITH_AS(attention(q, k, v, o, Tensor<float>::zeros({3, 9})), doctest::Contains("additive mask"), Error);
    o.training = true;
    o.attn_dropout = 0.1;
    CHECK_THROWS_WITH_AS(attention(q, k, v, o), doctest::Contains("generator"), Error);

    // Without the tiled backend in the program (ops/attention_tiled.hpp included by no file):
    // automatic materialises, and asking for tiled names the include.
    struct Unregister {
        TiledAttentionFn<float> kept = tiled_attention_backend<float>;
        Unregister() { tiled_attention_backend<float> = nullptr; }
        ~Unregister() { tiled_attention_backend<float> = kept; }
    };
    {
        Unregister off;
        CHECK_FALSE(use_tiled_backend(big_q, big_k, AttentionOptions{}));
        CHECK_THROWS_WITH_AS(coeff_attention(q, k, v, alpha, o),
                             doctest::Contains("#include <coeffnet/ops/attention_tiled.hpp>"), Error);
        o.training = false;
        o.attn_dropout = 0.0;
        o.backend = AttentionBackend::automatic;
        CHECK(coeff_attention(q, k, v, alpha, o).out.grad_fn_name() == "matmul");
    }
    const bool registered_float = tiled_attention_backend<float> == &coeff_attention_tiled<float>;
    const bool registered_double = tiled_attention_backend<double> == &coeff_attention_tiled<double>;
    CHECK(registered_float);
    CHECK(registered_double);
}

namespace {

// Peak resident memory growth (bytes) while f runs, from the kernel's high-water mark, which
// writing "5" to /proc/self/clear_refs resets to the current RSS. -1 where that is unavailable.
long long peak_rss_growth(const std::function<void()>& f) {
    auto field = [](const char* name) {
        std::ifstream st("/proc/self/status");
        std::string line;
        while (std::getline(st, line))
            if (line.rfind(name, 0) == 0) return std::stoll(line.substr(std::strlen(name) + 1)) * 1024;
        return -1LL;
    };
#if defined(__GLIBC__)
    malloc_trim(0);  // hand freed heap pages back, so that reusing them cannot hide an allocation
#endif
    {
        std::ofstream cr("/proc/self/clear_refs");
        if (!cr || !(cr << "5") || !cr.flush()) return -1;
    }
    const long long before = field("VmRSS:");
    f();
    const long long hwm = field("VmHWM:");
    return before < 0 || hwm < 0 ? -1 : hwm - before;
}

}  // namespace

TEST_CASE("tiled: forward + backward never allocates the [B, H, N, M] maps (peak RSS)") {
    // 2 x 4096 x 2048 = 16.8 M map elements: 64 MiB as float, above glibc's largest mmap
    // threshold (32 MiB), so such a buffer would be fresh pages that raise the high-water mark.
#if COEFFNET_ASAN
    // AddressSanitizer's allocator and shadow memory make the resident-set figures meaningless.
    return coeffnet::test::skip("built with AddressSanitizer, whose allocator makes resident-set figures meaningless "
                "(the check runs in the normal build)");
#endif
    const int64_t B = 1, H = 2, N = 4096, M = 2048, d = 8;
    const long long map_bytes = B * H * N * M * static_cast<long long>(sizeof(float));
    Generator g(4);
    auto q = Tensor<float>::randn({B, H, N, d}, g), k = Tensor<float>::randn({B, H, M, d}, g),
         v = Tensor<float>::randn({B, H, M, d}, g), alpha = Tensor<float>::randn({H, H}, g, 0, 0.3),
         dout = Tensor<float>::randn({B, H, N, d}, g);
    for (auto* t : {&q, &k, &v, &alpha}) t->set_requires_grad(true);
    AttentionOptions o;
    o.causal = true;
    o.backend = AttentionBackend::tiled;
    const long long tiled = peak_rss_growth([&] {
        auto out = coeff_attention(q, k, v, alpha, o).out;
        out.backward(dout);
    });
    if (tiled < 0) return coeffnet::test::skip("/proc/self/clear_refs or VmHWM is not available: no peak-RSS figure");
    INFO("tiled forward+backward peak RSS growth: ", tiled / 1024, " KiB (one map: ", map_bytes / 1024, " KiB)");
    CHECK(tiled < map_bytes / 4);
    CHECK(q.grad().defined());
    // The check can fail: the materialised forward alone, at the same size, exceeds one map.
    o.backend = AttentionBackend::materialised;
    const long long materialised = peak_rss_growth([&] {
        NoGrad ng;
        auto out = coeff_attention(q, k, v, alpha, o).out;
    });
    INFO("materialised forward peak RSS growth: ", materialised / 1024, " KiB");
    CHECK(materialised > map_bytes);
}
