// The toy experiment (examples/toy_graph, paper Section 4.1): the convex-hull bound without
// alpha, escaping it with alpha while W_v stays fixed, the column-sum identity
// O = sum_i c_i F_i X, c_i = (1/H) sum_h alpha'[h,i], that holds while W_v^h = I/H, and the
// values' hull R = sum_h hull(X W_v^h) that bounds every output node without alpha.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
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
        r.push_back(toy::train(toy::settings()[2], toy::Config{}));  // qkv
        return r;
    }();
    return runs.at(setting);
}

// The layer written out as loops from its definition (examples/toy_graph/toy_graph.hpp, top):
// per head h, F_h = row-softmax(scale * (X W_q^h)(X W_k^h)^T); Fhat_h = sum_i alpha'[h,i] F_i with
// alpha' = I + alpha (or Fhat_h = F_h without alpha); O = sum_h Fhat_h X W_v^h. It shares no code
// with coeff_attention, so it is the independent reference the library's forward is held to.
struct LoopLayer {
    std::vector<double> out;   // O, [8, 2] row-major
    std::vector<double> maps;  // F_i, [H, 8, 8]
};
LoopLayer loop_layer(const toy::Params& p, bool use_alpha, const toy::Config& cfg) {
    const std::vector<double> x = toy::input_graph().to_vector(), wq = p.wq.to_vector(), wk = p.wk.to_vector(),
                              wv = p.wv.to_vector(), alpha = p.alpha.to_vector();
    const size_t N = static_cast<size_t>(toy::kNodes), H = static_cast<size_t>(cfg.heads),
                 d = static_cast<size_t>(cfg.head_dim);
    auto project = [&](const std::vector<double>& w, size_t h, size_t n, size_t j, size_t width) {  // (X W^h)[n, j]
        return x[n * 2] * w[(h * 2 + 0) * width + j] + x[n * 2 + 1] * w[(h * 2 + 1) * width + j];
    };
    LoopLayer r{std::vector<double>(N * 2, 0.0), std::vector<double>(H * N * N, 0.0)};
    for (size_t h = 0; h < H; ++h)
        for (size_t n = 0; n < N; ++n) {
            std::vector<double> row(N);
            double top = -1e300, total = 0;
            for (size_t m = 0; m < N; ++m) {
                double s = 0;
                for (size_t j = 0; j < d; ++j) s += project(wq, h, n, j, d) * project(wk, h, m, j, d);
                row[m] = cfg.scale * s;
                top = std::max(top, row[m]);
            }
            for (double& e : row) total += (e = std::exp(e - top));
            for (size_t m = 0; m < N; ++m) r.maps[(h * N + n) * N + m] = row[m] / total;
        }
    for (size_t h = 0; h < H; ++h)
        for (size_t n = 0; n < N; ++n)
            for (size_t m = 0; m < N; ++m) {
                double fhat = 0;  // Fhat_h[n, m]
                for (size_t i = 0; i < H; ++i) {
                    const double a = use_alpha ? (i == h ? 1.0 : 0.0) + alpha[h * H + i] : (i == h ? 1.0 : 0.0);
                    fhat += a * r.maps[(i * N + n) * N + m];
                }
                for (size_t j = 0; j < 2; ++j) r.out[n * 2 + j] += fhat * project(wv, h, m, j, 2);
            }
    return r;
}

// The mean squared error against the target graph, by loops.
double loop_mse(const std::vector<double>& out) {
    const std::vector<double> t = toy::target_graph().to_vector();
    double s = 0;
    for (size_t i = 0; i < t.size(); ++i) s += (out[i] - t[i]) * (out[i] - t[i]);
    return s / static_cast<double>(t.size());
}

