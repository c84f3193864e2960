// tools/filters_render.hpp: the pictures of `coeffnet vit filters` (docs/method.md, section 1-2):
// for one query token, each head's attention row F_h = P_h[query, :] seen as a filter over the
// image patches, the mixed filters Fhat_h = sum_i alpha'[h, i] F_i of a Coeff-Tuning adapter,
// and alpha' = I + alpha itself. Model-independent: the caller runs the model and fills a
// FilterView; everything here only draws it.
//
//   render_filters / write_filters_png   one RGB picture laid out for a lecture slide (below)
//   filters_json                         the numbers drawn (schema below)
//   filters_html                         a self-contained page: click a patch to pick the query,
//                                        move sliders to change alpha' and watch Fhat change
//
// The picture, top to bottom (every size in pixels; text is the 5x7 font below at 2x):
//   title      "layer L of N, query Q (patch r, c)" or "... query 0 (CLS)", then model and adapter.
//   row 1      the input image (320 / max(grid) px per patch, 4..64) with the patch grid drawn
//              faintly and the query patch outlined in magenta (a CLS query outlines the whole
//              image and tags it "CLS"); with an adapter, alpha' as an H x H heatmap (row h =
//              target head, column i = source head, 256 / H px per cell, 12..40, the values
//              written in the cells when they fit); the legend: one colour bar per map with its
//              range, the query marker and, with an adapter, the mixing formula.
//   F_h        one heatmap per head of the query's row over the patch grid (192 / max(grid) px per
//              patch, 3..24), a sequential viridis-like map from 0 to the largest patch weight of
//              any head (one scale for all heads); the CLS column is not a patch, so each panel
//              has a swatch with its weight (3 decimals) under it, clamped to the map's top when
//              CLS outweighs every patch, as it often does. At most 6 heads per row of panels.
//   Fhat_h     (with an adapter) the mixed filters the same way in a blue-white-red map symmetric
//              around 0, one scale for all heads: red positive, blue negative, white 0.
// The picture is as large as what it holds plus a 24 px margin: 4 heads on a 3x3 grid with an
// adapter give 892 x 808 (checked by tests/test_filters_render.cpp): 24 + 192 (image) + 40 + 214
// (alpha's title) + 40 + 358 (the legend's formula) + 24 wide. filters_layout gives
// where each part went.
//
// filters_json's object (also the data of the HTML page):
//   model, adapter (null without one), layer, layers, heads, grid [grid_h, grid_w], tokens,
//   query, query_patch ([r, c], or null for CLS),
//   rounding   "6 significant digits": every number below is printf's %.6g of the value,
//   F          [heads][tokens]: row `query` of each P_h (index 0 = CLS, 1 + r * grid_w + c = patch)
//   alpha_prime [heads][heads] or null without an adapter
//   Fhat       [heads][tokens] or null: sum over i (in order, in double) of the rounded
//              alpha_prime[h][i] times the rounded F[i][t], then rounded: the page computes it
//              the same way in JavaScript, so its numbers are these. It differs from mixed_row
//              (float inputs, unrounded) by rounding only.
//   scale      {F: [0, max], Fhat: [-m, m] or null, alpha_prime: [-a, a] or null}: the colour
//              ranges drawn (max and m over patch tokens only; a at least 1).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/core/error.hpp>
#include <coeffnet/core/strings.hpp>
#include <coeffnet/io/image.hpp>
#include <coeffnet/io/png.hpp>

namespace coeffnet::tools {

struct FilterView {
    std::string model, adapter;        // names for the legend ("" = no adapter)
    int64_t layer = 0, layers = 0;     // shown layer, number of layers
    int64_t heads = 0;
    int64_t grid_h = 0, grid_w = 0;    // patch grid; tokens = 1 + grid_h * grid_w (token 0 = CLS)
    int64_t query = 0;                 // the query token (0 = CLS, 1 + r * grid_w + c = patch (r, c))
    io::Image image;                   // the input as the model saw it (RGB, resized), io/image.hpp
    std::vector<float> maps;           // P of the shown layer, [heads, tokens, tokens] row-major, batch item 0
    std::vector<float> alpha_prime;    // [heads, heads] row = target head; empty = no adapter (plain attention)

    int64_t tokens() const { return 1 + grid_h * grid_w; }
};

// Where render_filters put each part (all rectangles in picture pixels).
struct Rect {
    int64_t x = 0, y = 0, w = 0, h = 0;
};
struct FilterLayout {
    int64_t width = 0, height = 0;
    Rect image;                  // the input image
    Rect query_box;              // the query's outline on the image (3 px wide, just outside `image` for CLS)
    Rect alpha;                  // the alpha' heatmap (w = h = 0 without an adapter)
    std::vector<Rect> f, fhat;   // head h's heatmap (patches only); fhat empty without an adapter
    std::vector<Rect> f_cls, fhat_cls;  // head h's CLS swatch
};

using Rgb = std::array<uint8_t, 3>;

inline std::vector<float> mixed_row(const FilterView& v, int64_t query);  // below

namespace detail {

// ---- checks and numbers ----------------------------------------------------------------------

inline void check_view(const FilterView& v) {
    check(v.heads > 0 && v.grid_h > 0 && v.grid_w > 0, "filters: heads and the patch grid must be positive, got ",
          v.heads, " heads, grid ", v.grid_h, " x ", v.grid_w);
    const int64_t T = v.tokens();
    check(static_cast<int64_t>(v.maps.size()) == v.heads * T * T, "filters: maps has ", v.maps.size(),
          " values, expected heads * tokens * tokens = ", v.heads * T * T);
    check(v.alpha_prime.empty() || static_cast<int64_t>(v.alpha_prime.size()) == v.heads * v.heads,
          "filters: alpha_prime has ", v.alpha_prime.size(), " values, expected ", v.heads * v.heads, " or none");
    check(v.query >= 0 && v.query < T, "filters: query token ", v.query, " is not in [0, ", T, ")");
}

inline float p_at(const FilterView& v, int64_t h, int64_t q, int64_t t) {
    const int64_t T = v.tokens();
    return v.maps[static_cast<size_t>((h * T + q) * T + t)];
}

// The rounding of every number in the JSON and the page: printf's %.6g.
inline double round6(double x) {
    if (!std::isfinite(x)) return x;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", x);
    return std::strtod(buf, nullptr);
}

inline std::string fmt(const char* f, double x) {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, x);
    return buf;
}

// The largest |value| over the patch tokens (not CLS) of rows [heads, tokens]; `floor` if smaller.
inline double patch_max_abs(const std::vector<float>& rows, int64_t heads, int64_t T, double floor) {
    double m = 0;
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 1; t < T; ++t) m = std::max(m, std::abs(double{rows[static_cast<size_t>(h * T + t)]}));
    return m > 0 && std::isfinite(m) ? std::max(m, floor) : std::max(1.0, floor);
}

