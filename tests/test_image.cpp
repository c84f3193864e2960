// io/image.hpp: decoding, RGB conversion, PIL's resize and transformers' preprocessing, against
// fixtures made by PIL and transformers (tests/data/images, tools/make_image_fixtures.py), and
// the decoder's refusals of broken files. This file compiles stb_image's implementation for the
// test binary (COEFFNET_IMAGE_IMPLEMENTATION); no other test file may define it.
#define COEFFNET_IMAGE_IMPLEMENTATION
#include <coeffnet/io/image.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <coeffnet/io/safetensors.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;

namespace {

const std::filesystem::path kImages = std::filesystem::path(COEFFNET_TEST_DATA) / "images";

std::vector<uint8_t> file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const io::SafeTensors& reference() {
    static const io::SafeTensors ref = io::SafeTensors::open(kImages / "shape_pixels.safetensors");
    return ref;
}

// A fixture's U8 tensor as an Image: [H, W, 3] as is, [3, H, W] (channels first) transposed.
io::Image u8_image(const std::string& name) {
    const Tensor<uint8_t> t = reference().get<uint8_t>(name);
    REQUIRE(t.dim() == 3);
    const auto v = t.to_vector();
    const bool chw = t.size(0) == 3;
    const int64_t H = chw ? t.size(1) : t.size(0), W = chw ? t.size(2) : t.size(1);
    io::Image img(W, H, 3);
    for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
            for (int64_t c = 0; c < 3; ++c)
                img.at(y, x, c) = v[static_cast<size_t>(chw ? (c * H + y) * W + x : (y * W + x) * 3 + c)];
    return img;
}

struct PixelDiff {
    int max = 0;
    double mean = 0;
    int64_t differing = 0;
};
PixelDiff pixel_diff(const io::Image& a, const io::Image& b) {
    REQUIRE(a.width == b.width);
    REQUIRE(a.height == b.height);
    REQUIRE(a.channels == b.channels);
    PixelDiff d;
    for (size_t i = 0; i < a.pixels.size(); ++i) {
        const int e = std::abs(int{a.pixels[i]} - int{b.pixels[i]});
        d.max = std::max(d.max, e);
        d.mean += e;
        d.differing += e != 0;
    }
    d.mean /= static_cast<double>(a.pixels.size());
    return d;
}

struct TensorDiff {
    double max = 0, mean = 0;
};
TensorDiff tensor_diff(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    const auto av = a.to_vector(), bv = b.to_vector();
    TensorDiff d;
    for (size_t i = 0; i < av.size(); ++i) {
        const double e = std::abs(static_cast<double>(av[i]) - bv[i]);
        d.max = std::max(d.max, e);
        d.mean += e;
    }
    d.mean /= static_cast<double>(av.size());
    return d;
}

io::ImageProcessorConfig vit_cls_processor() {
    return io::ImageProcessorConfig::from_file(std::filesystem::path(COEFFNET_TEST_DATA) / "vit_cls" /
                                               "preprocessor_config.json");
}

// A minimal PNG: the signature, an IHDR for w x h 8-bit RGB, then IEND (no pixel data).
std::vector<uint8_t> png_header_only(uint32_t w, uint32_t h) {
    std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    auto be32 = [&](uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
    };
    auto chunk = [&](const char* type, std::vector<uint8_t> data) {
        be32(static_cast<uint32_t>(data.size()));
        std::vector<uint8_t> body(type, type + 4);
        body.insert(body.end(), data.begin(), data.end());
        out.insert(out.end(), body.begin(), body.end());
        be32(io::crc32(body.data(), body.size()));
    };
    chunk("IHDR", {static_cast<uint8_t>(w >> 24), static_cast<uint8_t>(w >> 16), static_cast<uint8_t>(w >> 8),
                   static_cast<uint8_t>(w), static_cast<uint8_t>(h >> 24), static_cast<uint8_t>(h >> 16),
                   static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h), 8, 2, 0, 0, 0});
    chunk("IEND", {});
    return out;
}

}  // namespace

