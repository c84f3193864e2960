// examples/toy_graph/toy_graph.hpp: the toy experiment of Coeff-Tuning (paper Section 4.1,
// Figure 3) as header-only functions, shared by the program (main.cpp) and its test.
//
// The idea in one paragraph. An attention map F = softmax(Q K^T) is a graph filter over the
// tokens: row n says how much node n listens to every node. Each row is positive and sums
// to 1, so F X is a set of convex combinations of the input nodes, and every output node of
// F X lies inside the convex hull of the inputs, whatever W_q and W_k are. Coeff-Tuning
// builds each head's filter from all heads' filters, Fhat_h = sum_i alpha'[h,i] F_i with
// alpha' = I + alpha, and alpha is unconstrained (Proposition 4.3): negative or large
// coefficients make Fhat's rows extrapolate instead of average, so outputs can leave the hull.
//
// The layer, for H heads:   O = sum_h Fhat_h X W_v^h.
// With W_v^h = I/H fixed this is O = sum_i c_i F_i X with c_i = (1/H) sum_h alpha'[h,i]:
// only alpha's column sums matter, and without alpha c_i = 1/H (a plain average of filters).
// In general (any W_v) the bound without alpha is the values' hull R = sum_h hull(X W_v^h),
// computed by value_region() below; the figure outlines it per setting.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>

