// Tensor: creation, strides and views, broadcasting, printing.
#include <doctest/doctest.h>

#include <sstream>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

namespace {
Tensor<double> iota(const Shape& s) {
    auto t = Tensor<double>::arange(shape_numel(s));
    return t.reshape(s);
}
}  // namespace

TEST_CASE("creation and introspection") {
    auto z = Tensor<float>::zeros({2, 3});
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.strides() == Shape{3, 1});
    CHECK(z.numel() == 6);
    CHECK(z.is_contiguous());
    CHECK(z.to_vector() == std::vector<float>(6, 0.0f));
    CHECK(Tensor<float>::ones({4}).to_vector() == std::vector<float>(4, 1.0f));
    CHECK(Tensor<double>::full({2}, 2.5).to_vector() == std::vector<double>{2.5, 2.5});
    CHECK(Tensor<double>::eye(2).to_vector() == std::vector<double>{1, 0, 0, 1});
    CHECK(Tensor<double>::scalar(3.0).dim() == 0);
    CHECK(Tensor<double>::scalar(3.0).item() == 3.0);
    auto e = Tensor<float>::empty({0, 5});
    CHECK(e.numel() == 0);
    CHECK(reinterpret_cast<uintptr_t>(Tensor<float>::empty({3}).data()) % 64 == 0);
    CHECK_FALSE(Tensor<float>().defined());
}

TEST_CASE("from_blob shares memory and keeps its owner alive") {
    auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4});
    auto t = Tensor<float>::from_blob(owner->data(), {2, 2}, owner);
    std::weak_ptr<std::vector<float>> watch = owner;
    owner.reset();
    CHECK_FALSE(watch.expired());
    CHECK(t.at({1, 0}) == 3.0f);
    t = Tensor<float>();
    CHECK(watch.expired());
}

TEST_CASE("views share storage: reshape, permute, transpose, slice, select, expand, squeeze") {
    auto x = iota({2, 3, 4});
    auto r = x.reshape({6, -1});
    CHECK(r.shape() == Shape{6, 4});
    CHECK(r.data() == x.data());

    auto p = x.permute({2, 0, 1});
    CHECK(p.shape() == Shape{4, 2, 3});
    CHECK(p.strides() == Shape{1, 12, 4});
    CHECK_FALSE(p.is_contiguous());
    CHECK(p.at({3, 1, 2}) == x.at({1, 2, 3}));
    auto pc = p.contiguous();
    CHECK(pc.is_contiguous());
    CHECK(pc.at({3, 1, 2}) == 23.0);

    auto t = x.transpose(0, 2);
    CHECK(t.shape() == Shape{4, 3, 2});
    CHECK(t.at({1, 2, 0}) == x.at({0, 2, 1}));

    auto s = x.slice(2, 1, 4, 2);  // columns 1 and 3
    CHECK(s.shape() == Shape{2, 3, 2});
    CHECK(s.to_vector()[0] == 1.0);
    CHECK(s.to_vector()[1] == 3.0);
    CHECK(x.slice(1, -2, 100).shape() == Shape{2, 2, 4});  // Python-style clamping
    CHECK(x.slice(1, 2, 1).shape() == Shape{2, 0, 4});

    auto sel = x.select(1, -1);
    CHECK(sel.shape() == Shape{2, 4});
    CHECK(sel.at({1, 0}) == 20.0);

    auto col = Tensor<double>::from({1, 2, 3}, {3, 1});
    auto ex = col.expand({2, 3, 4});
    CHECK(ex.shape() == Shape{2, 3, 4});
    CHECK(ex.strides() == Shape{0, 1, 0});
    CHECK(ex.at({1, 2, 3}) == 3.0);
    CHECK(col.expand({-1, 5}).shape() == Shape{3, 5});

    CHECK(x.unsqueeze(0).shape() == Shape{1, 2, 3, 4});
    CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
    CHECK(x.unsqueeze(1).squeeze(1).shape() == x.shape());
    CHECK(x.squeeze(0).shape() == x.shape());  // not size 1: unchanged, as in PyTorch
    CHECK(x.flatten(1).shape() == Shape{2, 12});
    CHECK(x.mT().shape() == Shape{2, 4, 3});

    // Reshape of a non-contiguous view copies, preserving row-major order.
    auto rt = t.reshape({-1});
    CHECK(rt.to_vector() == t.to_vector());
    CHECK(rt.data() != x.data());
}

