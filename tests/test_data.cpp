// data/procedural.hpp and data/dataset.hpp: the procedural tasks (determinism, balance, labels
// that agree with the pixels), image sets on disk (round trip and refusals), to_pixels,
// BatchOrder, gather and the PNG writer. Image folders (which need stb_image) are tested in
// test_image_folder.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/data/dataset.hpp>
#include <coeffnet/data/procedural.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
using doctest::Contains;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> bytes_of(const Tensor<uint8_t>& t) { return t.to_vector(); }

uint64_t fnv(const std::vector<uint8_t>& v) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t b : v) h = (h ^ b) * 0x100000001b3ull;
    return h;
}

// The objects as the pixels show them: 8-connected components of pixels with a channel at 120
// or more (the background stays below), each with its pixel count, centroid and colour (the
// palette colour nearest the mean of its bright pixels).
struct Component {
    int64_t pixels = 0;
    double x = 0, y = 0;
    int colour = -1;
};

std::vector<Component> components(const std::vector<uint8_t>& rgb, int64_t n) {
    auto bright = [&](int64_t i) {
        return std::max({rgb[static_cast<size_t>(i * 3)], rgb[static_cast<size_t>(i * 3 + 1)],
                         rgb[static_cast<size_t>(i * 3 + 2)]});
    };
    std::vector<int> seen(static_cast<size_t>(n * n), 0);
    std::vector<Component> out;
    for (int64_t start = 0; start < n * n; ++start) {
        if (seen[static_cast<size_t>(start)] || bright(start) < 120) continue;
        Component c;
        std::array<double, 3> sum{};
        int64_t core = 0;
        std::vector<int64_t> stack = {start};
        seen[static_cast<size_t>(start)] = 1;
        while (!stack.empty()) {
            const int64_t i = stack.back();
            stack.pop_back();
            const int64_t x = i % n, y = i / n;
            ++c.pixels;
            c.x += static_cast<double>(x);
            c.y += static_cast<double>(y);
            if (bright(i) >= 170) {
                ++core;
                for (size_t ch = 0; ch < 3; ++ch) sum[ch] += rgb[static_cast<size_t>(i * 3) + ch];
            }
            for (int64_t dy = -1; dy <= 1; ++dy)
                for (int64_t dx = -1; dx <= 1; ++dx) {
                    const int64_t xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= n || yy >= n) continue;
                    const int64_t j = yy * n + xx;
                    if (seen[static_cast<size_t>(j)] || bright(j) < 120) continue;
                    seen[static_cast<size_t>(j)] = 1;
                    stack.push_back(j);
                }
        }
        c.x /= static_cast<double>(c.pixels);
        c.y /= static_cast<double>(c.pixels);
        if (core > 0) {
            double best = 1e30;
            for (int k = 0; k < data::kNumColours; ++k) {
                double d = 0;
                for (size_t ch = 0; ch < 3; ++ch) {
                    const double e = sum[ch] / static_cast<double>(core) - data::kPalette[static_cast<size_t>(k)].rgb[ch];
                    d += e * e;
                }
                if (d < best) {
                    best = d;
                    c.colour = k;
                }
            }
        }
        out.push_back(c);
    }
    return out;
}

std::multiset<int> colours_of(const std::vector<Component>& cs) {
    std::multiset<int> s;
    for (const auto& c : cs) s.insert(c.colour);
    return s;
}
std::multiset<int> colours_of(const data::Scene& scene) {
    std::multiset<int> s;
    for (const auto& o : scene.objects) s.insert(o.colour);
    return s;
}

const Component* find_colour(const std::vector<Component>& cs, int colour) {
    const Component* found = nullptr;
    for (const auto& c : cs)
        if (c.colour == colour) {
            if (found) return nullptr;  // not unique
            found = &c;
        }
    return found;
}

}  // namespace

