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
    for (const auto& named : attn.named_parameters()) {
        const std::string& name = named.first;  // not a structured binding: CAPTURE's lambda names it
        CAPTURE(name);
        CHECK_FALSE(named.second.grad().defined());
    }
    // Whatever was trainable before, exactly the named ones are after.
    attn.set_requires_grad(true);
    CHECK(attn.train_only({"coeff_alpha", "*.bias"}) == 4 + 4 * 8);
    for (const auto& named : attn.named_parameters()) {
        const std::string& name = named.first;
        CAPTURE(name);
        CHECK(named.second.requires_grad() == (name == "coeff_alpha" || name.ends_with(".bias")));
    }
    CHECK_THROWS_WITH_AS(attn.train_only({"coeff_alpha", "query.wieght"}),
                         doctest::Contains("Module::train_only: 'query.wieght' names no parameter"), Error);
}

TEST_CASE("an optimiser with no parameters is an error, as in PyTorch") {
    CHECK_THROWS_WITH_AS(AdamW<double>(std::vector<Tensor<double>>{}, {}), doctest::Contains("AdamW: no parameters"), Error);
    CHECK_THROWS_WITH_AS(SGD<double>(std::vector<Tensor<double>>{}, {}), doctest::Contains("register_module"), Error);
}

TEST_CASE("a module-following optimiser trains parameters added after it was built, and skips frozen ones") {
    Generator gen(6);
    nn::CoeffAttention<double> attn(8, 2, gen);
    const auto x = Tensor<double>::randn({2, 3, 8}, gen);
    const auto target = Tensor<double>::randn({2, 3, 8}, gen);
    // Built before Coeff-Tuning is switched on, and before the freeze: the order that used to
    // leave alpha out of the optimiser (and a list optimiser still does).
    AdamW<double> opt(attn, {.lr = 0.01, .weight_decay = 0.0}, {{.patterns = {"coeff_alpha"}, .lr = 0.1, .name = "alpha"}});
    AdamW<double> list_opt(attn.parameters(), {.lr = 0.01, .weight_decay = 0.0});
    CHECK(opt.group(0).params.empty());  // no alpha yet
    CHECK(opt.group(1).params.size() == 8);
    attn.enable_coeff(true);
    attn.train_only({"coeff_alpha"});
    const Tensor<double> w_before = attn.query.weight.clone();
    for (int i = 0; i < 3; ++i) {
        opt.zero_grad();
        mean(square(attn(x) - target)).backward();
        opt.step();
    }
    CHECK(opt.group(0).params.size() == 1);
    CHECK(opt.group(0).params[0].impl() == attn.alpha.impl());
    CHECK(opt.group(1).params.empty());  // everything else frozen
    CHECK(sum(square(attn.alpha)).item() > 0.05 * 0.05);  // alpha moved, at its own lr
    CHECK(attn.query.weight.to_vector() == w_before.to_vector());  // frozen weights did not
    CHECK(opt.state(0, 0).step == 3);
    // The list optimiser never sees alpha: alpha's gradient is there, but it does not step it.
    const Tensor<double> a_before = attn.alpha.clone();
    list_opt.zero_grad();
    attn.zero_grad();
    mean(square(attn(x) - target)).backward();
    list_opt.step();
    CHECK(attn.alpha.to_vector() == a_before.to_vector());
    // Unfrozen again, a parameter gets its state back (it follows the tensor, not the list).
    attn.set_requires_grad(true);
    opt.zero_grad();
    mean(square(attn(x) - target)).backward();
    opt.step();
    CHECK(opt.state(0, 0).step == 4);
    CHECK(opt.group(1).params.size() == 8);
    CHECK(opt.state(1, 0).step == 1);
}

namespace {
struct Forgetful : nn::Module<double> {  // fc2 is a member but never registered
    nn::Linear<double> fc1, fc2;
    explicit Forgetful(Generator& gen) : fc1(4, 4, gen), fc2(4, 4, gen) { register_module("fc1", fc1); }
};
struct Declared : nn::Module<double> {  // registration is part of the declaration
    nn::Linear<double>& fc1;
    Tensor<double>& scale;
    explicit Declared(Generator& gen)
        : fc1(submodule<nn::Linear<double>>("fc1", 4, 4, gen)),
          scale(parameter("scale", Tensor<double>::ones({4}).set_requires_grad(true))) {}
};
struct KeepsOut : nn::Module<double> {  // a member trained by its own optimiser, on purpose
    nn::Linear<double> fc1, aux;
    explicit KeepsOut(Generator& gen) : fc1(4, 4, gen), aux(4, 4, gen) {
        register_module("fc1", fc1);
        keep_unregistered(aux);
    }
};
}  // namespace

TEST_CASE("a member module that was never registered is reported by name, not silently left untrained") {
    Generator gen(7);
    Forgetful bad(gen);
    CHECK_THROWS_WITH_AS(bad.parameters(), doctest::Contains("Forgetful: a coeffnet::nn::Linear<double> with trainable parameters was built with it but never registered"), Error);
    CHECK_THROWS_WITH_AS(AdamW<double>(bad, {}), doctest::Contains("register_module"), Error);
    bad.fc2.set_requires_grad(false);  // frozen: nothing is lost, nothing reported
    CHECK(bad.parameters().size() == 2);

    Declared good(gen);
    const auto names = good.named_parameters();
    REQUIRE(names.size() == 3);
    CHECK(names[0].first == "scale");
    CHECK(names[1].first == "fc1.weight");
    CHECK(names[2].first == "fc1.bias");
    CHECK(good.fc1.in_features() == 4);

    KeepsOut kept(gen);
    CHECK(kept.parameters().size() == 2);
    // Modules built beside a model (not inside it) are not its members.
    nn::Linear<double> standalone(4, 4, gen);
    nn::Sequential<double> seq;
    nn::Linear<double> other(4, 4, gen);
    seq.push_back(std::make_unique<nn::Linear<double>>(4, 4, gen));
    CHECK(seq.parameters().size() == 2);
    CHECK(standalone.parameters().size() == 2);
}
