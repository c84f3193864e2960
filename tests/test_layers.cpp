// The small things a PyTorch user reaches for: max/min/argmax/argmin along an axis, isclose and
// allclose, randint and randperm, clip_grad_norm_, arithmetic with a scalar on the left, the
// differentiable float <-> double cast, and the layers of nn/layers.hpp (Embedding, Dropout,
// activations, Sequential, MLP). Gradients of the new differentiable ops are in the gradient
// table (test_grad_table.cpp); these tests check values, indices, names and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <coeffnet/coeffnet.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using doctest::Contains;

namespace layers_test {

// max along `axis` of a [A, B, C] tensor by the definition: first index of the largest.
std::pair<std::vector<double>, std::vector<int64_t>> naive_max3(const Tensor<double>& x, int64_t axis, bool want_max) {
    const int64_t A = x.size(0), B = x.size(1), C = x.size(2);
    std::vector<double> vals;
    std::vector<int64_t> idx;
    const int64_t n = x.size(axis);
    for (int64_t i = 0; i < (axis == 0 ? 1 : A); ++i)
        for (int64_t j = 0; j < (axis == 1 ? 1 : B); ++j)
            for (int64_t k = 0; k < (axis == 2 ? 1 : C); ++k) {
                double best = 0;
                int64_t bi = -1;
                for (int64_t t = 0; t < n; ++t) {
                    const double v = x.at({axis == 0 ? t : i, axis == 1 ? t : j, axis == 2 ? t : k});
                    if (bi < 0 || (want_max ? v > best : v < best)) {
                        best = v;
                        bi = t;
                    }
                }
                vals.push_back(best);
                idx.push_back(bi);
            }
    return {vals, idx};
}

}  // namespace layers_test

TEST_CASE("max/min/argmax/argmin along an axis match the definition, with keepdim and negative axes") {
    Generator g(3);
    const auto x = Tensor<double>::randn({3, 4, 5}, g);
    for (int64_t axis = 0; axis < 3; ++axis)
        for (bool want_max : {true, false}) {
            INFO("axis ", axis, " max ", want_max);
            const auto [vals, idx] = layers_test::naive_max3(x, axis, want_max);
            const auto r = want_max ? max(x, axis) : min(x, axis);
            const auto a = want_max ? argmax(x, axis - 3) : argmin(x, axis - 3);
            Shape want_shape = x.shape();
            want_shape.erase(want_shape.begin() + axis);
            CHECK(r.values.shape() == want_shape);
            CHECK(r.indices.shape() == want_shape);
            CHECK(a.shape() == want_shape);
            CHECK(r.values.to_vector() == vals);
            CHECK(r.indices.to_vector() == idx);
            CHECK(a.to_vector() == idx);
            Shape kept = x.shape();
            kept[static_cast<size_t>(axis)] = 1;
            CHECK((want_max ? max(x, axis, true) : min(x, axis, true)).values.shape() == kept);
            CHECK((want_max ? argmax(x, axis, true) : argmin(x, axis, true)).shape() == kept);
        }
    // A strided (transposed) input reads through its strides.
    const auto t = x.select(0, 1).mT();  // [5, 4]
    CHECK(argmax(t, 1).to_vector() == argmax(t.contiguous(), 1).to_vector());
}

TEST_CASE("max/min: ties give the first index, the gradient goes to it alone, NaN wins like PyTorch") {
    auto x = Tensor<double>::from({1, 3, 3, 0, 2, 2, 2, -1}, {2, 4}).set_requires_grad(true);
    const auto r = max(x, 1);
    CHECK(r.values.to_vector() == std::vector<double>{3, 2});
    CHECK(r.indices.to_vector() == std::vector<int64_t>{1, 0});
    CHECK(argmin(x, 1).to_vector() == std::vector<int64_t>{3, 3});
    CHECK(min(x, 0).indices.to_vector() == std::vector<int64_t>{0, 1, 1, 1});
    CHECK(min(Tensor<double>::from({2, 1, 1}, {3}), 0).indices.item() == 1);  // a tie for the minimum: the first
    sum(r.values * Tensor<double>::from({10, 20}, {2})).backward();
    CHECK(x.grad().to_vector() == std::vector<double>{0, 10, 0, 0, 20, 0, 0, 0});
    CHECK(r.values.grad_fn_name() == "max");

    const double nan = std::numeric_limits<double>::quiet_NaN();
    const auto y = Tensor<double>::from({1, nan, 5, nan}, {4});
    CHECK(argmax(y, 0).item() == 1);
    CHECK(argmin(y, 0).item() == 1);
    CHECK(std::isnan(max(y, 0).values.item()));

    // Scalars have one implicit axis (as in PyTorch); integer tensors work for argmax.
    CHECK(argmax(Tensor<double>::scalar(4.0), 0).item() == 0);
    CHECK(argmax(Tensor<int64_t>::from({4, 9, 9}, {3}), 0).item() == 1);
}