TEST_CASE("data: the task list: names, classes, lookup") {
    const auto& all = data::tasks();
    REQUIRE(all.size() >= 5);
    std::set<std::string> names;
    int pretraining = 0;
    for (const auto& t : all) {
        CHECK(names.insert(t.name).second);
        CHECK(t.num_classes() >= 2);
        CHECK(!t.description.empty());
        CHECK(std::set<std::string>(t.classes.begin(), t.classes.end()).size() == t.classes.size());
        pretraining += t.pretraining;
        CHECK(&data::task(t.name) == &t);
    }
    CHECK(pretraining == 1);
    CHECK(data::pretraining_task().name == "shapes");
    CHECK(data::pretraining_task().num_classes() == data::kNumShapes);
    CHECK(all.size() - 1 >= 4);  // downstream tasks
    CHECK_THROWS_WITH_AS(data::task("colour"), Contains("unknown task 'colour' (tasks: shapes, count, position"), Error);
    CHECK_THROWS_WITH_AS(data::generate("nope", 0, 4), Contains("unknown task 'nope'"), Error);
    CHECK_THROWS_WITH_AS(data::render(data::task("count"), 0, 0, 8), Contains("image size must be 16 to 1024"), Error);
}

TEST_CASE("data: an image is a pure function of (task, seed, index, size)") {
    for (const auto& t : data::tasks()) {
        CAPTURE(t.name);
        const auto a = data::render(t, 7, 123), b = data::render(t, 7, 123);
        CHECK(a.rgb == b.rgb);
        CHECK(a.label == b.label);
        CHECK(a.rgb.size() == 32 * 32 * 3);
        CHECK(data::render(t, 8, 123).rgb != a.rgb);
        CHECK(data::render(t, 7, 124).rgb != a.rgb);
        CHECK(data::render(t, 7, 123, 48).rgb.size() == 48 * 48 * 3);
    }
    // The same seed gives different tasks different images.
    CHECK(data::render(data::task("count"), 1, 5).rgb != data::render(data::task("same_shape"), 1, 5).rgb);

    // A set is the concatenation of its slices, and the same with one thread or more.
    const int threads = num_threads();
    const auto whole = data::generate("position", 3, 50);
    const auto head = data::generate("position", 3, 17);
    const auto tail = data::generate("position", 3, 33, 32, 17);
    auto joined = bytes_of(head.images);
    const auto tb = bytes_of(tail.images);
    joined.insert(joined.end(), tb.begin(), tb.end());
    CHECK(bytes_of(whole.images) == joined);
    auto labels = head.labels.to_vector();
    const auto tl = tail.labels.to_vector();
    labels.insert(labels.end(), tl.begin(), tl.end());
    CHECK(whole.labels.to_vector() == labels);
    set_num_threads(1);
    const auto serial = data::generate("position", 3, 50);
    set_num_threads(threads);
    CHECK(bytes_of(serial.images) == bytes_of(whole.images));
    // Image i of the set is render(i).
    const auto one = data::render(data::task("position"), 3, 20);
    CHECK(std::equal(one.rgb.begin(), one.rgb.end(), whole.images.data() + 20 * 32 * 32 * 3));
    CHECK(whole.labels.to_vector()[20] == one.label);
    CHECK(whole.classes == data::task("position").classes);
    CHECK(whole.images.shape() == Shape{50, 32, 32, 3});
    CHECK(data::generate("count", 0, 0).size() == 0);
}

TEST_CASE("data: the bytes of each task's first images are pinned (same on every machine)") {
    // Rendering is integer arithmetic only; these change only when the generator does (which
    // changes every data set made with it: do that knowingly, and update them).
    std::map<std::string, uint64_t> got;
    for (const auto& t : data::tasks()) got[t.name] = fnv(bytes_of(data::generate(t, 2024, 6).images));
    const std::map<std::string, uint64_t> want = {
        {"shapes", 0x23ce37e14dea1d4aull},
        {"count", 0xd06b8adf7433829aull},
        {"position", 0xbf913c2a6e132b25ull},
        {"conjunction", 0xd8985d336699310dull},
        {"size", 0x5c68610f12b3e4d8ull},
        {"same_shape", 0x50dad08f5327130cull},
    };
    for (const auto& kv : want) {
        const std::string& name = kv.first;
        CAPTURE(name);
        CHECK(got[name] == kv.second);
    }
}

