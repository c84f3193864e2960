// Autograd semantics: accumulation, retain_graph, no-grad, frozen weights, deep graphs.
#include <doctest/doctest.h>

#include <memory>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

TEST_CASE("a value used twice receives the sum of both gradients") {
    auto x = Tensor<double>::from({1.5, -2.0}, {2}).set_requires_grad(true);
    auto y = sum(x * x + x);  // dy/dx = 2x + 1
    y.backward();
    CHECK(x.grad().to_vector() == std::vector<double>{4.0, -3.0});
}

TEST_CASE("leaf gradients accumulate across backward calls until zero_grad") {
    auto x = Tensor<double>::from({1.0, 2.0}, {2}).set_requires_grad(true);
    sum(x * 3.0).backward();
    sum(x * 3.0).backward();
    CHECK(x.grad().to_vector() == std::vector<double>{6.0, 6.0});
    x.zero_grad();
    CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a second backward through a freed graph throws; retain_graph keeps it") {
    auto x = Tensor<double>::from({2.0}, {1}).set_requires_grad(true);
    auto y = sum(exp(x));
    y.backward();
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph"), Error);

    auto z = sum(exp(x));
    x.zero_grad();
    z.backward({}, true);
    z.backward();
    CHECK(x.grad().item() == doctest::Approx(2.0 * std::exp(2.0)));
}

TEST_CASE("the leaf gradient owns its storage (no aliasing of the upstream gradient)") {
    auto x = Tensor<double>::from({1.0, 2.0}, {2}).set_requires_grad(true);
    auto y = x.reshape({2});
    auto g = Tensor<double>::from({5.0, 6.0}, {2});
    y.backward(g);
    g.at({0}) = 100.0;
    CHECK(x.grad().to_vector() == std::vector<double>{5.0, 6.0});
}

TEST_CASE("backward from a non-scalar needs an upstream gradient of its shape") {
    auto x = Tensor<double>::ones({2, 2}).set_requires_grad(true);
    auto y = x * 2.0;
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("[2, 2]"), Error);
    CHECK_THROWS_WITH_AS(y.backward(Tensor<double>::ones({3})), doctest::Contains("upstream gradient of shape [3]"),
                         Error);
    y.backward(Tensor<double>::full({2, 2}, 0.5));
    CHECK(x.grad().to_vector() == std::vector<double>(4, 1.0));
}

TEST_CASE("NoGrad records nothing; detach cuts the graph; requires_grad only on leaves") {
    auto x = Tensor<double>::ones({3}).set_requires_grad(true);
    {
        NoGrad ng;
        auto y = x * 2.0;
        CHECK_FALSE(y.requires_grad());
        CHECK(y.is_leaf());
    }
    auto y = x * 2.0;
    CHECK(y.requires_grad());
    CHECK(y.grad_fn_name() == "scale");
    CHECK_FALSE(y.detach().requires_grad());
    CHECK_THROWS_AS(y.set_requires_grad(false), Error);
    auto c = Tensor<double>::ones({3});
    CHECK_FALSE((c * 2.0).requires_grad());
    CHECK_THROWS_WITH_AS(sum(c).backward(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("frozen weights cost no weight-gradient GEMM") {
    Generator gen(3);
    auto x = Tensor<float>::randn({4, 5, 8}, gen);
    auto w = Tensor<float>::randn({6, 8}, gen);
    auto b = Tensor<float>::randn({6}, gen);

    auto count_backward = [&](bool x_grad, bool w_grad) {
        auto xi = x.detach().set_requires_grad(x_grad);
        auto wi = w.detach().set_requires_grad(w_grad);
        auto bi = b.detach().set_requires_grad(true);
        auto loss = sum(linear(xi, wi, bi));
        const int64_t before = gemm_count().load();
        loss.backward();
        const int64_t n = gemm_count().load() - before;
        CHECK(xi.grad().defined() == x_grad);
        CHECK(wi.grad().defined() == w_grad);
        CHECK(bi.grad().defined());
        return n;
    };
    CHECK(count_backward(true, true) == 2);
    CHECK(count_backward(true, false) == 1);   // dX only
    CHECK(count_backward(false, true) == 1);   // dW only
    CHECK(count_backward(false, false) == 0);  // bias gradient is a sum, no GEMM

    // The same holds for matmul.
    auto a = Tensor<float>::randn({3, 4}, gen).set_requires_grad(true);
    auto m = Tensor<float>::randn({4, 2}, gen);
    auto l = sum(matmul(a, m));
    const int64_t before = gemm_count().load();
    l.backward();
    CHECK(gemm_count().load() - before == 1);
}

TEST_CASE("a 100,000-op chain differentiates and frees without recursion") {
    // Freeing is observed through weak references to the chain's first node (the deepest one,
    // freed last) and through the leaf's reference count (the first node's edge holds the leaf).
    auto x = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    auto c = Tensor<double>::from({1.0}, {1});
    const long leaf_refs = x.impl().use_count();
    std::weak_ptr<Node<double>> first;
    {
        Tensor<double> h = x;
        for (int i = 0; i < 100000; ++i) {
            h = h * c;
            if (i == 0) first = h.impl()->grad_fn;
        }
        CHECK_FALSE(first.expired());
        CHECK(x.impl().use_count() > leaf_refs);
        sum(h).backward();
        CHECK(x.grad().item() == 1.0);
    }  // h goes out of scope here: the whole chain is freed iteratively
    CHECK(first.expired());
    CHECK(x.impl().use_count() == leaf_refs);
    x.zero_grad();
    {
        // Each step uses the previous value twice, so every node is shared by two edges.
        Tensor<double> h = x;
        for (int i = 0; i < 100000; ++i) {
            h = (h + h) * 0.5;
            if (i == 0) first = h.impl()->grad_fn;
        }
        sum(h).backward({}, true);
        CHECK(x.grad().item() == 1.0);  // each step: 0.5 * g, twice, summed: exactly g
        std::weak_ptr<Node<double>> root = h.impl()->grad_fn;
        Tensor<double> keep = h;  // two holders of the root: freed when the last goes
        h = Tensor<double>();
        CHECK_FALSE(root.expired());
        CHECK_FALSE(first.expired());
        keep = Tensor<double>();
        CHECK(root.expired());
        CHECK(first.expired());
    }
    CHECK(x.impl().use_count() == leaf_refs);
    {
        // A graph never differentiated is freed the same way.
        Tensor<double> h = x;
        for (int i = 0; i < 100000; ++i) {
            h = exp(h * 0.0);
            if (i == 0) first = h.impl()->grad_fn;
        }
        CHECK_FALSE(first.expired());
    }
    CHECK(first.expired());
    CHECK(x.impl().use_count() == leaf_refs);
}

TEST_CASE("views propagate gradients to the base tensor") {
    auto x = Tensor<double>::from({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
    auto s = x.slice(1, 0, 3, 2);  // columns 0 and 2
    auto t = x.transpose(0, 1).select(0, 1);  // column 1
    sum(s * 2.0).backward();
    sum(t).backward();
    CHECK(x.grad().to_vector() == std::vector<double>{2, 1, 2, 2, 1, 2});
}
