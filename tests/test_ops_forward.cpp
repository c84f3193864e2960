// Forward values against references: naive loops, or values PyTorch prints for the same input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include <coeffnet/coeffnet.hpp>

using namespace coeffnet;

namespace {

// C[b] = A[b] B[b] by the definition, in double, reading any strides through at().
template <class T>
std::vector<double> naive_matmul(const Tensor<T>& a, const Tensor<T>& b, int64_t batch) {
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    std::vector<double> c;
    const auto av = a.reshape({batch, M, K}).to_vector();
    const auto bv = b.reshape({batch, K, N}).to_vector();
    for (int64_t i = 0; i < batch; ++i)
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k)
                    s += static_cast<double>(av[static_cast<size_t>((i * M + m) * K + k)]) *
                         bv[static_cast<size_t>((i * K + k) * N + n)];
                c.push_back(s);
            }
    return c;
}

template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    CHECK(worst <= tol);
}

}  // namespace

TEST_CASE_TEMPLATE("matmul matches the definition on every path", T, float, double) {
    const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
    Generator g(1);
    SUBCASE("2-D, odd sizes") {
        auto a = Tensor<T>::randn({7, 13}, g), b = Tensor<T>::randn({13, 5}, g);
        check_close(matmul(a, b).to_vector(), naive_matmul(a, b, 1), tol);
    }
    SUBCASE("batched, many small (parallel over the batch)") {
        auto a = Tensor<T>::randn({16, 3, 9}, g), b = Tensor<T>::randn({16, 9, 4}, g);
        check_close(matmul(a, b).to_vector(), naive_matmul(a, b, 16), tol);
    }
    SUBCASE("shared right operand folds the batch into one GEMM") {
        auto a = Tensor<T>::randn({2, 3, 5, 6}, g), b = Tensor<T>::randn({6, 4}, g);
        check_close(matmul(a, b).to_vector(), naive_matmul(a, b.unsqueeze(0).expand({6, 6, 4}).contiguous(), 6), tol);
    }
    SUBCASE("transposed and strided views are read in place") {
        auto a = Tensor<T>::randn({2, 6, 4}, g).mT(), b = Tensor<T>::randn({2, 5, 6}, g).mT();
        check_close(matmul(a, b).to_vector(), naive_matmul(a.contiguous(), b.contiguous(), 2), tol);
        auto s = Tensor<T>::randn({8, 6}, g).slice(0, 0, 8, 2).slice(1, 0, 6, 2);  // no unit stride at all
        auto c = Tensor<T>::randn({3, 2}, g);
        check_close(matmul(s, c).to_vector(), naive_matmul(s.contiguous(), c, 1), tol);
    }
    SUBCASE("empty inner dimension gives zeros") {
        auto a = Tensor<T>::randn({3, 0}, g), b = Tensor<T>::randn({0, 2}, g);
        CHECK(matmul(a, b).to_vector() == std::vector<T>(6, T(0)));
    }
}