TEST_CASE("data: labels are balanced, every class occurs") {
    for (const auto& t : data::tasks()) {
        CAPTURE(t.name);
        const int64_t K = t.num_classes();
        for (int64_t first : {int64_t{0}, int64_t{5}}) {
            const auto set = data::generate(t, 11, 10 * K, 32, first);
            std::vector<int64_t> count(static_cast<size_t>(K), 0);
            for (int64_t l : set.labels.to_vector()) {
                REQUIRE((l >= 0 && l < K));
                ++count[static_cast<size_t>(l)];
            }
            for (int64_t c : count) CHECK(c == 10);
        }
        // Any run of consecutive images is balanced to within one.
        const auto odd = data::generate(t, 11, 3 * K + 1, 32, 2);
        std::vector<int64_t> count(static_cast<size_t>(K), 0);
        for (int64_t l : odd.labels.to_vector()) ++count[static_cast<size_t>(l)];
        CHECK(*std::max_element(count.begin(), count.end()) - *std::min_element(count.begin(), count.end()) <= 1);
    }
}

TEST_CASE("data: scenes keep their rules: inside the image, apart, the label's rule") {
    for (const auto& t : data::tasks()) {
        CAPTURE(t.name);
        for (uint64_t i = 0; i < 400; ++i) {
            const auto s = data::make_scene(t, 5, i);
            const int64_t S = 32 * data::kFixed;
            CHECK(s.label == static_cast<int64_t>(i % static_cast<uint64_t>(t.num_classes())));
            for (size_t a = 0; a < s.objects.size(); ++a) {
                const auto& o = s.objects[a];
                CHECK((o.cx - o.radius >= 0 && o.cx + o.radius <= S && o.cy - o.radius >= 0 && o.cy + o.radius <= S));
                CHECK(o.angle % 5 == 0);
                CHECK(o.radius == data::circumradius(o.shape, o.size));
                for (size_t c = 0; c < 3; ++c)
                    CHECK(std::abs(int{o.rgb[c]} - int{data::kPalette[static_cast<size_t>(o.colour)].rgb[c]}) <= 20);
                for (size_t b = 0; b < a; ++b) {
                    const auto& q = s.objects[b];
                    const double d = std::hypot(static_cast<double>(o.cx - q.cx), static_cast<double>(o.cy - q.cy));
                    CHECK(d >= static_cast<double>(o.radius + q.radius) + 3.0 * data::kFixed);  // >= 3 pixels apart
                }
            }
            const auto& ob = s.objects;
            auto is = [](const data::SceneObject& o, int colour, data::ShapeKind shape) {
                return o.colour == colour && o.shape == shape;
            };
            if (t.name == "shapes") {
                REQUIRE(ob.size() == 1);
                CHECK(static_cast<int64_t>(ob[0].shape) == s.label);
            } else if (t.name == "count") {
                CHECK(static_cast<int64_t>(ob.size()) == s.label + 1);
            } else if (t.name == "position") {
                REQUIRE((ob.size() == 2 || ob.size() == 3));
                CHECK(ob[0].colour == data::kRed);
                CHECK(ob[1].colour == data::kBlue);
                if (ob.size() == 3) CHECK((ob[2].colour != data::kRed && ob[2].colour != data::kBlue));
                const int64_t dx = ob[0].cx - ob[1].cx, dy = ob[0].cy - ob[1].cy;
                const int64_t want[4][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}};  // left, right, above, below
                const auto* w = want[s.label];
                if (w[0] != 0) CHECK((std::abs(dx) > std::abs(dy) && (dx > 0) == (w[0] > 0)));
                else CHECK((std::abs(dy) > std::abs(dx) && (dy > 0) == (w[1] > 0)));
            } else if (t.name == "conjunction") {
                REQUIRE(ob.size() == 3);
                int red_triangles = 0, reds = 0, triangles = 0;
                for (const auto& o : ob) {
                    red_triangles += is(o, data::kRed, data::ShapeKind::triangle);
                    reds += o.colour == data::kRed;
                    triangles += o.shape == data::ShapeKind::triangle;
                }
                CHECK(red_triangles == s.label);
                CHECK(reds >= 1);
                CHECK(triangles >= 1);
            } else if (t.name == "size") {
                REQUIRE(ob.size() == 2);
                CHECK(ob[0].shape == ob[1].shape);
                CHECK(ob[0].colour != ob[1].colour);
                const auto& large = ob[0].size > ob[1].size ? ob[0] : ob[1];
                const auto& small = ob[0].size > ob[1].size ? ob[1] : ob[0];
                CHECK(static_cast<double>(large.size) >= 1.39 * static_cast<double>(small.size));
                CHECK((s.label == 0 ? large.cx < small.cx : large.cx > small.cx));
            } else if (t.name == "same_shape") {
                REQUIRE(ob.size() == 2);
                CHECK((ob[0].shape == ob[1].shape) == (s.label == 1));
            }
        }
    }
}

