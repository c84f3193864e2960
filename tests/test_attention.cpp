// Coefficient attention: against a loop-by-loop reference, the alpha = 0 identity, the shared
// alpha-dropout mask, and Proposition 4.3 (mixed filters leave the convex hull).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

namespace {

// The method as docs/method.md writes it, one loop per symbol, in double.
std::vector<double> reference(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                              const Tensor<double>& alpha, double scale, bool causal, const Tensor<double>& key_mask) {
    const int64_t B = q.size(0), H = q.size(1), N = q.size(2), d = q.size(3), M = k.size(2), dv = v.size(3);
    std::vector<double> out(static_cast<size_t>(B * H * N * dv), 0.0);
    for (int64_t b = 0; b < B; ++b) {
        std::vector<std::vector<double>> P(static_cast<size_t>(H), std::vector<double>(static_cast<size_t>(N * M)));
        for (int64_t i = 0; i < H; ++i)
            for (int64_t n = 0; n < N; ++n) {
                std::vector<double> s(static_cast<size_t>(M));
                double mx = -std::numeric_limits<double>::infinity();
                for (int64_t m = 0; m < M; ++m) {
                    double dot = 0;
                    for (int64_t e = 0; e < d; ++e) dot += q.at({b, i, n, e}) * k.at({b, i, m, e});
                    bool visible = !causal || m <= n + (M - N);
                    if (key_mask.defined() && key_mask.at({b, m}) == 0) visible = false;
                    s[static_cast<size_t>(m)] = visible ? scale * dot : -std::numeric_limits<double>::infinity();
                    mx = std::max(mx, s[static_cast<size_t>(m)]);
                }
                double z = 0;
                for (auto& x : s) z += (x = std::isinf(mx) ? 0.0 : std::exp(x - mx));
                for (int64_t m = 0; m < M; ++m) P[static_cast<size_t>(i)][static_cast<size_t>(n * M + m)] = z > 0 ? s[static_cast<size_t>(m)] / z : 0.0;
            }
        for (int64_t h = 0; h < H; ++h)
            for (int64_t n = 0; n < N; ++n)
                for (int64_t m = 0; m < M; ++m) {
                    double phat = 0;
                    for (int64_t i = 0; i < H; ++i)
                        phat += ((h == i ? 1.0 : 0.0) + alpha.at({h, i})) * P[static_cast<size_t>(i)][static_cast<size_t>(n * M + m)];
                    for (int64_t e = 0; e < dv; ++e)
                        out[static_cast<size_t>(((b * H + h) * N + n) * dv + e)] += phat * v.at({b, h, m, e});
                }
    }
    return out;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

}  // namespace

TEST_CASE("coeff_attention matches the loop-by-loop definition") {
    Generator g(21);
    struct Case {
        int64_t B, H, N, M, d, dv;
        bool causal, padded;
    };
    for (const Case c : {Case{1, 1, 1, 1, 4, 4, false, false}, Case{2, 3, 7, 7, 5, 3, false, false},
                         Case{2, 4, 7, 7, 8, 8, true, true}, Case{1, 2, 3, 9, 4, 6, true, false},
                         Case{3, 5, 6, 4, 2, 2, false, true}}) {
        INFO("B H N M d dv = ", c.B, " ", c.H, " ", c.N, " ", c.M, " ", c.d, " ", c.dv);
        auto q = Tensor<double>::randn({c.B, c.H, c.N, c.d}, g), k = Tensor<double>::randn({c.B, c.H, c.M, c.d}, g),
             v = Tensor<double>::randn({c.B, c.H, c.M, c.dv}, g), alpha = Tensor<double>::randn({c.H, c.H}, g, 0, 0.5);
        Tensor<double> km;
        if (c.padded) {
            km = Tensor<double>::ones({c.B, c.M});
            km.at({c.B - 1, 0}) = 0;  // pad the first key of the last item
        }
        AttentionOptions o;
        o.causal = c.causal;
        auto got = coeff_attention(q, k, v, alpha, o, Tensor<double>(), km).out.to_vector();
        auto want = reference(q, k, v, alpha, 1.0 / std::sqrt(static_cast<double>(c.d)), c.causal, km);
        CHECK(max_diff(got, want) <= 1e-12);
        // The float path agrees with the double reference to float accuracy.
        auto gotf = coeff_attention(q.cast<float>(), k.cast<float>(), v.cast<float>(), alpha.cast<float>(), o, Tensor<float>(),
                                    c.padded ? km.cast<float>() : Tensor<float>())
                        .out.to_vector();
        CHECK(max_diff(std::vector<double>(gotf.begin(), gotf.end()), want) <= 1e-5);
    }
}

TEST_CASE("alpha = 0 reproduces plain attention bit for bit, with the mixing GEMM running") {
    Generator g(8);
    auto q = Tensor<float>::randn({2, 6, 17, 16}, g), k = Tensor<float>::randn({2, 6, 17, 16}, g),
         v = Tensor<float>::randn({2, 6, 17, 16}, g);
    auto alpha = Tensor<float>::zeros({6, 6});
    AttentionOptions o;
    o.causal = true;
    o.return_maps = true;
    const int64_t g0 = gemm_count().load();
    auto plain = attention(q, k, v, o);
    const int64_t g1 = gemm_count().load();
    auto mixed = coeff_attention(q, k, v, alpha, o);
    const int64_t g2 = gemm_count().load();
    CHECK(g2 - g1 == (g1 - g0) + 1);  // one more GEMM: alpha' @ P
    CHECK(plain.out.to_vector() == mixed.out.to_vector());
    CHECK(mixed.mixed_maps.to_vector() == mixed.maps.to_vector());
    // ...and a non-zero alpha changes the output: the path is live.
    alpha.at({0, 1}) = 0.5f;
    CHECK(coeff_attention(q, k, v, alpha, o).out.to_vector() != plain.out.to_vector());
}

TEST_CASE("ops/coeff_spec.hpp: the mask rule, the default scale, the draws and alpha'") {
    // Causal masking is bottom-right aligned: query n of N sees keys m <= n + (M - N) of M.
    CHECK(coeff::causal_key_end(0, 3, 5) == 3);      // query 0 of 3 sees keys 0, 1, 2 of 5
    CHECK(coeff::causal_key_end(2, 3, 5) == 5);      // the last query sees every key
    CHECK(coeff::causal_key_end(0, 5, 3) == -1);     // more queries than keys: the first ones see none
    CHECK(coeff::causal_first_query(4, 3, 5) == 2);  // key 4 of 5 is seen from query 2 of 3 on
    CHECK(coeff::key_is_token(1.0f));
    CHECK(coeff::key_is_token(uint8_t{2}));
    CHECK_FALSE(coeff::key_is_token(0.0));
    CHECK(coeff::score_scale(0.0, 64) == 0.125);
    CHECK(coeff::score_scale(0.3, 64) == 0.3);
    CHECK(coeff::phat_word(1, 2, 3, 4, 5, 6, 7) == static_cast<uint64_t>(((1 * 5 + 2) * 6 + 3) * 7 + 4));

    // The draws of one call: alpha's H x H, then Phat's B*H*N*M, the very words of the dropout op.
    const int64_t B = 2, H = 3, N = 4, M = 5;
    Generator g(11, 5), ref(11, 5);
    const CoeffSpec spec{0.4, true};
    const coeff::Draws<double> d = coeff::reserve_draws<double>(spec, true, 0.25, true, &g, B, H, N, M, "test", "gen");
    const auto ma = dropout_mask<double>({H, H}, 0.4, ref).to_vector();
    const auto mp = dropout_mask<double>({B, H, N, M}, 0.25, ref).to_vector();
    CHECK(g.offset == ref.offset);
    int mismatches = 0;
    for (size_t j = 0; j < ma.size(); ++j)
        if (d.alpha.multiplier(j) != ma[j]) ++mismatches;
    for (size_t j = 0; j < mp.size(); ++j)
        if (d.phat.multiplier(j) != mp[j]) ++mismatches;
    CHECK(mismatches == 0);
    // Evaluation, or plain attention's alpha: nothing drawn.
    Generator e(11, 5);
    const coeff::Draws<double> none = coeff::reserve_draws<double>(spec, false, 0.25, false, &e, B, H, N, M, "t", "g");
    CHECK_FALSE(none.alpha.on);
    CHECK_FALSE(none.phat.on);
    CHECK(e.offset == 5);
    CHECK_THROWS_WITH_AS(coeff::reserve_draws<double>(spec, true, 0.25, true, nullptr, B, H, N, M, "op", "the generator"),
                         doctest::Contains("op: training with dropout p = 0.4 needs the generator"), Error);

    // alpha' = I + alpha * multiplier (without the residual: alpha * multiplier), rounded as the
    // separate ops round (the product, then the sum), bit for bit; dalpha = g * multiplier.
    Generator init(12), mask_gen(11, 5);
    const Tensor<double> mask = dropout_mask<double>({H, H}, 0.4, mask_gen);
    for (bool residual : {true, false}) {
        Tensor<double> alpha = Tensor<double>::randn({H, H}, init).set_requires_grad(true);
        const Tensor<double> w = Tensor<double>::randn({H, H}, init);
        const Tensor<double> ap = alpha_prime(alpha, d.alpha, residual);
        const Tensor<double> dropped = mul(alpha.detach(), mask);
        const Tensor<double> want = residual ? add(Tensor<double>::eye(H), dropped) : dropped;
        CHECK(ap.to_vector() == want.to_vector());
        sum(ap * w).backward();
        CHECK(alpha.grad().to_vector() == mul(w, mask).to_vector());
    }
}

TEST_CASE("alpha dropout: one H x H mask per call, shared by the batch, off in evaluation") {
    Generator g(30);
    const int64_t H = 4;
    auto q1 = Tensor<double>::randn({1, H, 5, 3}, g), k1 = Tensor<double>::randn({1, H, 5, 3}, g),
         v1 = Tensor<double>::randn({1, H, 5, 3}, g);
    auto rep = [](const Tensor<double>& t) { return t.expand({3, -1, -1, -1}).contiguous(); };
    auto alpha = Tensor<double>::randn({H, H}, g);
    Generator dg(77);
    AttentionOptions o;
    o.training = true;
    o.coeff.alpha_dropout = 0.5;
    o.generator = &dg;
    o.return_maps = true;
    auto r = coeff_attention(rep(q1), rep(k1), rep(v1), alpha, o);
    CHECK(dg.offset == 4);  // 16 draws = 4 Philox blocks: one H x H mask, not one per item
    const auto out = r.out.to_vector();
    const size_t per = out.size() / 3;
    for (size_t i = 0; i < per; ++i) {
        CHECK(out[i] == out[per + i]);
        CHECK(out[i] == out[2 * per + i]);
    }
    // The mask is the one dropout() draws from the same generator state.
    Generator same(77);
    auto ap = add(Tensor<double>::eye(H), dropout(alpha, 0.5, same));
    auto want = mix_heads(r.maps, ap).to_vector();
    CHECK(max_diff(r.mixed_maps.to_vector(), want) == 0.0);
    // Evaluation: no dropout, no draw.
    o.training = false;
    Generator untouched(5);
    o.generator = &untouched;
    auto e = coeff_attention(q1, k1, v1, alpha, o);
    CHECK(untouched.offset == 0);
    CHECK(max_diff(e.out.to_vector(), reference(q1, k1, v1, alpha, 1 / std::sqrt(3.0), false, Tensor<double>())) <= 1e-12);
    // Training with dropout but without a generator is a clear error.
    o.training = true;
    o.generator = nullptr;
    CHECK_THROWS_WITH_AS(coeff_attention(q1, k1, v1, alpha, o), doctest::Contains("generator"), Error);
}

TEST_CASE("Proposition 4.3: a mixed filter puts the output outside the convex hull of the values") {
    // Two heads over two tokens: head 0 attends (almost) only to token 0, head 1 only to
    // token 1, and both heads see the same values v_0 = (1, 0), v_1 = (0, 1). Row h of
    // alpha' = [[1, -1], [0, 1]] makes head 0's filter P_0 - P_1, so its output is about
    // v_0 - v_1 = (1, -1).
    const double big = 40.0;
    auto q = Tensor<double>::ones({1, 2, 2, 1});
    auto k = Tensor<double>::from({big, -big, -big, big}, {1, 2, 2, 1});
    auto v = Tensor<double>::from({1, 0, 0, 1, 1, 0, 0, 1}, {1, 2, 2, 2});
    auto alpha = Tensor<double>::from({0, -1, 0, 0}, {2, 2});
    AttentionOptions o;
    o.scale = 1.0;
    auto out = coeff_attention(q, k, v, alpha, o).out;
    // Certificate: a direction u with u . out > max_j u . v_j proves out is outside the hull.
    const double u[2] = {1.0, -1.0};
    for (int64_t n = 0; n < 2; ++n) {
        const double along = u[0] * out.at({0, 0, n, 0}) + u[1] * out.at({0, 0, n, 1});
        const double best_value = std::max(u[0] * 1 + u[1] * 0, u[0] * 0 + u[1] * 1);
        CHECK(along > best_value + 0.9);
    }
    // Without mixing the same head stays inside: u . out <= max_j u . v_j.
    auto plain = attention(q, k, v, o).out;
    for (int64_t n = 0; n < 2; ++n) CHECK(plain.at({0, 0, n, 0}) - plain.at({0, 0, n, 1}) <= 1.0 + 1e-12);
}

TEST_CASE("nn::CoeffAttention: named parameters, zero alpha equals the plain layer") {
    Generator init(3);
    nn::CoeffAttention<double> layer(8, 2, init);
    CHECK_FALSE(layer.coeff_enabled());  // a new layer is plain attention until Coeff-Tuning starts
    layer.enable_coeff(true);
    auto names = layer.named_parameters();
    std::vector<std::string> got;
    for (auto& [n, p] : names) got.push_back(n);
    CHECK(got == std::vector<std::string>{"coeff_alpha", "query.weight", "query.bias", "key.weight", "key.bias",
                                          "value.weight", "value.bias", "out.weight", "out.bias"});
    CHECK(layer.alpha.shape() == Shape{2, 2});
    Generator init2(3);
    nn::CoeffAttention<double> plain(8, 2, init2);
    CHECK(plain.num_parameters() + 4 == layer.num_parameters());
    Generator data(4);
    auto x = Tensor<double>::randn({2, 5, 8}, data);
    CHECK(layer(x).to_vector() == plain(x).to_vector());
    // Freezing everything but alpha: only alpha gets a gradient.
    layer.set_requires_grad(false);
    layer.alpha.set_requires_grad(true);
    sum(layer(x)).backward();
    CHECK(layer.alpha.grad().defined());
    CHECK_FALSE(layer.query.weight.grad().defined());
}

TEST_CASE("nn::CoeffAttention: its own dropout generator, call options as a struct, mixing switched explicitly") {
    Generator init(5);
    nn::CoeffAttention<double> layer(8, 2, init);
    layer.enable_coeff(true, {.alpha_dropout = 0.5});
    CHECK(layer.coeff.alpha_dropout == 0.5);
    Generator data(6);
    const auto x = Tensor<double>::randn({2, 5, 8}, data), ctx = Tensor<double>::randn({2, 3, 8}, data);
    // Training with alpha dropout needs no generator from the caller: the layer's own advances.
    layer.train();
    const uint64_t before = layer.rng.offset;
    CHECK_NOTHROW(layer(x));
    CHECK(layer.rng.offset > before);
    // A caller's generator, when given, is the one drawn from.
    Generator mine(7);
    layer.forward(x, {.generator = &mine});
    CHECK(mine.offset > 0);
    // Cross-attention with the maps, by name.
    layer.eval();
    const auto r = layer.forward(x, {.context = ctx, .return_maps = true});
    CHECK(r.out.shape() == Shape{2, 5, 8});
    CHECK(r.maps.shape() == Shape{2, 2, 5, 3});
    // Two layers from one generator draw different dropout streams.
    Generator g(8);
    nn::CoeffAttention<double> l1(8, 2, g), l2(8, 2, g);
    CHECK(l1.rng.seed != l2.rng.seed);
    // Switched off again: plain attention, no alpha parameter.
    layer.enable_coeff(false);
    CHECK_FALSE(layer.coeff_enabled());
    CHECK(layer.num_parameters() == 4 * (8 * 8 + 8));
}

TEST_CASE("an additive mask per head and a key mask combine with the causal mask") {
    Generator g(31);
    auto q = Tensor<double>::randn({2, 3, 4, 5}, g), k = Tensor<double>::randn({2, 3, 4, 5}, g),
         v = Tensor<double>::randn({2, 3, 4, 5}, g), alpha = Tensor<double>::randn({3, 3}, g);
    const double inf = std::numeric_limits<double>::infinity();
    auto add_mask = Tensor<double>::zeros({1, 3, 1, 4});
    add_mask.at({0, 1, 0, 2}) = -inf;  // head 1 never sees key 2
    auto km = Tensor<double>::ones({2, 4});
    km.at({0, 3}) = 0;
    AttentionOptions o;
    o.causal = true;
    o.return_maps = true;
    auto r = coeff_attention(q, k, v, alpha, o, add_mask, km);
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 3; ++h)
            for (int64_t n = 0; n < 4; ++n)
                for (int64_t m = 0; m < 4; ++m) {
                    const bool hidden = m > n || (h == 1 && m == 2) || (b == 0 && m == 3);
                    if (hidden) CHECK(r.maps.at({b, h, n, m}) == 0.0);
                    else CHECK(r.maps.at({b, h, n, m}) > 0.0);
                }
}