TEST_CASE("max/argmax errors name the op, the axis and the shape") {
    const auto e = Tensor<float>::zeros({2, 0});
    CHECK_THROWS_WITH_AS(max(e, 1), Contains("max: axis 1 of shape [2, 0] is empty"), Error);
    CHECK_THROWS_WITH_AS(argmin(e, 1), Contains("argmin: axis 1 of shape [2, 0] is empty"), Error);
    CHECK_THROWS_WITH_AS(argmax(Tensor<float>::zeros({2, 3}), 2), Contains("argmax"), Error);
}

TEST_CASE("isclose/allclose: PyTorch's formula |a-b| <= atol + rtol |b|, broadcasting, NaN never close") {
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const auto a = Tensor<double>::from({1.0, 1.0 + 1e-6, 1.1, nan, inf, inf, 0.0, 1e-9}, {8});
    const auto b = Tensor<double>::from({1.0, 1.0, 1.0, nan, inf, -inf, 1e-8, 0.0}, {8});
    // torch.isclose(a, b) with the defaults: [T, T, F, F, T, F, T, T]
    CHECK(isclose(a, b).to_vector() == std::vector<uint8_t>{1, 1, 0, 0, 1, 0, 1, 1});
    CHECK(isclose(a, b, 0.2, 0.0).to_vector() == std::vector<uint8_t>{1, 1, 1, 0, 1, 0, 0, 0});
    CHECK_FALSE(allclose(a, b));
    CHECK(allclose(a.slice(0, 0, 2), b.slice(0, 0, 2)));
    // Not symmetric: rtol scales |b|.
    const auto p = Tensor<double>::scalar(1.0), q = Tensor<double>::scalar(1.1);
    CHECK(isclose(p, q, 0.0909091, 0.0).item() == 1);
    CHECK(isclose(q, p, 0.0909091, 0.0).item() == 0);
    // Broadcasting: [2, 1] against [3].
    const auto c = Tensor<float>::from({1.f, 2.f}, {2, 1});
    const auto r = isclose(c, Tensor<float>::from({1.f, 2.f, 1.f}, {3}));
    CHECK(r.shape() == Shape{2, 3});
    CHECK(r.to_vector() == std::vector<uint8_t>{1, 0, 1, 0, 1, 0});
    CHECK(allclose(Tensor<float>::ones({2, 3}), Tensor<float>::ones({3})));
    CHECK_THROWS_WITH_AS(isclose(Tensor<float>::ones({2}), Tensor<float>::ones({3})),
                         Contains("isclose: shapes [2] and [3] cannot be broadcast"), Error);
    CHECK_THROWS_WITH_AS(allclose(p, q, -1.0), Contains("isclose: rtol and atol must be >= 0"), Error);
}

