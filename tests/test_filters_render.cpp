// tools/filters_render.hpp: the pictures of `coeffnet vit filters` on tiny synthetic views (2-4
// heads, 2x2 or 3x3 patch grids): the mixing Fhat = alpha' F by hand, the slide picture's size,
// colours and query outline, the PNG read back, the JSON's numbers, and the HTML page being
// self-contained. stb_image (for decoding the PNG) is compiled into test_image.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <coeffnet/io/image.hpp>

#include "filters_render.hpp"
#include "test_util.hpp"

using namespace coeffnet;

namespace filters_render_test {

// A view whose rows are positive and sum to 1, all different; a grey gradient as the image.
tools::FilterView synthetic(int64_t heads, int64_t grid, bool adapter, int64_t query) {
    tools::FilterView v;
    v.model = "toy";
    v.adapter = adapter ? "alpha-toy" : "";
    v.layer = 1;
    v.layers = 2;
    v.heads = heads;
    v.grid_h = v.grid_w = grid;
    v.query = query;
    const int64_t T = v.tokens();
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t q = 0; q < T; ++q) {
            std::vector<float> row;
            float sum = 0;
            for (int64_t t = 0; t < T; ++t) {
                row.push_back(static_cast<float>(1 + (h * 7 + q * 3 + t * 5) % 11));
                sum += row.back();
            }
            for (float x : row) v.maps.push_back(x / sum);
        }
    v.image = io::Image(32, 32, 3);
    for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x)
            for (int64_t c = 0; c < 3; ++c) v.image.at(y, x, c) = static_cast<uint8_t>(40 + 4 * (x + y));
    if (adapter) {
        v.alpha_prime.assign(static_cast<size_t>(heads * heads), 0.0f);
        for (int64_t h = 0; h < heads; ++h) v.alpha_prime[static_cast<size_t>(h * heads + h)] = 1;
        v.alpha_prime[1] = -0.75f;                             // alpha'[0, 1]: head 0 subtracts head 1
        v.alpha_prime[static_cast<size_t>(heads)] = 0.5f;      // alpha'[1, 0]
    }
    return v;
}

float p_of(const tools::FilterView& v, int64_t h, int64_t q, int64_t t) {
    return v.maps[static_cast<size_t>((h * v.tokens() + q) * v.tokens() + t)];
}

tools::Rgb pixel(const io::Image& img, int64_t x, int64_t y) { return {img.at(y, x, 0), img.at(y, x, 1), img.at(y, x, 2)}; }

bool frame_is(const io::Image& img, const tools::Rect& r, tools::Rgb c) {
    for (int64_t x = r.x; x < r.x + r.w; ++x)
        if (pixel(img, x, r.y) != c || pixel(img, x, r.y + r.h - 1) != c) return false;
    for (int64_t y = r.y; y < r.y + r.h; ++y)
        if (pixel(img, r.x, y) != c || pixel(img, r.x + r.w - 1, y) != c) return false;
    return true;
}

}  // namespace filters_render_test

using namespace filters_render_test;

TEST_CASE("filters render: mixed_row is alpha' times the query's rows, negative entries included") {
    const tools::FilterView v = synthetic(2, 2, true, 3);  // alpha' = [[1, -0.75], [0.5, 1]]
    const std::vector<float> m = tools::mixed_row(v, 3);
    REQUIRE(m.size() == 2 * 5);
    bool negative = false;
    for (int64_t t = 0; t < 5; ++t) {
        CHECK(m[static_cast<size_t>(t)] == doctest::Approx(1.0 * p_of(v, 0, 3, t) - 0.75 * p_of(v, 1, 3, t)).epsilon(1e-6));
        CHECK(m[static_cast<size_t>(5 + t)] == doctest::Approx(0.5 * p_of(v, 0, 3, t) + 1.0 * p_of(v, 1, 3, t)).epsilon(1e-6));
        negative = negative || m[static_cast<size_t>(t)] < 0;
    }
    CHECK(negative);  // the mixed filter has a negative weight
    // Another query row, and no adapter: P's rows exactly.
    CHECK(tools::mixed_row(v, 0)[1] == doctest::Approx(p_of(v, 0, 0, 1) - 0.75 * p_of(v, 1, 0, 1)).epsilon(1e-6));
    const tools::FilterView plain = synthetic(3, 2, false, 2);
    const std::vector<float> r = tools::mixed_row(plain, 2);
    for (int64_t h = 0; h < 3; ++h)
        for (int64_t t = 0; t < 5; ++t) CHECK(r[static_cast<size_t>(h * 5 + t)] == p_of(plain, h, 2, t));
    // Bad views are refused with a message.
    tools::FilterView bad = plain;
    bad.maps.pop_back();
    CHECK(test::contains(test::error_of([&] { tools::mixed_row(bad, 0); }), "maps has"));
    CHECK(test::contains(test::error_of([&] { tools::mixed_row(plain, 5); }), "query token 5"));
}