// The one CPU GEMM directly, at sizes on both sides of its kernel rule (backend/cpu_gemm.hpp: with
// BLIS, products from 2^18 multiply-adds go to BLIS, A B^T only from 2^23; smaller ones and every
// product without BLIS to Eigen's kernel): every storage order of A and B, operands with no unit
// stride or a broadcast row (packed), C with a leading dimension wider than N, accumulation, a
// one-row product. Each entry within 4 K eps of sum_k |a_ik b_kj| of the double product; the same
// bits with one thread and two.
TEST_CASE_TEMPLATE("detail::gemm: every storage order, both kernels, strides, accumulation, any thread count", T,
                   float, double) {
    using detail::MatRef;
    const double eps = std::numeric_limits<T>::epsilon();
    Generator g(11);
    // A [M, K] in storage order ao (1: row-major, 0: column-major, 2: every other element of a
    // row-major [M, 2K], 3: one row broadcast), likewise B [K, N].
    struct Operand {
        Tensor<T> data;
        MatRef<T> ref;
    };
    auto make = [&](int64_t rows, int64_t cols, int order) {
        Operand o;
        if (order == 1) {
            o.data = Tensor<T>::randn({rows, cols}, g);
            o.ref = detail::rows_ref(o.data.data(), rows, cols, cols);
        } else if (order == 0) {
            o.data = Tensor<T>::randn({cols, rows}, g);
            o.ref = detail::rows_ref(o.data.data(), cols, rows, rows).t();
        } else if (order == 2) {
            o.data = Tensor<T>::randn({rows, 2 * cols}, g);
            o.ref = {o.data.data(), rows, cols, 2 * cols, 2};
        } else {
            o.data = Tensor<T>::randn({cols}, g);
            o.ref = {o.data.data(), rows, cols, 0, 1};
        }
        return o;
    };
    auto at = [](const MatRef<T>& m, int64_t i, int64_t j) { return static_cast<double>(m.p[i * m.rs + j * m.cs]); };
    struct Case {
        int64_t M, N, K;
        int ao, bo;
    };
    const Case cases[] = {
        {5, 7, 3, 1, 1},        {1, 300, 40, 1, 0},     {64, 64, 64, 1, 1},     {64, 64, 64, 0, 1},
        {64, 64, 64, 0, 0},     {64, 64, 64, 1, 0},     {300, 200, 150, 1, 0},  {97, 130, 71, 2, 1},
        {90, 70, 60, 1, 3},     {1, 513, 600, 1, 1},    {40, 33, 300, 3, 0},    {130, 70, 65, 0, 2}};
    for (const Case& c : cases) {
        CAPTURE(c.M);
        CAPTURE(c.N);
        CAPTURE(c.K);
        CAPTURE(c.ao);
        CAPTURE(c.bo);
        const Operand a = make(c.M, c.K, c.ao), b = make(c.K, c.N, c.bo);
        const int64_t ldc = c.N + 3;
        std::vector<T> prior(static_cast<size_t>(c.M * ldc));
        for (size_t i = 0; i < prior.size(); ++i) prior[i] = static_cast<T>(static_cast<double>(i % 7) - 3);
        for (bool accumulate : {false, true}) {
            CAPTURE(accumulate);
            std::vector<T> out = prior;
            detail::gemm(a.ref, b.ref, out.data(), ldc, accumulate);
            double worst = 0;  // the largest error in units of its bound
            for (int64_t i = 0; i < c.M; ++i)
                for (int64_t j = 0; j < ldc; ++j) {
                    const size_t o = static_cast<size_t>(i * ldc + j);
                    if (j >= c.N) {
                        REQUIRE(out[o] == prior[o]);  // the padding past N is never written
                        continue;
                    }
                    double s = accumulate ? static_cast<double>(prior[o]) : 0.0, mag = std::abs(s);
                    for (int64_t k = 0; k < c.K; ++k) {
                        s += at(a.ref, i, k) * at(b.ref, k, j);
                        mag += std::abs(at(a.ref, i, k) * at(b.ref, k, j));
                    }
                    worst = std::max(worst, std::abs(static_cast<double>(out[o]) - s) / (4 * (c.K + 1) * eps * mag));
                }
            CHECK(worst <= 1.0);
            const int had = num_threads();
            std::vector<T> one = prior, two = prior;
            set_num_threads(1);
            detail::gemm(a.ref, b.ref, one.data(), ldc, accumulate);
            set_num_threads(2);
            detail::gemm(a.ref, b.ref, two.data(), ldc, accumulate);
            set_num_threads(had);
            CHECK(one == two);
            CHECK(one == out);
        }
    }
}

TEST_CASE("linear is x W^T + b") {
    Generator g(2);
    auto x = Tensor<double>::randn({2, 3, 4}, g), w = Tensor<double>::randn({5, 4}, g), b = Tensor<double>::randn({5}, g);
    auto y = linear(x, w, b);
    CHECK(y.shape() == Shape{2, 3, 5});
    for (int64_t i = 0; i < 2; ++i)
        for (int64_t n = 0; n < 3; ++n)
            for (int64_t o = 0; o < 5; ++o) {
                double s = b.at({o});
                for (int64_t k = 0; k < 4; ++k) s += x.at({i, n, k}) * w.at({o, k});
                CHECK(y.at({i, n, o}) == doctest::Approx(s).epsilon(1e-12));
            }
}

TEST_CASE("GELU, SiLU match PyTorch's values") {
    auto x = Tensor<double>::from({-3.0, -1.0, 0.0, 0.5, 1.0, 2.0}, {6});
    check_close(gelu(x).to_vector(),
                {-0.00404969409489031, -0.15865525393145707, 0.0, 0.34573123063700656, 0.8413447460685429,
                 1.9544997361036416},
                1e-15);
    check_close(gelu(x, GeluApprox::tanh).to_vector(),
                {-0.0036373920817729943, -0.15880800939172324, 0.0, 0.34571400982514394, 0.8411919906082768,
                 1.954597694087775},
                1e-15);
    check_close(silu(x).to_vector(),
                {-0.14227761953270035, -0.2689414213699951, 0.0, 0.3112296656009273, 0.7310585786300049,
                 1.7615941559557646},
                1e-15);
}