TEST_CASE("image: PNG and JPEG fixtures decode with their own channels") {
    const io::Image png = io::read_image(kImages / "shape.png");
    CHECK(png.width == 45);
    CHECK(png.height == 37);
    CHECK(png.channels == 3);
    CHECK(io::read_image(kImages / "shape.jpg").channels == 3);
    CHECK(io::read_image(kImages / "shape_gray.png").channels == 1);
    CHECK(io::read_image(kImages / "shape_rgba.png").channels == 4);
    CHECK(io::read_image(kImages / "shape_palette.png").channels == 4);  // a palette with a transparent entry
    const auto bytes = file_bytes(kImages / "shape.png");
    CHECK(io::sniff_image_format(bytes) == io::ImageFormat::png);
    CHECK(io::decode_image(bytes, "x").pixels == png.pixels);
}

TEST_CASE("image: resize reproduces PIL's Image.resize bit for bit, every filter") {
    const io::Image png = io::read_image(kImages / "shape.png");
    const std::vector<std::pair<std::string, io::Resample>> filters = {
        {"nearest", io::Resample::nearest}, {"box", io::Resample::box},         {"bilinear", io::Resample::bilinear},
        {"hamming", io::Resample::hamming}, {"bicubic", io::Resample::bicubic}, {"lanczos", io::Resample::lanczos}};
    int checked = 0;
    for (const auto& info : reference().tensors()) {
        if (info.name.rfind("pil.", 0) != 0) continue;
        const std::string rest = info.name.substr(4);
        const std::string filter = rest.substr(0, rest.find('.'));
        io::Resample r = io::Resample::bilinear;
        for (const auto& [n, f] : filters)
            if (n == filter) r = f;
        const io::Image want = u8_image(info.name);
        const PixelDiff d = pixel_diff(io::resize(png, want.width, want.height, r), want);
        INFO(info.name, ": ", d.differing, " values differ, max by ", d.max);
        CHECK(d.differing == 0);
        ++checked;
    }
    CHECK(checked == 9);
}

TEST_CASE("image: RGB conversion and resizing match transformers (do_convert_rgb) for gray, RGBA and palette PNGs") {
    const io::ImageProcessorConfig cfg = vit_cls_processor();
    for (const char* key : {"png", "gray", "rgba", "palette"}) {
        const std::string file = std::string(key) == "png" ? "shape.png" : std::string("shape_") + key + ".png";
        const io::Image rgb = io::to_rgb(io::read_image(kImages / file));
        const PixelDiff d = pixel_diff(io::resize(rgb, cfg.width, cfg.height, cfg.resample), u8_image(std::string("resized.") + key));
        INFO(file, ": ", d.differing, " values differ, max by ", d.max);
        CHECK(d.differing == 0);
    }
}

TEST_CASE("image: preprocess_image matches transformers' ViT image processor (PNG)") {
    const Tensor<float> want = reference().get<float>("pixel_values").select(0, 0);
    const io::Image rgb = io::to_rgb(io::read_image(kImages / "shape.png"));
    const TensorDiff d = tensor_diff(io::preprocess_image<float>(rgb, vit_cls_processor()), want);
    MESSAGE("PNG preprocessing vs transformers: max abs difference ", d.max, ", mean ", d.mean);
    CHECK(d.max <= 1e-6);  // the same 8-bit pixels, the same float32 arithmetic
    const Tensor<double> dbl = io::preprocess_image<double>(rgb, vit_cls_processor());
    CHECK(dbl.shape() == Shape{3, 30, 30});
    CHECK(std::abs(dbl.at({2, 29, 29}) - want.at({2, 29, 29})) <= 1e-6);
}

TEST_CASE("image: JPEG decoding is close to PIL's, and so is its preprocessing") {
    const io::Image jpg = io::read_image(kImages / "shape.jpg");
    const PixelDiff dec = pixel_diff(jpg, u8_image("decoded_jpeg"));
    MESSAGE("JPEG decode vs PIL (libjpeg): ", dec.differing, " of ", jpg.pixels.size(), " values differ, max by ", dec.max,
            ", mean ", dec.mean, " levels");
    CHECK(dec.mean < 1.0);
    CHECK(dec.max <= 16);
    // After resize and rescale (before normalisation: the mean abs difference of x / 255).
    io::ImageProcessorConfig cfg = vit_cls_processor();
    const Tensor<float> ours = io::preprocess_image<float>(jpg, cfg);
    const Tensor<float> want = reference().get<float>("pixel_values_jpeg").select(0, 0);
    const TensorDiff d = tensor_diff(ours, want);
    double rescaled_mean = 0;
    {
        const auto a = ours.to_vector(), b = want.to_vector();
        for (size_t i = 0; i < a.size(); ++i)
            rescaled_mean += std::abs(static_cast<double>(a[i]) - b[i]) * cfg.image_std[i / 900];
        rescaled_mean /= static_cast<double>(a.size());
    }
    MESSAGE("JPEG preprocessing vs transformers: max abs difference ", d.max, " (normalised), mean ", rescaled_mean,
            " after rescale (1/255 = ", 1.0 / 255, ")");
    CHECK(rescaled_mean < 1.0 / 255);
}

