// coeffnet/data/procedural.hpp: procedurally generated image classification tasks, for
// pretraining a small ViT and fine-tuning it few-shot (the `coeffnet tune` experiment).
//
//     const data::TaskSpec& t = data::task("count");
//     data::ImageSet train = data::generate("count", /*seed=*/1, /*n=*/400);         // [400, 32, 32, 3]
//     data::ImageSet test = data::generate("count", /*seed=*/2, /*n=*/5000);
//     data::write_sample_grid("count.png", t, /*seed=*/0, /*per_class=*/8);          // to look at
//
// A scene is a few flat-coloured shapes (circle, square, triangle, cross, ring, star), each in
// a colour of a 7-colour palette (jittered per object), at a random size, position and rotation,
// never touching (their circumcircles 10% of the image apart, 3.2 pixels at size 32), over a
// dim background: a random two-colour gradient, a few dim discs of clutter and per-pixel noise.
// Objects are drawn antialiased (4 x 4 samples a pixel). Every object has a channel of 190 or
// more before the noise (+-10); the background stays below 110, so objects stand out while
// their colour and shape still matter. An object's size is the radius of the disc of equal
// area: shapes of one size cover as many pixels whatever their kind, so area says nothing about
// shape; and in the tasks whose label depends on shape, every shape keeps the same distance
// from the border, so position says nothing about it either.
//
// Tasks (TaskSpec): "shapes" is the pretraining task; the others are downstream tasks, each
// asking for something "shapes" does not: counting, relations between objects, binding colour
// to shape, comparing sizes, comparing shapes. See tasks() for the exact rules.
//
// Determinism: image `index` of (task, seed) is a pure function of (task name, seed, index,
// size): its random numbers come from Philox4x32-10 with key seed ^ hash(task name) and a
// counter holding the index (the upper 64 bits) and a draw number (the lower 64), so images
// are generated in any order, in parallel, and any slice is regenerated alone. Rendering uses
// integer arithmetic only (fixed-point coordinates, a table of sines), so the bytes are the same
// on every machine and compiler. The label of image `index` is index % num_classes (classes are
// balanced in any run of consecutive indices); the scene is then drawn to satisfy it. Use
// different seeds (or disjoint index ranges) for training and test sets.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/rng.hpp"
#include "../tensor/tensor.hpp"
#include "dataset.hpp"