// sum_i c_i F_i X, written out as loops: an independent evaluation of the identity.
std::vector<double> column_sum_output(const std::vector<double>& c, const std::vector<double>& f) {
    const std::vector<double> x = toy::input_graph().to_vector();  // f: [H, 8, 8]
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

TEST_CASE("toy graph: the layer matches its definition written out as loops, alpha = 0 is plain attention") {
    const toy::Config c;
    toy::Params p = toy::init_params(c);
    NoGrad ng;
    const LoopLayer plain = loop_layer(p, false, c);
    const toy::Forward f = toy::forward(p, false, c);
    CHECK(max_abs_diff(f.out.to_vector(), plain.out) < 1e-12);
    CHECK(max_abs_diff(f.maps.to_vector(), plain.maps) < 1e-12);
    CHECK(toy::forward(p, true, c).out.to_vector() == f.out.to_vector());  // alpha = 0: the same numbers
    // A nonzero alpha, against the loops.
    Generator g(11);
    p.alpha = Tensor<double>::randn({c.heads, c.heads}, g, 0.0, 0.5);
    const LoopLayer mixed = loop_layer(p, true, c);
    CHECK(max_abs_diff(toy::forward(p, true, c).out.to_vector(), mixed.out) < 1e-12);
    CHECK(max_abs_diff(mixed.out, plain.out) > 0.01);  // and alpha does change the output
}

namespace {

// The polygon's area by the shoelace formula: positive when its vertices run counter-clockwise.
double toy_signed_area(const std::vector<toy::Point>& p) {
    double a = 0;
    for (size_t i = 0; i < p.size(); ++i) a += p[i].x * p[(i + 1) % p.size()].y - p[(i + 1) % p.size()].x * p[i].y;
    return a / 2;
}

bool toy_has_vertex(const std::vector<toy::Point>& p, double x, double y) {
    return std::any_of(p.begin(), p.end(), [&](toy::Point v) { return std::abs(v.x - x) < 1e-12 && std::abs(v.y - y) < 1e-12; });
}

}  // namespace

TEST_CASE("toy graph: the values' hull of two square heads is the bigger square") {
    // W_v^1 = I, W_v^2 = 2I: hull(X) = [-1,1]^2 and hull(2X) = [-2,2]^2, so R = [-3,3]^2.
    const std::vector<toy::Point> r = toy::value_region(Tensor<double>::from({1, 0, 0, 1, 2, 0, 0, 2}, {2, 2, 2}));
    REQUIRE(r.size() == 4);
    CHECK(toy_signed_area(r) == doctest::Approx(36.0).epsilon(1e-14));
    for (double x : {-3.0, 3.0})
        for (double y : {-3.0, 3.0}) CHECK(toy_has_vertex(r, x, y));
    // Two segments: W_v^1 keeps x only, W_v^2 keeps y only: [-1,1] x {0} + {0} x [-1,1] = [-1,1]^2.
    const std::vector<toy::Point> seg = toy::value_region(Tensor<double>::from({1, 0, 0, 0, 0, 0, 0, 1}, {2, 2, 2}));
    REQUIRE(seg.size() == 4);
    CHECK(toy_signed_area(seg) == doctest::Approx(4.0).epsilon(1e-14));
    // One head, W_v = I: the hull of the ring itself, its four corners (the midpoints are not vertices).
    const std::vector<toy::Point> one = toy::value_region(Tensor<double>::from({1, 0, 0, 1}, {1, 2, 2}));
    REQUIRE(one.size() == 4);
    CHECK(toy_signed_area(one) == doctest::Approx(4.0).epsilon(1e-14));
    // W_v^h = I/H for H = 4 (every setting's start): R is hull(X) again.
    const std::vector<toy::Point> start = toy::value_region(toy::init_params(toy::Config{}).wv);
    REQUIRE(start.size() == 4);
    CHECK(toy_signed_area(start) == doctest::Approx(4.0).epsilon(1e-14));
    // A single value (W_v = 0) gives a single point.
    CHECK(toy::value_region(Tensor<double>::zeros({2, 2, 2})).size() == 1);
}

TEST_CASE("toy graph: point in the values' hull, inside, outside and on the edge") {
    const std::vector<toy::Point> sq = toy::convex_hull({{-1, -1}, {1, -1}, {1, 1}, {-1, 1}, {0, 1}, {0.2, 0.3}});
    REQUIRE(sq.size() == 4);
    CHECK(toy_signed_area(sq) > 0);  // counter-clockwise
    CHECK(toy::inside(sq, {0, 0}));
    CHECK(toy::inside(sq, {0.5, -0.9}));
    CHECK(toy::inside(sq, {1, 0}));   // on an edge
    CHECK(toy::inside(sq, {0, -1}));  // on an edge
    CHECK(toy::inside(sq, {1, 1}));   // a vertex
    CHECK(toy::inside(sq, {0, 1 + 1e-12}));  // within the tolerance
    CHECK_FALSE(toy::inside(sq, {0, 1 + 1e-6}));
    CHECK_FALSE(toy::inside(sq, {0, 2}));
    CHECK_FALSE(toy::inside(sq, {1.5, 1.5}));
    CHECK_FALSE(toy::inside(sq, {-1.01, 0}));
    // A diamond, where the square's corner (1, 1) lies outside and (0.5, 0.5) on the edge.
    const std::vector<toy::Point> dia = toy::convex_hull({{0, 1}, {1, 0}, {0, -1}, {-1, 0}});
    CHECK(toy::inside(dia, {0.5, 0.5}));
    CHECK(toy::inside(dia, {0.2, -0.3}));
    CHECK_FALSE(toy::inside(dia, {1, 1}));
    CHECK_FALSE(toy::inside(dia, {0.5, 0.5 + 1e-6}));
    // Degenerate regions: a segment and a point.
    const std::vector<toy::Point> seg = toy::convex_hull({{-1, 0}, {1, 0}, {0, 0}});
    REQUIRE(seg.size() == 2);
    CHECK(toy::inside(seg, {0.3, 0}));
    CHECK_FALSE(toy::inside(seg, {0.3, 0.1}));
    CHECK_FALSE(toy::inside(seg, {1.1, 0}));
    CHECK(toy::inside({{2, 3}}, {2, 3}));
    CHECK_FALSE(toy::inside({{2, 3}}, {2, 3.1}));
}

TEST_CASE("toy graph: the query node is a target furthest outside the input's hull") {
    const std::vector<double> t = toy::target_graph().to_vector();
    auto gap = [&](size_t n) {  // distance from target n to the square [-1,1]^2
        return std::hypot(t[2 * n] - std::clamp(t[2 * n], -1.0, 1.0), t[2 * n + 1] - std::clamp(t[2 * n + 1], -1.0, 1.0));
    };
    const size_t q = static_cast<size_t>(toy::kQueryNode);
    CHECK(gap(q) == doctest::Approx(1.0));
    for (size_t n = 0; n < static_cast<size_t>(toy::kNodes); ++n) CHECK(gap(n) <= gap(q));
}

// The tests of the three trained runs (the program's defaults: 3 settings x 3000 steps) are the
// subcases of one test case, so that one process trains them once (ctest runs each test case in a
// process of its own: as seven test cases they trained seven times, 57 s under ASan in CI).
TEST_CASE("toy graph: the three trained runs (qk, qk_alpha, qkv)") {
    SUBCASE("tuning W_q, W_k alone stays inside the input's convex hull") {
        // Without alpha, O = sum_h F_h X / H: every row of F_h is positive and sums to 1, so O's
        // nodes are convex combinations of X's and stay in its hull, the square [-1,1]^2; the MSE
        // can therefore not drop below the hull floor, 0.25 (checked in closed form above).
        const toy::Run& qk = trained(0);
        CHECK(qk.max_abs_coord <= 1.0 + 1e-12);
        CHECK(qk.final_mse >= toy::hull_floor_mse() - 1e-12);
        CHECK(qk.final_mse < toy::hull_floor_mse() + 1e-3);  // and it gets there: the best it can do is copy X
    }
    SUBCASE("alpha leaves the hull and fits the target with W_v untouched") {
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
    SUBCASE("with W_v = I/H the layer is sum_i c_i F_i X, c = alpha' column sums / H") {
        const toy::Config cfg;
        const std::vector<const toy::Run*> runs{&trained(0), &trained(1)};  // train before NoGrad below
        NoGrad ng;
        for (size_t s : {size_t{0}, size_t{1}}) {
            const toy::Run& r = *runs[s];
            INFO("setting ", r.setting.name);
            // The run's reported output and MSE are the layer's at its trained parameters, by the loops.
            const LoopLayer want = loop_layer(r.params, s == 1, cfg);
            CHECK(max_abs_diff(r.out, want.out) < 1e-12);
            CHECK(r.final_mse == doctest::Approx(loop_mse(want.out)).epsilon(1e-12));
            // The identity, with the loops' maps.
            CHECK(max_abs_diff(column_sum_output(toy::filter_coeffs(r.params), want.maps), want.out) < 1e-12);
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
        const std::vector<double> before = loop_layer(p, true, cfg).out;
        p.alpha = shifted;
        CHECK(max_abs_diff(toy::forward(p, true, cfg).out.to_vector(), before) < 1e-12);
    }
    SUBCASE("the picture has one panel per setting") {
        const std::string s = toy::svg({trained(0), trained(1)}, toy::Config{});
        CHECK(s.rfind("<svg", 0) == 0);
        CHECK(s.find("</svg>") != std::string::npos);
        CHECK(s.find(">qk<") != std::string::npos);
        CHECK(s.find(">qk_alpha<") != std::string::npos);
    }
    SUBCASE("the values' hull agrees with its support function at the trained W_v") {
        // The Minkowski sum's support function is the sum of the heads': max over R of u . p equals
        // sum_h max_m u . (X W_v^h)[m] in every direction u. And every one of the 8^H sums of one
        // value per head lies in R. Checked at qkv's trained W_v, where R is not a square.
        const Tensor<double> wv = trained(2).params.wv;
        const std::vector<toy::Point> r = toy::value_region(wv);
        const std::vector<double> x = toy::input_graph().to_vector(), w = wv.to_vector();
        const size_t H = static_cast<size_t>(wv.shape()[0]), N = static_cast<size_t>(toy::kNodes);
        auto value = [&](size_t h, size_t m) {
            return toy::Point{x[2 * m] * w[h * 4 + 0] + x[2 * m + 1] * w[h * 4 + 2], x[2 * m] * w[h * 4 + 1] + x[2 * m + 1] * w[h * 4 + 3]};
        };
        CHECK(toy_signed_area(r) > 0);
        for (int k = 0; k < 72; ++k) {
            const double ux = std::cos(k * std::numbers::pi / 36), uy = std::sin(k * std::numbers::pi / 36);
            double want = 0, got = -1e300;
            for (size_t h = 0; h < H; ++h) {
                double best = -1e300;
                for (size_t m = 0; m < N; ++m) best = std::max(best, ux * value(h, m).x + uy * value(h, m).y);
                want += best;
            }
            for (toy::Point p : r) got = std::max(got, ux * p.x + uy * p.y);
            CHECK(got == doctest::Approx(want).epsilon(1e-12));
        }
        size_t outside = 0;
        for (size_t i = 0; i < static_cast<size_t>(std::pow(N, H)); ++i) {
            toy::Point p{0, 0};
            for (size_t h = 0, j = i; h < H; ++h, j /= N) {
                p.x += value(h, j % N).x;
                p.y += value(h, j % N).y;
            }
            if (!toy::inside(r, p)) ++outside;
        }
        CHECK(outside == 0);
    }
    SUBCASE("without alpha the query node stays in the values' hull, with alpha it leaves") {
        // qk and qkv: every row of F_h is a convex combination, so O[n] lies in R (the theorem; the
        // tolerance only absorbs rounding). qk_alpha fits, so its node sits at the target (0, 2),
        // outside R = hull(X) = [-1,1]^2.
        const toy::Run &qk = trained(0), &qa = trained(1), &qkv = trained(2);
        CHECK(toy::inside(toy::value_region(qk.params.wv), toy::output_point(qk)));
        CHECK(toy::inside(toy::value_region(qkv.params.wv), toy::output_point(qkv)));
        REQUIRE(qa.final_mse <= toy::kFitThreshold);
        CHECK_FALSE(toy::inside(toy::value_region(qa.params.wv), toy::output_point(qa)));
        CHECK(toy::output_point(qa).y > 1.9);
        // And for every node, not only the query node, without alpha.
        for (const toy::Run* r : {&qk, &qkv})
            for (int64_t n = 0; n < toy::kNodes; ++n) CHECK(toy::inside(toy::value_region(r->params.wv), toy::output_point(*r, n)));
    }
    SUBCASE("the picture draws the values' hull and the query node's verdict per panel") {
        const std::string s = toy::svg({trained(0), trained(1), trained(2)}, toy::Config{});
        CHECK(s.find("node 1: output (0.00, 1.00) inside R") != std::string::npos);   // qk
        CHECK(s.find("node 1: output (0.00, 2.00) outside R") != std::string::npos);  // qk_alpha
        CHECK(s.find("node 1: output (0.00, 2.00) inside R") != std::string::npos);   // qkv
        CHECK(s.find("R = sum_h hull(X W_v^h)") != std::string::npos);
    }
}