TEST_CASE("image: broken files throw coeffnet::Error naming the file") {
    const auto png = file_bytes(kImages / "shape.png");
    const auto jpg = file_bytes(kImages / "shape.jpg");
    auto decode = [](std::vector<uint8_t> b, const std::string& name) { return error_of([&] { io::decode_image(b, name); }); };

    const std::string garbage = decode({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}, "garbage.png");
    CHECK(garbage.find("garbage.png: not a PNG or JPEG image") == 0);
    CHECK(garbage.find("68 65 6c 6c") != std::string::npos);  // what it starts with
    CHECK(decode({}, "empty.jpg").find("empty.jpg: not a PNG or JPEG image (the file is empty)") == 0);

    for (size_t keep : {size_t{8}, size_t{20}, png.size() / 2, png.size() - 1}) {
        const std::string m = decode({png.begin(), png.begin() + static_cast<std::ptrdiff_t>(keep)}, "cut.png");
        INFO("PNG cut to ", keep, " bytes: ", m);
        CHECK(m.find("cut.png: the PNG data is truncated") == 0);
    }
    for (size_t keep : {size_t{3}, size_t{100}, jpg.size() / 2, jpg.size() - 2}) {
        const std::string m = decode({jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(keep)}, "cut.jpg");
        INFO("JPEG cut to ", keep, " bytes: ", m);
        CHECK(m.find("cut.jpg: the JPEG data is truncated") == 0);
    }
    auto flipped = png;
    flipped[png.size() / 2] ^= 0x55;  // inside the image data
    CHECK(decode(flipped, "flip.png").find("flip.png: corrupt PNG: chunk 'IDAT'") == 0);

    // A valid frame around nonsense compressed data: the decoder's own error.
    auto bad_idat = png_header_only(4, 4);
    {
        const std::vector<uint8_t> body = {'I', 'D', 'A', 'T', 0xde, 0xad, 0xbe, 0xef};
        std::vector<uint8_t> chunk = {0, 0, 0, 4};
        chunk.insert(chunk.end(), body.begin(), body.end());
        const uint32_t crc = io::crc32(body.data(), body.size());
        for (int s = 24; s >= 0; s -= 8) chunk.push_back(static_cast<uint8_t>(crc >> s));
        bad_idat.insert(bad_idat.end() - 12, chunk.begin(), chunk.end());  // before IEND
    }
    CHECK(decode(bad_idat, "zlib.png").find("zlib.png: cannot decode the PNG image: ") == 0);
    CHECK(decode(png_header_only(4, 4), "nodata.png").find("nodata.png: cannot decode the PNG image: ") == 0);

    // A decompression bomb is refused from its header, before anything is allocated.
    CHECK(decode(png_header_only(100000, 100000), "bomb.png").find("bomb.png: the PNG image is 100000 x 100000 pixels, over the limit") == 0);

    const std::vector<uint8_t> jpeg_bomb = {0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0xea, 0x60, 0xea, 0x60, 1, 1, 0x11, 0,
                                            0xff, 0xd9};  // SOI, a 60000 x 60000 frame header, EOI
    CHECK(decode(jpeg_bomb, "bomb.jpg").find("bomb.jpg: the JPEG image is 60000 x 60000 pixels, over the limit") == 0);

    // Damaged JPEG data that is complete: decoded or refused, never a crash.
    for (size_t at = 2; at < jpg.size(); at += 7) {
        auto b = jpg;
        b[at] ^= 0xa5;
        try {
            const io::Image img = io::decode_image(b, "damaged.jpg");
            CHECK(img.pixels.size() == static_cast<size_t>(img.width * img.height * img.channels));
        } catch (const Error& e) {
            CHECK(std::string(e.what()).find("damaged.jpg: ") == 0);
        }
    }

    const auto missing = kImages / "no_such_image.png";
    CHECK(error_of([&] { io::read_image(missing); }) == missing.string() + ": no such file");
    CHECK(error_of([&] { io::read_image(kImages); }) == kImages.string() + ": not a regular file");
}