namespace coeffnet::data {

// ---- scenes ---------------------------------------------------------------------------------

enum class ShapeKind : uint8_t { circle, square, triangle, cross, ring, star };
inline constexpr int kNumShapes = 6;
inline constexpr std::array<const char*, kNumShapes> kShapeNames = {"circle", "square", "triangle",
                                                                    "cross",  "ring",   "star"};
inline const char* shape_name(ShapeKind s) { return kShapeNames[static_cast<size_t>(s)]; }

struct PaletteColour {
    const char* name;
    std::array<uint8_t, 3> rgb;  // the base colour; each object jitters every channel by up to +-20
};
inline constexpr int kNumColours = 7;
inline constexpr int kRed = 0, kGreen = 1, kBlue = 2, kYellow = 3, kMagenta = 4, kCyan = 5, kWhite = 6;
inline constexpr std::array<PaletteColour, kNumColours> kPalette = {{
    {"red", {235, 40, 40}},
    {"green", {40, 210, 40}},
    {"blue", {40, 80, 250}},
    {"yellow", {235, 225, 40}},
    {"magenta", {225, 40, 225}},
    {"cyan", {40, 215, 225}},
    {"white", {235, 235, 235}},
}};

// Scene coordinates are fixed point: kFixed units a pixel, (0, 0) the top-left corner of the
// image, y downwards.
inline constexpr int64_t kFixed = 256;

struct SceneObject {
    ShapeKind shape = ShapeKind::circle;
    int colour = 0;                  // index into kPalette
    std::array<uint8_t, 3> rgb{};    // the colour drawn (jittered)
    int64_t cx = 0, cy = 0;          // centre, in 1/kFixed pixels
    int64_t size = 0;                // the radius of a disc of the same area, in 1/kFixed pixels
    int64_t radius = 0;              // circumradius, in 1/kFixed pixels: the shape fits in this circle
    int angle = 0;                   // rotation in degrees, a multiple of 5
};

struct Blob {  // background clutter: a dim disc, averaged with the gradient under it
    int64_t cx = 0, cy = 0, radius = 0;
    std::array<uint8_t, 3> rgb{};
};

// Everything random about one image; render_scene turns it into pixels.
struct Scene {
    int64_t size = 0;   // the image is size x size
    int64_t label = 0;
    std::vector<SceneObject> objects;  // drawn in this order
    std::array<uint8_t, 3> gradient_from{}, gradient_to{};
    int gradient_angle = 0;  // degrees; the gradient runs from `from` to `to` along this direction
    std::vector<Blob> blobs;
    uint64_t noise_key = 0, noise_index = 0;  // the Philox stream of the per-pixel noise (+-10 a channel)
};

// ---- tasks ----------------------------------------------------------------------------------

struct TaskSpec {
    std::string name, description;
    std::vector<std::string> classes;
    bool pretraining = false;  // the task the backbone is pretrained on
    int64_t num_classes() const { return static_cast<int64_t>(classes.size()); }
};

inline const std::vector<TaskSpec>& tasks() {
    static const std::vector<TaskSpec> all = {
        {"shapes",
         "pretraining: the shape of the one object in the image (random colour, position, rotation and "
         "size: the radius of the disc of equal area is 12-26% of the image)",
         {"circle", "square", "triangle", "cross", "ring", "star"},
         true},
        {"count",
         "how many objects the image holds, 1 to 4 (random shapes and colours, small: sizes 8-13% of the "
         "image)",
         {"1", "2", "3", "4"},
         false},
        {"position",
         "where the red object is relative to the blue one: left, right, above or below (the centres differ "
         "more along that axis than along the other by at least 12% of the image); half the images hold a "
         "third object in another colour",
         {"left", "right", "above", "below"},
         false},
        {"conjunction",
         "whether a red triangle is among the 3 objects. Either way the image holds a red object and a "
         "triangle: with a red triangle, one object is neither red nor a triangle; without, one is red but "
         "not a triangle and one a triangle but not red; the third is anything but a red triangle. How many "
         "red objects and how many triangles an image holds says nothing about the label",
         {"absent", "present"},
         false},
        {"size",
         "which of two objects of the same shape (and different colours) is the larger, the left or the "
         "right one: sizes differ by a factor 1.4-1.8, centres by at least 10% of the image horizontally",
         {"left", "right"},
         false},
        {"same_shape",
         "whether two objects have the same shape (colours, sizes and rotations independent)",
         {"different", "same"},
         false},
    };
    return all;
}

inline std::vector<std::string> task_names() {
    std::vector<std::string> out;
    for (const auto& t : tasks()) out.push_back(t.name);
    return out;
}

inline const TaskSpec& task(std::string_view name) {
    for (const auto& t : tasks())
        if (t.name == name) return t;
    std::string known;
    for (const auto& t : tasks()) known += (known.empty() ? "" : ", ") + t.name;
    fail("unknown task '", name, "' (tasks: ", known, ")");
}

// The pretraining task ("shapes").
inline const TaskSpec& pretraining_task() { return tasks().front(); }

namespace detail {

inline uint64_t fnv1a64(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
    return h;
}

// The Philox key of (task, seed).
inline uint64_t task_key(std::string_view task, uint64_t seed) { return seed ^ fnv1a64(task); }

// Random numbers of one image: Philox4x32-10, key (key low, key high), counter (draw low,
// draw high, index low, index high).
class SceneRng {
public:
    SceneRng(uint64_t key, uint64_t index, uint64_t first_draw = 0)
        : key_{static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)}, index_(index), counter_(first_draw) {}