TEST_CASE("randint: low <= value < high, every value drawn, deterministic per seed and offset") {
    Generator g(42);
    const auto r = randint(-3, 4, {20, 50}, g);
    CHECK(r.shape() == Shape{20, 50});
    const auto v = r.to_vector();
    CHECK(*std::min_element(v.begin(), v.end()) == -3);
    CHECK(*std::max_element(v.begin(), v.end()) == 3);
    // Each of the 7 values about 1000/7 times.
    for (int64_t k = -3; k < 4; ++k) {
        const auto n = std::count(v.begin(), v.end(), k);
        CHECK(n > 100);
        CHECK(n < 190);
    }
    CHECK(g.offset == 500);  // 1000 integers x 2 words / 4 per block
    Generator same(42);
    CHECK(randint(-3, 4, {20, 50}, same).to_vector() == v);
    CHECK(randint(-3, 4, {20, 50}, same).to_vector() != v);  // the stream moved on
    Generator at(42, 500);
    Generator g2(42);
    (void)randint(0, 2, {1000}, g2);
    CHECK(randint(0, 100, {8}, at).to_vector() == randint(0, 100, {8}, g2).to_vector());
    // A range wider than 2^32 reaches beyond 32 bits.
    Generator w(1);
    const auto big = randint(0, int64_t(1) << 62, {64}, w).to_vector();
    CHECK(*std::max_element(big.begin(), big.end()) > (int64_t(1) << 40));
    CHECK(randint(5, 6, {3}, w).to_vector() == std::vector<int64_t>{5, 5, 5});
    CHECK_THROWS_WITH_AS(randint(4, 4, {2}, w), Contains("randint: high (4) must be greater than low (4)"), Error);
}

TEST_CASE("randperm: a permutation of 0..n-1, deterministic per seed, every position varies") {
    Generator g(7);
    const auto p = randperm(50, g).to_vector();
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 50; ++i) CHECK(sorted[static_cast<size_t>(i)] == i);
    CHECK(p != sorted);
    Generator same(7);
    CHECK(randperm(50, same).to_vector() == p);
    // Position 0 takes many different values over draws.
    std::set<int64_t> firsts;
    for (int i = 0; i < 40; ++i) firsts.insert(randperm(5, g).to_vector()[0]);
    CHECK(firsts.size() == 5);
    CHECK(randperm(0, g).numel() == 0);
    CHECK(randperm(1, g).to_vector() == std::vector<int64_t>{0});
    CHECK_THROWS_WITH_AS(randperm(-1, g), Contains("randperm: n must be >= 0, got -1"), Error);
}

TEST_CASE("clip_grad_norm_: PyTorch's global L2 norm, scale max_norm / (norm + 1e-6), skips missing gradients") {
    auto a = Tensor<double>::from({3, 0}, {2}).set_requires_grad(true);
    auto b = Tensor<double>::from({4}, {1}).set_requires_grad(true);
    auto c = Tensor<double>::zeros({2}).set_requires_grad(true);  // never gets a gradient
    (sum(a * a * 0.5) + sum(b * b * 0.5)).backward();                 // grads: a -> [3, 0], b -> [4]
    const double norm = clip_grad_norm_(std::vector{a, b, c}, 1.0);
    CHECK(norm == doctest::Approx(5.0).epsilon(1e-15));
    const double coef = 1.0 / (5.0 + 1e-6);
    CHECK(a.grad().to_vector()[0] == doctest::Approx(3 * coef).epsilon(1e-15));
    CHECK(b.grad().to_vector()[0] == doctest::Approx(4 * coef).epsilon(1e-15));
    CHECK_FALSE(c.grad().defined());
    // Below the limit: untouched, the norm still returned.
    const double n2 = clip_grad_norm_(std::vector{a, b, c}, 10.0);
    CHECK(n2 == doctest::Approx(5.0 * coef).epsilon(1e-12));
    CHECK(b.grad().to_vector()[0] == doctest::Approx(4 * coef).epsilon(1e-15));
    // Works with a module's parameters (float).
    Generator g(1);
    nn::Linear<float> lin(3, 2, g);
    sum(lin(Tensor<float>::randn({4, 3}, g)) * 100.0).backward();
    const double before = clip_grad_norm_(lin.parameters(), 0.5);
    CHECK(before > 0.5);
    double sq = 0;
    for (const auto& p : lin.parameters())
        for (float v : p.grad().to_vector()) sq += double(v) * v;
    CHECK(std::sqrt(sq) == doctest::Approx(0.5).epsilon(1e-5));
    CHECK_THROWS_WITH_AS(clip_grad_norm_(lin.parameters(), -1.0), Contains("clip_grad_norm_: max_norm must be >= 0"),
                         Error);
}