TEST_CASE("image: resizing a constant image keeps it constant, with every filter, up and down") {
    for (const auto filter : {io::Resample::nearest, io::Resample::box, io::Resample::bilinear, io::Resample::hamming,
                              io::Resample::bicubic, io::Resample::lanczos}) {
        for (const int64_t channels : {1, 3}) {
            const io::Image in(13, 7, channels, 201);
            for (const auto& wh : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 3}, {13, 30}, {40, 7}, {64, 64}}) {
                const int64_t w = wh.first, h = wh.second;  // not structured bindings: INFO's lambda names them
                const io::Image out = io::resize(in, w, h, filter);
                CHECK(out.width == w);
                CHECK(out.height == h);
                CHECK(out.channels == channels);
                INFO(io::resample_name(filter), " to ", w, " x ", h);
                CHECK(std::all_of(out.pixels.begin(), out.pixels.end(), [](uint8_t v) { return v == 201; }));
            }
        }
    }
}

TEST_CASE("image: resizing to the same size is the identity") {
    const io::Image png = io::read_image(kImages / "shape.png");
    for (const auto filter : {io::Resample::nearest, io::Resample::bilinear, io::Resample::lanczos})
        CHECK(io::resize(png, png.width, png.height, filter).pixels == png.pixels);
    // One axis unchanged: only the other is resampled (a column keeps its values when only rows change).
    const io::Image tall = io::resize(png, png.width, 80);
    const io::Image back = io::resize(png, 20, png.height);
    CHECK(tall.width == png.width);
    CHECK(back.height == png.height);
    CHECK_THROWS_AS(io::resize(png, 0, 5), Error);
}

TEST_CASE("image: to_rgb repeats gray and composites alpha onto white") {
    io::Image gray(2, 1, 1);
    gray.pixels = {0, 200};
    CHECK(io::to_rgb(gray).pixels == std::vector<uint8_t>{0, 0, 0, 200, 200, 200});

    io::Image ga(3, 1, 2);
    ga.pixels = {10, 255, 10, 0, 0, 128};
    CHECK(io::to_rgb(ga).pixels == std::vector<uint8_t>{10, 10, 10, 255, 255, 255, 127, 127, 127});

    // Every (value, alpha): within rounding of value * a + 255 * (1 - a).
    io::Image rgba(256, 256, 4);
    for (int a = 0; a < 256; ++a)
        for (int v = 0; v < 256; ++v) {
            rgba.at(a, v, 0) = static_cast<uint8_t>(v);
            rgba.at(a, v, 1) = static_cast<uint8_t>(255 - v);
            rgba.at(a, v, 2) = static_cast<uint8_t>(v / 2);
            rgba.at(a, v, 3) = static_cast<uint8_t>(a);
        }
    const io::Image rgb = io::to_rgb(rgba);
    CHECK(rgb.channels == 3);
    int worst = 0;
    for (int a = 0; a < 256; ++a)
        for (int v = 0; v < 256; ++v)
            for (int c = 0; c < 3; ++c) {
                const double src = rgba.at(a, v, c), alpha = a / 255.0;
                const double want = src * alpha + 255.0 * (1 - alpha);
                worst = std::max(worst, static_cast<int>(std::ceil(std::abs(rgb.at(a, v, c) - want) - 1e-9)));
            }
    CHECK(worst <= 1);
    CHECK(rgb.at(255, 77, 0) == 77);  // opaque: unchanged
    CHECK(rgb.at(0, 77, 0) == 255);   // transparent: white

    io::Image three(1, 1, 3, 9);
    CHECK(io::to_rgb(three).pixels == three.pixels);
}

TEST_CASE("image: center_crop crops the middle and pads with black") {
    io::Image img(4, 3, 1);
    for (int64_t i = 0; i < 12; ++i) img.pixels[static_cast<size_t>(i)] = static_cast<uint8_t>(i + 1);
    CHECK(io::center_crop(img, 2, 1).pixels == std::vector<uint8_t>{6, 7});
    const io::Image padded = io::center_crop(img, 6, 4);
    CHECK(padded.pixels == std::vector<uint8_t>{0, 0, 0, 0, 0, 0,  // transformers pads ceil(extra / 2) first
                                                0, 1, 2, 3, 4, 0,  //
                                                0, 5, 6, 7, 8, 0,  //
                                                0, 9, 10, 11, 12, 0});
}