    uint32_t next() {
        if (used_ == 4) {
            buf_ = philox4x32_10({static_cast<uint32_t>(counter_), static_cast<uint32_t>(counter_ >> 32),
                                  static_cast<uint32_t>(index_), static_cast<uint32_t>(index_ >> 32)},
                                 key_);
            ++counter_;
            used_ = 0;
        }
        return buf_[static_cast<size_t>(used_++)];
    }
    // In [0, n), n <= 2^32 (multiply-shift: a bias of at most n / 2^32).
    int64_t below(int64_t n) { return static_cast<int64_t>((uint64_t{next()} * static_cast<uint64_t>(n)) >> 32); }
    // In [lo, hi].
    int64_t between(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }

private:
    std::array<uint32_t, 2> key_;
    uint64_t index_, counter_;
    Philox4 buf_{};
    int used_ = 4;
};

inline constexpr uint64_t kNoiseDraws = uint64_t{1} << 63;  // the noise's draws start here

// round(16384 * sin(5k degrees)), k = 0..18.
inline constexpr std::array<int64_t, 19> kSin5 = {0,     1428,  2845,  4240,  5604,  6924,  8192,
                                                  9397,  10531, 11585, 12551, 13421, 14189, 14849,
                                                  15396, 15826, 16135, 16322, 16384};
inline int64_t sin_deg(int a) {  // a multiple of 5
    a = ((a % 360) + 360) % 360;
    const int q = a / 90, k = (a % 90) / 5;
    switch (q) {
        case 0: return kSin5[static_cast<size_t>(k)];
        case 1: return kSin5[static_cast<size_t>(18 - k)];
        case 2: return -kSin5[static_cast<size_t>(k)];
        default: return -kSin5[static_cast<size_t>(18 - k)];
    }
}
inline int64_t cos_deg(int a) { return sin_deg(a + 90); }

struct Vertex {
    int64_t x, y;
};
// Polygons with circumradius 1024 (y down, the first vertex at the top when unrotated).
inline constexpr std::array<Vertex, 4> kSquare = {{{-724, -724}, {724, -724}, {724, 724}, {-724, 724}}};
inline constexpr std::array<Vertex, 3> kTriangle = {{{0, -1024}, {887, 512}, {-887, 512}}};
inline constexpr std::array<Vertex, 12> kCross = {{{-307, -973},
                                                   {307, -973},
                                                   {307, -307},
                                                   {973, -307},
                                                   {973, 307},
                                                   {307, 307},
                                                   {307, 973},
                                                   {-307, 973},
                                                   {-307, 307},
                                                   {-973, 307},
                                                   {-973, -307},
                                                   {-307, -307}}};
inline constexpr std::array<Vertex, 10> kStar = {{{0, -1024},
                                                  {259, -356},
                                                  {974, -316},
                                                  {418, 136},
                                                  {602, 828},
                                                  {0, 440},
                                                  {-602, 828},
                                                  {-418, 136},
                                                  {-974, -316},
                                                  {-259, -356}}};
inline constexpr int64_t kRingInner = 563;  // the ring's hole, per 1024 of its radius
// Circumradius per 1024 of size (the radius of the disc of equal area), by ShapeKind:
// round(1024 * sqrt(pi / area)) with each shape's area at circumradius 1.
inline constexpr std::array<int64_t, kNumShapes> kCircumPerSize = {1024, 1284, 1592, 1310, 1226, 1615};
inline int64_t circumradius(ShapeKind s, int64_t size) { return size * kCircumPerSize[static_cast<size_t>(s)] / 1024; }

inline std::span<const Vertex> polygon(ShapeKind s) {
    switch (s) {
        case ShapeKind::square: return kSquare;
        case ShapeKind::triangle: return kTriangle;
        case ShapeKind::cross: return kCross;
        case ShapeKind::star: return kStar;
        default: return {};
    }
}
// A radius (per 1024 of the circumradius) inside which every point belongs to the shape.
inline int64_t inscribed(ShapeKind s) {
    switch (s) {
        case ShapeKind::circle: return 1024;
        case ShapeKind::ring: return 1024;  // with the hole excluded separately
        case ShapeKind::square: return 724;
        case ShapeKind::triangle: return 512;
        case ShapeKind::cross: return 307;
        default: return 350;  // star
    }
}

inline constexpr int64_t kSamples = 4;       // per pixel and axis
inline constexpr int64_t kHalfDiagonal = 182;  // a pixel's half diagonal, rounded up, in 1/kFixed

// An object ready to draw: its polygon rotated, scaled and relative to its centre.
struct Prepared {
    ShapeKind shape;
    std::array<uint8_t, 3> rgb;
    int64_t cx, cy, radius, hole;
    int64_t out2;                 // pixel centre farther than this (squared): no coverage
    int64_t hole2 = -1;           // nearer than this (squared): inside the ring's hole, no coverage
    int64_t full_lo2 = -1, full_hi2 = -1;  // between these (squared): fully covered
    int64_t x0, x1, y0, y1;       // the pixels it may touch
    std::array<Vertex, 12> poly{};
    int nv = 0;