TEST_CASE("writes through a view reach the base tensor") {
    auto x = Tensor<double>::zeros({3, 3});
    x.transpose(0, 1).at({2, 0}) = 5.0;
    CHECK(x.at({0, 2}) == 5.0);
    x.slice(0, 1, 2).at({0, 1}) = 7.0;
    CHECK(x.at({1, 1}) == 7.0);
}

TEST_CASE("copy_ and fill_ write into the storage every holder sees, outside autograd") {
    auto w = Tensor<double>::zeros({2, 3}).set_requires_grad(true);
    const Tensor<double> held = w;  // what an optimiser built earlier holds
    const auto src = Tensor<double>::from({1, 2, 3, 4, 5, 6}, {2, 3});
    w.copy_(src);
    CHECK(held.to_vector() == src.to_vector());
    CHECK(w.is_leaf());  // nothing recorded
    CHECK(w.requires_grad());
    // A strided destination and a strided source.
    auto t = Tensor<double>::zeros({3, 2});
    t.mT().copy_(src);
    CHECK(t.to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
    t.copy_(src.mT());
    CHECK(t.to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
    // Overlapping views of one storage copy as if through a temporary (x[1:] = x[:-1]).
    auto x = Tensor<double>::arange(6);
    x.slice(0, 1, 6).copy_(x.slice(0, 0, 5));
    CHECK(x.to_vector() == std::vector<double>{0, 0, 1, 2, 3, 4});
    x.slice(0, 0, 6, 2).fill_(9);
    CHECK(x.to_vector() == std::vector<double>{9, 0, 9, 2, 9, 4});
    CHECK_THROWS_WITH_AS(w.copy_(Tensor<double>::zeros({3, 2})),
                         doctest::Contains("Tensor::copy_: source [3, 2] does not match destination [2, 3]"), Error);
    CHECK_THROWS_WITH_AS(Tensor<double>::zeros({1, 3}).expand({2, 3}).copy_(src),
                         doctest::Contains("has aliased elements (stride 0 on axis 0"), Error);
    CHECK_THROWS_WITH_AS(Tensor<double>().fill_(1), doctest::Contains("Tensor::fill_: the tensor is undefined"), Error);
}

TEST_CASE("elementwise ops broadcast like NumPy and accept strided operands") {
    auto a = iota({2, 1, 3});
    auto b = Tensor<double>::from({10, 20, 30, 40}, {4, 1});
    auto c = add(a, b);
    CHECK(c.shape() == Shape{2, 4, 3});
    CHECK(c.at({1, 2, 1}) == a.at({1, 0, 1}) + b.at({2, 0}));
    auto t = iota({3, 2}).transpose(0, 1);  // strided
    auto m = mul(t, Tensor<double>::from({1, -1, 2}, {3}));
    CHECK(m.at({1, 2}) == t.at({1, 2}) * 2.0);
    CHECK((Tensor<double>::scalar(2.0) * a).to_vector() == (a * 2.0).to_vector());
    CHECK((a - 1.0).at({1, 0, 2}) == 4.0);
    CHECK((a / 2.0).at({1, 0, 2}) == 2.5);
}

TEST_CASE("sum and mean over axes") {
    auto x = iota({2, 3, 4});
    CHECK(sum(x).item() == 276.0);
    CHECK(mean(x).item() == 11.5);
    auto s1 = sum(x, {1});
    CHECK(s1.shape() == Shape{2, 4});
    CHECK(s1.at({1, 2}) == 14.0 + 18.0 + 22.0);
    auto s02 = sum(x, {0, -1}, true);
    CHECK(s02.shape() == Shape{1, 3, 1});
    CHECK(s02.at({0, 1, 0}) == (4 + 5 + 6 + 7) + (16 + 17 + 18 + 19));
    auto m0 = mean(x.permute({2, 1, 0}), {2});
    CHECK(m0.shape() == Shape{4, 3});
    CHECK(m0.at({3, 2}) == (11.0 + 23.0) / 2);
    CHECK(sum(x, {0, 1}).to_vector() == std::vector<double>{60, 66, 72, 78});  // prefix path
}

TEST_CASE("printing summarises long axes") {
    std::ostringstream os;
    os << Tensor<float>::from({1, 2, 3, 4}, {2, 2});
    CHECK(os.str() == "tensor([[1, 2],\n        [3, 4]], shape=[2, 2], dtype=float32)");
    std::ostringstream big;
    big << Tensor<double>::arange(10);
    CHECK(big.str() == "tensor([0, 1, 2, ..., 7, 8, 9], shape=[10], dtype=float64)");
    std::ostringstream g;
    g << Tensor<double>::ones({1}).set_requires_grad(true);
    CHECK(g.str().find("requires_grad") != std::string::npos);
}