TEST_CASE("softmax: definition, mask, extreme logits, fully masked rows") {
    auto x = Tensor<double>::from({1, 2, 3, -1, 0, 1e4}, {2, 3});
    auto y = softmax(x).to_vector();
    const double e = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    CHECK(y[0] == doctest::Approx(std::exp(1.0) / e));
    CHECK(y[2] == doctest::Approx(std::exp(3.0) / e));
    CHECK(y[5] == 1.0);
    CHECK(y[3] == 0.0);

    auto big = Tensor<float>::from({1e4f, -1e4f, 0.0f, -1e4f, -1e4f, -1e4f}, {2, 3});
    for (float v : softmax(big).to_vector()) CHECK(std::isfinite(v));
    for (float v : log_softmax(big).to_vector()) CHECK(std::isfinite(v));
    CHECK(softmax(big).to_vector()[3] == doctest::Approx(1.0f / 3));
    CHECK(log_softmax(big).to_vector()[1] == doctest::Approx(-2e4f));
    auto ce = cross_entropy(big, Tensor<int64_t>::from({1, 0}, {2}));
    CHECK(std::isfinite(ce.item()));
    CHECK(ce.item() == doctest::Approx((2e4 + std::log(3.0)) / 2).epsilon(1e-6));

    const double inf = std::numeric_limits<double>::infinity();
    auto mask = Tensor<double>::from({0, -inf, 0, -inf, -inf, -inf}, {2, 3});
    auto m = softmax(Tensor<double>::zeros({2, 3}), mask).to_vector();
    CHECK(m == std::vector<double>{0.5, 0, 0.5, 0, 0, 0});  // the fully masked row is zeros
}

TEST_CASE("log_softmax and cross_entropy match the definition, ignore_index, all ignored is NaN") {
    Generator g(4);
    auto x = Tensor<double>::randn({4, 5}, g);
    auto ls = log_softmax(x);
    auto targets = Tensor<int64_t>::from({2, -100, 0, 4}, {4});
    double want = 0;
    for (int64_t r : {0, 2, 3}) {
        double s = 0;
        for (int64_t c = 0; c < 5; ++c) s += std::exp(x.at({r, c}));
        for (int64_t c = 0; c < 5; ++c) CHECK(ls.at({r, c}) == doctest::Approx(x.at({r, c}) - std::log(s)));
        want += std::log(s) - x.at({r, targets.at({r})});
    }
    CHECK(cross_entropy(x, targets).item() == doctest::Approx(want / 3));
    CHECK(cross_entropy(x, targets, -100, Reduction::sum).item() == doctest::Approx(want));
    auto all_ignored = cross_entropy(x, Tensor<int64_t>::full({4}, -100));
    CHECK(std::isnan(all_ignored.item()));
}

TEST_CASE("layer_norm matches the definition, a constant row gives the bias") {
    Generator g(5);
    auto x = Tensor<double>::randn({3, 6}, g), w = Tensor<double>::randn({6}, g), b = Tensor<double>::randn({6}, g);
    auto y = layer_norm(x, w, b, 1e-5);
    for (int64_t r = 0; r < 3; ++r) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < 6; ++c) mu += x.at({r, c}) / 6;
        for (int64_t c = 0; c < 6; ++c) var += (x.at({r, c}) - mu) * (x.at({r, c}) - mu) / 6;
        for (int64_t c = 0; c < 6; ++c)
            CHECK(y.at({r, c}) == doctest::Approx((x.at({r, c}) - mu) / std::sqrt(var + 1e-5) * w.at({c}) + b.at({c})));
    }
    auto constant = Tensor<float>::full({2, 768}, 3.25f);
    auto bias = Tensor<float>::full({768}, 0.5f);
    auto z = layer_norm(constant, Tensor<float>::ones({768}), bias, 1e-12);
    for (float v : z.to_vector()) CHECK(v == 0.5f);
}

TEST_CASE("dropout keeps 1-p of the entries, scaled by 1/(1-p), reproducibly") {
    auto x = Tensor<float>::ones({100000});
    Generator g1(9), g2(9);
    auto a = dropout(x, 0.25, g1).to_vector();
    auto b = dropout(x, 0.25, g2).to_vector();
    CHECK(a == b);
    int64_t kept = 0;
    for (float v : a) {
        CHECK((v == 0.0f || v == doctest::Approx(1.0f / 0.75f)));
        kept += v != 0.0f;
    }
    CHECK(std::abs(static_cast<double>(kept) / 100000 - 0.75) < 0.01);
    Generator g3(9);
    CHECK(dropout(x, 0.25, g3, false).data() == x.data());  // eval: identity, no draw
    CHECK(g3.offset == 0);
    for (float v : dropout(x, 1.0, g3).to_vector()) CHECK(v == 0.0f);
}

TEST_CASE("embedding, concat and split") {
    auto w = Tensor<double>::arange(12).reshape({4, 3});
    auto e = embedding(Tensor<int64_t>::from({3, 0, 3}, {3}), w);
    CHECK(e.to_vector() == std::vector<double>{9, 10, 11, 0, 1, 2, 9, 10, 11});
    auto a = Tensor<double>::from({1, 2, 3, 4}, {2, 2}), b = Tensor<double>::from({5, 6}, {2, 1});
    auto c = concat(std::vector{a, b}, 1);
    CHECK(c.to_vector() == std::vector<double>{1, 2, 5, 3, 4, 6});
    auto parts = split(c, {2, 1}, -1);
    CHECK(parts[0].to_vector() == a.to_vector());
    CHECK(parts[1].to_vector() == b.to_vector());
    auto ch = chunk(Tensor<double>::arange(6), 3, 0);
    CHECK(ch[2].to_vector() == std::vector<double>{4, 5});
}