inline double alpha_max_abs(const FilterView& v) {
    double m = 1;  // the identity's diagonal
    for (float a : v.alpha_prime) m = std::max(m, std::abs(double{a}));
    return m;
}

// ---- colour maps -------------------------------------------------------------------------------

// Five control points each, interpolated linearly. Sequential: dark violet - blue - teal - green -
// yellow (viridis' look). Diverging: blue - light blue - white - salmon - red (ColorBrewer RdBu's).
inline constexpr std::array<Rgb, 5> kSequential = {{{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
inline constexpr std::array<Rgb, 5> kDiverging = {{{33, 102, 172}, {103, 169, 207}, {247, 247, 247}, {239, 138, 98}, {178, 24, 43}}};
inline constexpr Rgb kQuery = {255, 0, 255};  // the query marker: in neither map
inline constexpr Rgb kInk = {33, 33, 33}, kGrey = {110, 110, 110}, kPaper = {255, 255, 255};

// t in [0, 1] (clamped; NaN is 0).
inline Rgb ramp(const std::array<Rgb, 5>& stops, double t) {
    t = t >= 0 ? std::min(t, 1.0) * 4 : 0;
    const int i = std::min(static_cast<int>(t), 3);
    const double f = t - i;
    Rgb c{};
    for (int k = 0; k < 3; ++k) c[k] = static_cast<uint8_t>(std::lround(stops[i][k] + f * (stops[i + 1][k] - stops[i][k])));
    return c;
}
inline Rgb sequential(double x, double max) { return ramp(kSequential, x / max); }
inline Rgb diverging(double x, double m) { return ramp(kDiverging, 0.5 + 0.5 * x / m); }

// ---- the font: 5x7 glyphs for ASCII 32..126 (g j p q y descend to an 8th row), one byte per
// column, bit 0 the top row ------------------------------------------------------------------------

inline constexpr uint8_t kFont[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5f, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},  //   ! "
    {0x14, 0x7f, 0x14, 0x7f, 0x14}, {0x24, 0x2a, 0x7f, 0x2a, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},  // # $ %
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1c, 0x22, 0x41, 0x00},  // & ' (
    {0x00, 0x41, 0x22, 0x1c, 0x00}, {0x14, 0x08, 0x3e, 0x08, 0x14}, {0x08, 0x08, 0x3e, 0x08, 0x08},  // ) * +
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},  // , - .
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3e, 0x51, 0x49, 0x45, 0x3e}, {0x00, 0x42, 0x7f, 0x40, 0x00},  // / 0 1
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4b, 0x31}, {0x18, 0x14, 0x12, 0x7f, 0x10},  // 2 3 4
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3c, 0x4a, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},  // 5 6 7
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1e}, {0x00, 0x36, 0x36, 0x00, 0x00},  // 8 9 :
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},  // ; < =
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3e},  // > ? @
    {0x7e, 0x11, 0x11, 0x11, 0x7e}, {0x7f, 0x49, 0x49, 0x49, 0x36}, {0x3e, 0x41, 0x41, 0x41, 0x22},  // A B C
    {0x7f, 0x41, 0x41, 0x22, 0x1c}, {0x7f, 0x49, 0x49, 0x49, 0x41}, {0x7f, 0x09, 0x09, 0x09, 0x01},  // D E F
    {0x3e, 0x41, 0x49, 0x49, 0x7a}, {0x7f, 0x08, 0x08, 0x08, 0x7f}, {0x00, 0x41, 0x7f, 0x41, 0x00},  // G H I
    {0x20, 0x40, 0x41, 0x3f, 0x01}, {0x7f, 0x08, 0x14, 0x22, 0x41}, {0x7f, 0x40, 0x40, 0x40, 0x40},  // J K L
    {0x7f, 0x02, 0x0c, 0x02, 0x7f}, {0x7f, 0x04, 0x08, 0x10, 0x7f}, {0x3e, 0x41, 0x41, 0x41, 0x3e},  // M N O
    {0x7f, 0x09, 0x09, 0x09, 0x06}, {0x3e, 0x41, 0x51, 0x21, 0x5e}, {0x7f, 0x09, 0x19, 0x29, 0x46},  // P Q R
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7f, 0x01, 0x01}, {0x3f, 0x40, 0x40, 0x40, 0x3f},  // S T U
    {0x1f, 0x20, 0x40, 0x20, 0x1f}, {0x3f, 0x40, 0x38, 0x40, 0x3f}, {0x63, 0x14, 0x08, 0x14, 0x63},  // V W X
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7f, 0x41, 0x41, 0x00},  // Y Z [
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7f, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},  // \ ] ^
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},  // _ ` a
    {0x7f, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7f},  // b c d
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7e, 0x09, 0x01, 0x02}, {0x98, 0xa4, 0xa4, 0xa4, 0x7c},  // e f g
    {0x7f, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7d, 0x40, 0x00}, {0x00, 0x80, 0x84, 0x7d, 0x00},  // h i j
    {0x7f, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7f, 0x40, 0x00}, {0x7c, 0x04, 0x18, 0x04, 0x78},  // k l m
    {0x7c, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0xfc, 0x24, 0x24, 0x24, 0x18},  // n o p
    {0x18, 0x24, 0x24, 0x24, 0xfc}, {0x7c, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},  // q r s
    {0x04, 0x3f, 0x44, 0x40, 0x20}, {0x3c, 0x40, 0x40, 0x20, 0x7c}, {0x1c, 0x20, 0x40, 0x20, 0x1c},  // t u v
    {0x3c, 0x40, 0x30, 0x40, 0x3c}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x9c, 0xa0, 0xa0, 0xa0, 0x7c},  // w x y
    {0x44, 0x64, 0x54, 0x4c, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7f, 0x00, 0x00},  // z { |
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08},                                    // } ~
};