TEST_CASE("filters render: the slide picture has the documented size, colours and query outline") {
    const tools::FilterView v = synthetic(4, 3, true, 5);  // patch (1, 1)
    const io::Image img = tools::render_filters(v);
    const tools::FilterLayout lay = tools::filters_layout(v);
    CHECK(img.channels == 3);
    CHECK(img.width == lay.width);
    CHECK(img.height == lay.height);
    CHECK(img.width == 892);  // the example at the top of filters_render.hpp
    CHECK(img.height == 808);
    std::set<tools::Rgb> colours;
    for (int64_t y = 0; y < img.height; ++y)
        for (int64_t x = 0; x < img.width; ++x) colours.insert(pixel(img, x, y));
    CHECK(colours.size() > 30);
    // The query patch (1, 1) outlined on the image.
    const int64_t ic = lay.image.w / 3;
    CHECK(lay.query_box.x == lay.image.x + ic - 1);
    CHECK(lay.query_box.y == lay.image.y + ic - 1);
    CHECK(frame_is(img, lay.query_box, tools::detail::kQuery));
    // One panel per head in each row; alpha' drawn; the Fhat cell of head 0 with the most negative
    // weight is blue, the largest F cell is the sequential map's top (yellow).
    REQUIRE(lay.f.size() == 4);
    REQUIRE(lay.fhat.size() == 4);
    CHECK(lay.alpha.w > 0);
    const std::vector<float> m = tools::mixed_row(v, 5);
    int64_t neg = 1;
    for (int64_t t = 1; t < 10; ++t)
        if (m[static_cast<size_t>(t)] < m[static_cast<size_t>(neg)]) neg = t;
    REQUIRE(m[static_cast<size_t>(neg)] < 0);
    const int64_t cell = lay.f[0].w / 3;
    const tools::Rgb blue = pixel(img, lay.fhat[0].x + ((neg - 1) % 3) * cell + cell / 2, lay.fhat[0].y + ((neg - 1) / 3) * cell + cell / 2);
    CHECK(blue[2] > blue[0]);
    // alpha'[0, 1] = -0.75 is blue, alpha'[0, 0] = 1 red.
    const int64_t ac = lay.alpha.w / 4;
    const tools::Rgb a01 = pixel(img, lay.alpha.x + ac + 2, lay.alpha.y + 2), a00 = pixel(img, lay.alpha.x + 2, lay.alpha.y + 2);
    CHECK(a01[2] > a01[0]);
    CHECK(a00[0] > a00[2]);

    // A CLS query outlines the whole image; no adapter, no Fhat row and no alpha'.
    const tools::FilterView cls = synthetic(2, 2, false, 0);
    const io::Image c = tools::render_filters(cls);
    const tools::FilterLayout cl = tools::filters_layout(cls);
    CHECK(cl.query_box.x == cl.image.x - 3);
    CHECK(cl.query_box.w == cl.image.w + 6);
    CHECK(frame_is(c, cl.query_box, tools::detail::kQuery));
    CHECK(cl.fhat.empty());
    CHECK(cl.alpha.w == 0);
    CHECK(c.width == cl.width);
    CHECK(c.height == cl.height);
}

TEST_CASE("filters render: write_filters_png writes a PNG that decodes to the picture") {
    const tools::FilterView v = synthetic(3, 3, true, 0);
    const test::TempDir dir("filters");
    tools::write_filters_png(v, dir.path / "f.png");
    const io::Image back = io::read_image(dir.path / "f.png");
    const io::Image img = tools::render_filters(v);
    CHECK(back.width == img.width);
    CHECK(back.height == img.height);
    CHECK(back.channels == 3);
    CHECK(back.pixels == img.pixels);
}

