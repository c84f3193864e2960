// The op table: every differentiable op, one row each, as ggml's tests/test-backend-ops.cpp has
// it. A row names the op, its input shapes, how to draw its inputs and which are differentiable;
// its function runs on whatever device its inputs are on (a tensor a row makes itself, a mask or
// labels, goes to x[0].device()).
//
// Used by tests/test_backend_ops.cpp (value and gradient, one ctest per op and device:
// backend/<op>/<device>) and bench/backend_ops.cpp (time per op and device).
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
// The fused attention rows call coeff_attention_tiled (the fused op, with the CPU table's tiled
// kernels, which the umbrella header leaves out).
#include <coeffnet/ops/attention_tiled_impl.hpp>

namespace coeffnet::optable {

enum class Draw { normal, positive, away_from_zero };

struct OpRow {
    std::string name;
    std::vector<Shape> shapes;
    std::function<Tensor<double>(const std::vector<Tensor<double>>&)> f64;
    std::function<Tensor<float>(const std::vector<Tensor<float>>&)> f32;
    Draw draw = Draw::normal;
    std::vector<bool> diff;  // empty: all inputs differentiable
};

template <class F>
OpRow row(std::string name, std::vector<Shape> shapes, F f, Draw draw = Draw::normal, std::vector<bool> diff = {}) {
    return {std::move(name), std::move(shapes), f, f, draw, std::move(diff)};
}

template <class V>
using T_of = typename std::decay_t<V>::value_type::value_type;

// The devices whose compute table this program has registered (the CPU's always): the columns.
inline std::vector<Device> computing_devices() {
    std::vector<Device> out{Device::cpu()};
    for (const Device d : {Device::cuda(0), Device::emulated()})
        if (backend::capabilities(d).f32) out.push_back(d);
    return out;
}

inline std::vector<Tensor<double>> draw_inputs(const OpRow& r, uint64_t seed) {
    Generator gen(seed);
    std::vector<Tensor<double>> in;
    for (const auto& s : r.shapes) {
        Tensor<double> t;
        switch (r.draw) {
            case Draw::normal: t = Tensor<double>::randn(s, gen); break;
            case Draw::positive: t = Tensor<double>::uniform(s, gen, 0.5, 2.0); break;
            case Draw::away_from_zero: {
                t = Tensor<double>::uniform(s, gen, 0.2, 1.5);
                auto sign = Tensor<double>::uniform(s, gen);
                for (int64_t i = 0; i < t.numel(); ++i)
                    if (sign.data()[i] < 0.5) t.data()[i] = -t.data()[i];
                break;
            }
        }
        in.push_back(t);
    }
    return in;
}

// Attention inputs: q, k, v as [B, H, N, d], alpha [H, H] (scaled up so mixing matters).
template <class T>
Tensor<T> heads_mask(int64_t B, int64_t M) {  // key mask [B, M]: batch 1 has its last key padded
    auto m = Tensor<T>::ones({B, M});
    if (B > 1) m.at({1, M - 1}) = T(0);
    return m;
}

inline std::vector<OpRow> op_table() {
    std::vector<OpRow> t;
    // arithmetic and broadcasting
    t.push_back(row("add", {{3, 4}, {3, 4}}, [](const auto& x) { return add(x[0], x[1]); }));
    t.push_back(row("add/broadcast", {{2, 3, 1}, {4}}, [](const auto& x) { return add(x[0], x[1]); }));
    t.push_back(row("sub/broadcast", {{3, 1, 5}, {4, 5}}, [](const auto& x) { return sub(x[0], x[1]); }));
    t.push_back(row("mul/broadcast", {{2, 3, 4}, {3, 1}}, [](const auto& x) { return mul(x[0], x[1]); }));
    t.push_back(row("div/broadcast", {{2, 5}, {1, 5}}, [](const auto& x) { return div(x[0], x[1]); }, Draw::positive));
    t.push_back(row("mul/strided", {{3, 4}, {4, 3}}, [](const auto& x) { return mul(x[0], x[1].mT()); }));
    t.push_back(row("scale", {{7}}, [](const auto& x) { return scale(x[0], -1.5); }));
    t.push_back(row("add_scalar", {{2, 2}}, [](const auto& x) { return x[0] + 3.0; }));
    t.push_back(row("neg", {{5}}, [](const auto& x) { return -x[0]; }));
    t.push_back(row("add_scalar/left", {{2, 3}}, [](const auto& x) { return 1.5 + x[0]; }));
    t.push_back(row("rsub_scalar", {{2, 3}}, [](const auto& x) { return 2.0 - x[0]; }));
    t.push_back(row("rdiv_scalar", {{2, 3}}, [](const auto& x) { return 3.0 / x[0]; }, Draw::away_from_zero));
    t.push_back(row("scale/left", {{4}}, [](const auto& x) { return -0.5 * x[0]; }));
    // dtype cast: double checks the same-type identity node against finite differences; float goes
    // float -> double -> float, so its gradient crosses both casts and is compared with double's.
    {
        OpRow r = row("cast", {{3, 4}}, [](const auto& x) { return square(x[0]) * 0.5; });
        r.f64 = [](const std::vector<Tensor<double>>& x) { return cast_op<double>(square(cast_op<double>(x[0])) * 0.5); };
        r.f32 = [](const std::vector<Tensor<float>>& x) { return to_float(square(to_double(x[0])) * 0.5); };
        t.push_back(r);
    }
    // pointwise
    t.push_back(row("exp", {{2, 3}}, [](const auto& x) { return exp(x[0]); }));
    t.push_back(row("log", {{2, 3}}, [](const auto& x) { return log(x[0]); }, Draw::positive));
    t.push_back(row("sqrt", {{6}}, [](const auto& x) { return sqrt(x[0]); }, Draw::positive));
    t.push_back(row("square", {{6}}, [](const auto& x) { return square(x[0]); }));
    t.push_back(row("tanh", {{2, 5}}, [](const auto& x) { return tanh(x[0]); }));
    t.push_back(row("sigmoid", {{2, 5}}, [](const auto& x) { return sigmoid(x[0]); }));
    t.push_back(row("relu", {{3, 5}}, [](const auto& x) { return relu(x[0]); }, Draw::away_from_zero));
    t.push_back(row("silu", {{3, 5}}, [](const auto& x) { return silu(x[0]); }));
    t.push_back(row("gelu/erf", {{4, 7}}, [](const auto& x) { return gelu(x[0]); }));
    t.push_back(row("gelu/tanh", {{4, 7}}, [](const auto& x) { return gelu(x[0], GeluApprox::tanh); }));
    // reductions
    t.push_back(row("sum/all", {{3, 4}}, [](const auto& x) { return sum(x[0]); }));
    t.push_back(row("sum/axes", {{2, 3, 4}}, [](const auto& x) { return sum(x[0], {0, 2}); }));
    t.push_back(row("sum/keepdim", {{2, 3, 4}}, [](const auto& x) { return sum(x[0], {1}, true); }));
    t.push_back(row("mean/all", {{5, 3}}, [](const auto& x) { return mean(x[0]); }));
    t.push_back(row("mean/axes", {{2, 3, 4}}, [](const auto& x) { return mean(x[0], {-1}); }));
    t.push_back(row("mean/strided", {{4, 3}}, [](const auto& x) { return mean(x[0].mT(), {0}); }));
    // max/min values: the gradient goes to the chosen element (normal draws: no ties)
    t.push_back(row("max/values", {{3, 4, 5}}, [](const auto& x) { return max(x[0], 1).values; }));
    t.push_back(row("max/keepdim+strided", {{4, 3}}, [](const auto& x) { return max(x[0].mT(), -1, true).values; }));
    t.push_back(row("min/values", {{3, 5}}, [](const auto& x) { return min(x[0], 0).values; }));
    // matmul and linear
    t.push_back(row("matmul/2d", {{3, 5}, {5, 7}}, [](const auto& x) { return matmul(x[0], x[1]); }));
    t.push_back(row("matmul/batched", {{2, 3, 4}, {2, 4, 5}}, [](const auto& x) { return matmul(x[0], x[1]); }));
    t.push_back(row("matmul/broadcast", {{2, 1, 3, 4}, {3, 4, 2}}, [](const auto& x) { return matmul(x[0], x[1]); }));
    t.push_back(row("matmul/shared-rhs", {{2, 3, 4}, {4, 5}}, [](const auto& x) { return matmul(x[0], x[1]); }));
    t.push_back(row("matmul/shared-lhs", {{3, 3}, {2, 3, 5}}, [](const auto& x) { return matmul(x[0], x[1]); }));
    t.push_back(row("matmul/transposed", {{4, 3}, {5, 4}}, [](const auto& x) { return matmul(x[0].mT(), x[1].mT()); }));
    t.push_back(row("linear", {{2, 3, 5}, {4, 5}, {4}}, [](const auto& x) { return linear(x[0], x[1], x[2]); }));
    t.push_back(row("linear/no-bias", {{7, 5}, {3, 5}}, [](const auto& x) { return linear(x[0], x[1]); }));
    t.push_back(row("linear/strided-input", {{5, 6}, {3, 5}}, [](const auto& x) { return linear(x[0].mT(), x[1]); }));
    // softmax family
    t.push_back(row("softmax", {{3, 7}}, [](const auto& x) { return softmax(x[0]); }));
    t.push_back(row("softmax/masked", {{2, 3, 5}}, [](const auto& x) {
        using T = T_of<decltype(x)>;
        auto m = Tensor<T>::zeros({2, 1, 5});
        m.at({0, 0, 1}) = -std::numeric_limits<T>::infinity();
        m.at({1, 0, 4}) = T(-3);
        return softmax(x[0], m.to(x[0].device()));
    }));
    t.push_back(row("log_softmax", {{4, 6}}, [](const auto& x) { return log_softmax(x[0]); }));
    t.push_back(row("cross_entropy", {{5, 4}}, [](const auto& x) {
        return cross_entropy(x[0], Tensor<int64_t>::from({0, 3, -100, 2, 1}, {5}, x[0].device()));
    }));
    t.push_back(row("cross_entropy/sum", {{2, 3, 4}}, [](const auto& x) {
        return cross_entropy(x[0], Tensor<int64_t>::from({0, 3, 1, 2, 2, -1}, {2, 3}, x[0].device()), -1, Reduction::sum);
    }));
    // normalisation, dropout, embedding
    t.push_back(row("layer_norm", {{3, 8}, {8}, {8}},
                    [](const auto& x) { return layer_norm(x[0], x[1], x[2], 1e-5); }));
    t.push_back(row("layer_norm/no-affine", {{2, 2, 5}}, [](const auto& x) {
        using T = T_of<decltype(x)>;
        return layer_norm(x[0], Tensor<T>(), Tensor<T>(), 1e-3);
    }));
    t.push_back(row("dropout", {{4, 6}}, [](const auto& x) {
        Generator g(5);  // the same mask at every evaluation
        return dropout(x[0], 0.3, g);
    }));
    t.push_back(row("embedding", {{6, 3}}, [](const auto& x) {
        return embedding(Tensor<int64_t>::from({1, 5, 1, 0}, {2, 2}, x[0].device()), x[0]);
    }));
    // shape ops
    t.push_back(row("reshape", {{2, 6}}, [](const auto& x) { return x[0].reshape({3, 4}) * x[0].reshape({3, 4}); }));
    t.push_back(row("permute", {{2, 3, 4}}, [](const auto& x) { return x[0].permute({2, 0, 1}); }));
    t.push_back(row("transpose+reshape", {{3, 4}}, [](const auto& x) { return x[0].mT().reshape({-1}); }));
    t.push_back(row("slice/step", {{5, 4}}, [](const auto& x) { return x[0].slice(0, 1, 5, 2); }));
    t.push_back(row("select", {{3, 4}}, [](const auto& x) { return x[0].select(1, 2); }));
    t.push_back(row("expand", {{3, 1}}, [](const auto& x) { return x[0].expand({2, 3, 4}); }));
    t.push_back(row("unsqueeze/squeeze", {{3, 2}}, [](const auto& x) { return x[0].unsqueeze(1).squeeze(1) * x[0]; }));
    t.push_back(row("contiguous", {{3, 4}}, [](const auto& x) { return x[0].mT().contiguous(); }));
    t.push_back(row("concat", {{2, 3}, {2, 1}, {2, 2}}, [](const auto& x) { return concat(std::vector{x[0], x[1], x[2]}, 1); }));
    t.push_back(row("split", {{5, 2}}, [](const auto& x) {
        auto parts = split(x[0], {2, 3}, 0);
        return concat(std::vector{parts[1] * 2.0, parts[0]}, 0);
    }));
    // attention
    t.push_back(row("mix_heads", {{2, 3, 4, 5}, {3, 3}}, [](const auto& x) { return mix_heads(x[0], x[1]); }));
    t.push_back(row("attention", {{2, 3, 4, 5}, {2, 3, 6, 5}, {2, 3, 6, 2}},
                    [](const auto& x) { return attention(x[0], x[1], x[2]).out; }));
    t.push_back(row("coeff_attention", {{2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 3}, {3, 3}},
                    [](const auto& x) { return coeff_attention(x[0], x[1], x[2], x[3]).out; }));
    t.push_back(row("coeff_attention/causal+padding", {{2, 4, 5, 3}, {2, 4, 5, 3}, {2, 4, 5, 2}, {4, 4}},
                    [](const auto& x) {
                        using T = T_of<decltype(x)>;
                        AttentionOptions o;
                        o.causal = true;
                        return coeff_attention(x[0], x[1], x[2], x[3], o, Tensor<T>(), heads_mask<T>(2, 5).to(x[0].device())).out;
                    }));
    t.push_back(row("coeff_attention/cross+alpha-dropout", {{1, 2, 3, 4}, {1, 2, 7, 4}, {1, 2, 7, 4}, {2, 2}},
                    [](const auto& x) {
                        Generator g(11);
                        AttentionOptions o;
                        o.training = true;
                        o.coeff.alpha_dropout = 0.4;
                        o.generator = &g;
                        o.scale = 0.7;
                        return coeff_attention(x[0], x[1], x[2], x[3], o).out;
                    }));
    t.push_back(row("coeff_attention/maps", {{1, 3, 4, 2}, {1, 3, 4, 2}, {1, 3, 4, 2}, {3, 3}}, [](const auto& x) {
        AttentionOptions o;
        o.return_maps = true;
        auto r = coeff_attention(x[0], x[1], x[2], x[3], o);
        return add(r.mixed_maps, r.maps * 0.5);  // gradients flow through the returned maps too
    }, Draw::normal, {true, true, false, true}));  // the maps do not depend on v
    // misc ops on strided operands (the table's primitives read views in place)
    t.push_back(row("dropout/strided", {{5, 4}}, [](const auto& x) {
        Generator g(11);
        return dropout(x[0].mT(), 0.5, g);
    }));
    t.push_back(row("embedding/strided", {{3, 6}}, [](const auto& x) {  // weight [6, 3] transposed, indices a view
        const auto idx = Tensor<int64_t>::from({4, 2, 4, 0, 5, 4}, {2, 3}, x[0].device()).mT();
        return embedding(idx, x[0].mT());
    }));
    t.push_back(row("min/permuted-keepdim", {{2, 3, 4}}, [](const auto& x) {
        return add(min(x[0].permute({2, 0, 1}), 0, true).values, max(x[0].select(0, 1).select(0, 2), 0).values);
    }));
    // alpha' with its dropout (the table's alpha_prime and alpha_prime_backward)
    t.push_back(row("alpha_prime/dropout", {{4, 4}}, [](const auto& x) {
        Generator g(7);
        AttentionOptions o;
        o.training = true;
        o.coeff.alpha_dropout = 0.5;
        o.generator = &g;
        return alpha_prime(x[0], o);
    }));
    // the fused path (the table's coeff_attention_forward / _backward; on the CPU the tiled kernels,
    // blocks of 2 query rows): everything at once, as in test_attention_tiled's finite differences
    t.push_back(row("coeff_attention/fused", {{2, 3, 5, 4}, {2, 3, 6, 4}, {2, 3, 6, 3}, {3, 3}}, [](const auto& x) {
        using T = T_of<decltype(x)>;
        Generator g(13), gm(3);
        AttentionOptions o;
        o.causal = true;
        o.training = true;
        o.coeff.alpha_dropout = 0.3;
        o.attn_dropout = 0.2;
        o.generator = &g;
        o.scale = 0.6;
        const Tensor<T> attn_mask = Tensor<double>::randn({2, 1, 1, 6}, gm, 0.0, 0.5).cast<T>().to(x[0].device());
        return coeff_attention_tiled(x[0], x[1], x[2], x[3], o, attn_mask, heads_mask<T>(2, 6).to(x[0].device()),
                                     TiledConfig{2})
            .out;
    }));
    t.push_back(row("attention/fused", {{1, 2, 7, 3}, {1, 2, 7, 3}, {1, 2, 7, 2}}, [](const auto& x) {
        using T = T_of<decltype(x)>;
        return coeff_attention_tiled(x[0], x[1], x[2], Tensor<T>(), AttentionOptions{}, Tensor<T>(), Tensor<T>(),
                                     TiledConfig{3})
            .out;
    }));
    return t;
}

}  // namespace coeffnet::optable