inline int64_t text_width(const std::string& s, int64_t scale) {
    return s.empty() ? 0 : static_cast<int64_t>(s.size()) * 6 * scale - scale;
}

// ---- the painter: draws into an image, or (with none) only measures what it would draw ----------

struct Painter {
    io::Image* img = nullptr;
    int64_t right = 0, bottom = 0;  // the extent of everything drawn

    void fill(int64_t x, int64_t y, int64_t w, int64_t h, Rgb c, double opacity = 1) {
        right = std::max(right, x + w);
        bottom = std::max(bottom, y + h);
        if (!img) return;
        for (int64_t yy = std::max<int64_t>(y, 0); yy < std::min(y + h, img->height); ++yy)
            for (int64_t xx = std::max<int64_t>(x, 0); xx < std::min(x + w, img->width); ++xx)
                for (int k = 0; k < 3; ++k) {
                    uint8_t& p = img->at(yy, xx, k);
                    p = static_cast<uint8_t>(std::lround(p + opacity * (c[k] - p)));
                }
    }
    // A frame `t` px wide whose outer edge is the rectangle.
    void frame(const Rect& r, int64_t t, Rgb c) {
        fill(r.x, r.y, r.w, t, c);
        fill(r.x, r.y + r.h - t, r.w, t, c);
        fill(r.x, r.y, t, r.h, c);
        fill(r.x + r.w - t, r.y, t, r.h, c);
    }
    // Text with its top-left corner at (x, y), 8 * scale px tall (7 above the baseline); returns its width.
    int64_t text(int64_t x, int64_t y, const std::string& s, Rgb c = kInk, int64_t scale = 2) {
        for (size_t i = 0; i < s.size(); ++i) {
            const unsigned char ch = static_cast<unsigned char>(s[i]);
            const uint8_t* g = kFont[ch >= 32 && ch <= 126 ? ch - 32 : '?' - 32];
            const int64_t gx = x + static_cast<int64_t>(i) * 6 * scale;
            for (int col = 0; col < 5; ++col)
                for (int row = 0; row < 8; ++row)
                    if ((g[col] >> row) & 1) fill(gx + col * scale, y + row * scale, scale, scale, c);
        }
        right = std::max(right, x + text_width(s, scale));
        bottom = std::max(bottom, y + 8 * scale);
        return text_width(s, scale);
    }
    // The image stretched (nearest neighbour) over the rectangle; any channel count.
    void picture(const io::Image& src, const Rect& r) {
        fill(r.x, r.y, r.w, r.h, {200, 200, 200});  // placeholder without an image
        if (!img || src.empty()) return;
        const io::Image rgb = src.channels == 3 ? src : io::to_rgb(src);
        for (int64_t y = 0; y < r.h; ++y)
            for (int64_t x = 0; x < r.w; ++x)
                for (int k = 0; k < 3; ++k)
                    img->at(r.y + y, r.x + x, k) = rgb.at(y * rgb.height / r.h, x * rgb.width / r.w, k);
    }
    // A horizontal colour bar of `n` cells with its lowest value, highest value and (`zero`) 0 under it.
    void colour_bar(int64_t x, int64_t y, int64_t w, bool diverging_map, double lo, double hi) {
        for (int64_t i = 0; i < w; ++i) {
            const double t = (i + 0.5) / static_cast<double>(w);
            fill(x + i, y, 1, 16, diverging_map ? ramp(kDiverging, t) : ramp(kSequential, t));
        }
        frame({x, y, w, 16}, 1, kGrey);
        const std::string a = fmt("%.3g", lo), b = fmt("%.3g", hi);
        text(x, y + 22, a);
        text(x + w - text_width(b, 2), y + 22, b);
        if (diverging_map) text(x + w / 2 - 5, y + 22, "0");
    }
};

// Where a token's row lies in [heads, tokens] rows.
inline float row_at(const std::vector<float>& rows, int64_t T, int64_t h, int64_t t) {
    return rows[static_cast<size_t>(h * T + t)];
}

// One section of head panels (F or Fhat); returns the y below it.
inline int64_t paint_heads(Painter& p, const FilterView& v, int64_t x0, int64_t y, const std::vector<float>& rows, bool mixed,
                           double scale, std::vector<Rect>& panels, std::vector<Rect>& swatches) {
    const int64_t T = v.tokens(), gw = v.grid_w, gh = v.grid_h;
    const int64_t cell = std::clamp<int64_t>(192 / std::max(gh, gw), 3, 24);
    const int64_t col_w = std::max<int64_t>(gw * cell, 160), G = 20;
    const int64_t rows_of_panels = (v.heads + 5) / 6, per_row = (v.heads + rows_of_panels - 1) / rows_of_panels;
    const std::string q = std::to_string(v.query);
    if (mixed) {
        const int64_t w = p.text(x0, y, "Fhat_h  mixed filters");
        p.text(x0 + w + 16, y + 7, "sum over i of alpha'[h, i] F_i; red > 0, blue < 0, one scale", kGrey, 1);
    } else {
        const int64_t w = p.text(x0, y, "F_h  attention filters");
        p.text(x0 + w + 16, y + 7, "row " + q + " of P_h: weights >= 0, sum 1 (CLS included), one scale", kGrey, 1);
    }
    y += 30;
    for (int64_t h = 0; h < v.heads; ++h) {
        const int64_t x = x0 + (h % per_row) * (col_w + G), top = y + (h / per_row) * (22 + gh * cell + 32 + G);
        p.text(x, top, (mixed ? "Fhat_" : "F_") + std::to_string(h));
        const Rect r{x, top + 22, gw * cell, gh * cell};
        for (int64_t i = 0; i < gh; ++i)
            for (int64_t j = 0; j < gw; ++j) {
                const double val = row_at(rows, T, h, 1 + i * gw + j);
                p.fill(r.x + j * cell, r.y + i * cell, cell, cell, mixed ? diverging(val, scale) : sequential(val, scale));
            }
        p.frame({r.x - 1, r.y - 1, r.w + 2, r.h + 2}, 1, kGrey);
        if (v.query > 0) {
            const int64_t i = (v.query - 1) / gw, j = (v.query - 1) % gw;
            p.frame({r.x + j * cell, r.y + i * cell, cell, cell}, std::max<int64_t>(1, cell / 10), kQuery);
        }
        const double cls = row_at(rows, T, h, 0);
        const Rect s{x, r.y + r.h + 8, 18, 18};
        p.fill(s.x, s.y, s.w, s.h, mixed ? diverging(cls, scale) : sequential(cls, scale));
        p.frame(s, 1, kGrey);
        if (v.query == 0) p.frame({s.x - 2, s.y - 2, s.w + 4, s.h + 4}, 2, kQuery);
        p.text(s.x + 26, s.y + 2, "CLS " + fmt("%.3f", cls + 0.0));
        panels.push_back(r);
        swatches.push_back(s);
    }
    return p.bottom;
}

