// Bad input: every misuse throws coeffnet::Error naming the op and the values that disagree.
#include <doctest/doctest.h>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;
using doctest::Contains;

namespace {
using T = Tensor<double>;
T z(const Shape& s) { return T::zeros(s); }
}  // namespace

TEST_CASE("shape mismatches name the op and both shapes") {
    CHECK_THROWS_WITH_AS(add(z({2, 3}), z({4, 3})), Contains("add: shapes [2, 3] and [4, 3] cannot be broadcast"), Error);
    CHECK_THROWS_WITH_AS(mul(z({2}), z({3})), Contains("mul: shapes [2] and [3]"), Error);
    CHECK_THROWS_WITH_AS(matmul(z({2, 3}), z({4, 5})), Contains("matmul: inner dimensions differ: [2, 3] @ [4, 5]"), Error);
    CHECK_THROWS_WITH_AS(matmul(z({2, 2, 3}), z({3, 3, 2})), Contains("matmul: shapes [2] and [3]"), Error);
    CHECK_THROWS_WITH_AS(linear(z({4, 5}), z({3, 4})), Contains("linear: input [4, 5] does not match weight [3, 4]"), Error);
    CHECK_THROWS_WITH_AS(linear(z({4, 5}), z({3, 5}), z({4})), Contains("linear: bias [4]"), Error);
    CHECK_THROWS_WITH_AS(layer_norm(z({2, 4}), z({5}), T(), 1e-5), Contains("layer_norm: weight [5] does not match input [2, 4]"),
                         Error);
    CHECK_THROWS_WITH_AS(softmax(z({2, 4}), z({3, 4})), Contains("softmax: mask [3, 4] does not broadcast to the input [2, 4]"),
                         Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).reshape({4, 2}), Contains("reshape: cannot reshape [2, 3] (6 elements) into [4, 2]"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).expand({4, 3, 2}), Contains("expand: cannot expand [2, 3] to [4, 3, 2]"), Error);
    CHECK_THROWS_WITH_AS(concat(std::vector{z({2, 3}), z({3, 3})}, 1), Contains("concat: tensor 1 has shape [3, 3]"), Error);
    CHECK_THROWS_WITH_AS(split(z({5, 2}), {2, 2}, 0), Contains("split: sizes add up to 4"), Error);
    CHECK_THROWS_WITH_AS(cross_entropy(z({3, 4}), Tensor<int64_t>::zeros({2})), Contains("targets [2] do not match logits [3, 4]"),
                         Error);
    CHECK_THROWS_WITH_AS(T::from({1, 2, 3}, {2, 2}), Contains("3 values for shape [2, 2]"), Error);
}

TEST_CASE("wrong ranks") {
    CHECK_THROWS_WITH_AS(matmul(z({3}), z({3, 2})), Contains("matmul: expects tensors of rank >= 2, got [3] and [3, 2]"), Error);
    CHECK_THROWS_WITH_AS(linear(z({2, 3}), z({3})), Contains("linear: weight must be [out, in], got [3]"), Error);
    CHECK_THROWS_WITH_AS(coeff_attention(z({2, 4, 3}), z({2, 4, 3}), z({2, 4, 3}), z({4, 4})),
                         Contains("coeff_attention: q, k, v must be [batch, heads, tokens, head_dim], got [2, 4, 3]"), Error);
    CHECK_THROWS_WITH_AS(coeff_attention(z({1, 2, 3, 4}), z({1, 2, 5, 4}), z({1, 2, 5, 4}), z({3, 3})),
                         Contains("coeff_attention: alpha [3, 3] must be [heads, heads] = [2, 2] for q [1, 2, 3, 4]"), Error);
    CHECK_THROWS_WITH_AS(attention(z({1, 2, 3, 4}), z({1, 2, 5, 8}), z({1, 2, 5, 4})),
                         Contains("attention: q [1, 2, 3, 4] and k [1, 2, 5, 8]"), Error);
    CHECK_THROWS_WITH_AS(mix_heads(z({1, 3, 2, 2}), z({2, 2})), Contains("mix_heads: coefficients [2, 2] must be [heads, heads] = [3, 3]"),
                         Error);
    CHECK_THROWS_WITH_AS(embedding(Tensor<int64_t>::zeros({2}), z({4})), Contains("embedding: weight must be [num_embeddings, dim]"),
                         Error);
    CHECK_THROWS_WITH_AS(T::scalar(1.0).at({0}), Contains("Tensor::at: 1 indices for a tensor of shape []"), Error);
    CHECK_THROWS_WITH_AS(T::ones({2}).item(), Contains("item: needs one element"), Error);
    CHECK_THROWS_WITH_AS(T().shape(), Contains("undefined"), Error);
}