TEST_CASE("image: ImageProcessorConfig reads preprocessor_config.json") {
    const io::ImageProcessorConfig c = vit_cls_processor();
    CHECK(c.height == 30);
    CHECK(c.width == 30);
    CHECK(c.resample == io::Resample::bilinear);
    CHECK(c.image_mean == std::vector<double>{0.5, 0.4, 0.3});
    CHECK(c.image_std == std::vector<double>{0.25, 0.2, 0.3});
    CHECK(c.rescale_factor == doctest::Approx(1.0 / 255));

    const auto d = io::ImageProcessorConfig::vit_defaults(24, 40);
    CHECK(d.output_size(100, 7) == std::pair<int64_t, int64_t>{24, 40});
    CHECK(d.image_mean == std::vector<double>{0.5, 0.5, 0.5});

    using nlohmann::json;
    const auto se = io::ImageProcessorConfig::from_json(
        json{{"size", {{"shortest_edge", 32}}}, {"do_center_crop", true}, {"crop_size", 28}, {"image_mean", 0.1}}, "p.json");
    CHECK(se.resized_size(37, 45) == std::pair<int64_t, int64_t>{32, 38});  // int(32 * 45 / 37)
    CHECK(se.resized_size(90, 30) == std::pair<int64_t, int64_t>{96, 32});
    CHECK(se.output_size(37, 45) == std::pair<int64_t, int64_t>{28, 28});
    CHECK(se.image_mean == std::vector<double>{0.1, 0.1, 0.1});
    const Tensor<float> t = io::preprocess_image<float>(io::read_image(kImages / "shape.png"), se);
    CHECK(t.shape() == Shape{3, 28, 28});
    const auto legacy = io::ImageProcessorConfig::from_json(json{{"size", 64}}, "p.json");
    CHECK(legacy.output_size(1, 1) == std::pair<int64_t, int64_t>{64, 64});

    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"size", {{"height", -3}, {"width", 4}}}}, "p.json"); })
              .find("p.json: 'size.height' should be a positive integer") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"image_std", {1, 0, 1}}}, "p.json"); })
              .find("p.json: image_mean must be finite and image_std finite and nonzero") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"image_mean", {1, 2}}}, "p.json"); })
              .find("p.json: image_mean and image_std need 3 values") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"resample", 9}}, "p.json"); })
              .find("p.json: 'resample' should be one of PIL's filter numbers") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"do_resize", "yes"}}, "p.json"); })
              .find("p.json: 'do_resize' should be true or false") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json{{"size", {{"max_height", 3}}}}, "p.json"); })
              .find("p.json: 'size' {\"max_height\":3} is not supported") == 0);
    CHECK(error_of([] { io::ImageProcessorConfig::from_json(json::array(), "p.json"); }) == "p.json: expected a JSON object");
}

TEST_CASE("image: Image refuses impossible sizes") {
    CHECK_THROWS_AS(io::Image(0, 5, 3), Error);
    CHECK_THROWS_AS(io::Image(5, 5, 5), Error);
    CHECK(error_of([] { io::Image(1 << 20, 1 << 20, 3); }).find("over the limit of 178956970 pixels") != std::string::npos);
}