namespace coeffnet::toy {

// Everything the paper leaves open, fixed here (see the report the program prints).
struct Config {
    int64_t heads = 4;       // H
    int64_t head_dim = 2;    // d, the width of each head's queries and keys
    double scale = 1.0;      // F = softmax(scale * Q K^T); 1 as in the paper's formula
    double init_std = 1.0;   // W_q, W_k ~ N(0, init_std^2)
    double lr = 0.03;        // Adam (AdamW with weight decay 0)
    int64_t steps = 3000;
    uint64_t seed = 0;
};

// Which tensors a setting trains; W_q and W_k are always trained.
struct Setting {
    const char* name;
    const char* tunes;
    bool tune_v;
    bool tune_alpha;
};

inline const std::array<Setting, 4>& settings() {
    static const std::array<Setting, 4> s{{{"qk", "W_q, W_k", false, false},
                                           {"qk_alpha", "W_q, W_k, alpha", false, true},
                                           {"qkv", "W_q, W_k, W_v", true, false},
                                           {"qkv_alpha", "W_q, W_k, W_v, alpha", true, true}}};
    return s;
}

constexpr int64_t kNodes = 8;
constexpr double kFitThreshold = 1e-3;  // a run "fits" when its final MSE is at most this

// The input graph: the square [-1,1]^2 walked as a ring of 8 nodes.
inline Tensor<double> input_graph() {
    return Tensor<double>::from({-1, 1, 0, 1, 1, 1, 1, 0, 1, -1, 0, -1, -1, -1, -1, 0}, {kNodes, 2});
}

// The target: the same ring with the four edge midpoints pushed out to distance 2.
inline Tensor<double> target_graph() {
    return Tensor<double>::from({-1, 1, 0, 2, 1, 1, 2, 0, 1, -1, 0, -2, -1, -1, -2, 0}, {kNodes, 2});
}

// The best any convex combination of the inputs can do: the hull of X is the square
// [-1,1]^2, so the closest hull point to each target node is the target clamped to it.
// (The four midpoint targets each sit at distance 1 outside: 4 * 1 / 16 coordinates = 0.25.)
inline double hull_floor_mse() {
    const std::vector<double> t = target_graph().to_vector();
    double s = 0;
    for (double v : t) {
        const double gap = v - std::clamp(v, -1.0, 1.0);
        s += gap * gap;
    }
    return s / static_cast<double>(t.size());
}

struct Params {
    Tensor<double> wq, wk;  // [H, 2, d]
    Tensor<double> wv;      // [H, 2, 2]
    Tensor<double> alpha;   // [H, H], row = target head, column = source head
};

// Every setting starts here: random W_q, W_k from the seed, W_v^h = I/H, alpha = 0. At this
// point the layer outputs the average of the H heads' filtered graphs.
inline Params init_params(const Config& c) {
    Generator gen(c.seed);
    Params p;
    p.wq = Tensor<double>::randn({c.heads, 2, c.head_dim}, gen, 0.0, c.init_std);
    p.wk = Tensor<double>::randn({c.heads, 2, c.head_dim}, gen, 0.0, c.init_std);
    p.wv = Tensor<double>::zeros({c.heads, 2, 2});
    for (int64_t h = 0; h < c.heads; ++h) p.wv.at({h, 0, 0}) = p.wv.at({h, 1, 1}) = 1.0 / static_cast<double>(c.heads);
    p.alpha = Tensor<double>::zeros({c.heads, c.heads});
    return p;
}

struct Forward {
    Tensor<double> out;   // O, [8, 2]
    Tensor<double> maps;  // F_i, [1, H, 8, 8]
};

// O = sum_h Fhat_h X W_v^h; with use_alpha false, Fhat_h = F_h (plain attention).
inline Forward forward(const Params& p, bool use_alpha, const Config& c) {
    const Tensor<double> x = input_graph();
    auto heads = [&](const Tensor<double>& w) {  // X W^h for every head: [1, H, 8, width]
        return matmul(x, w).reshape({1, c.heads, kNodes, w.shape()[2]});
    };
    AttentionOptions o;
    o.scale = c.scale;
    o.return_maps = true;
    const AttentionResult<double> r = use_alpha ? coeff_attention(heads(p.wq), heads(p.wk), heads(p.wv), p.alpha, o)
                                                : attention(heads(p.wq), heads(p.wk), heads(p.wv), o);
    return {sum(r.out, {0, 1}), r.maps};
}

inline Tensor<double> mse(const Tensor<double>& out) { return mean(square(out - target_graph())); }

struct Run {
    Setting setting;
    Params params;            // after training
    std::vector<double> out;  // O, row-major [8, 2]
    double final_mse = 0;
    double max_abs_coord = 0;  // max |O[n, j]|: above 1 means O left the input's hull
};

// Trains one setting from init_params(c) and evaluates it.
inline Run train(const Setting& s, const Config& c) {
    check(GradMode::enabled(), "toy::train: gradient recording is off (called inside a NoGrad scope)");
    Params p = init_params(c);
    std::vector<Tensor<double>> trained{p.wq.set_requires_grad(), p.wk.set_requires_grad()};
    if (s.tune_v) trained.push_back(p.wv.set_requires_grad());
    if (s.tune_alpha) trained.push_back(p.alpha.set_requires_grad());
    AdamW<double> opt(trained, {c.lr, 0.9, 0.999, 1e-8, 0.0});
    for (int64_t step = 0; step < c.steps; ++step) {
        opt.zero_grad();
        mse(forward(p, s.tune_alpha, c).out).backward();
        opt.step();
    }
    NoGrad ng;
    const Tensor<double> out = forward(p, s.tune_alpha, c).out;
    Run r{s, p, out.to_vector(), mse(out).item(), 0.0};
    for (double v : r.out) r.max_abs_coord = std::max(r.max_abs_coord, std::abs(v));
    return r;
}

// c_i = (1/H) sum_h alpha'[h, i]: with W_v^h = I/H, O = sum_i c_i F_i X.
inline std::vector<double> filter_coeffs(const Params& p) {
    const int64_t H = p.alpha.shape()[0];
    std::vector<double> c(static_cast<size_t>(H), 0.0);
    for (int64_t i = 0; i < H; ++i) {
        for (int64_t h = 0; h < H; ++h) c[static_cast<size_t>(i)] += (h == i ? 1.0 : 0.0) + p.alpha.at({h, i});
        c[static_cast<size_t>(i)] /= static_cast<double>(H);
    }
    return c;
}

// ---- the values' hull: where a softmax filter can put a node ------------------------------
//
// Without alpha, row n of F_h is a convex combination, so (F_h X W_v^h)[n] lies in hull(V_h),
// V_h = X W_v^h (the head's 8 value vectors), and O[n] = sum_h (F_h X W_v^h)[n] lies in the
// Minkowski sum R = hull(V_1) + ... + hull(V_H): the hull of all sums of one value per head.
// R is the same for every node. With W_v^h = I/H it is hull(X) itself; a tuned W_v moves it.
// With alpha the rows of Fhat_h are not convex combinations, and O[n] can leave R.

struct Point {
    double x, y;
};

// The query node drawn in the figure: node 1, (0, 1) -> (0, 2), the first of the four edge
// midpoints, whose targets tie as furthest outside hull(X) (distance 1).
constexpr int64_t kQueryNode = 1;

// (b - a) x (c - a): > 0 when a, b, c turn counter-clockwise.
inline double cross(Point a, Point b, Point c) { return (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x); }

// The convex hull (Andrew's monotone chain): vertices counter-clockwise, collinear points dropped.
inline std::vector<Point> convex_hull(std::vector<Point> p) {
    std::sort(p.begin(), p.end(), [](Point a, Point b) { return a.x < b.x || (a.x == b.x && a.y < b.y); });
    p.erase(std::unique(p.begin(), p.end(), [](Point a, Point b) { return a.x == b.x && a.y == b.y; }), p.end());
    if (p.size() < 3) return p;
    std::vector<Point> h(2 * p.size());
    size_t k = 0;
    for (size_t i = 0; i < p.size(); ++i) {  // lower chain
        while (k >= 2 && cross(h[k - 2], h[k - 1], p[i]) <= 0) --k;
        h[k++] = p[i];
    }
    for (size_t i = p.size() - 1, lo = k + 1; i-- > 0;) {  // upper chain
        while (k >= lo && cross(h[k - 2], h[k - 1], p[i]) <= 0) --k;
        h[k++] = p[i];
    }
    h.resize(k - 1);  // the last point is the first
    return h;
}

// R = sum_h hull(X W_v^h) for the given W_v ([H, 2, 2]), counter-clockwise. Built head by head,
// hull(A + B) = hull(hull(A) + B), which gives the same polygon as hulling all 8^H sums at once.
inline std::vector<Point> value_region(const Tensor<double>& wv) {
    const std::vector<double> x = input_graph().to_vector(), w = wv.to_vector();
    std::vector<Point> r{{0.0, 0.0}};
    for (size_t h = 0; h < static_cast<size_t>(wv.shape()[0]); ++h) {
        const double* m = &w[h * 4];  // W_v^h, row-major 2x2; a value is the row X[n] W_v^h
        std::vector<Point> sums;
        for (Point a : r)
            for (size_t n = 0; n < static_cast<size_t>(kNodes); ++n)
                sums.push_back({a.x + x[2 * n] * m[0] + x[2 * n + 1] * m[2], a.y + x[2 * n] * m[1] + x[2 * n + 1] * m[3]});
        r = convex_hull(std::move(sums));
    }
    return r;
}

// Whether q lies in the convex polygon (counter-clockwise, as convex_hull returns it), allowing
// q to be up to `tol` outside. A polygon of 1 or 2 points is a point or a segment.
inline bool inside(const std::vector<Point>& poly, Point q, double tol = 1e-9) {
    if (poly.empty()) return false;
    auto dist_to_segment = [&](Point a, Point b) {
        const double len2 = (b.x - a.x) * (b.x - a.x) + (b.y - a.y) * (b.y - a.y);
        const double u = len2 > 0 ? std::clamp(((q.x - a.x) * (b.x - a.x) + (q.y - a.y) * (b.y - a.y)) / len2, 0.0, 1.0) : 0.0;
        return std::hypot(q.x - a.x - u * (b.x - a.x), q.y - a.y - u * (b.y - a.y));
    };
    if (poly.size() < 3) return dist_to_segment(poly.front(), poly.back()) <= tol;
    for (size_t i = 0; i < poly.size(); ++i) {
        const Point a = poly[i], b = poly[(i + 1) % poly.size()];
        if (cross(a, b, q) < -tol * std::hypot(b.x - a.x, b.y - a.y)) return false;  // signed distance < -tol
    }
    return true;
}

// Node n's output O[n] of a run, as a point.
inline Point output_point(const Run& r, int64_t n = kQueryNode) {
    return {r.out[static_cast<size_t>(2 * n)], r.out[static_cast<size_t>(2 * n + 1)]};
}

// ---- the picture: one panel per setting, like the paper's Figure 3 ------------------------

namespace detail {

inline std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    // A value that rounds to zero prints unsigned: "-0.00" (from -1e-9, say; which side of zero
    // depends on the compiler's rounding) would read as a negative number.
    std::string s = buf;
    if (s.size() > 1 && s[0] == '-' && s.find_first_not_of("0.", 1) == std::string::npos) s.erase(0, 1);
    return s;
}

inline std::string text(double x, double y, int size, const std::string& body, const char* extra = "") {
    return "<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", y) + "\" font-size=\"" + std::to_string(size) +
           "\" " + extra + ">" + body + "</text>\n";
}