// The whole picture; with p.img null it only measures. Fills `lay`.
inline void paint(Painter& p, const FilterView& v, FilterLayout& lay) {
    const int64_t T = v.tokens(), gw = v.grid_w, gh = v.grid_h, H = v.heads, M = 24, G = 40;
    const bool adapter = !v.alpha_prime.empty();
    const std::vector<float> f = [&] {
        std::vector<float> r(static_cast<size_t>(H * T));
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) r[static_cast<size_t>(h * T + t)] = p_at(v, h, v.query, t);
        return r;
    }();
    lay = FilterLayout{};

    // Title.
    const std::string where = v.query == 0 ? "0 (CLS)"
                                           : std::to_string(v.query) + " (patch " + std::to_string((v.query - 1) / gw) + ", " +
                                                 std::to_string((v.query - 1) % gw) + ")";
    p.text(M, M, "layer " + std::to_string(v.layer) + " of " + std::to_string(v.layers) + ", query " + where, kInk, 3);
    p.text(M, M + 30, "model " + (v.model.empty() ? std::string("?") : v.model) + "   adapter " +
                          (adapter ? (v.adapter.empty() ? std::string("(unnamed)") : v.adapter) : std::string("none: plain attention")),
           kGrey);
    int64_t y = M + 64;

    // Row 1: the input image.
    p.text(M, y, "input");
    p.text(M + 70, y + 7, "grid " + std::to_string(gh) + " x " + std::to_string(gw) + " patches", kGrey, 1);
    const int64_t ic = std::clamp<int64_t>(320 / std::max(gh, gw), 4, 64);
    lay.image = {M, y + 22, gw * ic, gh * ic};
    p.picture(v.image, lay.image);
    for (int64_t j = 1; j < gw; ++j) p.fill(lay.image.x + j * ic, lay.image.y, 1, lay.image.h, kPaper, 0.35);
    for (int64_t i = 1; i < gh; ++i) p.fill(lay.image.x, lay.image.y + i * ic, lay.image.w, 1, kPaper, 0.35);
    if (v.query == 0) {
        lay.query_box = {lay.image.x - 3, lay.image.y - 3, lay.image.w + 6, lay.image.h + 6};
        p.fill(lay.image.x, lay.image.y, 46, 22, kQuery);
        p.text(lay.image.x + 6, lay.image.y + 4, "CLS", kPaper);
    } else {
        const int64_t i = (v.query - 1) / gw, j = (v.query - 1) % gw;
        lay.query_box = {lay.image.x + j * ic - 1, lay.image.y + i * ic - 1, ic + 2, ic + 2};
    }
    p.frame(lay.query_box, 3, kQuery);
    int64_t x = lay.image.x + lay.image.w + G;

    // Row 1: alpha'.
    std::vector<float> mixed;
    double fmax = patch_max_abs(f, H, T, 1e-12), hmax = 1, amax = 1;
    if (adapter) {
        mixed = mixed_row(v, v.query);
        hmax = patch_max_abs(mixed, H, T, 1e-12);
        amax = alpha_max_abs(v);
        const int64_t title_w = std::max(p.text(x, y, "alpha' = I + alpha"), p.text(x, y + 22, "row h = target, column i = source", kGrey, 1));
        const int64_t ac = std::clamp<int64_t>(256 / H, 12, 40), lab = text_width(std::to_string(H - 1), 1) + 6;
        lay.alpha = {x + lab, y + 48, H * ac, H * ac};
        for (int64_t i = 0; i < H; ++i) {
            p.text(x, lay.alpha.y + i * ac + (ac - 7) / 2, std::to_string(i), kGrey, 1);
            const std::string s = std::to_string(i);
            p.text(lay.alpha.x + i * ac + (ac - text_width(s, 1)) / 2, lay.alpha.y - 11, s, kGrey, 1);
            for (int64_t j = 0; j < H; ++j) {
                const double a = v.alpha_prime[static_cast<size_t>(i * H + j)];
                const Rgb c = diverging(a, amax);
                p.fill(lay.alpha.x + j * ac, lay.alpha.y + i * ac, ac - 1, ac - 1, c);
                const std::string n = fmt("%.2f", std::round(a * 100) / 100 + 0.0);  // + 0.0: no "-0.00"
                if (text_width(n, 1) + 4 <= ac) {
                    const bool dark = c[0] * 299 + c[1] * 587 + c[2] * 114 < 128000;
                    p.text(lay.alpha.x + j * ac + (ac - 1 - text_width(n, 1)) / 2, lay.alpha.y + i * ac + (ac - 8) / 2, n,
                           dark ? kPaper : kInk, 1);
                }
            }
        }
        x = std::max(lay.alpha.x + lay.alpha.w, x + title_w) + G;
    }

    // Row 1: the legend.
    int64_t ly = y;
    p.text(x, ly, "legend");
    ly += 30;
    auto entry = [&](const std::string& name, const std::string& note, bool div, double lo, double hi) {
        p.text(x, ly, name);
        p.text(x + text_width(name, 2) + 10, ly + 7, note, kGrey, 1);
        p.colour_bar(x, ly + 20, 240, div, lo, hi);
        ly += 20 + 16 + 6 + 14 + 16;
    };
    entry("F_h", "attention weight", false, 0, fmax);
    if (adapter) {
        entry("Fhat_h", "mixed weight", true, -hmax, hmax);
        entry("alpha'", "mixing coefficient", true, -amax, amax);
    }
    p.frame({x, ly, 18, 18}, 3, kQuery);
    p.text(x + 28, ly + 2, "query token");
    ly += 30;
    if (adapter) {
        p.text(x, ly, "Fhat_h = sum_i alpha'[h,i] F_i", kInk);
        p.text(x, ly + 20, "negative weights let outputs leave", kGrey, 1);
        p.text(x, ly + 32, "the convex hull of the values", kGrey, 1);
    }

    // F and Fhat sections.
    y = p.bottom + G;
    y = paint_heads(p, v, M, y, f, false, fmax, lay.f, lay.f_cls) + G;
    if (adapter) paint_heads(p, v, M, y, mixed, true, hmax, lay.fhat, lay.fhat_cls);
    lay.width = p.right + M;
    lay.height = p.bottom + M;
}