    bool inside(int64_t dx, int64_t dy) const {  // relative to the centre
        if (shape == ShapeKind::circle) return dx * dx + dy * dy <= radius * radius;
        if (shape == ShapeKind::ring) {
            const int64_t d2 = dx * dx + dy * dy;
            return d2 <= radius * radius && d2 > hole * hole;
        }
        bool in = false;
        for (int i = 0, j = nv - 1; i < nv; j = i++) {
            const Vertex a = poly[static_cast<size_t>(i)], b = poly[static_cast<size_t>(j)];
            if ((a.y > dy) == (b.y > dy)) continue;
            const int64_t lhs = (dx - a.x) * (b.y - a.y) - (dy - a.y) * (b.x - a.x);
            if (b.y > a.y ? lhs < 0 : lhs > 0) in = !in;
        }
        return in;
    }

    // Samples of pixel (x, y) inside the shape, 0 to kSamples^2.
    int coverage(int64_t x, int64_t y) const {
        const int64_t dx = x * kFixed + kFixed / 2 - cx, dy = y * kFixed + kFixed / 2 - cy;
        const int64_t d2 = dx * dx + dy * dy;
        if (d2 > out2 || d2 < hole2) return 0;
        if (d2 >= full_lo2 && d2 <= full_hi2) return kSamples * kSamples;
        int n = 0;
        for (int64_t sy = 0; sy < kSamples; ++sy)
            for (int64_t sx = 0; sx < kSamples; ++sx)
                n += inside(x * kFixed + (2 * sx + 1) * kFixed / (2 * kSamples) - cx,
                            y * kFixed + (2 * sy + 1) * kFixed / (2 * kSamples) - cy);
        return n;
    }
    bool inside_sample(int64_t x, int64_t y, int64_t sx, int64_t sy) const {
        return inside(x * kFixed + (2 * sx + 1) * kFixed / (2 * kSamples) - cx,
                      y * kFixed + (2 * sy + 1) * kFixed / (2 * kSamples) - cy);
    }
};

inline Prepared prepare(const SceneObject& o, int64_t size) {
    Prepared p{};
    p.shape = o.shape;
    p.rgb = o.rgb;
    p.cx = o.cx;
    p.cy = o.cy;
    p.radius = o.radius;
    p.hole = o.shape == ShapeKind::ring ? o.radius * kRingInner / 1024 : 0;
    const int64_t h = kHalfDiagonal;
    p.out2 = (o.radius + h) * (o.radius + h);
    if (o.shape == ShapeKind::ring && p.hole > h) p.hole2 = (p.hole - h) * (p.hole - h);
    const int64_t in = o.radius * inscribed(o.shape) / 1024;
    if (in > h) {
        p.full_hi2 = (in - h) * (in - h);
        p.full_lo2 = o.shape == ShapeKind::ring ? (p.hole + h) * (p.hole + h) : 0;
    }
    const auto poly = polygon(o.shape);
    const int64_t c = cos_deg(o.angle), s = sin_deg(o.angle);
    p.nv = static_cast<int>(poly.size());
    for (size_t i = 0; i < poly.size(); ++i) {
        const int64_t rx = poly[i].x * c - poly[i].y * s, ry = poly[i].x * s + poly[i].y * c;  // * 2^24
        p.poly[i] = {rx * o.radius / (int64_t{1} << 24), ry * o.radius / (int64_t{1} << 24)};
    }
    auto lo = [&](int64_t v) { return std::clamp<int64_t>((v - o.radius) / kFixed - 1, 0, size - 1); };
    auto hi = [&](int64_t v) { return std::clamp<int64_t>((v + o.radius) / kFixed + 1, 0, size - 1); };
    p.x0 = lo(o.cx);
    p.x1 = hi(o.cx);
    p.y0 = lo(o.cy);
    p.y1 = hi(o.cy);
    return p;
}

// Draws scenes for one image: object sizes in thousandths of the image, placement with a margin
// to the border and a gap between objects' circumcircles.
struct SceneBuilder {
    SceneRng& rng;
    int64_t S;  // the image size in 1/kFixed pixels
    // Keep every shape as far from the border as the widest shape of its size would be, so
    // where an object lies says nothing about its shape (for tasks whose label depends on shape).
    bool shape_blind_border = false;
    std::vector<SceneObject> objects;

