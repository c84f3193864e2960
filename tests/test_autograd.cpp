// Autograd semantics: accumulation, retain_graph, no-grad, frozen weights, deep graphs.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include <coeffnet/autograd/gradcheck.hpp>
#include <coeffnet/coeffnet.hpp>

#include "test_util.hpp"

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

TEST_CASE("a second backward through a freed graph throws, retain_graph keeps it") {
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

TEST_CASE("NoGrad records nothing, detach cuts the graph, requires_grad only on leaves") {
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
    const int64_t flops_before = gemm_flops().load();
    l.backward();
    CHECK(gemm_count().load() - before == 1);
    CHECK(gemm_flops().load() - flops_before == 2 * 3 * 4 * 2);  // dA = G [3,2] M^T [2,4]: 2 M N K

    // gemm_flops counts 2 M N K per batch item, broadcast batches included.
    const int64_t f0 = gemm_flops().load();
    (void)matmul(Tensor<float>::zeros({2, 3, 5, 7}), Tensor<float>::zeros({3, 7, 4}));
    CHECK(gemm_flops().load() - f0 == 2 * (2 * 3) * 5 * 4 * 7);
    const int64_t f1 = gemm_flops().load();
    (void)linear(Tensor<float>::zeros({4, 5, 8}), w);  // [20, 8] x [8, 6]
    CHECK(gemm_flops().load() - f1 == 2 * 20 * 6 * 8);
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

// ---- retain_grad, hooks, grad(), gradcheck ------------------------------------------------

namespace {

// The largest |a - b| over the largest |b|: a relative error on the reference's scale.
double rel_diff(const Tensor<double>& a, const Tensor<double>& b) {
    REQUIRE(a.defined());
    REQUIRE(b.defined());
    REQUIRE(a.shape() == b.shape());
    const auto va = a.to_vector(), vb = b.to_vector();
    double d = 0, scale = 0;
    for (size_t i = 0; i < va.size(); ++i) {
        d = std::max(d, std::abs(va[i] - vb[i]));
        scale = std::max(scale, std::abs(vb[i]));
    }
    return scale == 0 ? d : d / scale;
}

// A custom op written with record(): out = a * a * b (elementwise, same shapes), with raw loops.
// `wrong` scales the backward: every gradient by wrong.all, and b's element wrong.element (if
// >= 0) by wrong.element_scale, to check that gradcheck catches it.
struct Wrong {
    double all = 1.0;
    int64_t element = -1;
    double element_scale = 1.0;
};
Tensor<double> sq_mul(const Tensor<double>& a, const Tensor<double>& b, Wrong wrong = {}) {
    const Tensor<double> ac = a.contiguous().detach(), bc = b.contiguous().detach();  // saved: detached
    Tensor<double> out = Tensor<double>::empty(a.shape());
    for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = ac.data()[i] * ac.data()[i] * bc.data()[i];
    return record<double>(out, "sq_mul", {a, b}, [ac, bc, wrong](const Tensor<double>& g, const std::vector<bool>& needs) {
        const Tensor<double> gc = g.contiguous();
        std::vector<Tensor<double>> r(2);
        const int64_t n = gc.numel();
        if (needs[0]) {
            r[0] = Tensor<double>::empty(ac.shape());
            for (int64_t i = 0; i < n; ++i)
                r[0].data()[i] = wrong.all * 2.0 * ac.data()[i] * bc.data()[i] * gc.data()[i];
        }
        if (needs[1]) {
            r[1] = Tensor<double>::empty(bc.shape());
            for (int64_t i = 0; i < n; ++i)
                r[1].data()[i] = wrong.all * (i == wrong.element ? wrong.element_scale : 1.0) * ac.data()[i] *
                                 ac.data()[i] * gc.data()[i];
        }
        return r;
    });
}

}  // namespace

TEST_CASE("retain_grad keeps an intermediate's gradient, equal to the analytic one, accumulating") {
    auto x = Tensor<double>::from({0.3, -1.2, 2.0}, {3}).set_requires_grad(true);
    auto h = x * 2.0;  // intermediate
    auto other = x * 3.0;  // not retained
    h.retain_grad();
    CHECK(h.retains_grad());
    CHECK_FALSE(other.retains_grad());
    auto y = sum(exp(h)) + sum(other);  // dy/dh = exp(h) = exp(2x)
    y.backward({}, true);
    auto expected = Tensor<double>::from({std::exp(0.6), std::exp(-2.4), std::exp(4.0)}, {3});
    CHECK(rel_diff(h.grad(), expected) <= 1e-14);
    CHECK_FALSE(other.grad().defined());  // intermediates keep nothing unless asked
    CHECK(rel_diff(x.grad(), expected * 2.0 + 3.0) <= 1e-14);
    y.backward();  // accumulates like a leaf
    CHECK(rel_diff(h.grad(), expected * 2.0) <= 1e-14);
    h.zero_grad();
    CHECK_FALSE(h.grad().defined());

    // On a leaf: a no-op (the leaf keeps its gradient anyway), and retains_grad() stays false.
    auto leaf = Tensor<double>::from({1.0, 2.0}, {2}).set_requires_grad(true);
    leaf.retain_grad();
    CHECK_FALSE(leaf.retains_grad());
    sum(leaf * leaf).backward();
    CHECK(leaf.grad().to_vector() == std::vector<double>{2.0, 4.0});
    // On a tensor without gradient: an error that says so.
    CHECK_THROWS_WITH_AS(Tensor<double>::ones({2}).retain_grad(), doctest::Contains("does not require grad"), Error);
}

TEST_CASE("a hook sees a leaf's total gradient once and may replace it") {
    auto x = Tensor<double>::from({1.5, -2.0}, {2}).set_requires_grad(true);
    int calls = 0;
    std::vector<double> seen;
    const HookId id = x.register_hook([&](const Tensor<double>& g) {
        ++calls;
        seen = g.to_vector();
        return g * 2.0;  // doubles the gradient
    });
    sum(x * x + x).backward();  // x used twice: the hook sees the sum 2x + 1, once
    CHECK(calls == 1);
    CHECK(seen == std::vector<double>{4.0, -3.0});
    CHECK(x.grad().to_vector() == std::vector<double>{8.0, -6.0});  // doubled

    // Removed, it no longer applies; removing again reports that nothing was removed.
    CHECK(x.remove_hook(id));
    CHECK_FALSE(x.remove_hook(id));
    x.zero_grad();
    sum(x * x + x).backward();
    CHECK(calls == 1);
    CHECK(x.grad().to_vector() == std::vector<double>{4.0, -3.0});

    // An undefined return keeps the gradient; a hook id of another tensor removes nothing here.
    auto z = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    const HookId observe = z.register_hook([&](const Tensor<double>&) { ++calls; return Tensor<double>(); });
    CHECK_FALSE(x.remove_hook(observe));
    sum(z * 5.0).backward();
    CHECK(calls == 2);
    CHECK(z.grad().item() == 5.0);

    // backward() from the leaf itself runs its hooks too.
    z.zero_grad();
    z.register_hook([](const Tensor<double>& g) { return g * 3.0; });
    z.backward(Tensor<double>::from({2.0}, {1}));
    CHECK(calls == 3);
    CHECK(z.grad().item() == 6.0);
}

TEST_CASE("hooks on an intermediate: run in order, before retain_grad, and change what flows on") {
    auto x = Tensor<double>::from({1.0, 2.0, 3.0}, {3}).set_requires_grad(true);
    auto h = x * x;
    h.retain_grad();
    h.register_hook([](const Tensor<double>& g) { return g + 1.0; });
    const HookId twice = h.register_hook([](const Tensor<double>& g) { return g * 2.0; });
    sum(h * 3.0).backward({}, true);  // dL/dh = 3 -> (3 + 1) * 2 = 8; dL/dx = 8 * 2x
    CHECK(h.grad().to_vector() == std::vector<double>{8.0, 8.0, 8.0});
    CHECK(x.grad().to_vector() == std::vector<double>{16.0, 32.0, 48.0});

    h.remove_hook(twice);
    x.zero_grad();
    h.zero_grad();
    sum(h * 3.0).backward();
    CHECK(h.grad().to_vector() == std::vector<double>{4.0, 4.0, 4.0});
    CHECK(x.grad().to_vector() == std::vector<double>{8.0, 16.0, 24.0});

    // The hook lives with the graph (as in PyTorch): it runs after the tensor's last handle is gone.
    int fired = 0;
    Tensor<double> out;
    {
        auto t = x * 2.0;
        t.register_hook([&](const Tensor<double>& g) {
            ++fired;
            return g;
        });
        out = sum(t);
    }
    out.backward();
    CHECK(fired == 1);

    // A hook returning the wrong shape, and a hook on a tensor without gradient, are errors.
    auto k = x * 1.0;
    k.register_hook([](const Tensor<double>&) { return Tensor<double>::ones({2}); });
    CHECK_THROWS_WITH_AS(sum(k).backward(), doctest::Contains("returned a gradient of shape [2]"), Error);
    CHECK_THROWS_WITH_AS(Tensor<double>::ones({2}).register_hook([](const Tensor<double>& g) { return g; }),
                         doctest::Contains("register_hook: the tensor does not require grad"), Error);
}

TEST_CASE("grad() returns what backward() accumulates, and writes no .grad()") {
    Generator gen(21);
    auto x = Tensor<double>::randn({3, 4}, gen).set_requires_grad(true);
    auto w = Tensor<double>::randn({5, 4}, gen).set_requires_grad(true);
    auto b = Tensor<double>::randn({5}, gen).set_requires_grad(true);
    auto loss = [&] { return sum(tanh(linear(x, w, b)) * tanh(linear(x, w, b))); };

    auto h = linear(x, w, b);  // an intermediate as an input too
    auto l = sum(tanh(h) * tanh(h));
    CHECK_FALSE(x.grad().defined());
    const auto g = grad({l}, {x, w, b, h});
    REQUIRE(g.size() == 4);
    CHECK_FALSE(x.grad().defined());
    CHECK_FALSE(w.grad().defined());
    CHECK_FALSE(b.grad().defined());
    CHECK_FALSE(h.grad().defined());

    loss().backward();
    CHECK(rel_diff(g[0], x.grad()) <= 1e-14);
    CHECK(rel_diff(g[1], w.grad()) <= 1e-14);
    CHECK(rel_diff(g[2], b.grad()) <= 1e-14);
    {
        NoGrad ng;
        const auto t = tanh(h);
        CHECK(rel_diff(g[3], (t * 2.0) * ((t * t) * -1.0 + 1.0)) <= 1e-14);  // 2 tanh(h) (1 - tanh(h)^2)
    }

    // The graph is freed unless retain_graph; a retained intermediate is not written either.
    auto h2 = x * 2.0;
    h2.retain_grad();
    auto l2 = sum(exp(h2));
    const auto g2 = grad(l2, x, Tensor<double>(), /*retain_graph=*/true);
    CHECK_FALSE(h2.grad().defined());
    CHECK(rel_diff(g2, exp(x.detach() * 2.0) * 2.0) <= 1e-14);
    grad(l2, x);
    const std::string freed = test::error_of([&] { grad(l2, x); });
    CHECK(test::contains(freed, "grad: the graph through '"));
    CHECK(test::contains(freed, "pass retain_graph=true"));
}

TEST_CASE("grad(): grad_outputs weight several outputs, only the needed part of the graph runs") {
    auto x = Tensor<double>::from({1.0, -2.0}, {2}).set_requires_grad(true);
    auto y1 = x * 3.0;
    auto y2 = x * x;
    const auto v1 = Tensor<double>::from({1.0, 10.0}, {2});
    const auto v2 = Tensor<double>::from({0.5, 2.0}, {2});
    const auto g = grad({y1, y2}, {x}, {v1, v2});
    CHECK(g[0].to_vector() == std::vector<double>{3.0 * 1.0 + 2.0 * 1.0 * 0.5, 3.0 * 10.0 + 2.0 * -2.0 * 2.0});

    // d loss / d input of a linear layer: no weight-gradient GEMM runs (the weight is not asked for).
    Generator gen(4);
    auto in = Tensor<float>::randn({4, 8}, gen).set_requires_grad(true);
    auto wt = Tensor<float>::randn({6, 8}, gen).set_requires_grad(true);
    auto out = sum(linear(in, wt));
    const int64_t before = gemm_count().load();
    const auto gi = grad({out}, {in});
    CHECK(gemm_count().load() - before == 1);
    CHECK(gi[0].shape() == Shape{4, 8});
    CHECK_FALSE(wt.grad().defined());
}

TEST_CASE("grad(): unused inputs throw unless allow_unused, bad arguments name the problem") {
    auto x = Tensor<double>::from({1.0, 2.0}, {2}).set_requires_grad(true);
    auto unused = Tensor<double>::from({3.0}, {1}).set_requires_grad(true);
    auto y = sum(x * x);
    CHECK_THROWS_WITH_AS(grad({y}, {x, unused}, {}, true),
                         doctest::Contains("input 1 (shape [1], a leaf) was not used to compute the outputs"), Error);
    const auto g = grad({y}, {x, unused}, {}, true, /*allow_unused=*/true);
    CHECK(g[0].to_vector() == std::vector<double>{2.0, 4.0});
    CHECK_FALSE(g[1].defined());

    CHECK_THROWS_WITH_AS(grad({y}, {Tensor<double>::ones({2})}, {}, true),
                         doctest::Contains("input 0 (shape [2]) does not require grad"), Error);
    CHECK_THROWS_WITH_AS(grad({Tensor<double>::ones({1})}, {x}), doctest::Contains("output 0"), Error);
    auto v = x * 2.0;
    CHECK_THROWS_WITH_AS(grad({v}, {x}, {}, true), doctest::Contains("a non-scalar output needs a grad_outputs entry"),
                         Error);
    CHECK_THROWS_WITH_AS(grad({v}, {x}, {Tensor<double>::ones({3})}, true),
                         doctest::Contains("grad_outputs[0] has shape [3] for output 0 of shape [2]"), Error);
    CHECK_THROWS_WITH_AS(grad({v, y}, {x}, {Tensor<double>::ones({2})}, true),
                         doctest::Contains("1 grad_outputs for 2 outputs"), Error);
    // Hooks on the way run in grad() too.
    auto h = x * 1.0;
    h.register_hook([](const Tensor<double>& gr) { return gr * 10.0; });
    CHECK(grad(sum(h), x).to_vector() == std::vector<double>{10.0, 10.0});
}

TEST_CASE("grad() and backward() through a custom op written with record()") {
    auto a = Tensor<double>::from({0.5, -1.5, 2.0}, {3}).set_requires_grad(true);
    auto b = Tensor<double>::from({1.25, 0.75, -0.5}, {3}).set_requires_grad(true);
    auto y = sq_mul(a, b);
    CHECK(y.grad_fn_name() == "sq_mul");
    const auto g = grad({sum(y)}, {a, b}, {}, true);
    CHECK(g[0].to_vector() == std::vector<double>{2 * 0.5 * 1.25, 2 * -1.5 * 0.75, 2 * 2.0 * -0.5});
    CHECK(g[1].to_vector() == std::vector<double>{0.25, 2.25, 4.0});
    CHECK_FALSE(a.grad().defined());
    sum(y).backward();
    CHECK(a.grad().to_vector() == g[0].to_vector());
    CHECK(b.grad().to_vector() == g[1].to_vector());
}

TEST_CASE("gradcheck passes for a correct custom op and for built-in ops") {
    Generator gen(8);
    auto a = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    auto b = Tensor<double>::uniform({2, 3}, gen, -2.0, -0.5).set_requires_grad(true);
    const auto a_before = a.to_vector();
    const auto r = gradcheck([](const std::vector<Tensor<double>>& x) { return sq_mul(x[0], x[1]); }, {a, b});
    CHECK(r.passed);
    REQUIRE(r.inputs.size() == 2);
    for (const auto& in : r.inputs) {
        CHECK(in.checked);
        CHECK(in.passed);
        CHECK(in.max_rel_error < 1e-7);  // central differences in double: ~eps^2 and rounding
    }
    CHECK(r.message.empty());
    CHECK(a.to_vector() == a_before);  // inputs untouched
    CHECK_FALSE(a.grad().defined());   // no .grad() written

    // Built-in ops, a non-scalar output, and an input held fixed (no requires_grad).
    auto m = Tensor<double>::randn({3, 4}, gen).set_requires_grad(true);
    auto w = Tensor<double>::randn({2, 4}, gen);
    const auto r2 = gradcheck([](const std::vector<Tensor<double>>& x) { return softmax(linear(x[0], x[1])); }, {m, w});
    CHECK(r2.passed);
    CHECK(r2.inputs[0].checked);
    CHECK_FALSE(r2.inputs[1].checked);
    CHECK_THROWS_WITH_AS(gradcheck([](const std::vector<Tensor<double>>& x) { return x[0]; }, {w}),
                         doctest::Contains("no input requires grad"), Error);
}

TEST_CASE("gradcheck fails for a custom op whose backward is off by 5%") {
    Generator gen(9);
    auto a = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    auto b = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    GradcheckOptions report_only;
    report_only.raise = false;

    auto scaled = [](const std::vector<Tensor<double>>& x) { return sq_mul(x[0], x[1], Wrong{1.05}); };
    const auto r = gradcheck(scaled, {a, b}, report_only);
    CHECK_FALSE(r.passed);
    CHECK_FALSE(r.inputs[0].passed);
    CHECK_FALSE(r.inputs[1].passed);
    CHECK(r.inputs[0].max_rel_error == doctest::Approx(0.05).epsilon(0.01));
    CHECK(r.inputs[0].analytic == doctest::Approx(1.05 * r.inputs[0].numeric).epsilon(1e-6));
    // By default it throws, naming the input and its worst element.
    const std::string msg = test::error_of([&] { (void)gradcheck(scaled, {a, b}); });
    CHECK(test::contains(msg, "gradcheck: input 0 (shape [2, 3])"));
    CHECK(test::contains(msg, "worst at input element ["));
    CHECK(test::contains(msg, "in full mode (the whole Jacobian)"));

    // One wrong element of input 1's gradient: input 0 passes, input 1 fails at that element.
    auto one_bad = [](const std::vector<Tensor<double>>& x) {
        return sq_mul(x[0], x[1], Wrong{1.0, 4, 1.05});
    };
    const auto r1 = gradcheck(one_bad, {a, b}, report_only);
    CHECK_FALSE(r1.passed);
    CHECK(r1.inputs[0].passed);
    CHECK_FALSE(r1.inputs[1].passed);
    CHECK(r1.inputs[1].worst_element == 4);
    CHECK(r1.inputs[1].worst_output == 4);
    const std::string msg1 = test::error_of([&] { (void)gradcheck(one_bad, {a, b}); });
    CHECK(test::contains(msg1, "input 1 (shape [2, 3])"));
    CHECK(test::contains(msg1, "input element [1, 1] for output element [1, 1]"));
}

TEST_CASE("gradcheck fast mode (v^T J for a seeded random v) passes for correct ops") {
    Generator gen(8);
    auto a = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    auto b = Tensor<double>::uniform({2, 3}, gen, -2.0, -0.5).set_requires_grad(true);
    GradcheckOptions fast;
    fast.fast = true;
    auto f = [](const std::vector<Tensor<double>>& x) { return sq_mul(x[0], x[1]); };
    const auto r = gradcheck(f, {a, b}, fast);
    CHECK(r.passed);
    CHECK(r.message.empty());
    REQUIRE(r.inputs.size() == 2);
    for (const auto& in : r.inputs) {
        CHECK(in.checked);
        CHECK(in.passed);
        CHECK(in.max_rel_error < 1e-7);
        CHECK(in.worst_output == -1);  // v^T J has no output index
        CHECK(in.worst_element >= 0);
    }
    CHECK_FALSE(a.grad().defined());  // no .grad() written
    // The documented projection: v = randn(output shape, Generator(seed)), seed 99 by default;
    // the reported analytic value is (v^T J) at the worst element, i.e. grad(out, x, v) there.
    CHECK(fast.seed == 99);
    {
        Generator vg(99);
        const auto v = Tensor<double>::randn({2, 3}, vg);
        const auto ac = a.detach().clone().set_requires_grad(true), bc = b.detach().clone().set_requires_grad(true);
        const auto g = grad({sq_mul(ac, bc)}, {ac, bc}, {v});
        for (size_t k = 0; k < 2; ++k)
            CHECK(r.inputs[k].analytic == doctest::Approx(g[k].data()[r.inputs[k].worst_element]).epsilon(1e-12));
    }
    // Another seed: another v, still passing.
    GradcheckOptions other = fast;
    other.seed = 7;
    const auto r7 = gradcheck(f, {a, b}, other);
    CHECK(r7.passed);
    CHECK(r7.inputs[1].analytic != r.inputs[1].analytic);

    // Built-in ops, a larger non-scalar output, and an input held fixed (no requires_grad).
    auto m = Tensor<double>::randn({5, 8}, gen).set_requires_grad(true);
    auto w = Tensor<double>::randn({6, 8}, gen);
    auto bias = Tensor<double>::randn({6}, gen).set_requires_grad(true);
    const auto r2 = gradcheck(
        [](const std::vector<Tensor<double>>& x) { return softmax(linear(x[0], x[1], x[2])); }, {m, w, bias}, fast);
    CHECK(r2.passed);
    CHECK(r2.inputs[0].checked);
    CHECK_FALSE(r2.inputs[1].checked);
    CHECK(r2.inputs[2].checked);
    CHECK(r2.inputs[0].max_rel_error < 1e-7);
    CHECK(r2.inputs[2].max_rel_error < 1e-7);
}

TEST_CASE("gradcheck fast mode fails for a custom op whose backward is off by 5%, naming the input") {
    Generator gen(9);
    auto a = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    auto b = Tensor<double>::uniform({2, 3}, gen, 0.5, 2.0).set_requires_grad(true);
    GradcheckOptions fast;
    fast.fast = true;
    GradcheckOptions report_only = fast;
    report_only.raise = false;

    // The whole backward scaled: both inputs fail, analytic = 1.05 numeric everywhere, so the
    // relative error is 0.05 / 1.05.
    auto scaled = [](const std::vector<Tensor<double>>& x) { return sq_mul(x[0], x[1], Wrong{1.05}); };
    const auto r = gradcheck(scaled, {a, b}, report_only);
    CHECK_FALSE(r.passed);
    CHECK_FALSE(r.inputs[0].passed);
    CHECK_FALSE(r.inputs[1].passed);
    CHECK(r.inputs[0].max_rel_error == doctest::Approx(0.05 / 1.05).scale(0).epsilon(1e-6));
    CHECK(r.inputs[0].analytic == doctest::Approx(1.05 * r.inputs[0].numeric).scale(0).epsilon(1e-6));
    CHECK(r.inputs[0].worst_output == -1);
    // By default it throws, saying the mode and naming the input and its worst element.
    const std::string msg = test::error_of([&] { (void)gradcheck(scaled, {a, b}, fast); });
    CHECK(test::contains(msg, "gradcheck: input 0 (shape [2, 3])"));
    CHECK(test::contains(msg, "in fast mode (v^T J for v = randn([2, 3], Generator(99)))"));
    CHECK(test::contains(msg, "of v^T J: analytic "));
    CHECK_FALSE(test::contains(msg, "output element"));

    // One wrong element of input 1's gradient: input 0 passes, input 1 fails at that element.
    auto one_bad = [](const std::vector<Tensor<double>>& x) { return sq_mul(x[0], x[1], Wrong{1.0, 4, 1.05}); };
    const auto r1 = gradcheck(one_bad, {a, b}, report_only);
    CHECK_FALSE(r1.passed);
    CHECK(r1.inputs[0].passed);
    CHECK(r1.inputs[0].max_rel_error < 1e-7);
    CHECK_FALSE(r1.inputs[1].passed);
    CHECK(r1.inputs[1].worst_element == 4);
    CHECK(r1.inputs[1].worst_output == -1);
    const std::string msg1 = test::error_of([&] { (void)gradcheck(one_bad, {a, b}, fast); });
    CHECK(test::contains(msg1, "gradcheck: input 1 (shape [2, 3])"));
    CHECK(test::contains(msg1, "worst at input element [1, 1] of v^T J"));
    CHECK_FALSE(test::contains(msg1, "input 0"));
}