inline std::string base64(const std::vector<uint8_t>& b) {
    static constexpr char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < b.size(); i += 3) {
        const uint32_t n = (uint32_t{b[i]} << 16) | (i + 1 < b.size() ? uint32_t{b[i + 1]} << 8 : 0) | (i + 2 < b.size() ? b[i + 2] : 0);
        out += abc[(n >> 18) & 63];
        out += abc[(n >> 12) & 63];
        out += i + 1 < b.size() ? abc[(n >> 6) & 63] : '=';
        out += i + 2 < b.size() ? abc[n & 63] : '=';
    }
    return out;
}

}  // namespace detail

// Fhat = alpha' P for query row `query` of every head: [heads, tokens] (P's rows when alpha_prime is
// empty). Sums over the source heads in order, in double.
inline std::vector<float> mixed_row(const FilterView& v, int64_t query) {
    detail::check_view(v);
    check(query >= 0 && query < v.tokens(), "filters: query token ", query, " is not in [0, ", v.tokens(), ")");
    const int64_t H = v.heads, T = v.tokens();
    std::vector<float> out(static_cast<size_t>(H * T));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) {
            if (v.alpha_prime.empty()) {
                out[static_cast<size_t>(h * T + t)] = detail::p_at(v, h, query, t);
                continue;
            }
            double acc = 0;
            for (int64_t i = 0; i < H; ++i) acc += double{v.alpha_prime[static_cast<size_t>(h * H + i)]} * detail::p_at(v, i, query, t);
            out[static_cast<size_t>(h * T + t)] = static_cast<float>(acc);
        }
    return out;
}

// Where render_filters puts each part, and the picture's size.
inline FilterLayout filters_layout(const FilterView& v) {
    detail::check_view(v);
    FilterLayout lay;
    detail::Painter measure;
    detail::paint(measure, v, lay);
    return lay;
}

// The slide picture, RGB (layout at the top of this file).
inline io::Image render_filters(const FilterView& v) {
    FilterLayout lay = filters_layout(v);
    io::Image img(lay.width, lay.height, 3, 255);
    detail::Painter p{&img};
    detail::paint(p, v, lay);
    return img;
}

inline void write_filters_png(const FilterView& v, const std::filesystem::path& out) {
    const io::Image img = render_filters(v);
    io::write_png(out, img.pixels, img.width, img.height, 3);
}

// The numbers drawn (schema at the top of this file).
inline nlohmann::ordered_json filters_json(const FilterView& v) {
    using detail::round6;
    detail::check_view(v);
    const int64_t H = v.heads, T = v.tokens();
    const bool adapter = !v.alpha_prime.empty();
    nlohmann::ordered_json j;
    j["model"] = v.model;
    j["adapter"] = adapter ? nlohmann::ordered_json(v.adapter) : nlohmann::ordered_json(nullptr);
    j["layer"] = v.layer;
    j["layers"] = v.layers;
    j["heads"] = H;
    j["grid"] = {v.grid_h, v.grid_w};
    j["tokens"] = T;
    j["query"] = v.query;
    j["query_patch"] = v.query == 0 ? nlohmann::ordered_json(nullptr)
                                    : nlohmann::ordered_json{(v.query - 1) / v.grid_w, (v.query - 1) % v.grid_w};
    j["rounding"] = "6 significant digits";
    std::vector<std::vector<double>> F(static_cast<size_t>(H), std::vector<double>(static_cast<size_t>(T)));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) F[h][t] = round6(detail::p_at(v, h, v.query, t));
    j["F"] = F;
    std::vector<float> f32(static_cast<size_t>(H * T));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) f32[static_cast<size_t>(h * T + t)] = detail::p_at(v, h, v.query, t);
    const double fmax = detail::patch_max_abs(f32, H, T, 1e-12);
    if (adapter) {
        std::vector<std::vector<double>> A(static_cast<size_t>(H), std::vector<double>(static_cast<size_t>(H)));
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < H; ++i) A[h][i] = round6(v.alpha_prime[static_cast<size_t>(h * H + i)]);
        std::vector<std::vector<double>> Fhat(static_cast<size_t>(H), std::vector<double>(static_cast<size_t>(T)));
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                double acc = 0;
                for (int64_t i = 0; i < H; ++i) acc += A[h][i] * F[i][t];
                Fhat[h][t] = round6(acc);
            }
        j["alpha_prime"] = A;
        j["Fhat"] = Fhat;
        const double m = detail::patch_max_abs(mixed_row(v, v.query), H, T, 1e-12), a = detail::alpha_max_abs(v);
        j["scale"] = {{"F", {0.0, round6(fmax)}}, {"Fhat", {round6(-m), round6(m)}}, {"alpha_prime", {round6(-a), round6(a)}}};
    } else {
        j["alpha_prime"] = nullptr;
        j["Fhat"] = nullptr;
        j["scale"] = {{"F", {0.0, round6(fmax)}}, {"Fhat", nullptr}, {"alpha_prime", nullptr}};
    }
    return j;
}