    int64_t permille(int64_t lo, int64_t hi) { return S * rng.between(lo, hi) / 1000; }
    int64_t margin() const { return S * 3 / 100; }
    int64_t gap() const { return S * 10 / 100; }

    // An object of the given size (equal-area radius); its circumradius follows from its shape.
    SceneObject object(ShapeKind shape, int colour, int64_t size) {
        SceneObject o;
        o.shape = shape;
        o.colour = colour;
        o.size = size;
        o.radius = circumradius(shape, size);
        o.angle = static_cast<int>(5 * rng.below(72));
        for (size_t c = 0; c < 3; ++c)
            o.rgb[c] = static_cast<uint8_t>(
                std::clamp<int64_t>(int64_t{kPalette[static_cast<size_t>(colour)].rgb[c]} + rng.between(-20, 20), 0, 255));
        return o;
    }
    ShapeKind any_shape() { return static_cast<ShapeKind>(rng.below(kNumShapes)); }
    int any_colour() { return static_cast<int>(rng.below(kNumColours)); }

    // Places o where it fits (inside the image, clear of the others); false after 100 tries.
    bool place(SceneObject o) {
        const int64_t extent = shape_blind_border ? circumradius(ShapeKind::star, o.size) : o.radius;  // the widest
        const int64_t lo = extent + margin(), hi = S - extent - margin();
        if (hi < lo) return false;
        for (int t = 0; t < 100; ++t) {
            o.cx = rng.between(lo, hi);
            o.cy = rng.between(lo, hi);
            bool ok = true;
            for (const auto& q : objects) {
                const int64_t dx = o.cx - q.cx, dy = o.cy - q.cy, d = o.radius + q.radius + gap();
                ok = ok && dx * dx + dy * dy >= d * d;
            }
            if (ok) {
                objects.push_back(o);
                return true;
            }
        }
        return false;
    }
};

inline int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

// One attempt at the task's scene for `label`; false when it did not fit (then it is redrawn).
// Every draw is a statement of its own: the order of a call's arguments is unspecified in C++
// (GCC and Clang differ), and the order of the draws is part of the data.
inline bool draw_objects(std::string_view task, int64_t label, SceneBuilder& b) {
    SceneRng& r = b.rng;
    auto add = [&](ShapeKind shape, int colour, int64_t size) { return b.place(b.object(shape, colour, size)); };
    if (task == "shapes") {
        const int colour = b.any_colour();
        const int64_t size = b.permille(120, 260);
        return add(static_cast<ShapeKind>(label), colour, size);
    }
    if (task == "count") {
        for (int64_t k = 0; k <= label; ++k) {
            const ShapeKind shape = b.any_shape();
            const int colour = b.any_colour();
            const int64_t size = b.permille(80, 130);
            if (!add(shape, colour, size)) return false;
        }
        return true;
    }
    if (task == "position") {
        for (const int colour : {kRed, kBlue}) {
            const ShapeKind shape = b.any_shape();
            const int64_t size = b.permille(90, 150);
            if (!add(shape, colour, size)) return false;
        }
        const int64_t dx = b.objects[0].cx - b.objects[1].cx, dy = b.objects[0].cy - b.objects[1].cy;
        const int64_t m = b.S * 12 / 100;
        const bool horizontal = abs64(dx) >= abs64(dy) + m, vertical = abs64(dy) >= abs64(dx) + m;
        const bool ok = label == 0 ? horizontal && dx < 0
                        : label == 1 ? horizontal && dx > 0
                        : label == 2 ? vertical && dy < 0
                                     : vertical && dy > 0;
        if (!ok) return false;
        if (r.below(2)) {
            static constexpr int others[] = {kGreen, kYellow, kMagenta, kCyan, kWhite};
            const ShapeKind shape = b.any_shape();
            const int colour = others[r.below(5)];
            const int64_t size = b.permille(90, 150);
            return add(shape, colour, size);
        }
        return true;
    }
    if (task == "conjunction") {
        // (shape, colour) of the first two objects; -1: not a triangle / not red, drawn below.
        const int pairs[2][2][2] = {{{-1, kRed}, {static_cast<int>(ShapeKind::triangle), -1}},
                                    {{static_cast<int>(ShapeKind::triangle), kRed}, {-1, -1}}};
        for (const auto& pc : pairs[label]) {
            ShapeKind shape = static_cast<ShapeKind>(pc[0]);
            if (pc[0] < 0) shape = static_cast<ShapeKind>((2 + 1 + r.below(kNumShapes - 1)) % kNumShapes);
            int colour = pc[1];
            if (pc[1] < 0) colour = static_cast<int>(1 + r.below(kNumColours - 1));
            const int64_t size = b.permille(100, 160);
            if (!add(shape, colour, size)) return false;
        }
        // The third: any colour and shape but a red triangle (41 pairs, uniformly).
        const int64_t k = 1 + r.below(kNumShapes * kNumColours - 1);  // pair 0 would be (red, triangle)
        const int colour = static_cast<int>(k / kNumShapes);
        const auto shape = static_cast<ShapeKind>((2 + k % kNumShapes) % kNumShapes);
        const int64_t size = b.permille(100, 160);
        return add(shape, colour, size);
    }
    if (task == "size") {
        const ShapeKind shape = b.any_shape();
        const int c0 = b.any_colour();
        const int c1 = static_cast<int>((c0 + 1 + r.below(kNumColours - 1)) % kNumColours);
        const int64_t small = b.permille(80, 130);
        const int64_t large = small * r.between(140, 180) / 100;
        if (!add(shape, c0, large) || !add(shape, c1, small)) return false;
        const int64_t m = b.S * 10 / 100, large_x = b.objects[0].cx, small_x = b.objects[1].cx;  // large first
        return label == 0 ? large_x + m <= small_x : small_x + m <= large_x;
    }
    if (task == "same_shape") {
        const ShapeKind s0 = b.any_shape();
        ShapeKind s1 = s0;
        if (label == 0) s1 = static_cast<ShapeKind>((static_cast<int64_t>(s0) + 1 + r.below(kNumShapes - 1)) % kNumShapes);
        for (const ShapeKind shape : {s0, s1}) {
            const int colour = b.any_colour();
            const int64_t size = b.permille(100, 170);
            if (!add(shape, colour, size)) return false;
        }
        return true;
    }
    fail("procedural: no scene rule for task '", task, "'");
}

}  // namespace detail