// io/deflate.hpp and io/png.hpp's encoder, read back by stb_image's inflater and PNG decoder.
namespace {

// The bytes stb_image's zlib decoder makes of a zlib stream (it skips the Adler-32: checked apart).
std::vector<uint8_t> stb_inflate(const std::vector<uint8_t>& z) {
    int len = -1;
    char* p = stbi_zlib_decode_malloc(reinterpret_cast<const char*>(z.data()), static_cast<int>(z.size()), &len);
    REQUIRE(p != nullptr);
    REQUIRE(len >= 0);
    std::vector<uint8_t> out(p, p + len);
    stbi_image_free(p);
    return out;
}

uint32_t zlib_trailer(const std::vector<uint8_t>& z) {
    REQUIRE(z.size() >= 6);
    const size_t e = z.size();
    return (uint32_t{z[e - 4]} << 24) | (uint32_t{z[e - 3]} << 16) | (uint32_t{z[e - 2]} << 8) | z[e - 1];
}

// Compresses at `level`, checks the header and trailer, and that stb_image inflates it to `data`.
void check_zlib_round_trip(const std::vector<uint8_t>& data, int level) {
    CAPTURE(level);
    CAPTURE(data.size());
    const std::vector<uint8_t> z = io::zlib_compress(data, level);
    REQUIRE(z.size() >= 6);
    CHECK(z[0] == 0x78);
    CHECK((z[0] * 256 + z[1]) % 31 == 0);
    CHECK((z[1] & 0x20) == 0);  // no preset dictionary
    CHECK(zlib_trailer(z) == io::adler32(data.data(), data.size()));
    CHECK(stb_inflate(z) == data);
}

// Random bytes with structure: literals from a small or full alphabet, runs, and copies from up
// to 32768 + 100 bytes back (some overlapping their source), the things LZ77 looks for.
std::vector<uint8_t> structured_bytes(std::mt19937& rng, size_t n) {
    std::vector<uint8_t> v;
    v.reserve(n);
    while (v.size() < n) {
        const uint32_t kind = rng() % 5, len = 1 + rng() % 300;
        if (kind == 0) {
            for (uint32_t i = 0; i < len; ++i) v.push_back(static_cast<uint8_t>(rng()));
        } else if (kind == 1) {
            for (uint32_t i = 0; i < len; ++i) v.push_back(static_cast<uint8_t>('a' + rng() % 4));
        } else if (kind == 2) {
            v.insert(v.end(), len, static_cast<uint8_t>(rng()));
        } else if (!v.empty()) {
            const size_t far = kind == 4 ? 32768 + 100 : 64;
            const size_t d = 1 + (kind == 4 && v.size() > 32000 ? 32000 + rng() % (far - 32000) : rng() % far) % v.size();
            for (uint32_t i = 0; i < len; ++i) v.push_back(v[v.size() - d]);
        }
    }
    v.resize(n);
    return v;
}

}  // namespace

TEST_CASE("image: adler32 gives the known checksums") {
    const std::string wiki = "Wikipedia", abc = "abc";
    CHECK(io::adler32(reinterpret_cast<const uint8_t*>(wiki.data()), wiki.size()) == 0x11E60398u);
    CHECK(io::adler32(reinterpret_cast<const uint8_t*>(abc.data()), abc.size()) == 0x024d0127u);
    CHECK(io::adler32(nullptr, 0) == 1u);
    // Long input (past the 5552-byte deferral of the modulo), whole and continued in pieces.
    std::vector<uint8_t> ff(100000, 0xff);
    const uint32_t whole = io::adler32(ff.data(), ff.size());
    CHECK(io::adler32(ff.data() + 7000, ff.size() - 7000, io::adler32(ff.data(), 7000)) == whole);
    uint64_t a = 1, b = 0;
    for (uint8_t v : ff) {
        a = (a + v) % 65521;
        b = (b + a) % 65521;
    }
    CHECK(whole == ((b << 16) | a));
}

TEST_CASE("image: deflate streams inflate with stb_image's zlib decoder, every level and edge length") {
    std::mt19937 rng(7);
    for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{258}, size_t{259}, size_t{65535}, size_t{65536}, size_t{70000}}) {
        const std::vector<uint8_t> structured = structured_bytes(rng, n);
        std::vector<uint8_t> noise(n), run(n, 42);
        for (auto& v : noise) v = static_cast<uint8_t>(rng());
        for (int level = 0; level <= 9; ++level) {
            check_zlib_round_trip(structured, level);
            check_zlib_round_trip(noise, level);
            check_zlib_round_trip(run, level);
        }
    }
    // Copies from exactly 32768 back (the window's edge) and from just beyond it.
    std::vector<uint8_t> far(40000);
    for (auto& v : far) v = static_cast<uint8_t>(rng());
    for (size_t d : {size_t{32768}, size_t{32769}, size_t{32767}, size_t{20000}})
        for (int i = 0; i < 300; ++i) far.push_back(far[far.size() - d]);
    for (int level = 0; level <= 9; ++level) check_zlib_round_trip(far, level);
    const auto tokens = io::detail::deflate::lz77(far, 6);
    bool at_edge = false;
    size_t covered = 0;
    for (const auto& t : tokens) {
        if (t.dist > 0) {
            CHECK(t.dist <= 32768);
            CHECK(t.len_or_lit >= 3);
            CHECK(t.len_or_lit <= 258);
            at_edge = at_edge || t.dist == 32768;
        }
        covered += t.dist > 0 ? t.len_or_lit : 1;
    }
    CHECK(at_edge);
    CHECK(covered == far.size());
    CHECK_THROWS_AS(io::zlib_compress(far, 10), Error);
}