TEST_CASE("filters render: filters_json has the documented fields and mixed_row's numbers") {
    const tools::FilterView v = synthetic(3, 2, true, 4);  // patch (1, 1)
    const auto j = tools::filters_json(v);
    for (const char* k : {"model", "adapter", "layer", "layers", "heads", "grid", "tokens", "query", "query_patch", "rounding",
                          "F", "alpha_prime", "Fhat", "scale"})
        CHECK_MESSAGE(j.contains(k), std::string(k));
    CHECK(j["adapter"] == "alpha-toy");
    CHECK(j["tokens"] == 5);
    CHECK(j["query_patch"].dump() == "[1,1]");
    const std::vector<float> m = tools::mixed_row(v, 4);
    for (int64_t h = 0; h < 3; ++h)
        for (int64_t t = 0; t < 5; ++t) {
            CHECK(j["F"][h][t].get<double>() == doctest::Approx(p_of(v, h, 4, t)).epsilon(1e-5));
            CHECK(j["Fhat"][h][t].get<double>() == doctest::Approx(m[static_cast<size_t>(h * 5 + t)]).epsilon(1e-5));
        }
    CHECK(j["alpha_prime"][0][1].get<double>() == -0.75);
    CHECK(j["scale"]["alpha_prime"][1].get<double>() == 1.0);
    CHECK(j["scale"]["F"][0].get<double>() == 0.0);
    // Rounded to 6 significant digits: printing with %.6g gives the number back.
    const double f = j["F"][0][0].get<double>();
    CHECK(tools::detail::round6(f) == f);

    const auto plain = tools::filters_json(synthetic(2, 2, false, 0));
    CHECK(plain["adapter"].is_null());
    CHECK(plain["Fhat"].is_null());
    CHECK(plain["alpha_prime"].is_null());
    CHECK(plain["query_patch"].is_null());
    CHECK(plain["F"].size() == 2);
}

TEST_CASE("filters render: filters_html is self-contained and carries the sliders and the data") {
    tools::FilterView v = synthetic(2, 3, true, 2);
    v.model = "<toy & co>";
    const std::string page = tools::filters_html(v);
    CHECK_FALSE(test::contains(page, "http://"));
    CHECK_FALSE(test::contains(page, "https://"));
    CHECK_FALSE(test::contains(page, "src=\"http"));
    CHECK_FALSE(test::contains(page, "<toy"));
    CHECK(test::contains(page, "&lt;toy &amp; co&gt;"));
    for (const char* id : {"id=\"alpha-0-0\"", "id=\"alpha-0-1\"", "id=\"alpha-1-0\"", "id=\"alpha-1-1\"", "id=\"query\"",
                           "id=\"values\"", "<td id='f-", "<td id='fhat-", "data:image/png;base64,iVBORw0KGgo"})
        CHECK_MESSAGE(test::contains(page, id), std::string(id));
    CHECK(test::contains(page, "step=\"0.01\""));
    CHECK(test::contains(page, "value=\"-0.75\""));
    // The embedded data is filters_json's object plus every row of P.
    const std::string open = "<script type=\"application/json\" id=\"filters-data\">";
    const size_t a = page.find(open), b = page.find("</script>", a);
    REQUIRE(a != std::string::npos);
    const auto data = nlohmann::json::parse(page.substr(a + open.size(), b - a - open.size()));
    CHECK(data["model"] == "<toy & co>");
    const auto j = tools::filters_json(v);
    CHECK(data["F"].dump() == j["F"].dump());
    CHECK(data["Fhat"].dump() == j["Fhat"].dump());
    CHECK(data["alpha_prime"].dump() == j["alpha_prime"].dump());
    REQUIRE(data["P"].size() == 2);
    REQUIRE(data["P"][1].size() == 10);
    CHECK(data["P"][1][7][3].get<double>() == doctest::Approx(p_of(v, 1, 7, 3)).epsilon(1e-5));
    CHECK(data["P"][0][2].dump() == j["F"][0].dump());
}

TEST_CASE("filters render: base64 of the RFC 4648 test vectors") {
    auto b64 = [](const std::string& s) { return tools::detail::base64(std::vector<uint8_t>(s.begin(), s.end())); };
    CHECK(b64("") == "");
    CHECK(b64("f") == "Zg==");
    CHECK(b64("fo") == "Zm8=");
    CHECK(b64("foo") == "Zm9v");
    CHECK(b64("foob") == "Zm9vYg==");
    CHECK(b64("fooba") == "Zm9vYmE=");
    CHECK(b64("foobar") == "Zm9vYmFy");
}