// The circumradius of a shape whose area is that of the disc of radius `size` (both in
// 1/kFixed pixels): how far from its centre an object of that size reaches.
using detail::circumradius;

// One object made ready to draw into an image of image_size x image_size pixels: coverage(x, y)
// is the number of pixel (x, y)'s 4 x 4 samples inside it, poly[0, nv) its polygon relative to
// its centre (empty for the circle and the ring). render_scene draws every object through it.
using RasterObject = detail::Prepared;
inline RasterObject rasterize(const SceneObject& o, int64_t image_size) { return detail::prepare(o, image_size); }

// Everything random about image `index` of (task, seed) at size x size pixels.
inline Scene make_scene(const TaskSpec& spec, uint64_t seed, uint64_t index, int64_t size = 32) {
    check(size >= 16 && size <= 1024, "procedural: image size must be 16 to 1024 pixels, got ", size);
    const uint64_t key = detail::task_key(spec.name, seed);
    detail::SceneRng rng(key, index);
    Scene scene;
    scene.size = size;
    scene.label = static_cast<int64_t>(index % static_cast<uint64_t>(spec.num_classes()));
    detail::SceneBuilder b{rng, size * kFixed, spec.name == "shapes" || spec.name == "conjunction" || spec.name == "same_shape", {}};
    bool ok = false;
    for (int attempt = 0; attempt < 10000 && !ok; ++attempt) {
        b.objects.clear();
        ok = detail::draw_objects(spec.name, scene.label, b);
    }
    check(ok, "procedural: task '", spec.name, "' found no scene for image ", index, " (seed ", seed, ")");
    scene.objects = std::move(b.objects);
    for (size_t c = 0; c < 3; ++c) {
        scene.gradient_from[c] = static_cast<uint8_t>(rng.between(15, 95));
        scene.gradient_to[c] = static_cast<uint8_t>(rng.between(15, 95));
    }
    scene.gradient_angle = static_cast<int>(5 * rng.below(72));
    const int64_t S = size * kFixed, blobs = rng.between(2, 4);
    for (int64_t i = 0; i < blobs; ++i) {
        Blob bl;
        bl.cx = rng.below(S);
        bl.cy = rng.below(S);
        bl.radius = S * rng.between(80, 250) / 1000;
        for (size_t c = 0; c < 3; ++c) bl.rgb[c] = static_cast<uint8_t>(rng.between(0, 100));
        scene.blobs.push_back(bl);
    }
    scene.noise_key = key;
    scene.noise_index = index;
    return scene;
}