TEST_CASE("arithmetic with a scalar on either side: values and gradients") {
    auto x = Tensor<double>::from({0.5, -2.0, 4.0}, {3}).set_requires_grad(true);
    CHECK((x + 1.0).to_vector() == std::vector<double>{1.5, -1.0, 5.0});
    CHECK((1.0 + x).to_vector() == std::vector<double>{1.5, -1.0, 5.0});
    CHECK((x - 1.0).to_vector() == std::vector<double>{-0.5, -3.0, 3.0});
    CHECK((1.0 - x).to_vector() == std::vector<double>{0.5, 3.0, -3.0});
    CHECK((2.0 * x).to_vector() == std::vector<double>{1.0, -4.0, 8.0});
    CHECK((x * 2.0).to_vector() == std::vector<double>{1.0, -4.0, 8.0});
    CHECK((x / 2.0).to_vector() == std::vector<double>{0.25, -1.0, 2.0});
    CHECK((1.0 / x).to_vector() == std::vector<double>{2.0, -0.5, 0.25});
    CHECK((2 - x).to_vector() == std::vector<double>{1.5, 4.0, -2.0});  // an int literal converts
    // d/dx sum(1 + x) + sum(1 - x) * 3 + sum(1 / x) = 1 - 3 - 1/x^2
    sum(1.0 + x).backward();
    (sum(1.0 - x) * 3.0).backward();
    sum(1.0 / x).backward();
    const auto gx = x.grad().to_vector();
    const std::vector<double> xs{0.5, -2.0, 4.0};
    for (size_t i = 0; i < 3; ++i) CHECK(gx[i] == doctest::Approx(1 - 3 - 1 / (xs[i] * xs[i])));
    CHECK((1.0 / x).grad_fn_name() == "rdiv_scalar");
    CHECK((1.0 - x).grad_fn_name() == "rsub_scalar");
}

TEST_CASE("cast_op / to_double / to_float: values, a gradient back in the input's type, no history when not needed") {
    auto x = Tensor<float>::from({1.5f, -2.f}, {2}).set_requires_grad(true);
    const Tensor<double> d = to_double(x);
    CHECK(d.to_vector() == std::vector<double>{1.5, -2.0});
    CHECK(d.grad_fn_name() == "cast");
    // A loss accumulated in double over a float input: d/dx sum(x^2) = 2x, arriving in float.
    sum(d * d).backward();
    REQUIRE(x.grad().defined());
    CHECK(x.grad().to_vector() == std::vector<float>{3.f, -4.f});
    // Through an intermediate float op and back to float, used twice (retain_graph).
    x.zero_grad();
    const Tensor<float> y = to_float(to_double(x * x) * 2.0);  // 2 x^2
    sum(y).backward(Tensor<float>(), true);
    CHECK(x.grad().to_vector() == std::vector<float>{6.f, -8.f});
    sum(y).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{12.f, -16.f});
    // Same type: an identity node; no grad needed: a plain copy without history.
    CHECK(cast_op<float>(x).grad_fn_name() == "cast");
    CHECK(to_double(x.detach()).grad_fn_name().empty());
    {
        NoGrad ng;
        CHECK(to_double(x).grad_fn_name().empty());
    }
    CHECK(x.cast<double>().grad_fn_name().empty());  // Tensor::cast stays history-free
}

TEST_CASE("cast_op in a diamond across dtypes: correct when the cast's branch runs first, else a named error") {
    // h is reached twice by one backward: directly in float and through a double branch.
    auto x = Tensor<float>::from({1.f, 2.f}, {2}).set_requires_grad(true);
    {
        const Tensor<float> h = x * 3.0;
        // d/dx [sum(h) + sum(h^2)] = 3 + 18 x
        (sum(h) + to_float(sum(square(to_double(h))))).backward();
        CHECK(x.grad().to_vector() == std::vector<float>{21.f, 39.f});
    }
    x.zero_grad();
    {
        const Tensor<float> h = x * 3.0;
        // The other order: the direct sweep frees h's node before the cast reaches it.
        CHECK_THROWS_WITH_AS((to_float(sum(square(to_double(h)))) + sum(h)).backward(),
                             Contains("was freed by an earlier backward() or grad(); pass retain_graph=true"), Error);
    }
    x.zero_grad();
    {
        const Tensor<float> h = x * 3.0;
        (to_float(sum(square(to_double(h)))) + sum(h)).backward(Tensor<float>(), true);  // the documented way out
        CHECK(x.grad().to_vector() == std::vector<float>{21.f, 39.f});
    }
    // A leaf reached both ways needs nothing special.
    x.zero_grad();
    (to_float(sum(square(to_double(x)))) + sum(x)).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{3.f, 5.f});
}

