// Training pieces: LoRA layers, the cosine schedule, optimiser state round trips, and the tools'
// progress bar (tools/progress.hpp) that draws them.
#include <doctest/doctest.h>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/train/schedule.hpp>

#include "progress.hpp"

using namespace coeffnet;

TEST_CASE("LoRA starts as the plain layer, uses PEFT's names and scaling, and has checked gradients") {
    Generator g(1);
    nn::Linear<double> lin(6, 4, g);
    auto x = Tensor<double>::randn({3, 6}, g);
    const auto before = lin(x).to_vector();
    lin.enable_lora(2, 8.0, g);
    CHECK(lin.lora_scaling == 4.0);
    CHECK(lin(x).to_vector() == before);  // B = 0
    std::vector<std::string> names;
    for (auto& [n, p] : lin.named_parameters()) names.push_back(n);
    CHECK(names == std::vector<std::string>{"weight", "bias", "lora_A.weight", "lora_B.weight"});
    CHECK(lin.lora_A.shape() == Shape{2, 6});
    CHECK(lin.lora_B.shape() == Shape{4, 2});
    for (double a : lin.lora_A.to_vector()) CHECK(std::abs(a) <= 1.0 / std::sqrt(6.0));

    // y = x (W + s B A)^T + b
    lin.lora_B = Tensor<double>::randn({4, 2}, g).set_requires_grad(true);
    auto merged = add(lin.weight, scale(matmul(lin.lora_B, lin.lora_A), lin.lora_scaling)).detach();
    auto want = linear(x, merged, lin.bias.detach()).to_vector();
    auto got = lin(x).to_vector();
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));

    // Gradients of A and B against central differences.
    auto w = Tensor<double>::randn({3, 4}, g);
    auto loss = [&] { return sum(mul(lin(x), w)); };
    loss().backward();
    for (Tensor<double>* p : {&lin.lora_A, &lin.lora_B}) {
        const auto grad = p->grad().to_vector();
        for (int64_t i = 0; i < p->numel(); ++i) {
            NoGrad ng;
            const double keep = p->data()[i];
            p->data()[i] = keep + 1e-6;
            const double up = loss().item();
            p->data()[i] = keep - 1e-6;
            const double down = loss().item();
            p->data()[i] = keep;
            CHECK(grad[static_cast<size_t>(i)] == doctest::Approx((up - down) / 2e-6).epsilon(1e-6));
        }
    }
    lin.disable_lora();
    CHECK_FALSE(lin.has_lora());
    CHECK_THROWS_WITH_AS(lin.enable_lora(0, 1.0, g), doctest::Contains("rank must be positive"), Error);
}

TEST_CASE("cosine schedule with warm-up follows transformers' get_cosine_schedule_with_warmup") {
    CHECK(cosine_with_warmup(0, 100, 10) == 0.0);
    CHECK(cosine_with_warmup(5, 100, 10) == 0.5);
    CHECK(cosine_with_warmup(10, 100, 10) == 1.0);
    CHECK(cosine_with_warmup(55, 100, 10) == doctest::Approx(0.5));
    CHECK(cosine_with_warmup(100, 100, 10) == doctest::Approx(0.0));
    CHECK(cosine_with_warmup(3, 10, 0) == doctest::Approx(0.5 * (1 + std::cos(M_PI * 0.3))));
}

TEST_CASE_TEMPLATE("optimiser state round trip: 2 + 2 steps equal 4 straight steps, bit for bit", Opt, AdamW<double>,
                   SGD<double>) {
    Generator g(4);
    const auto A = Tensor<double>::randn({10, 3}, g), y = Tensor<double>::randn({10, 1}, g);
    const auto x0 = Tensor<double>::randn({3, 1}, g);
    auto make = [](Tensor<double>& x) {
        if constexpr (std::is_same_v<Opt, AdamW<double>>) return Opt({x}, {.lr = 0.1, .weight_decay = 0.1});
        else return Opt({x}, {.lr = 0.1, .momentum = 0.9});
    };
    auto run = [&](Opt& opt, Tensor<double>& x, int steps) {
        for (int i = 0; i < steps; ++i) {
            opt.zero_grad();
            mean(square(sub(matmul(A, x), y))).backward();
            opt.step();
        }
    };
    auto straight = x0.clone().detach().set_requires_grad(true);
    Opt a = make(straight);
    run(a, straight, 4);

    auto resumed = x0.clone().detach().set_requires_grad(true);
    Opt b = make(resumed);
    run(b, resumed, 2);
    const OptimizerState<double> saved = b.state();
    auto copy = resumed.clone().detach().set_requires_grad(true);
    Opt c = make(copy);
    c.load_state(saved);
    run(c, copy, 2);
    CHECK(copy.to_vector() == straight.to_vector());

    OptimizerState<double> bad = saved;
    for (auto& [n, t] : bad.tensors) t = Tensor<double>::zeros({7});
    auto other = x0.clone().detach().set_requires_grad(true);
    Opt d = make(other);
    if (!bad.tensors.empty()) CHECK_THROWS_WITH_AS(d.load_state(bad), doctest::Contains("has shape [7]"), Error);
}

TEST_CASE("the progress line shows the bar, counts, metrics, rate and ETA") {
    cli::ProgressBar bar(200, "img", "epoch 1/3", false);
    bar.update(50, "loss 0.500");
    const std::string line = bar.line();
    CHECK(line.rfind("epoch 1/3 [#####...............]  25%  50/200 img  loss 0.500", 0) == 0);
    CHECK(line.find("img/s") != std::string::npos);
    CHECK(line.find("ETA") != std::string::npos);
    CHECK(cli::ProgressBar::clock_str(3725) == "1:02:05");
    CHECK(cli::ProgressBar::clock_str(65) == "1:05");
}