// Draws a scene into out (size * size * 3 bytes, rows top to bottom, RGB interleaved).
inline void render_scene(const Scene& scene, std::span<uint8_t> out) {
    const int64_t n = scene.size;
    check(static_cast<int64_t>(out.size()) == n * n * 3, "render_scene: ", out.size(), " bytes for a ", n, " x ", n,
          " RGB image");
    std::vector<RasterObject> objs;
    objs.reserve(scene.objects.size());
    for (const auto& o : scene.objects) objs.push_back(rasterize(o, n));
    // The gradient: t in [0, 256] along the direction, over the pixel centres.
    const int64_t gc = detail::cos_deg(scene.gradient_angle), gs = detail::sin_deg(scene.gradient_angle);
    auto proj = [&](int64_t x, int64_t y) { return (x * kFixed + kFixed / 2) * gc + (y * kFixed + kFixed / 2) * gs; };
    const int64_t corners[4] = {proj(0, 0), proj(n - 1, 0), proj(0, n - 1), proj(n - 1, n - 1)};
    const int64_t pmin = *std::min_element(corners, corners + 4), pmax = *std::max_element(corners, corners + 4);
    const int64_t span = std::max<int64_t>(pmax - pmin, 1);
    detail::SceneRng noise(scene.noise_key, scene.noise_index, detail::kNoiseDraws);
    uint32_t word = 0;
    int left = 0;
    constexpr int kFull = detail::kSamples * detail::kSamples;
    for (int64_t y = 0; y < n; ++y) {
        for (int64_t x = 0; x < n; ++x) {
            const int64_t t = (proj(x, y) - pmin) * 256 / span;
            std::array<int64_t, 3> bg{};
            for (size_t c = 0; c < 3; ++c)
                bg[c] = scene.gradient_from[c] + (int64_t{scene.gradient_to[c]} - scene.gradient_from[c]) * t / 256;
            for (const auto& bl : scene.blobs) {
                const int64_t dx = x * kFixed + kFixed / 2 - bl.cx, dy = y * kFixed + kFixed / 2 - bl.cy;
                if (dx * dx + dy * dy <= bl.radius * bl.radius)
                    for (size_t c = 0; c < 3; ++c) bg[c] = (bg[c] + bl.rgb[c] + 1) / 2;
            }
            // Objects: coverage-weighted colours; where two share a pixel, the later wins per sample.
            std::array<int64_t, 3> acc{};
            int covered = 0, touching = 0;
            for (const auto& o : objs) {
                if (x < o.x0 || x > o.x1 || y < o.y0 || y > o.y1) continue;
                const int k = o.coverage(x, y);
                if (k == 0) continue;
                ++touching;
                covered += k;
                for (size_t c = 0; c < 3; ++c) acc[c] += int64_t{k} * o.rgb[c];
            }
            if (touching > 1) {
                acc = {};
                covered = 0;
                for (int64_t sy = 0; sy < detail::kSamples; ++sy)
                    for (int64_t sx = 0; sx < detail::kSamples; ++sx)
                        for (auto it = objs.rbegin(); it != objs.rend(); ++it) {
                            if (x < it->x0 || x > it->x1 || y < it->y0 || y > it->y1) continue;
                            if (!it->inside_sample(x, y, sx, sy)) continue;
                            ++covered;
                            for (size_t c = 0; c < 3; ++c) acc[c] += it->rgb[c];
                            break;
                        }
            }
            uint8_t* px = out.data() + (y * n + x) * 3;
            for (size_t c = 0; c < 3; ++c) {
                const int64_t v = (acc[c] + (kFull - covered) * bg[c] + kFull / 2) / kFull;
                if (left == 0) {
                    word = noise.next();
                    left = 4;
                }
                const int64_t e = ((word & 0xffu) * 21) >> 8;  // 0 to 20
                word >>= 8;
                --left;
                px[c] = static_cast<uint8_t>(std::clamp<int64_t>(v + e - 10, 0, 255));
            }
        }
    }
}

