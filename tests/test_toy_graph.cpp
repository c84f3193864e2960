// The toy experiment (examples/toy_graph, paper Section 4.1): the convex-hull bound without
// alpha, escaping it with alpha while W_v stays fixed, and the column-sum identity
// O = sum_i c_i F_i X, c_i = (1/H) sum_h alpha'[h,i], that holds while W_v^h = I/H.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "test_util.hpp"
#include "toy_graph/toy_graph.hpp"

using namespace coeffnet;
using namespace coeffnet::test;

namespace {

// The program's defaults (seed 0, 3000 steps); trained once, shared by the test cases.
const toy::Run& trained(size_t setting) {
    static const std::vector<toy::Run> runs = [] {
        std::vector<toy::Run> r;
        r.push_back(toy::train(toy::settings()[0], toy::Config{}));  // qk
        r.push_back(toy::train(toy::settings()[1], toy::Config{}));  // qk_alpha
        return r;
    }();
    return runs.at(setting);
}

// sum_i c_i F_i X, written out as loops: an independent evaluation of the identity.
std::vector<double> column_sum_output(const std::vector<double>& c, const Tensor<double>& maps) {
    const std::vector<double> x = toy::input_graph().to_vector(), f = maps.to_vector();  // f: [1, H, 8, 8]
    const size_t N = static_cast<size_t>(toy::kNodes);
    std::vector<double> out(N * 2, 0.0);
    for (size_t i = 0; i < c.size(); ++i)
        for (size_t n = 0; n < N; ++n)
            for (size_t m = 0; m < N; ++m)
                for (size_t j = 0; j < 2; ++j) out[n * 2 + j] += c[i] * f[(i * N + n) * N + m] * x[m * 2 + j];
    return out;
}

}  // namespace

TEST_CASE("toy graph: the hull floor is 0.25, checked against the input ring's edges") {
    // The input ring walks the boundary of its own convex hull (the square), so the distance
    // from a target node to the hull is its distance to the nearest ring edge, or 0 if inside.
    const std::vector<double> x = toy::input_graph().to_vector(), t = toy::target_graph().to_vector();
    double total = 0;
    for (size_t n = 0; n < 8; ++n) {
        const double px = t[2 * n], py = t[2 * n + 1];
        const bool inside = std::abs(px) <= 1 && std::abs(py) <= 1;
        double best = inside ? 0.0 : 1e300;
        for (size_t e = 0; e < 8 && !inside; ++e) {
            const double ax = x[2 * e], ay = x[2 * e + 1], bx = x[2 * ((e + 1) % 8)], by = x[2 * ((e + 1) % 8) + 1];
            const double u = std::clamp(((px - ax) * (bx - ax) + (py - ay) * (by - ay)) /
                                            ((bx - ax) * (bx - ax) + (by - ay) * (by - ay)),
                                        0.0, 1.0);
            const double dx = px - (ax + u * (bx - ax)), dy = py - (ay + u * (by - ay));
            best = std::min(best, dx * dx + dy * dy);
        }
        total += best;
    }
    CHECK(total / 16.0 == doctest::Approx(0.25).epsilon(1e-15));
    CHECK(toy::hull_floor_mse() == doctest::Approx(total / 16.0).epsilon(1e-15));
}

TEST_CASE("toy graph: every setting starts from the same layer, and alpha = 0 is plain attention") {
    const toy::Config c;
    const toy::Params a = toy::init_params(c), b = toy::init_params(c);
    CHECK(a.wq.to_vector() == b.wq.to_vector());
    CHECK(a.wk.to_vector() == b.wk.to_vector());
    NoGrad ng;
    CHECK(toy::forward(a, true, c).out.to_vector() == toy::forward(a, false, c).out.to_vector());
}

TEST_CASE("toy graph: tuning W_q, W_k alone stays inside the input's convex hull") {
    const toy::Run& qk = trained(0);
    CHECK(qk.max_abs_coord <= 1.0 + 1e-6);
    CHECK(qk.final_mse >= toy::hull_floor_mse() - 1e-12);
    CHECK(qk.final_mse < toy::hull_floor_mse() + 1e-3);  // and it gets there: the best it can do is copy X
}

TEST_CASE("toy graph: alpha leaves the hull and fits the target with W_v untouched") {
    const toy::Run& qa = trained(1);
    CHECK(qa.max_abs_coord > 1.5);
    CHECK(qa.final_mse <= toy::kFitThreshold);
    // W_v is bit for bit I/H: it was never handed to the optimiser.
    const int64_t H = qa.params.wv.shape()[0];
    std::vector<double> eye_over_h(static_cast<size_t>(H * 4), 0.0);
    for (size_t h = 0; h < static_cast<size_t>(H); ++h)
        eye_over_h[h * 4] = eye_over_h[h * 4 + 3] = 1.0 / static_cast<double>(H);
    CHECK(qa.params.wv.to_vector() == eye_over_h);
    CHECK_FALSE(qa.params.wv.grad().defined());
    // alpha did move, and its filter coefficients are not an average: some c_i < 0 or sum c != 1.
    const std::vector<double> c = toy::filter_coeffs(qa.params);
    double sum_c = 0, min_c = 1e300;
    for (double v : c) {
        sum_c += v;
        min_c = std::min(min_c, v);
    }
    CHECK((min_c < 0 || std::abs(sum_c - 1.0) > 0.1));
}

TEST_CASE("toy graph: with W_v = I/H the layer is sum_i c_i F_i X, c = alpha' column sums / H") {
    const toy::Config cfg;
    const std::vector<const toy::Run*> runs{&trained(0), &trained(1)};  // train before NoGrad below
    NoGrad ng;
    for (size_t s : {size_t{0}, size_t{1}}) {
        const toy::Run& r = *runs[s];
        const toy::Forward f = toy::forward(r.params, s == 1, cfg);
        CHECK(max_abs_diff(f.out.to_vector(), r.out) == 0.0);
        CHECK(max_abs_diff(column_sum_output(toy::filter_coeffs(r.params), f.maps), r.out) < 1e-12);
    }
    // Only the column sums matter: adding to alpha anything whose columns sum to zero changes
    // nothing (the maps F_i do not depend on alpha).
    toy::Params p = trained(1).params;
    const int64_t H = p.alpha.shape()[0];
    Tensor<double> shifted = p.alpha.detach().clone();
    for (int64_t i = 0; i < H; ++i) {
        shifted.at({0, i}) += 0.7 * static_cast<double>(i + 1);
        shifted.at({H - 1, i}) -= 0.7 * static_cast<double>(i + 1);
    }
    const std::vector<double> before = toy::forward(p, true, cfg).out.to_vector();
    p.alpha = shifted;
    CHECK(max_abs_diff(toy::forward(p, true, cfg).out.to_vector(), before) < 1e-12);
}

TEST_CASE("toy graph: the picture has one panel per setting") {
    const std::string s = toy::svg({trained(0), trained(1)}, toy::Config{});
    CHECK(s.rfind("<svg", 0) == 0);
    CHECK(s.find("</svg>") != std::string::npos);
    CHECK(s.find(">qk<") != std::string::npos);
    CHECK(s.find(">qk_alpha<") != std::string::npos);
}