TEST_CASE("nn::Embedding: N(0,1) weight, lookup, gradient rows, out-of-range index named") {
    Generator g(5);
    nn::Embedding<float> emb(10, 4, g);
    CHECK(emb.weight.shape() == Shape{10, 4});
    CHECK(emb.weight.requires_grad());
    CHECK(emb.named_parameters().size() == 1);
    CHECK(emb.named_parameters()[0].first == "weight");
    Generator same(5);
    CHECK(emb.weight.to_vector() == Tensor<float>::randn({10, 4}, same).to_vector());
    const auto idx = Tensor<int64_t>::from({3, 0, 3}, {1, 3});
    const auto y = emb(idx);
    CHECK(y.shape() == Shape{1, 3, 4});
    CHECK(y.select(1, 0).select(0, 0).to_vector() == emb.weight.select(0, 3).to_vector());
    sum(y).backward();
    const auto gw = emb.weight.grad();
    CHECK(gw.select(0, 3).to_vector() == std::vector<float>(4, 2.f));
    CHECK(gw.select(0, 0).to_vector() == std::vector<float>(4, 1.f));
    CHECK(gw.select(0, 1).to_vector() == std::vector<float>(4, 0.f));
    CHECK_THROWS_WITH_AS(emb(Tensor<int64_t>::from({1, 10}, {2})),
                         Contains("embedding: index 10 at position 1 is out of range for 10 embeddings"), Error);
    CHECK_THROWS_WITH_AS(emb(Tensor<int64_t>::from({-1}, {1})), Contains("index -1 at position 0"), Error);
    // Indices held as whole floats (a Sequential's first layer); a fraction is named.
    CHECK(emb(Tensor<float>::from({3.f}, {1})).to_vector() == emb.weight.select(0, 3).to_vector());
    CHECK_THROWS_WITH_AS(emb(Tensor<float>::from({1.f, 2.5f}, {2})),
                         Contains("nn::Embedding: index 2.5 at position 1 is not a whole number"), Error);
}

TEST_CASE("nn::Dropout: drops while training with the generator given, identity in eval mode") {
    Generator g(9);
    nn::Dropout<double> drop(0.5, g);
    const auto x = Tensor<double>::ones({400});
    const auto y = drop(x).to_vector();
    size_t zeros = 0;
    for (double v : y) {
        CHECK((v == 0.0 || v == 2.0));
        zeros += v == 0.0;
    }
    CHECK(zeros > 150);
    CHECK(zeros < 250);
    CHECK(g.offset == 100);  // the layer drew from the generator it holds
    Generator ref(9);
    CHECK(dropout(x, 0.5, ref).to_vector() == y);  // the same mask as the op
    drop.eval();
    CHECK(drop(x).to_vector() == x.to_vector());
    CHECK(g.offset == 100);
    CHECK_THROWS_WITH_AS(nn::Dropout<double>(1.5, g), Contains("nn::Dropout: probability must be in [0, 1], got 1.5"),
                         Error);
}