TEST_CASE("data: conjunction: red and triangle counts say nothing about the label") {
    // Over many scenes, the distribution of (red objects, triangles) is the same in both classes.
    const auto& t = data::task("conjunction");
    std::map<std::pair<int, int>, std::array<int, 2>> hist;
    const int n = 8000;
    for (uint64_t i = 0; i < n; ++i) {
        const auto s = data::make_scene(t, 9, i);
        int reds = 0, triangles = 0;
        for (const auto& o : s.objects) {
            reds += o.colour == data::kRed;
            triangles += o.shape == data::ShapeKind::triangle;
        }
        ++hist[{reds, triangles}][static_cast<size_t>(s.label)];
    }
    for (const auto& kv : hist) {
        const int reds = kv.first.first, triangles = kv.first.second;
        const auto& c = kv.second;
        CAPTURE(reds);
        CAPTURE(triangles);
        const double p0 = c[0] / (n / 2.0), p1 = c[1] / (n / 2.0);
        CHECK(std::abs(p0 - p1) < 0.03);
    }
}

TEST_CASE("data: the pixels agree with the scene and the label") {
    for (const auto& t : data::tasks()) {
        CAPTURE(t.name);
        const int64_t n = 300;
        const auto set = data::generate(t, 17, n);
        const auto images = bytes_of(set.images);
        const auto labels = set.labels.to_vector();
        for (int64_t i = 0; i < n; ++i) {
            CAPTURE(i);
            const std::vector<uint8_t> rgb(images.begin() + i * 32 * 32 * 3, images.begin() + (i + 1) * 32 * 32 * 3);
            const auto cs = components(rgb, 32);
            const auto scene = data::make_scene(t, 17, static_cast<uint64_t>(i));
            const int64_t label = labels[static_cast<size_t>(i)];
            REQUIRE(cs.size() == scene.objects.size());
            CHECK(colours_of(cs) == colours_of(scene));
            if (t.name == "count") CHECK(static_cast<int64_t>(cs.size()) == label + 1);
            if (t.name == "position") {
                const Component* red = find_colour(cs, data::kRed);
                const Component* blue = find_colour(cs, data::kBlue);
                REQUIRE(red);
                REQUIRE(blue);
                const double dx = red->x - blue->x, dy = red->y - blue->y;
                const int64_t got = std::abs(dx) > std::abs(dy) ? (dx < 0 ? 0 : 1) : (dy < 0 ? 2 : 3);
                CHECK(got == label);
                CHECK(std::abs(std::abs(dx) - std::abs(dy)) > 2.0);  // never a close call
            }
            if (t.name == "size") {
                const auto& large = cs[0].pixels > cs[1].pixels ? cs[0] : cs[1];
                const auto& small = cs[0].pixels > cs[1].pixels ? cs[1] : cs[0];
                CHECK(static_cast<double>(large.pixels) > 1.3 * static_cast<double>(small.pixels));
                CHECK((label == 0 ? large.x < small.x : large.x > small.x));
            }
        }
    }
}

