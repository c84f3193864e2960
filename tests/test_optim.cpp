// Optimisers: PyTorch's update rules step by step, parameter groups, skipping missing grads.
// Expected values were computed from torch.optim's documented algorithms in Python floats.
#include <doctest/doctest.h>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

namespace {
// Sets p.grad to g without running a graph: d(sum(p * g))/dp = g.
void set_grad(Tensor<double>& p, double g) {
    p.zero_grad();
    sum(p * Tensor<double>::full(p.shape(), g)).backward();
}
}  // namespace

TEST_CASE("AdamW follows torch.optim.AdamW (decoupled weight decay, bias correction)") {
    auto p = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    AdamW<double> opt({p}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
    set_grad(p, 0.5);
    opt.step();
    CHECK(p.item() == doctest::Approx(0.899000002).epsilon(1e-14));
    set_grad(p, -0.25);
    opt.step();
    CHECK(p.item() == doctest::Approx(0.8714672987058463).epsilon(1e-14));
    CHECK(opt.state(0, 0).step == 2);
}

TEST_CASE("AdamW weight decay is decoupled: with a zero gradient, p shrinks by (1 - lr wd) per step") {
    auto p = Tensor<double>::from({3.0}, {1}).set_requires_grad(true);
    AdamW<double> opt({p}, {.lr = 0.1, .weight_decay = 0.5});
    for (int i = 0; i < 3; ++i) {
        set_grad(p, 0.0);
        opt.step();
    }
    CHECK(p.item() == doctest::Approx(3.0 * 0.95 * 0.95 * 0.95).epsilon(1e-14));
}

TEST_CASE("SGD with momentum, weight decay and Nesterov follows torch.optim.SGD") {
    auto p = Tensor<double>::from({2.0}, {1}).set_requires_grad(true);
    SGD<double> opt({p}, {.lr = 0.5, .momentum = 0.9, .weight_decay = 0.1});
    set_grad(p, 1.0);
    opt.step();
    CHECK(p.item() == doctest::Approx(1.4).epsilon(1e-14));
    set_grad(p, -3.0);
    opt.step();
    CHECK(p.item() == doctest::Approx(2.29).epsilon(1e-14));

    auto q = Tensor<double>::from({2.0}, {1}).set_requires_grad(true);
    SGD<double> nest({q}, {.lr = 0.5, .momentum = 0.9, .nesterov = true});
    set_grad(q, 1.0);
    nest.step();
    CHECK(q.item() == doctest::Approx(1.05).epsilon(1e-14));
    set_grad(q, -3.0);
    nest.step();
    CHECK(q.item() == doctest::Approx(3.495).epsilon(1e-14));
}

TEST_CASE("parameter groups carry their own lr and weight decay, missing grads are skipped") {
    auto alpha = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    auto head = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    auto idle = Tensor<double>::from({1.0}, {1}).set_requires_grad(true);
    SGD<double> opt({{{alpha}, 0.1, 0.0, "alpha"}, {{head, idle}, std::nullopt, std::nullopt, "head"}},
                    {.lr = 0.01, .weight_decay = 0.0});
    set_grad(alpha, 1.0);
    set_grad(head, 1.0);
    opt.step();
    CHECK(alpha.item() == doctest::Approx(0.9));
    CHECK(head.item() == doctest::Approx(0.99));
    CHECK(idle.item() == 1.0);
    CHECK(opt.lr(0) == 0.1);
    CHECK(opt.lr(1) == 0.01);
    opt.set_lr(1, 0.5);
    opt.step();
    CHECK(head.item() == doctest::Approx(0.49));
    opt.zero_grad();
    CHECK_FALSE(alpha.grad().defined());
}

TEST_CASE("AdamW minimises a least-squares problem") {
    Generator g(12);
    auto A = Tensor<double>::randn({20, 4}, g);
    auto x_true = Tensor<double>::from({1, -2, 0.5, 3}, {4, 1});
    auto y = matmul(A, x_true);
    auto x = Tensor<double>::zeros({4, 1}).set_requires_grad(true);
    AdamW<double> opt({x}, {.lr = 0.05, .weight_decay = 0.0});
    for (int i = 0; i < 1500; ++i) {
        opt.zero_grad();
        auto r = matmul(A, x) - y;
        mean(r * r).backward();
        opt.step();
    }
    for (int64_t i = 0; i < 4; ++i) CHECK(x.at({i, 0}) == doctest::Approx(x_true.at({i, 0})).epsilon(1e-4));
}

TEST_CASE("optimiser arguments are checked") {
    auto p = Tensor<double>::ones({1}).set_requires_grad(true);
    CHECK_THROWS_WITH_AS(AdamW<double>({p}, {.lr = -1.0}), doctest::Contains("learning rate"), Error);
    CHECK_THROWS_WITH_AS(AdamW<double>({p}, {.beta1 = 1.0}), doctest::Contains("betas"), Error);
    CHECK_THROWS_WITH_AS(SGD<double>({p}, {.lr = 0.1, .nesterov = true}), doctest::Contains("nesterov"), Error);
    auto nonleaf = p * 2.0;
    CHECK_THROWS_WITH_AS(SGD<double>({nonleaf}, {}), doctest::Contains("leaf"), Error);
}

TEST_CASE("Module::zero_grad drops frozen layers' gradients, train_only sets the trainable set whatever came before") {
    Generator gen(4);
    nn::CoeffAttention<double> attn(8, 2, gen);
    attn.enable_coeff(true);
    const auto x = Tensor<double>::randn({1, 3, 8}, gen);
    sum(attn(x)).backward();
    attn.set_requires_grad(false);  // frozen after a backward: the gradients are still there
    CHECK(attn.alpha.grad().defined());
    attn.zero_grad();
    for (const auto& [name, p] : attn.named_parameters()) {
        CAPTURE(name);
        CHECK_FALSE(p.grad().defined());
    }
    // Whatever was trainable before, exactly the named ones are after.
    attn.set_requires_grad(true);
    CHECK(attn.train_only({"coeff_alpha", "*.bias"}) == 4 + 4 * 8);
    for (const auto& [name, p] : attn.named_parameters()) {
        CAPTURE(name);
        CHECK(p.requires_grad() == (name == "coeff_alpha" || name.ends_with(".bias")));
    }
    CHECK_THROWS_WITH_AS(attn.train_only({"coeff_alpha", "query.wieght"}),
                         doctest::Contains("Module::train_only: 'query.wieght' names no parameter"), Error);
}