// The 8 nodes of a row-major [8, 2] graph joined as a closed ring, in pixel coordinates
// (origin at ox, oy; `unit` pixels per coordinate; y points up).
inline std::string ring(const std::vector<double>& g, double ox, double oy, double unit, const char* colour,
                        double stroke_width, const char* dash, const char* dot_fill, double dot_r) {
    std::string pts, dots;
    for (size_t n = 0; n < static_cast<size_t>(kNodes); ++n) {
        const std::string px = fmt("%.2f", ox + unit * g[2 * n]), py = fmt("%.2f", oy - unit * g[2 * n + 1]);
        pts += px + "," + py + " ";
        dots += "<circle cx=\"" + px + "\" cy=\"" + py + "\" r=\"" + fmt("%.1f", dot_r) + "\" fill=\"" + dot_fill +
                "\" stroke=\"" + colour + "\"/>\n";
    }
    return "<polygon points=\"" + pts + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"" +
           fmt("%.1f", stroke_width) + "\" stroke-dasharray=\"" + dash + "\"/>\n" + dots;
}

// A polygon's vertices as an SVG points list, in pixel coordinates as ring() draws them.
inline std::string polygon_points(const std::vector<Point>& poly, double ox, double oy, double unit) {
    std::string pts;
    for (Point p : poly) pts += fmt("%.2f", ox + unit * p.x) + "," + fmt("%.2f", oy - unit * p.y) + " ";
    return pts;
}

}  // namespace detail