TEST_CASE("data: shapes are drawn with their areas (antialiased coverage), equal for equal sizes") {
    // The coverage of a shape, summed over pixels, is its area to within a few percent, and an
    // object's area is that of the disc of radius `size`, whatever its shape.
    const double pi = 3.141592653589793;
    for (int s = 0; s < data::kNumShapes; ++s) {
        const auto shape = static_cast<data::ShapeKind>(s);
        CAPTURE(data::shape_name(shape));
        for (int angle : {0, 35, 90, 215}) {
            data::SceneObject o;
            o.shape = shape;
            o.cx = 40 * data::kFixed + 77;
            o.cy = 41 * data::kFixed + 13;
            o.size = 18 * data::kFixed;
            o.radius = data::circumradius(shape, o.size);
            o.angle = angle;
            const auto p = data::rasterize(o, 80);
            double covered = 0;
            for (int64_t y = 0; y < 80; ++y)
                for (int64_t x = 0; x < 80; ++x) covered += p.coverage(x, y) / 16.0;
            CHECK(covered / (pi * 18.0 * 18.0) == doctest::Approx(1.0).epsilon(0.02));
            // The shape stays inside its circumcircle, and the polygon's own area agrees.
            const double R = static_cast<double>(o.radius) / data::kFixed;
            CHECK(p.nv <= 12);
            double area = 0;
            for (int i = 0, j = p.nv - 1; i < p.nv; j = i++) {
                const auto a = p.poly[static_cast<size_t>(i)], b = p.poly[static_cast<size_t>(j)];
                CHECK(std::hypot(static_cast<double>(a.x), static_cast<double>(a.y)) <= static_cast<double>(o.radius) + 1);
                area += static_cast<double>(b.x * a.y - a.x * b.y);
            }
            if (p.nv > 0)
                CHECK(std::abs(area) / 2 / (data::kFixed * data::kFixed) == doctest::Approx(pi * 18.0 * 18.0).epsilon(0.01));
            CHECK(R < 40);
        }
    }
    // Pixels far inside are fully covered, pixels outside the circumcircle not at all.
    data::SceneObject o;
    o.shape = data::ShapeKind::ring;
    o.cx = o.cy = 16 * data::kFixed;
    o.size = 8 * data::kFixed;
    o.radius = data::circumradius(data::ShapeKind::ring, o.size);
    const auto p = data::rasterize(o, 32);
    CHECK(p.coverage(16, 16) == 0);   // the hole
    CHECK(p.coverage(16 + 7, 16) == 16);
    CHECK(p.coverage(0, 0) == 0);
}

TEST_CASE("data: image sets on disk: round trip") {
    TempDir dir("data");
    const auto set = data::generate("same_shape", 4, 20);
    const fs::path p = dir.path / "set.safetensors";
    data::save_image_set(p, set);
    const auto back = data::load_image_set(p);
    CHECK(back.classes == set.classes);
    CHECK(back.images.shape() == set.images.shape());
    CHECK(bytes_of(back.images) == bytes_of(set.images));
    CHECK(back.labels.to_vector() == set.labels.to_vector());
    CHECK(io::SafeTensors::open(p).metadata().at("classes") == "[\"different\",\"same\"]");
    // Saving over a file replaces it.
    data::save_image_set(p, data::subset(set, std::vector<int64_t>{3, 1}));
    const auto two = data::load_image_set(p);
    CHECK(two.size() == 2);
    CHECK(two.labels.to_vector() == std::vector<int64_t>{set.labels.to_vector()[3], set.labels.to_vector()[1]});

    // Without "classes" metadata, the classes are the labels' numbers.
    io::SafeTensorsWriter w;
    w.add("images", Tensor<uint8_t>::zeros({3, 4, 5, 3}));
    w.add("labels", Tensor<int64_t>::from({0, 2, 2}, {3}));
    w.write(dir.path / "bare.safetensors");
    const auto bare = data::load_image_set(dir.path / "bare.safetensors");
    CHECK(bare.classes == std::vector<std::string>{"0", "1", "2"});
    CHECK(bare.height() == 4);
    CHECK(bare.width() == 5);
}