TEST_CASE("nn::Sequential: children named 0, 1, ..., layers chained in order, train/eval reaches them") {
    Generator g(2);
    nn::Sequential<double> seq(std::make_unique<nn::Linear<double>>(4, 6, g), std::make_unique<nn::GELU<double>>(),
                               std::make_unique<nn::Dropout<double>>(0.5, g));
    auto& last = seq.push_back(std::make_unique<nn::LayerNorm<double>>(6));
    CHECK(seq.size() == 4);
    std::vector<std::string> names;
    for (const auto& [n, p] : seq.named_parameters()) names.push_back(n);
    CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias"});
    CHECK(&seq.at<nn::LayerNorm<double>>(3) == &last);
    CHECK_THROWS_WITH_AS(seq.at<nn::Linear<double>>(1), Contains("nn::Sequential::at: layer 1 is not"), Error);
    CHECK_THROWS_WITH_AS(seq[7], Contains("nn::Sequential: layer 7 out of range for 4 layers"), Error);

    seq.eval();
    CHECK_FALSE(seq[2].training());
    const auto x = Tensor<double>::randn({3, 4}, g);
    const auto& lin = seq.at<nn::Linear<double>>(0);
    const auto want = last(gelu(lin(x)));
    CHECK(seq(x).to_vector() == want.to_vector());
    seq.train();
    CHECK(seq[2].training());
    CHECK(seq(x).to_vector() != want.to_vector());  // dropout is on again

    // Nested, and gradients reach every parameter.
    nn::Sequential<double> outer(std::make_unique<nn::Sequential<double>>(std::make_unique<nn::Linear<double>>(4, 2, g)),
                                 std::make_unique<nn::ReLU<double>>());
    CHECK(outer.named_parameters().front().first == "0.0.weight");
    sum(square(outer(x))).backward();
    for (const auto& p : outer.parameters()) CHECK(p.grad().defined());
}

TEST_CASE("nn::MLP: Linear/activation/Linear with torchvision's names, torch.nn.Linear init, forward") {
    Generator g(4);
    nn::MLP<float> mlp({5, 16, 16, 3}, g);
    std::vector<std::string> names;
    for (const auto& [n, p] : mlp.named_parameters()) names.push_back(n);
    CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
    CHECK(mlp.size() == 5);
    CHECK(mlp.num_parameters() == 5 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3);
    const auto& l0 = mlp.at<nn::Linear<float>>(0);
    const auto w = l0.weight.to_vector();
    const float bound = 1.0f / std::sqrt(5.0f);
    for (float v : w) CHECK(std::abs(v) <= bound);
    const auto x = Tensor<float>::randn({2, 5}, g);
    const auto want = mlp.at<nn::Linear<float>>(4)(
        gelu(mlp.at<nn::Linear<float>>(2)(gelu(l0(x)))));
    CHECK(mlp(x).to_vector() == want.to_vector());
    nn::MLP<float> relu_mlp({2, 3}, g, nn::Act::relu);
    CHECK(relu_mlp.size() == 1);
    nn::MLP<float> r2({2, 3, 1}, g, nn::Act::relu);
    CHECK(r2.at<nn::Activation<float>>(1).act == nn::Act::relu);
    CHECK_THROWS_WITH_AS(nn::MLP<float>({4}, g), Contains("nn::MLP: needs at least {in, out}"), Error);
    CHECK_THROWS_WITH_AS(nn::MLP<float>({4, 0, 2}, g), Contains("nn::MLP: dimension 1 is 0"), Error);
}

TEST_CASE("a training loop with the helpers: Embedding + MLP, AdamW, clip_grad_norm_, argmax accuracy") {
    // Learn to map token t in [0, 8) to class t % 3.
    Generator g(11);
    nn::Sequential<float> model(std::make_unique<nn::Embedding<float>>(8, 8, g),
                                std::make_unique<nn::MLP<float>>(std::vector<int64_t>{8, 16, 3}, g));
    AdamW<float>::Options o;
    o.lr = 0.05;
    o.weight_decay = 0.0;
    AdamW<float> opt(model.parameters(), o);
    const auto tokens = Tensor<int64_t>::arange(8);
    std::vector<int64_t> labels;
    for (int64_t t = 0; t < 8; ++t) labels.push_back(t % 3);
    const auto y = Tensor<int64_t>::from(labels, {8});
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
        opt.zero_grad();
        const auto logits = model(tokens.cast<float>());
        const auto loss = cross_entropy(logits, y);
        loss.backward();
        clip_grad_norm_(model.parameters(), 1.0);
        opt.step();
        (step == 0 ? first : last) = loss.item();
    }
    CHECK(last < first * 0.1);
    CHECK(argmax(model(tokens.cast<float>()), -1).to_vector() == labels);
}
