// data/image_folder.hpp: image classification sets from folders of PNG and JPEG files (given
// train/val folders, or one folder split here), their errors, and the PNG writer read back by
// stb_image. This file does not define COEFFNET_IMAGE_IMPLEMENTATION: stb_image's functions
// come from test_image.cpp's translation unit, which does.
#include <coeffnet/data/image_folder.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <coeffnet/data/procedural.hpp>

#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::test;
using doctest::Contains;
namespace fs = std::filesystem;

namespace {

// Image i of a set as bytes.
std::vector<uint8_t> image_bytes(const data::ImageSet& s, int64_t i) {
    const auto n = static_cast<size_t>(s.height() * s.width() * 3);
    const uint8_t* p = s.images.data() + static_cast<size_t>(i) * n;
    return {p, p + n};
}

// (class name, image bytes) of every image: a set's content regardless of order.
std::multiset<std::pair<std::string, std::vector<uint8_t>>> content(const data::ImageSet& s) {
    std::multiset<std::pair<std::string, std::vector<uint8_t>>> out;
    const auto labels = s.labels.to_vector();
    for (int64_t i = 0; i < s.size(); ++i)
        out.emplace(s.classes[static_cast<size_t>(labels[static_cast<size_t>(i)])], image_bytes(s, i));
    return out;
}

void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("image folder: encode_png is read back exactly by the decoder") {
    for (int64_t channels : {1, 2, 3, 4}) {
        CAPTURE(channels);
        const int64_t w = 300, h = 250;  // over 65535 bytes: several stored blocks
        std::vector<uint8_t> px(static_cast<size_t>(w * h * channels));
        for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
        const io::Image img = io::decode_image(io::encode_png(px, w, h, channels));
        CHECK(img.width == w);
        CHECK(img.height == h);
        CHECK(img.channels == channels);
        CHECK(img.pixels == px);
    }
    CHECK_THROWS_WITH_AS(io::encode_png(std::vector<uint8_t>(5), 2, 1), Contains("5 bytes for a 2 x 1 x 3 image"), Error);
}

TEST_CASE("image folder: train/ and val/ folders") {
    TempDir dir("folder");
    // Classes whose sorted order differs from the set's: labels follow the folders' sorted names.
    auto train = data::generate("position", 1, 12);
    auto val = data::generate("position", 2, 8);
    train.classes = val.classes = {"zeta", "alpha", "mid", "beta"};
    data::write_image_folder(dir.path / "train", train);
    data::write_image_folder(dir.path / "val", val);
    write_file(dir.path / "train" / "alpha" / "notes.txt", {'h', 'i'});   // not an image: skipped
    write_file(dir.path / "train" / "alpha" / ".hidden.png", {'x'});      // hidden: skipped
    const auto split = data::load_image_folder(dir.path);
    CHECK(split.train.classes == std::vector<std::string>{"alpha", "beta", "mid", "zeta"});
    CHECK(split.val.classes == split.train.classes);
    CHECK(split.train.size() == 12);
    CHECK(split.val.size() == 8);
    CHECK(split.train.images.shape() == Shape{12, 32, 32, 3});
    CHECK(content(split.train) == content(train));
    CHECK(content(split.val) == content(val));
    // Files in sorted name order within each class, classes in sorted order.
    const auto labels = split.train.labels.to_vector();
    CHECK(std::is_sorted(labels.begin(), labels.end()));

    // Resized on loading: 32 x 32 files at 20 x 24 are PIL's resize of the decoded files.
    const auto small = data::load_image_folder(dir.path, {.height = 20, .width = 24});
    CHECK(small.train.images.shape() == Shape{12, 20, 24, 3});
    const fs::path first = dir.path / "train" / "alpha" / "000001.png";  // position's class 1 is "alpha"
    REQUIRE(fs::exists(first));
    const io::Image want = io::resize(io::to_rgb(io::read_image(first)), 24, 20, io::Resample::bilinear);
    CHECK(image_bytes(small.train, 0) == want.pixels);

    // val/ may lack a class but not add one.
    fs::remove_all(dir.path / "val" / "mid");
    const auto fewer = data::load_image_folder(dir.path);
    CHECK(fewer.val.classes == fewer.train.classes);
    CHECK(fewer.val.size() == 6);
    fs::create_directories(dir.path / "val" / "omega");
    write_file(dir.path / "val" / "omega" / "a.png", io::encode_png(std::vector<uint8_t>(4 * 4 * 3, 9), 4, 4));
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains("class 'omega' is not among train/'s classes"), Error);
    fs::remove_all(dir.path / "val");
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains("has train/ but no val/ folder"), Error);
}