TEST_CASE("data: bad image sets are refused, naming the problem") {
    TempDir dir("data");
    int k = 0;
    auto write = [&](auto images, auto labels, const char* classes) {
        io::SafeTensorsWriter w;
        w.add("images", images);
        w.add("labels", labels);
        if (classes) w.set_metadata({{"classes", classes}});
        const fs::path p = dir.path / ("bad" + std::to_string(k++) + ".safetensors");
        w.write(p);
        return p;
    };
    const auto u8 = Tensor<uint8_t>::zeros({2, 4, 4, 3});
    const auto lab = Tensor<int64_t>::from({0, 1}, {2});
    CHECK_THROWS_WITH_AS(data::load_image_set(write(Tensor<float>::zeros({2, 4, 4, 3}), lab, nullptr)),
                         Contains("'images' is F32; expected U8"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, Tensor<int32_t>::zeros({2}), nullptr)),
                         Contains("'labels' is I32; expected I64"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(Tensor<uint8_t>::zeros({2, 4, 12}), lab, nullptr)),
                         Contains("'images' has shape [2, 4, 12]; expected [N, H, W, 3]"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(Tensor<uint8_t>::zeros({2, 4, 4, 4}), lab, nullptr)),
                         Contains("'images' has shape [2, 4, 4, 4]; expected [N, H, W, 3]"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, Tensor<int64_t>::zeros({2, 1}), nullptr)),
                         Contains("'labels' has shape [2, 1]; expected [N]"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, Tensor<int64_t>::zeros({3}), nullptr)),
                         Contains("2 images but 3 labels"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, Tensor<int64_t>::from({0, 5}, {2}), "[\"a\", \"b\"]")),
                         Contains("label 5 of image 1 is out of range [0, 2) for classes 'a', 'b'"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, Tensor<int64_t>::from({0, -1}, {2}), nullptr)),
                         Contains("label -1 of image 1 is negative"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, lab, "[\"a\", ")), Contains("'classes' is not valid JSON"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, lab, "{\"a\": 1}")),
                         Contains("'classes' should be a non-empty JSON list of strings"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_set(write(u8, lab, "[\"a\", \"a\"]")), Contains("class name 'a' appears twice"),
                         Error);
    {
        io::SafeTensorsWriter w;
        w.add("images", u8);
        w.write(dir.path / "nolabels.safetensors");
        CHECK_THROWS_WITH_AS(data::load_image_set(dir.path / "nolabels.safetensors"), Contains("no 'labels' tensor"), Error);
    }
    CHECK_THROWS_WITH_AS(data::load_image_set(dir.path / "missing.safetensors"), Contains("missing.safetensors: cannot open"),
                         Error);
    // save_image_set checks too.
    data::ImageSet bad{u8, Tensor<int64_t>::from({0, 3}, {2}), {"a", "b"}};
    CHECK_THROWS_WITH_AS(data::save_image_set(dir.path / "x.safetensors", bad), Contains("label 3 of image 1 is out of range"),
                         Error);
    CHECK(!fs::exists(dir.path / "x.safetensors"));
}