// Four panels side by side. In each: the input ring (grey) over its convex hull (shaded), the
// values' hull R = sum_h hull(X W_v^h) at the setting's final W_v (dashed outline, light fill),
// the setting's output (coloured), the target (dashed, drawn on top so a perfect fit shows as
// dashes along the coloured ring), and the query node's output (dot) and target (ring).
inline std::string svg(const std::vector<Run>& runs, const Config& c) {
    using detail::fmt;
    using detail::text;
    const double panel = 360, half = 170, top = 78;  // half: pixels from a panel's centre to its plot's edge
    const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    const double width = panel * static_cast<double>(runs.size()), height = top + 2 * half + 100 + 93;
    const std::vector<double> x = input_graph().to_vector(), t = target_graph().to_vector();
    const size_t q = static_cast<size_t>(kQueryNode);
    // One scale for every panel: the largest of the target (2) and the regions must fit.
    std::vector<std::vector<Point>> regions;
    double extent = 2.2;
    for (const Run& r : runs) {
        regions.push_back(value_region(r.params.wv));
        for (Point p : regions.back()) extent = std::max({extent, std::abs(p.x) * 1.05, std::abs(p.y) * 1.05});
    }
    const double unit = std::min(60.0, half / extent);  // pixels per coordinate
    const char* mid = "text-anchor=\"middle\"";
    std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", width) + "\" height=\"" +
                    fmt("%.0f", height) + "\" font-family=\"sans-serif\">\n";
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s += text(width / 2, 24, 17, "Coeff-Tuning toy experiment: one attention layer, O = sum_h Fhat_h X W_v^h", mid);
    s += text(width / 2, 44, 12,
              "H = " + std::to_string(c.heads) + " heads, d = " + std::to_string(c.head_dim) + ", scale " +
                  fmt("%g", c.scale) + ", Adam lr " + fmt("%g", c.lr) + ", " + std::to_string(c.steps) +
                  " steps, float64, seed " + std::to_string(c.seed) + ". All settings start from the same W_q, W_k, " +
                  "W_v^h = I/H and alpha = 0.",
              "text-anchor=\"middle\" fill=\"#555\"");
    // Legend.
    const double ly = 62, lx = width / 2 - 530;
    auto line = [&](double x0, const char* colour, const char* extra) {
        return "<line x1=\"" + fmt("%.1f", x0) + "\" y1=\"" + fmt("%.1f", ly - 3) + "\" x2=\"" + fmt("%.1f", x0 + 26) +
               "\" y2=\"" + fmt("%.1f", ly - 3) + "\" stroke=\"" + colour + "\" " + extra + "/>\n";
    };
    s += "<rect x=\"" + fmt("%.1f", lx) + "\" y=\"" + fmt("%.1f", ly - 9) +
         "\" width=\"22\" height=\"12\" fill=\"#eee\" stroke=\"#999\"/>\n";
    s += text(lx + 28, ly + 1, 12, "input X (ring) and its convex hull");
    s += line(lx + 230, "black", "stroke-dasharray=\"5,4\"");
    s += text(lx + 262, ly + 1, 12, "target O");
    s += line(lx + 340, "#d62728", "stroke-width=\"2.2\"");
    s += text(lx + 372, ly + 1, 12, "the setting's output");
    s += "<rect x=\"" + fmt("%.1f", lx + 510) + "\" y=\"" + fmt("%.1f", ly - 9) +
         "\" width=\"22\" height=\"12\" fill=\"#d62728\" fill-opacity=\"0.08\" stroke=\"#d62728\" "
         "stroke-dasharray=\"4,3\"/>\n";
    s += text(lx + 538, ly + 1, 12, "R = sum_h hull(X W_v^h), the values' hull");
    s += "<circle cx=\"" + fmt("%.1f", lx + 840) + "\" cy=\"" + fmt("%.1f", ly - 3) +
         "\" r=\"8\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
    s += "<circle cx=\"" + fmt("%.1f", lx + 840) + "\" cy=\"" + fmt("%.1f", ly - 3) +
         "\" r=\"4.5\" fill=\"#d62728\" stroke=\"black\"/>\n";
    s += text(lx + 854, ly + 1, 12, "node " + std::to_string(kQueryNode) + ": output (dot), target (ring)");
    for (size_t k = 0; k < runs.size(); ++k) {
        const Run& r = runs[k];
        const char* colour = colours[k % 4];
        const double ox = panel * (static_cast<double>(k) + 0.5), oy = top + 70 + half;
        s += "<rect x=\"" + fmt("%.1f", ox - panel / 2 + 5) + "\" y=\"" + fmt("%.1f", top) + "\" width=\"" +
             fmt("%.1f", panel - 10) + "\" height=\"" + fmt("%.1f", 2 * half + 100) +
             "\" fill=\"none\" stroke=\"#ccc\"/>\n";
        s += text(ox, top + 20, 15, r.setting.name, "text-anchor=\"middle\" font-weight=\"bold\"");
        s += text(ox, top + 37, 12, std::string("tunes ") + r.setting.tunes, mid);
        s += text(ox, top + 54, 13, "final MSE " + fmt("%.4e", r.final_mse) + ", max |coord| " +
                                        fmt("%.5f", r.max_abs_coord), mid);
        s += "<rect x=\"" + fmt("%.2f", ox - unit) + "\" y=\"" + fmt("%.2f", oy - unit) + "\" width=\"" +
             fmt("%.2f", 2 * unit) + "\" height=\"" + fmt("%.2f", 2 * unit) + "\" fill=\"#eee\"/>\n";
        s += detail::ring(x, ox, oy, unit, "#999", 1.5, "none", "#999", 3);
        s += "<polygon points=\"" + detail::polygon_points(regions[k], ox, oy, unit) + "\" fill=\"" + colour +
             "\" fill-opacity=\"0.08\" stroke=\"" + colour + "\" stroke-width=\"1.3\" stroke-dasharray=\"6,4\"/>\n";
        s += detail::ring(r.out, ox, oy, unit, colour, 2.5, "none", colour, 3.5);
        s += detail::ring(t, ox, oy, unit, "black", 1.1, "5,4", "none", 6);
        const Point o = output_point(r);
        s += "<circle cx=\"" + fmt("%.2f", ox + unit * t[2 * q]) + "\" cy=\"" + fmt("%.2f", oy - unit * t[2 * q + 1]) +
             "\" r=\"9\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
        s += "<circle cx=\"" + fmt("%.2f", ox + unit * o.x) + "\" cy=\"" + fmt("%.2f", oy - unit * o.y) + "\" r=\"5\" fill=\"" +
             colour + "\" stroke=\"black\"/>\n";
        s += text(ox + unit * t[2 * q] + 12, oy - unit * t[2 * q + 1] - 8, 11, "node " + std::to_string(kQueryNode));
        const bool in = inside(regions[k], o);
        s += text(ox, oy + half + 22, 13,
                  "node " + std::to_string(kQueryNode) + ": output (" + fmt("%.2f", o.x) + ", " + fmt("%.2f", o.y) +
                      ") " + (in ? "inside" : "outside") + " R",
                  (std::string(mid) + " font-weight=\"bold\" fill=\"" + (in ? "#333" : colour) + "\"").c_str());
    }
    const char* grey = "fill=\"#444\"";
    const std::string node = "node " + std::to_string(kQueryNode);
    auto find = [&](const char* name) {
        return std::find_if(runs.begin(), runs.end(), [&](const Run& r) { return std::string(r.setting.name) == name; });
    };
    const auto qkv = find("qkv"), qkv_alpha = find("qkv_alpha");
    s += text(12, height - 80, 12,
              "Dashed outline: R = sum_h hull(X W_v^h), the sum over heads of the hulls of the values at the final W_v "
              "(R is the shaded hull of X while W_v^h = I/H). Node " + std::to_string(kQueryNode) + ": the edge midpoint (0, 1), target (0, 2).",
              grey);
    s += text(12, height - 63, 12,
              "Without alpha each filter row is a convex combination, so every output node lies in R: qk (R = hull X) "
              "cannot pass the MSE floor " + fmt("%.2f", hull_floor_mse()) + ", and its best is to copy X.",
              grey);
    s += text(12, height - 46, 12,
              "alpha mixes the heads' filters with unconstrained coefficients, so the mixed rows can extrapolate and O "
              "leaves R while W_v stays I/H (qk_alpha).",
              grey);
    if (qkv != runs.end())
        s += text(12, height - 29, 12,
                  std::string(qkv->final_mse <= kFitThreshold ? "Unlike the paper's claim (ii), qkv fits here too: "
                                                              : "qkv did not reach MSE <= 1e-3 in this run, but note: ") +
                      "W_v^h scales the values X W_v^h outward, so R grows past the target and O can reach it from "
                      "inside R. One seed shown; the program reports ten.",
                  grey);
    if (qkv_alpha != runs.end())
        s += text(12, height - 12, 12,
                  "With alpha, R is no bound, but O need not leave it: in qkv_alpha, where W_v grows R too, " + node +
                      "'s output is " + (inside(value_region(qkv_alpha->params.wv), output_point(*qkv_alpha)) ? "inside" : "outside") +
                      " R.",
                  grey);
    s += "</svg>\n";
    return s;
}

}  // namespace coeffnet::toy