TEST_CASE("image: deflate then stb inflate of 200 random structured buffers gives them back") {
    std::mt19937 rng(2024);
    for (int i = 0; i < 200; ++i) {
        CAPTURE(i);
        const size_t n = rng() % 4 == 0 ? rng() % 100000 : rng() % 3000;
        check_zlib_round_trip(structured_bytes(rng, n), static_cast<int>(rng() % 10));
    }
}

TEST_CASE("image: deflate's Huffman code lengths stay within their limits and form complete codes") {
    // Fibonacci frequencies make an unlimited Huffman code as deep as there are symbols.
    for (int limit : {7, 15}) {
        std::vector<uint32_t> freq(limit == 7 ? 19 : 30);
        freq[0] = freq[1] = 1;
        for (size_t i = 2; i < freq.size(); ++i) freq[i] = freq[i - 1] + freq[i - 2];
        std::vector<uint8_t> len(freq.size());
        io::detail::deflate::limited_code_lengths(freq.data(), static_cast<int>(freq.size()), limit, len.data());
        double kraft = 0;
        for (uint8_t l : len) {
            CHECK(l >= 1);
            CHECK(l <= limit);
            kraft += std::ldexp(1.0, -l);
        }
        CHECK(kraft == 1.0);
    }
    // Without the limit biting, the lengths are Huffman's: 1, 2, 3, 3 for 8, 4, 2, 1.
    const uint32_t f[] = {8, 4, 2, 1};
    uint8_t l[4];
    io::detail::deflate::limited_code_lengths(f, 4, 15, l);
    CHECK(std::vector<uint8_t>(l, l + 4) == std::vector<uint8_t>{1, 2, 3, 3});
}

TEST_CASE("image: encode_png round trips through the PNG decoder at every level and filter") {
    std::mt19937 rng(11);
    const std::pair<int64_t, int64_t> sizes[] = {{1, 1}, {1, 9}, {9, 1}, {13, 7}, {101, 37}};
    for (int64_t channels = 1; channels <= 4; ++channels) {
        for (const auto& wh : sizes) {
            const int64_t w = wh.first, h = wh.second;  // not structured bindings: CAPTURE's lambda names them
            for (int pattern = 0; pattern < 3; ++pattern) {  // noise, long runs, a smooth ramp with noise
                std::vector<uint8_t> px(static_cast<size_t>(w * h * channels));
                for (size_t i = 0; i < px.size(); ++i) {
                    const size_t pixel = i / static_cast<size_t>(channels);
                    px[i] = pattern == 0   ? static_cast<uint8_t>(rng())
                            : pattern == 1 ? static_cast<uint8_t>((pixel / 17) * 40 + i % static_cast<size_t>(channels))
                                           : static_cast<uint8_t>(pixel % static_cast<size_t>(w) * 2 + rng() % 5);
                }
                for (int level = 0; level <= 9; ++level) {
                    for (int filter = -1; filter <= 4; ++filter) {
                        CAPTURE(channels);
                        CAPTURE(w);
                        CAPTURE(h);
                        CAPTURE(pattern);
                        CAPTURE(level);
                        CAPTURE(filter);
                        const io::Image img = io::decode_image(io::encode_png(px, w, h, channels, {level, filter}));
                        CHECK(img.width == w);
                        CHECK(img.height == h);
                        CHECK(img.channels == channels);
                        CHECK(img.pixels == px);
                    }
                }
            }
        }
    }
    CHECK_THROWS_AS(io::encode_png(std::vector<uint8_t>(3), 1, 1, 3, {10, -1}), Error);
    CHECK_THROWS_AS(io::encode_png(std::vector<uint8_t>(3), 1, 1, 3, {6, 5}), Error);
}

TEST_CASE("image: a flat 500 x 500 PNG compresses to under 1% of its raw size, and level 0 stores it") {
    const std::vector<uint8_t> px(500 * 500 * 3, 77);
    const auto png = io::encode_png(px, 500, 500);
    CHECK(png.size() * 100 < px.size());
    CHECK(io::decode_image(png).pixels == px);
    const auto stored = io::encode_png(px, 500, 500, 3, {0});
    CHECK(stored.size() > px.size());
    CHECK(io::decode_image(stored).pixels == px);
    TempDir dir("png");
    io::write_png(dir.path / "flat.png", px, 500, 500, 3, {9});
    CHECK(io::read_image(dir.path / "flat.png").pixels == px);
}