TEST_CASE("data: to_pixels is (float32(x * rescale) - mean) / std, channels first") {
    Generator g(3);
    const auto f = Tensor<float>::uniform({2, 3, 5, 3}, g, 0.0, 256.0).to_vector();
    std::vector<uint8_t> v(f.size());
    for (size_t i = 0; i < f.size(); ++i) v[i] = static_cast<uint8_t>(f[i]);
    v[0] = 0;
    v[1] = 255;
    const auto images = Tensor<uint8_t>::from(v, {2, 3, 5, 3});
    const std::array<double, 3> mean{0.485, 0.456, 0.406}, sd{0.229, 0.224, 0.225};
    const auto x = data::to_pixels(images, mean, sd);
    REQUIRE(x.shape() == Shape{2, 3, 3, 5});
    for (int64_t n = 0; n < 2; ++n)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < 3; ++y)
                for (int64_t xx = 0; xx < 5; ++xx) {
                    const uint8_t u = v[static_cast<size_t>(((n * 3 + y) * 5 + xx) * 3 + c)];
                    const auto s = static_cast<float>(u * (1.0 / 255.0));
                    const float want = (s - static_cast<float>(mean[static_cast<size_t>(c)])) /
                                       static_cast<float>(sd[static_cast<size_t>(c)]);
                    CHECK(x.at({n, c, y, xx}) == want);
                }
    CHECK(x.at({0, 0, 0, 0}) == (0.0f - 0.485f) / 0.229f);
    const auto half = data::to_pixels<double>(images, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, 1.0);
    CHECK(half.at({0, 1, 0, 0}) == (255.0f - 0.5f) / 0.5f);
    CHECK_THROWS_WITH_AS(data::to_pixels(Tensor<uint8_t>::zeros({2, 4, 4}), mean, sd), Contains("expected [N, H, W, 3]"),
                         Error);
    CHECK_THROWS_WITH_AS(data::to_pixels(images, mean, {1.0, 0.0, 1.0}), Contains("std finite and nonzero"), Error);
}

TEST_CASE("data: BatchOrder: a seeded permutation per epoch, resumable") {
    const Generator gen(99, 7);
    data::BatchOrder order(10, 4, gen);
    CHECK(order.batches_per_epoch() == 3);
    std::vector<std::vector<int64_t>> epochs;
    for (int e = 0; e < 3; ++e) {
        std::vector<int64_t> seen;
        for (int b = 0; b < 3; ++b) {
            const auto batch = order.next();
            CHECK(batch.size() == (b < 2 ? 4u : 2u));
            seen.insert(seen.end(), batch.begin(), batch.end());
        }
        CHECK(seen == order.permutation(e));
        auto sorted = seen;
        std::sort(sorted.begin(), sorted.end());
        std::vector<int64_t> all(10);
        for (int64_t i = 0; i < 10; ++i) all[static_cast<size_t>(i)] = i;
        CHECK(sorted == all);
        epochs.push_back(seen);
    }
    CHECK(order.step() == 9);
    CHECK(order.epoch() == 3);
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
    // The same generator state gives the same order; resuming at a step gives the rest.
    data::BatchOrder again(10, 4, Generator(99, 7));
    again.seek(4);
    CHECK(again.next() == order.batch(4));
    CHECK(again.next() == order.batch(5));
    CHECK(again.batch(1) == data::BatchOrder(10, 4, gen).batch(1));
    CHECK(data::BatchOrder(10, 4, Generator(99, 8)).permutation(0) != epochs[0]);
    CHECK(data::BatchOrder(10, 4, Generator(98, 7)).permutation(0) != epochs[0]);
    // A large set's permutations are far from the identity and from each other.
    data::BatchOrder big(1000, 100, Generator(1));
    const auto p0 = big.permutation(0), p1 = big.permutation(1);
    int64_t fixed = 0, same = 0;
    for (size_t i = 0; i < p0.size(); ++i) {
        fixed += p0[i] == static_cast<int64_t>(i);
        same += p0[i] == p1[i];
    }
    CHECK(fixed < 10);
    CHECK(same < 10);
    // drop_last drops the short batch.
    data::BatchOrder dl(10, 4, gen, true);
    CHECK(dl.batches_per_epoch() == 2);
    const auto p1_10 = order.permutation(1);
    CHECK(dl.batch(2) == std::vector<int64_t>(p1_10.begin(), p1_10.begin() + 4));
    CHECK_THROWS_WITH_AS(data::BatchOrder(0, 4, gen), Contains("the data set is empty"), Error);
    CHECK_THROWS_WITH_AS(data::BatchOrder(10, 0, gen), Contains("batch size must be positive"), Error);
    CHECK_THROWS_WITH_AS(data::BatchOrder(3, 4, gen, true), Contains("no batch at all"), Error);
}