// A self-contained page (inline CSS and JavaScript, the image as a data: URL; nothing fetched):
// the input image, F_h and Fhat_h as canvases, one slider per alpha' entry (id alpha-h-i, range
// -2..2 widened to hold the value, step 0.01; its value in alpha-h-i-value), the query in
// #query, and the current query's numbers in a table, cells f-h-t and fhat-h-t. Clicking the
// image or a heatmap picks the query (the "CLS" button picks token 0). Without an adapter alpha'
// starts at I. The data is filters_json's object plus P: every row of every head, [heads][tokens]
// [tokens], rounded the same way; the table shows numbers as JavaScript's String(Number(
// x.toPrecision(6))), equal to the JSON's numbers when parsed. A moved slider sets its entry of
// alpha' to the slider's value (0.01 steps) and Fhat is recomputed from it the JSON's way. A URL
// fragment #drive=... makes the page click and move sliders by itself (see the script's end), so a
// headless browser can test it: tests/cli_test.sh, scenario filters_html.
inline std::string filters_html(const FilterView& v) {
    using detail::round6;
    detail::check_view(v);
    const int64_t H = v.heads, T = v.tokens();
    nlohmann::ordered_json data = filters_json(v);
    std::vector<std::vector<std::vector<double>>> P(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h) {
        P[h].assign(static_cast<size_t>(T), std::vector<double>(static_cast<size_t>(T)));
        for (int64_t q = 0; q < T; ++q)
            for (int64_t t = 0; t < T; ++t) P[h][q][t] = round6(detail::p_at(v, h, q, t));
    }
    data["P"] = P;
    auto ramp_js = [](const std::array<Rgb, 5>& s) {
        nlohmann::json a = nlohmann::json::array();
        for (const Rgb& c : s) a.push_back({c[0], c[1], c[2]});
        return a.dump();
    };
    std::string json = data.dump();
    std::string safe;  // "<" only occurs inside JSON strings, where \u003c means the same
    for (char c : json) safe += c == '<' ? std::string("\\u003c") : std::string(1, c);

    std::string image_url;
    if (!v.image.empty()) {
        const io::Image rgb = v.image.channels == 3 ? v.image : io::to_rgb(v.image);
        image_url = "data:image/png;base64," + detail::base64(io::encode_png(rgb.pixels, rgb.width, rgb.height, 3));
    }
    const int64_t ic = std::clamp<int64_t>(320 / std::max(v.grid_h, v.grid_w), 4, 64);
    const int64_t cell = std::clamp<int64_t>(192 / std::max(v.grid_h, v.grid_w), 3, 24);

    std::string h = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>coeffnet filters: layer )" + std::to_string(v.layer) + R"(</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#212121}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 6px} .note{color:#6e6e6e;font-size:13px}
.row{display:flex;gap:40px;align-items:flex-start;flex-wrap:wrap}
.panels{display:flex;gap:20px;flex-wrap:wrap} .panel{font-size:14px}
canvas{image-rendering:pixelated;cursor:crosshair;display:block;border:1px solid #6e6e6e}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #6e6e6e;vertical-align:middle;margin-right:4px}
.swatch.q{outline:2px solid #f0f}
table.alpha td{padding:2px 4px;text-align:center;font-size:12px} input[type=range]{width:90px}
table.values{border-collapse:collapse;font-size:12px} table.values td,table.values th{border:1px solid #ccc;padding:1px 5px;text-align:right}
tr.q td{background:#fde7fd} .bar{width:240px;height:16px;border:1px solid #6e6e6e;display:block;cursor:default}
.ends{display:flex;justify-content:space-between;width:242px;font-size:13px}
</style></head><body>
<h1>layer )" + std::to_string(v.layer) + " of " + std::to_string(v.layers) + R"(, query <span id="query"></span></h1>
<div class="note">model )" + escape_markup(v.model) + " &nbsp; adapter " +
                    (v.alpha_prime.empty() ? std::string("none: plain attention (alpha' starts at I; move the sliders to mix)")
                                           : escape_markup(v.adapter)) + R"(</div>
<div class="row">
<div><h2>input</h2><canvas id="image" width=")" + std::to_string(v.grid_w * ic) + "\" height=\"" + std::to_string(v.grid_h * ic) +
                    R"("></canvas><button id="query-cls">query CLS</button> <span class="note">click a patch to pick the query</span></div>
<div><h2>alpha' = I + alpha</h2><div class="note">row h = target head, column i = source head</div>
<table class="alpha" id="alpha"><tr><td></td>)";
    for (int64_t i = 0; i < H; ++i) h += "<td>" + std::to_string(i) + "</td>";
    h += "</tr>\n";
    for (int64_t r = 0; r < H; ++r) {
        h += "<tr><td>" + std::to_string(r) + "</td>";
        for (int64_t i = 0; i < H; ++i) {
            const std::string id = "alpha-" + std::to_string(r) + "-" + std::to_string(i);
            const double a = v.alpha_prime.empty() ? (r == i ? 1.0 : 0.0) : round6(v.alpha_prime[static_cast<size_t>(r * H + i)]);
            const double lo = std::min(-2.0, std::floor(a)), hi = std::max(2.0, std::ceil(a));
            h += "<td id=\"" + id + "-cell\"><input type=\"range\" id=\"" + id + "\" min=\"" + detail::fmt("%g", lo) + "\" max=\"" +
                 detail::fmt("%g", hi) + "\" step=\"0.01\" value=\"" + detail::fmt("%.6g", a) + "\" aria-label=\"alpha' " +
                 std::to_string(r) + ", " + std::to_string(i) + "\"><br><span id=\"" + id + "-value\"></span></td>";
        }
        h += "</tr>\n";
    }
    h += R"(</table><button id="reset">reset alpha'</button></div>
<div><h2>legend</h2>
<div>F_h <span class="note">attention weight</span></div><canvas class="bar" id="bar-f" width="240" height="16"></canvas>
<div class="ends"><span id="f-min"></span><span id="f-max"></span></div>
<div>Fhat_h <span class="note">mixed weight</span></div><canvas class="bar" id="bar-fhat" width="240" height="16"></canvas>
<div class="ends"><span id="fhat-min"></span><span>0</span><span id="fhat-max"></span></div>
<p><span class="swatch q"></span>query token</p>
<p>Fhat_h = &sum;<sub>i</sub> alpha'[h,i] F_i<br><span class="note">negative weights let outputs leave the convex hull of the values</span></p>
</div></div>
<h2>F_h <span class="note">row q of P_h: weights &ge; 0, sum 1 (CLS included), one scale</span></h2><div class="panels" id="f-panels"></div>
<h2>Fhat_h <span class="note">&sum;<sub>i</sub> alpha'[h,i] F_i; red &gt; 0, blue &lt; 0, one scale</span></h2><div class="panels" id="fhat-panels"></div>
<h2>numbers <span class="note">rounded to 6 significant digits, as coeffnet vit filters --json</span></h2>
<table class="values" id="values"></table>
<img id="input-image" alt="" hidden src=")" + image_url + R"(">
<script type="application/json" id="filters-data">)" + safe + R"(</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("filters-data").textContent);
const SEQ = )" + ramp_js(detail::kSequential) + ", DIV = " + ramp_js(detail::kDiverging) + ", IC = " + std::to_string(ic) +
         ", CELL = " + std::to_string(cell) + R"JS(;
const H = D.heads, T = D.tokens, GH = D.grid[0], GW = D.grid[1];
const A0 = [];  // the loaded alpha'
for (let h = 0; h < H; ++h) { A0.push([]); for (let i = 0; i < H; ++i) A0[h].push(D.alpha_prime ? D.alpha_prime[h][i] : (h === i ? 1 : 0)); }
let A = A0.map(r => r.slice()), Q = D.query;
const r6 = x => Number(x.toPrecision(6));
const show = x => String(r6(x));
function ramp(s, t) {
  t = t >= 0 ? Math.min(t, 1) * 4 : 0; const i = Math.min(Math.floor(t), 3), f = t - i;
  return "rgb(" + [0, 1, 2].map(k => Math.round(s[i][k] + f * (s[i + 1][k] - s[i][k]))).join(",") + ")";
}
const seq = (x, m) => ramp(SEQ, x / m), div = (x, m) => ramp(DIV, 0.5 + 0.5 * x / m);
function patchMax(rows) { let m = 0; for (const r of rows) for (let t = 1; t < T; ++t) m = Math.max(m, Math.abs(r[t])); return m > 0 ? Math.max(m, 1e-12) : 1; }
// F: row Q of every P_h. Fhat: sum over i in order, in double, of alpha'[h][i] F_i, then rounded (as the JSON).
const rowsF = () => D.P.map(p => p[Q]);
function rowsFhat(F) {
  return A.map(a => { const out = []; for (let t = 0; t < T; ++t) { let s = 0; for (let i = 0; i < H; ++i) s += a[i] * F[i][t]; out.push(r6(s)); } return out; });
}
// The patch under a click: the canvas' content box (inside its 1 px border) is the grid.
function pick(e, c) {
  const b = c.getBoundingClientRect(), x = e.clientX - b.left - c.clientLeft, y = e.clientY - b.top - c.clientTop;
  const j = Math.floor(x / c.clientWidth * GW), i = Math.floor(y / c.clientHeight * GH);
  if (i >= 0 && i < GH && j >= 0 && j < GW) { Q = 1 + i * GW + j; draw(); }
}
function panels(id, prefix, n) {
  const box = document.getElementById(id);
  for (let h = 0; h < n; ++h) {
    const d = document.createElement("div"); d.className = "panel";
    d.innerHTML = prefix + "_" + h + "<canvas id='" + id + "-" + h + "' width='" + GW * CELL + "' height='" + GH * CELL + "'></canvas>" +
      "<span class='swatch' id='" + id + "-" + h + "-cls'></span>CLS <span id='" + id + "-" + h + "-clsv'></span>";
    box.appendChild(d);
    const c = d.querySelector("canvas"); c.onclick = e => pick(e, c);
  }
}
function heat(id, rows, colour, m) {
  rows.forEach((r, h) => {
    const c = document.getElementById(id + "-" + h), g = c.getContext("2d");
    for (let i = 0; i < GH; ++i) for (let j = 0; j < GW; ++j) { g.fillStyle = colour(r[1 + i * GW + j], m); g.fillRect(j * CELL, i * CELL, CELL, CELL); }
    if (Q > 0) { g.strokeStyle = "#f0f"; g.lineWidth = Math.max(2, CELL / 8); const i = Math.floor((Q - 1) / GW), j = (Q - 1) % GW; g.strokeRect(j * CELL + 1, i * CELL + 1, CELL - 2, CELL - 2); }
    const s = document.getElementById(id + "-" + h + "-cls"); s.style.background = colour(r[0], m); s.className = Q === 0 ? "swatch q" : "swatch";
    document.getElementById(id + "-" + h + "-clsv").textContent = show(r[0]);
  });
}
function bar(id, s) { const g = document.getElementById(id).getContext("2d"); for (let x = 0; x < 240; ++x) { g.fillStyle = ramp(s, (x + 0.5) / 240); g.fillRect(x, 0, 1, 16); } }
const img = document.getElementById("input-image"), imageCanvas = document.getElementById("image");
function drawImage() {
  const c = imageCanvas, g = c.getContext("2d"); g.fillStyle = "#c8c8c8"; g.fillRect(0, 0, c.width, c.height);
  if (img.complete && img.naturalWidth) { g.imageSmoothingEnabled = false; g.drawImage(img, 0, 0, c.width, c.height); }
  g.fillStyle = "rgba(255,255,255,0.35)";
  for (let j = 1; j < GW; ++j) g.fillRect(j * IC, 0, 1, c.height);
  for (let i = 1; i < GH; ++i) g.fillRect(0, i * IC, c.width, 1);
  g.strokeStyle = "#f0f"; g.lineWidth = 3;
  if (Q === 0) { g.strokeRect(1.5, 1.5, c.width - 3, c.height - 3); g.fillStyle = "#f0f"; g.fillRect(0, 0, 46, 22); g.fillStyle = "#fff"; g.font = "bold 15px sans-serif"; g.fillText("CLS", 6, 16); }
  else { const i = Math.floor((Q - 1) / GW), j = (Q - 1) % GW; g.strokeRect(j * IC + 1.5, i * IC + 1.5, IC - 3, IC - 3); }
}
function table(F, Fh) {
  let s = "<tr><th>token</th>";
  for (let h = 0; h < H; ++h) s += "<th>F_" + h + "</th>";
  for (let h = 0; h < H; ++h) s += "<th>Fhat_" + h + "</th>";
  s += "</tr>";
  for (let t = 0; t < T; ++t) {
    s += "<tr" + (t === Q ? " class='q'" : "") + "><th>" + (t === 0 ? "CLS" : t + " (" + Math.floor((t - 1) / GW) + "," + (t - 1) % GW + ")") + "</th>";
    for (let h = 0; h < H; ++h) s += "<td id='f-" + h + "-" + t + "'>" + show(F[h][t]) + "</td>";
    for (let h = 0; h < H; ++h) s += "<td id='fhat-" + h + "-" + t + "'>" + show(Fh[h][t]) + "</td>";
    s += "</tr>";
  }
  document.getElementById("values").innerHTML = s;
}
function draw() {
  const F = rowsF(), Fh = rowsFhat(F), fm = patchMax(F), hm = patchMax(Fh);
  document.getElementById("query").textContent = Q === 0 ? "0 (CLS)" : Q + " (patch " + Math.floor((Q - 1) / GW) + ", " + (Q - 1) % GW + ")";
  drawImage(); heat("f-panels", F, seq, fm); heat("fhat-panels", Fh, div, hm);
  document.getElementById("f-min").textContent = "0"; document.getElementById("f-max").textContent = show(fm);
  document.getElementById("fhat-min").textContent = show(-hm); document.getElementById("fhat-max").textContent = show(hm);
  let am = 1; for (const r of A) for (const a of r) am = Math.max(am, Math.abs(a));
  for (let h = 0; h < H; ++h) for (let i = 0; i < H; ++i) {
    const id = "alpha-" + h + "-" + i; document.getElementById(id + "-value").textContent = show(A[h][i]);
    document.getElementById(id + "-cell").style.background = div(A[h][i], am);
  }
  table(F, Fh);
}
panels("f-panels", "F", H); panels("fhat-panels", "Fhat", H); bar("bar-f", SEQ); bar("bar-fhat", DIV);
for (let h = 0; h < H; ++h) for (let i = 0; i < H; ++i) {
  const s = document.getElementById("alpha-" + h + "-" + i);
  s.oninput = () => { A[h][i] = Number(s.value); draw(); };
}
document.getElementById("reset").onclick = () => { A = A0.map(r => r.slice()); for (let h = 0; h < H; ++h) for (let i = 0; i < H; ++i) document.getElementById("alpha-" + h + "-" + i).value = A[h][i]; draw(); };
document.getElementById("query-cls").onclick = () => { Q = 0; draw(); };
imageCanvas.onclick = e => pick(e, imageCanvas);
img.onload = drawImage;
draw();
// Scripted interaction, for tests in a headless browser (tests/cli_test.sh, filters_html); inert
// unless the URL ends in #drive=STEP;STEP... On the window's load event it runs the steps in order
// through the handlers a user triggers, by dispatching DOM events:
//   click:T      T > 0: a click (MouseEvent) at the centre of patch T on the input image, sent to
//                the element under that point; T = 0: a click on the "query CLS" button
//   slider:H-I:V sets slider alpha-H-I to V (the browser clamps it to the range and snaps it to the
//                0.01 steps, as a drag would) and sends it an input event
// then sets data-driven="done" on <html> (or "error: ..." when a step could not run).
if (location.hash.startsWith("#drive=")) addEventListener("load", () => {
  const root = document.documentElement;
  try {
    for (const step of decodeURIComponent(location.hash.slice(7)).split(";").filter(s => s)) {
      const [verb, arg, value] = step.split(":");
      if (verb === "click" && Number(arg) === 0) document.getElementById("query-cls").click();
      else if (verb === "click" && Number(arg) >= 1 && Number(arg) < T) {
        const t = Number(arg) - 1, c = imageCanvas;
        c.scrollIntoView({block: "center", inline: "center"});
        const b = c.getBoundingClientRect();
        const x = b.left + c.clientLeft + ((t % GW) + 0.5) * c.clientWidth / GW, y = b.top + c.clientTop + (Math.floor(t / GW) + 0.5) * c.clientHeight / GH;
        const target = document.elementFromPoint(x, y);
        if (target !== c) throw new Error(step + ": the patch is not visible at (" + x + ", " + y + ")");
        target.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true, view: window, clientX: x, clientY: y}));
      } else if (verb === "slider" && document.getElementById("alpha-" + arg) && value !== undefined && value.trim() !== "" && isFinite(value)) {
        const s = document.getElementById("alpha-" + arg);
        s.value = value; s.dispatchEvent(new Event("input", {bubbles: true}));
      } else throw new Error("cannot run step '" + step + "'");
    }
    root.setAttribute("data-driven", "done");
  } catch (e) { root.setAttribute("data-driven", "error: " + e.message); }
});
</script>
</body></html>
)JS";
    return h;
}

}  // namespace coeffnet::tools