TEST_CASE("out-of-range axes and indices") {
    CHECK_THROWS_WITH_AS(sum(z({2, 3}), {2}), Contains("sum: axis 2 is out of range for a tensor of rank 2"), Error);
    CHECK_THROWS_WITH_AS(mean(z({2, 3}), {-3}), Contains("mean: axis -3 is out of range"), Error);
    CHECK_THROWS_WITH_AS(sum(z({2, 3}), {1, -1}), Contains("sum: axis -1 given twice"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).permute({0, 0}), Contains("permute: axis 0 appears twice"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).permute({0}), Contains("permute: order [0] for a tensor of shape [2, 3]"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).transpose(0, 2), Contains("transpose: axis 2 is out of range"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).slice(3, 0, 1), Contains("slice: axis 3 is out of range"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).slice(0, 0, 1, 0), Contains("slice: step must be positive"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).select(1, 3), Contains("select: index 3 out of range for axis 1"), Error);
    CHECK_THROWS_WITH_AS(z({2, 3}).unsqueeze(4), Contains("unsqueeze: axis 4 is out of range"), Error);
    CHECK_THROWS_WITH_AS(concat(std::vector{z({2, 3})}, 2), Contains("concat: axis 2 is out of range"), Error);
    CHECK_THROWS_WITH_AS(embedding(Tensor<int64_t>::from({0, 7}, {2}), z({4, 2})),
                         Contains("embedding: index 7 at position 1 is out of range for 4 embeddings"), Error);
    CHECK_THROWS_WITH_AS(cross_entropy(z({2, 3}), Tensor<int64_t>::from({0, 3}, {2})),
                         Contains("cross_entropy: target 3 at position 1 is out of range for 3 classes"), Error);
    CHECK_THROWS_WITH_AS(T::zeros({2, 2}).at({0, 2}), Contains("Tensor::at: index 2 out of range for axis 1"), Error);
}

TEST_CASE("bad probabilities and arguments") {
    Generator g(1);
    CHECK_THROWS_WITH_AS(dropout(z({3}), -0.1, g), Contains("dropout: probability must be in [0, 1], got -0.1"), Error);
    CHECK_THROWS_WITH_AS(dropout(z({3}), 1.5, g), Contains("got 1.5"), Error);
    CHECK_THROWS_WITH_AS(dropout(z({3}), std::nan(""), g), Contains("dropout: probability"), Error);
    AttentionOptions o;
    o.coeff.alpha_dropout = 2.0;
    CHECK_THROWS_WITH_AS(coeff_attention(z({1, 2, 3, 4}), z({1, 2, 3, 4}), z({1, 2, 3, 4}), z({2, 2}), o),
                         Contains("coeff_attention: probability must be in [0, 1], got 2"), Error);
    AttentionOptions o2;
    CHECK_THROWS_WITH_AS(coeff_attention(z({1, 2, 3, 4}), z({1, 2, 3, 4}), z({1, 2, 3, 4}), z({2, 2}), o2, T(), T::ones({1, 4})),
                         Contains("coeff_attention: key mask [1, 4] must be [batch, keys] = [1, 3]"), Error);
    CHECK_THROWS_WITH_AS(layer_norm(z({2, 4}), T(), T(), -1.0), Contains("layer_norm: eps must be finite and >= 0"), Error);
    CHECK_THROWS_WITH_AS(T::zeros({-1, 2}), Contains("negative dimension in [-1, 2]"), Error);
    CHECK_THROWS_WITH_AS(T::zeros({1LL << 40, 1LL << 40}), Contains("overflows int64"), Error);
    CHECK_THROWS_WITH_AS(chunk(z({5}), 2, 0), Contains("chunk: axis 0 of [5] does not split into 2 equal pieces"), Error);
}

TEST_CASE("backward misuse") {
    auto x = T::ones({2, 3}).set_requires_grad(true);
    auto y = x * 2.0;
    CHECK_THROWS_WITH_AS(y.backward(), Contains("backward: the output has shape [2, 3]; a non-scalar output needs an explicit upstream gradient"),
                         Error);
    CHECK_THROWS_WITH_AS(y.backward(T::ones({3, 2})), Contains("upstream gradient of shape [3, 2] for an output of shape [2, 3]"),
                         Error);
}

TEST_CASE("attention masks of the wrong shape") {
    CHECK_THROWS_WITH_AS(attention(z({2, 3, 4, 5}), z({2, 3, 6, 5}), z({2, 3, 6, 5}), {}, z({2, 2, 4, 6})),
                         Contains("attention: additive mask [2, 2, 4, 6] does not broadcast to [batch, heads, queries, keys] = [2, 3, 4, 6]"),
                         Error);
}