TEST_CASE("data: gather and subset pick rows") {
    const auto set = data::generate("count", 1, 12);
    const auto x = data::to_pixels(set.images, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});
    const std::vector<int64_t> idx = {7, 0, 7, 11};
    const auto b = data::gather(x, set.labels, idx);
    REQUIRE(b.pixels.shape() == Shape{4, 3, 32, 32});
    const auto xv = x.to_vector(), bv = b.pixels.to_vector();
    const size_t row = 3 * 32 * 32;
    for (size_t k = 0; k < idx.size(); ++k) {
        CHECK(std::equal(bv.begin() + static_cast<std::ptrdiff_t>(k * row), bv.begin() + static_cast<std::ptrdiff_t>((k + 1) * row),
                         xv.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(idx[k]) * row)));
        CHECK(b.labels.to_vector()[k] == set.labels.to_vector()[static_cast<size_t>(idx[k])]);
    }
    const auto s = data::subset(set, idx);
    CHECK(bytes_of(data::gather(set.images, set.labels, idx).pixels) == bytes_of(s.images));
    CHECK(s.labels.to_vector() == b.labels.to_vector());
    CHECK_THROWS_WITH_AS(data::gather(x, set.labels, std::vector<int64_t>{12}), Contains("index 12 is out of range for 12"),
                         Error);
    CHECK_THROWS_WITH_AS(data::gather(x, Tensor<int64_t>::zeros({5}), idx), Contains("labels have shape [5]"), Error);
}

TEST_CASE("data: encode_png writes a well-formed PNG (level 0: stored)") {
    std::vector<uint8_t> px(7 * 5 * 3);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
    const auto png = io::encode_png(px, 7, 5, 3, {.level = 0});
    REQUIRE(png.size() > 8 + 25 + 12);
    CHECK(std::equal(png.begin(), png.begin() + 8, std::vector<uint8_t>{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a}.begin()));
    // Walk the chunks: lengths, CRCs, IHDR first, IEND last.
    size_t pos = 8;
    std::vector<std::string> types;
    std::vector<uint8_t> idat;
    while (pos < png.size()) {
        const uint32_t len = (uint32_t{png[pos]} << 24) | (uint32_t{png[pos + 1]} << 16) | (uint32_t{png[pos + 2]} << 8) | png[pos + 3];
        types.emplace_back(reinterpret_cast<const char*>(&png[pos + 4]), 4);
        const uint32_t crc = io::crc32(&png[pos + 4], len + 4);
        const size_t c = pos + 8 + len;
        CHECK(crc == ((uint32_t{png[c]} << 24) | (uint32_t{png[c + 1]} << 16) | (uint32_t{png[c + 2]} << 8) | png[c + 3]));
        if (types.back() == "IDAT") idat.insert(idat.end(), png.begin() + static_cast<std::ptrdiff_t>(pos + 8), png.begin() + static_cast<std::ptrdiff_t>(c));
        pos = c + 4;
    }
    CHECK(pos == png.size());
    CHECK(types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
    // One stored block: zlib header, final-block byte, LEN, NLEN, the filtered rows, Adler-32.
    REQUIRE(idat.size() == 2 + 5 + 5 * (1 + 21) + 4);
    CHECK(idat[2] == 1);
    CHECK((idat[3] | (idat[4] << 8)) == 5 * 22);
    for (int64_t y = 0; y < 5; ++y) {
        CHECK(idat[static_cast<size_t>(7 + y * 22)] == 0);
        CHECK(std::equal(px.begin() + y * 21, px.begin() + (y + 1) * 21, idat.begin() + 7 + y * 22 + 1));
    }
    const std::string check = "123456789";
    CHECK(io::crc32(reinterpret_cast<const uint8_t*>(check.data()), check.size()) == 0xcbf43926u);
}