// ---- images and data sets -------------------------------------------------------------------

struct Sample {
    std::vector<uint8_t> rgb;  // size x size x 3
    int64_t label = 0;
};

inline Sample render(const TaskSpec& spec, uint64_t seed, uint64_t index, int64_t size = 32) {
    const Scene scene = make_scene(spec, seed, index, size);
    Sample s;
    s.rgb.resize(static_cast<size_t>(size * size * 3));
    render_scene(scene, s.rgb);
    s.label = scene.label;
    return s;
}

// Images first_index .. first_index + n - 1 of (task, seed), in parallel.
inline ImageSet generate(const TaskSpec& spec, uint64_t seed, int64_t n, int64_t size = 32, int64_t first_index = 0) {
    check(n >= 0, "generate: negative image count ", n);
    check(first_index >= 0, "generate: negative first index ", first_index);
    check(size >= 16 && size <= 1024, "generate: image size must be 16 to 1024 pixels, got ", size);
    ImageSet set;
    set.classes = spec.classes;
    set.images = Tensor<uint8_t>::empty({n, size, size, 3});
    set.labels = Tensor<int64_t>::empty({n});
    uint8_t* im = set.images.data();
    int64_t* lb = set.labels.data();
    const auto bytes = static_cast<size_t>(size * size * 3);
    // Exceptions must not leave a parallel region: keep the first (by index) and rethrow it.
    std::vector<std::string> errors(static_cast<size_t>(n));
    parallel_for(n, size * size * 200, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            try {
                const Scene scene = make_scene(spec, seed, static_cast<uint64_t>(first_index + i), size);
                render_scene(scene, {im + static_cast<size_t>(i) * bytes, bytes});
                lb[i] = scene.label;
            } catch (const std::exception& ex) {
                errors[static_cast<size_t>(i)] = ex.what();
            }
        }
    });
    for (const auto& e : errors)
        if (!e.empty()) fail(e);
    return set;
}

inline ImageSet generate(std::string_view task_name, uint64_t seed, int64_t n, int64_t size = 32, int64_t first_index = 0) {
    return generate(task(task_name), seed, n, size, first_index);
}

// ---- looking at a task ----------------------------------------------------------------------

struct RgbImage {
    int64_t width = 0, height = 0;
    std::vector<uint8_t> rgb;
};

// A grid of (task, seed)'s images: row c holds the first `per_class` images of class c (in the
// order of tasks()' class names), each enlarged `scale` times, 2-pixel grey lines between.
inline RgbImage sample_grid(const TaskSpec& spec, uint64_t seed, int64_t per_class, int64_t size = 32, int64_t scale = 3) {
    check(per_class > 0 && per_class <= 1000, "sample_grid: per_class must be 1 to 1000, got ", per_class);
    check(scale > 0 && scale <= 16, "sample_grid: scale must be 1 to 16, got ", scale);
    const int64_t K = spec.num_classes(), tile = size * scale, line = 2;
    RgbImage g;
    g.width = per_class * (tile + line) + line;
    g.height = K * (tile + line) + line;
    g.rgb.assign(static_cast<size_t>(g.width * g.height * 3), 128);
    for (int64_t c = 0; c < K; ++c)
        for (int64_t j = 0; j < per_class; ++j) {
            const Sample s = render(spec, seed, static_cast<uint64_t>(c + K * j), size);
            const int64_t ox = line + j * (tile + line), oy = line + c * (tile + line);
            for (int64_t y = 0; y < tile; ++y)
                for (int64_t x = 0; x < tile; ++x)
                    for (int64_t ch = 0; ch < 3; ++ch)
                        g.rgb[static_cast<size_t>(((oy + y) * g.width + ox + x) * 3 + ch)] =
                            s.rgb[static_cast<size_t>(((y / scale) * size + x / scale) * 3 + ch)];
        }
    return g;
}

inline void write_sample_grid(const std::filesystem::path& path, const TaskSpec& spec, uint64_t seed, int64_t per_class,
                              int64_t size = 32, int64_t scale = 3) {
    const RgbImage g = sample_grid(spec, seed, per_class, size, scale);
    io::write_png(path, g.rgb, g.width, g.height, 3);
}

}  // namespace coeffnet::data