TEST_CASE("image folder: one folder, split per class by a seeded fraction") {
    TempDir dir("folder");
    const auto all = data::generate("count", 3, 40);  // 10 a class
    data::write_image_folder(dir.path, all);
    const auto a = data::load_image_folder(dir.path, {.val_fraction = 0.3, .seed = 5});
    CHECK(a.train.classes == std::vector<std::string>{"1", "2", "3", "4"});
    CHECK(a.train.size() == 28);
    CHECK(a.val.size() == 12);
    for (const auto* s : {&a.train, &a.val}) {
        std::vector<int64_t> per(4, 0);
        for (int64_t l : s->labels.to_vector()) ++per[static_cast<size_t>(l)];
        for (int64_t c : per) CHECK(c == (s == &a.val ? 3 : 7));
    }
    // Together they are the folder, disjoint.
    auto both = content(a.train);
    const auto v = content(a.val);
    both.insert(v.begin(), v.end());
    CHECK(both == content(all));
    // The same seed splits the same way; another seed differently.
    const auto b = data::load_image_folder(dir.path, {.val_fraction = 0.3, .seed = 5});
    CHECK(content(b.val) == content(a.val));
    const auto c = data::load_image_folder(dir.path, {.val_fraction = 0.3, .seed = 6});
    CHECK(content(c.val) != content(a.val));
    // No val, and a class of one image stays in train.
    const auto none = data::load_image_folder(dir.path, {.val_fraction = 0.0});
    CHECK(none.train.size() == 40);
    CHECK(none.val.size() == 0);
    CHECK(none.val.images.shape() == Shape{0, 32, 32, 3});
    TempDir one("folder");
    data::write_image_folder(one.path, data::subset(all, std::vector<int64_t>{0, 1, 5}));
    const auto tiny = data::load_image_folder(one.path, {.val_fraction = 0.9});
    CHECK(tiny.train.classes == std::vector<std::string>{"1", "2"});  // only classes with images are written
    CHECK(tiny.train.size() == 2);  // class "1": 1 image, kept in train; class "2": 2 images, one to val
    CHECK(tiny.val.size() == 1);
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path, {.val_fraction = 1.0}), Contains("val_fraction must be in [0, 1)"),
                         Error);
}

TEST_CASE("image folder: errors name the folder or file") {
    TempDir dir("folder");
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path / "nope"), Contains("nope: no such folder"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains(": no class folders"), Error);
    write_file(dir.path / "loose.png", io::encode_png(std::vector<uint8_t>(2 * 2 * 3, 1), 2, 2));
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains(": no class folders"), Error);
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path / "loose.png"), Contains("loose.png: not a folder"), Error);
    fs::create_directories(dir.path / "cat");
    fs::create_directories(dir.path / "dog");
    write_file(dir.path / "cat" / "a.png", io::encode_png(std::vector<uint8_t>(6 * 5 * 3, 200), 6, 5));
    write_file(dir.path / "dog" / "readme.txt", {'x'});
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains("dog: class 'dog' has no PNG or JPEG images"), Error);
    auto png = io::encode_png(std::vector<uint8_t>(6 * 5 * 3, 100), 6, 5);
    png.resize(png.size() / 2);
    write_file(dir.path / "dog" / "broken.png", png);
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains("broken.png: the PNG data is truncated"), Error);
    write_file(dir.path / "dog" / "broken.png", {'n', 'o', 't', ' ', 'p', 'n', 'g'});
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path), Contains("broken.png: not a PNG or JPEG image"), Error);
    write_file(dir.path / "dog" / "broken.png", png = io::encode_png(std::vector<uint8_t>(7 * 3 * 3, 50), 7, 3));
    const auto ok = data::load_image_folder(dir.path, {.height = 8, .width = 8, .val_fraction = 0.0});
    CHECK(ok.train.classes == std::vector<std::string>{"cat", "dog"});
    CHECK(ok.train.labels.to_vector() == std::vector<int64_t>{0, 1});
    CHECK_THROWS_WITH_AS(data::load_image_folder(dir.path, {.height = 0}), Contains("image size must be 1 to 4096"), Error);
}

TEST_CASE("image folder: to_pixels is io::preprocess_image's rescale and normalise") {
    const auto set = data::generate("shapes", 8, 3);
    io::ImageProcessorConfig cfg = io::ImageProcessorConfig::vit_defaults(32, 32);
    cfg.image_mean = {0.485, 0.456, 0.406};
    cfg.image_std = {0.229, 0.224, 0.225};
    const auto x = data::to_pixels(set.images, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225});
    for (int64_t i = 0; i < 3; ++i) {
        io::Image img(32, 32, 3);
        img.pixels = image_bytes(set, i);
        const auto want = io::preprocess_image<float>(img, cfg).to_vector();
        const auto got = x.select(0, i).contiguous().to_vector();
        CHECK(got == want);
    }
}
