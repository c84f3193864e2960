// safetensors: the reader's rules (a catalogue of malformed files, each refused with its rule),
// the writer's layout (the reference writer's, byte for byte), round trips, zero-copy views,
// conversions, and atomic writes.
#include <doctest/doctest.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numbers>
#include <sstream>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/io/hf.hpp>
#include <coeffnet/io/safetensors.hpp>
#include <coeffnet/nn/weights.hpp>

#include "fuzz/safetensors_cases.hpp"
#include "test_util.hpp"

using namespace coeffnet;
using namespace coeffnet::io;
using namespace coeffnet::test;
using doctest::Contains;
namespace fs = std::filesystem;

#ifndef COEFFNET_TEST_DATA
#error "the test target defines COEFFNET_TEST_DATA, the path of tests/data"
#endif

namespace {

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
    std::vector<std::byte> out(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
    return out;
}

std::vector<std::byte> bytes_of(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

// The message of the coeffnet::Error that f throws; "<accepted>" when it throws nothing.
template <class F>
std::string refusal(F&& f) {
    return error_of(f, "<accepted>");
}

bool points_into(const void* p, std::span<const std::byte> region) {
    const auto* b = static_cast<const std::byte*>(p);
    return b >= region.data() && b < region.data() + region.size();
}

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

}  // namespace

TEST_CASE("safetensors: the dtype table is the reference's") {
    CHECK(all_dtypes().size() == 22);
    CHECK(all_dtypes().front() == DType::BOOL);
    CHECK(all_dtypes().back() == DType::U64);
    for (const DType d : all_dtypes()) CHECK(parse_dtype(dtype_name(d)) == d);
    CHECK(dtype_name(DType::F8_E4M3FNUZ) == "F8_E4M3FNUZ");
    CHECK(parse_dtype("BF16") == DType::BF16);
    CHECK(dtype_size(DType::F64) == 8);
    CHECK(dtype_size(DType::BF16) == 2);
    CHECK(dtype_size(DType::BOOL) == 1);
    CHECK(dtype_size(DType::C64) == 8);
    CHECK(dtype_bits(DType::F4) == 4);
    CHECK(dtype_bits(DType::F6_E3M2) == 6);
    CHECK_THROWS_WITH_AS(dtype_size(DType::F4), Contains("F4 elements are 4 bits, not whole bytes"), Error);
    CHECK_THROWS_WITH_AS(parse_dtype("f32"), Contains("unknown dtype 'f32' (known: BOOL, F4,"), Error);
    CHECK(dtype_of<float>() == DType::F32);
    CHECK(dtype_of<bfloat16_t>() == DType::BF16);
    CHECK(dtype_of<uint16_t>() == DType::U16);
}

TEST_CASE("safetensors: the writer reproduces the reference's own known-answer files") {
    // The byte strings of the reference's unit tests (safetensors/src/tensor.rs).
    const std::vector<float> v{0, 1, 2, 3, 4, 5};
    {
        SafeTensorsWriter w;
        w.add("attn.0", Tensor<float>::from(v, {1, 2, 3}));
        const std::string h = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        REQUIRE(h.size() == 64);
        CHECK(w.to_bytes() == safetensors_cases::le64(64) + h + std::string(reinterpret_cast<const char*>(v.data()), 24));
    }
    {
        SafeTensorsWriter w;
        w.add("attn0", Tensor<float>::from(v, {1, 1, 2, 3}));
        const std::string h = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
        REQUIRE(h.size() == 72);
        CHECK(w.header() == h);
        CHECK(w.to_bytes() == safetensors_cases::le64(72) + h + std::string(reinterpret_cast<const char*>(v.data()), 24));
    }
    CHECK(SafeTensorsWriter().to_bytes() == safetensors_cases::le64(8) + "{}      ");
    SafeTensorsWriter w;
    w.set_metadata({{"framework", "pt"}});
    CHECK(w.to_bytes() == safetensors_cases::le64(40) + "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
}

TEST_CASE("safetensors: round trip of every storage type, shapes [] and [0, 4], and metadata") {
    TempDir dir("safetensors");
    SafeTensorsWriter w;
    const auto f = Tensor<float>::from({0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}, {2, 3});
    const auto d = Tensor<double>::scalar(std::numbers::pi);
    const auto h = Tensor<half_t>::zeros({0, 4});
    const auto b = Tensor<bfloat16_t>::from({bfloat16_t(1.0f), bfloat16_t(-2.5f), bfloat16_t(3.0f)}, {3});
    const auto i64 = Tensor<int64_t>::from({-1, int64_t{1} << 40}, {2});
    const auto i32 = Tensor<int32_t>::from({-7}, {1, 1, 1});
    const auto i16 = Tensor<int16_t>::from({-300, 300}, {2});
    const auto i8 = Tensor<int8_t>::from({-128, 127}, {2});
    const auto u8 = Tensor<uint8_t>::from({0, 255}, {2});
    const auto u16 = Tensor<uint16_t>::from({65535}, {1});
    const auto u32 = Tensor<uint32_t>::from({4000000000u}, {1});
    const auto u64 = Tensor<uint64_t>::from({UINT64_MAX}, {1});
    w.add("f", f);
    w.add("d", d);
    w.add("h", h);
    w.add("b", b);
    w.add("i64", i64);
    w.add("i32", i32);
    w.add("i16", i16);
    w.add("i8", i8);
    w.add("u8", u8);
    w.add("u16", u16);
    w.add("u32", u32);
    w.add("u64", u64);
    const std::vector<std::byte> mask{std::byte{1}, std::byte{0}, std::byte{1}};
    const std::vector<std::byte> f8{std::byte{0x7e}, std::byte{0x01}};
    const std::vector<std::byte> f4{std::byte{0x12}, std::byte{0x34}};
    const std::vector<std::byte> c64(16, std::byte{7});
    w.add_raw("mask", DType::BOOL, {3}, mask);
    w.add_raw("f8", DType::F8_E4M3, {2}, f8);
    w.add_raw("f4", DType::F4, {2, 2}, f4);
    w.add_raw("c", DType::C64, {2}, c64);
    w.set_metadata({{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}});
    CHECK(w.size() == 16);
    CHECK(w.contains("mask"));
    w.write(dir.path / "all.safetensors");
    CHECK(dir.entries() == std::vector<std::string>{"all.safetensors"});

    const SafeTensors st = SafeTensors::open(dir.path / "all.safetensors");
    CHECK(st.path() == dir.path / "all.safetensors");
    CHECK(st.name() == (dir.path / "all.safetensors").string());
    CHECK(st.size() == 16);
    CHECK(st.has_metadata());
    CHECK(st.metadata() == std::map<std::string, std::string, std::less<>>{{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}});
    CHECK(st.header_size() % 8 == 0);
    // The reference's order: dtype from last to first, then name; data packed from 0.
    const std::vector<std::string> order{"u64", "i64", "d", "c", "f", "u32", "i32", "b", "h", "u16",
                                         "i16", "f8", "i8", "u8", "f4", "mask"};
    CHECK(st.names() == order);
    uint64_t at = 0;
    for (const auto& t : st.tensors()) {
        CAPTURE(t.name);
        CHECK(t.begin == at);
        at = t.end;
        if (dtype_bits(t.dtype) % 8 == 0)  // the padded header keeps every tensor aligned
            CHECK(reinterpret_cast<uintptr_t>(st.bytes(t.name).data()) % dtype_size(t.dtype) == 0);
    }
    CHECK(st.data_start() + at == st.file_bytes().size());

    CHECK(st.get<float>("f").to_vector() == f.to_vector());
    CHECK(st.get<float>("f").shape() == Shape{2, 3});
    CHECK(st.get<double>("d").shape() == Shape{});
    CHECK(st.get<double>("d").item() == std::numbers::pi);
    CHECK(st.get<half_t>("h").shape() == Shape{0, 4});
    CHECK(st.info("h").nbytes() == 0);
    CHECK(bytes_of(st.bytes("b")) == bytes_of(b.to_vector()));
    CHECK(st.get<int64_t>("i64").to_vector() == i64.to_vector());
    CHECK(st.get<int32_t>("i32").shape() == Shape{1, 1, 1});
    CHECK(st.get<int16_t>("i16").to_vector() == i16.to_vector());
    CHECK(st.get<int8_t>("i8").to_vector() == i8.to_vector());
    CHECK(st.get<uint8_t>("u8").to_vector() == u8.to_vector());
    CHECK(st.get<uint16_t>("u16").item() == 65535);
    CHECK(st.get<uint32_t>("u32").item() == 4000000000u);
    CHECK(st.get<uint64_t>("u64").item() == UINT64_MAX);
    CHECK(st.get<uint8_t>("mask").to_vector() == std::vector<uint8_t>{1, 0, 1});  // BOOL reads as uint8_t
    CHECK(bytes_of(st.bytes("f8")) == f8);
    CHECK(bytes_of(st.bytes("f4")) == f4);
    CHECK(st.info("f4").shape == Shape{2, 2});
    CHECK(bytes_of(st.bytes("c")) == c64);

    // Written again, the file is the same bytes.
    SafeTensorsWriter again;
    again.copy_from(st);
    const auto file = st.file_bytes();
    CHECK(again.to_bytes() == std::string(reinterpret_cast<const char*>(file.data()), file.size()));
}

TEST_CASE("safetensors: the writer keeps what a tensor held at add(), contiguous or strided") {
    // The trap: a contiguous tensor was kept by reference and a strided one copied, so what was
    // written depended on the layout and on writes made after add().
    auto a = Tensor<float>::from({1, 2, 3, 4}, {2, 2});
    auto b = Tensor<float>::from({1, 2, 3, 4}, {2, 2});
    SafeTensorsWriter w;
    w.add("contiguous", a);
    w.add("strided", b.mT());
    a.fill_(0.0f);
    b.fill_(0.0f);
    const SafeTensors st = SafeTensors::from_bytes(w.to_bytes(), "snapshot");
    CHECK(st.get<float>("contiguous").to_vector() == std::vector<float>{1, 2, 3, 4});
    CHECK(st.info("strided").shape == Shape{2, 2});
    CHECK(st.get<float>("strided").to_vector() == std::vector<float>{1, 3, 2, 4});  // written contiguous
}

TEST_CASE("safetensors: names and metadata with characters JSON escapes round-trip") {
    const std::string odd = std::string("a\"b\\c\n\t\x01\x7f/") + "\xc3\xa9\xf0\x9f\x98\x80" + std::string(1, '\0') + "z";
    SafeTensorsWriter w;
    w.add(odd, Tensor<float>::scalar(1.0f));
    w.add("", Tensor<float>::scalar(2.0f));
    w.set_metadata({{odd, odd}});
    CHECK(w.header().find("\"a\\\"b\\\\c\\n\\t\\u0001\x7f/\xc3\xa9\xf0\x9f\x98\x80\\u0000z\"") != std::string::npos);
    const SafeTensors st = SafeTensors::from_bytes(w.to_bytes(), "odd");
    CHECK(st.get<float>(odd).item() == 1.0f);
    CHECK(st.get<float>("").item() == 2.0f);
    CHECK(st.metadata().at(odd) == odd);
}

TEST_CASE("safetensors: metadata keeps the header's order and null means none") {
    const std::string file = safetensors_cases::file("{\"__metadata__\":{\"z\":\"1\",\"a\":\"2\"}}");
    const SafeTensors st = SafeTensors::from_bytes(file, "m");
    CHECK(st.metadata_items() == std::vector<std::pair<std::string, std::string>>{{"z", "1"}, {"a", "2"}});
    SafeTensorsWriter w;
    w.copy_from(st);
    CHECK(w.to_bytes() == safetensors_cases::file("{\"__metadata__\":{\"z\":\"1\",\"a\":\"2\"}}      "));

    const SafeTensors none = SafeTensors::from_bytes(safetensors_cases::file("{\"__metadata__\":null}"), "n");
    CHECK_FALSE(none.has_metadata());
    CHECK(none.metadata().empty());
    const SafeTensors empty = SafeTensors::from_bytes(safetensors_cases::file("{\"__metadata__\":{}}"), "e");
    CHECK(empty.has_metadata());
    CHECK(empty.metadata().empty());
    SafeTensorsWriter we;
    we.copy_from(empty);
    CHECK(we.header() == "{\"__metadata__\":{}}     ");
    we.clear_metadata();
    CHECK(we.header() == "{}      ");
}

TEST_CASE("safetensors: aligned data is a zero-copy view into the mapping, misaligned data a copy") {
    TempDir dir("safetensors");
    SafeTensorsWriter w;
    w.add("w", Tensor<float>::from({1.0f, 2.0f, 3.0f}, {3}));
    w.write(dir.path / "aligned.safetensors");
    Tensor<float> view;
    {
        const SafeTensors st = SafeTensors::open(dir.path / "aligned.safetensors");
        view = st.get<float>("w");
        CHECK(points_into(view.data(), st.file_bytes()));
        CHECK(static_cast<const void*>(view.data()) == static_cast<const void*>(st.bytes("w").data()));
    }
    // The view keeps the mapping alive after the SafeTensors is gone.
    CHECK(view.to_vector() == std::vector<float>{1.0f, 2.0f, 3.0f});
    // Writing through it changes this process's copy only (the mapping is copy-on-write).
    view.data()[0] = 42.0f;
    CHECK(SafeTensors::open(dir.path / "aligned.safetensors").get<float>("w").to_vector()[0] == 1.0f);

    // Another writer's unpadded header: data at an odd offset.
    std::string header = "{\"w\":" + safetensors_cases::entry("F32", "[2]", 0, 8) + "}";
    while ((8 + header.size()) % 4 != 1) header += ' ';
    const float vals[2] = {0.25f, -8.0f};
    spit(dir.path / "odd.safetensors", safetensors_cases::le64(header.size()) + header +
                                           std::string(reinterpret_cast<const char*>(vals), sizeof vals));
    const SafeTensors st = SafeTensors::open(dir.path / "odd.safetensors");
    CHECK(st.data_start() % 4 == 1);
    const auto copy = st.get<float>("w");
    CHECK_FALSE(points_into(copy.data(), st.file_bytes()));
    CHECK(copy.to_vector() == std::vector<float>{0.25f, -8.0f});
    CHECK(st.get_as<double>("w").to_vector() == std::vector<double>{0.25, -8.0});
    // from_bytes copies into an aligned buffer, so it behaves the same.
    const auto mem = SafeTensors::from_bytes(slurp(dir.path / "odd.safetensors"), "odd");
    CHECK_FALSE(points_into(mem.get<float>("w").data(), mem.file_bytes()));
    const auto mem2 = SafeTensors::from_bytes(slurp(dir.path / "aligned.safetensors"), "aligned");
    CHECK(points_into(mem2.get<float>("w").data(), mem2.file_bytes()));
}

TEST_CASE("safetensors: get checks the dtype, get_as converts") {
    SafeTensorsWriter w;
    w.add("h", Tensor<half_t>::from({half_t(0.5f), half_t(-65504.0f), half_t(1e-4f)}, {3}));
    w.add("b", Tensor<bfloat16_t>::from({bfloat16_t(3.140625f), bfloat16_t(-0.001f)}, {2}));
    w.add("d", Tensor<double>::from({1.0 / 3.0, -1e300}, {2}));
    w.add("f", Tensor<float>::from({0.1f}, {1}));
    w.add("i", Tensor<int32_t>::from({-7, 1 << 24}, {2}));
    w.add("u", Tensor<uint64_t>::from({UINT64_MAX}, {1}));
    w.add_raw("mask", DType::BOOL, {3}, std::vector<std::byte>{std::byte{0}, std::byte{1}, std::byte{2}});
    w.add_raw("e4m3", DType::F8_E4M3, {4}, std::vector<std::byte>{std::byte{0x7e}, std::byte{0x01}, std::byte{0xb8}, std::byte{0x7f}});
    w.add_raw("e5m2", DType::F8_E5M2, {3}, std::vector<std::byte>{std::byte{0x7b}, std::byte{0x7c}, std::byte{0x3c}});
    w.add_raw("e4m3fnuz", DType::F8_E4M3FNUZ, {2}, std::vector<std::byte>{std::byte{0x40}, std::byte{0x80}});
    w.add_raw("e5m2fnuz", DType::F8_E5M2FNUZ, {2}, std::vector<std::byte>{std::byte{0x40}, std::byte{0x80}});
    w.add_raw("e8m0", DType::F8_E8M0, {4}, std::vector<std::byte>{std::byte{127}, std::byte{0}, std::byte{128}, std::byte{0xff}});
    w.add_raw("f4", DType::F4, {2}, std::vector<std::byte>{std::byte{0x12}});
    const SafeTensors st = SafeTensors::from_bytes(w.to_bytes(), "conv.safetensors");

    CHECK_THROWS_WITH_AS(st.get<float>("h"), Contains("conv.safetensors: tensor 'h' is F16, not F32 (get_as<float>() converts)"), Error);
    CHECK_THROWS_WITH_AS(st.get<double>("f"), Contains("tensor 'f' is F32, not F64"), Error);
    CHECK_THROWS_WITH_AS(st.get<int64_t>("i"), Contains("tensor 'i' is I32, not I64"), Error);
    CHECK_THROWS_WITH_AS(st.get<int8_t>("mask"), Contains("tensor 'mask' is BOOL, not I8"), Error);

    CHECK(st.get_as<float>("h").to_vector() == std::vector<float>{0.5f, -65504.0f, static_cast<float>(half_t(1e-4f))});
    CHECK(st.get_as<float>("b").to_vector() == std::vector<float>{3.140625f, static_cast<float>(bfloat16_t(-0.001f))});
    CHECK(st.get_as<float>("d").to_vector() == std::vector<float>{static_cast<float>(1.0 / 3.0), -INFINITY});
    CHECK(st.get_as<double>("f").to_vector() == std::vector<double>{static_cast<double>(0.1f)});
    CHECK(st.get_as<float>("f").to_vector() == std::vector<float>{0.1f});
    CHECK(st.get_as<double>("i").to_vector() == std::vector<double>{-7.0, 16777216.0});
    CHECK(st.get_as<double>("u").to_vector() == std::vector<double>{18446744073709551616.0});
    CHECK(st.get_as<float>("mask").to_vector() == std::vector<float>{0.0f, 1.0f, 1.0f});
    // 8-bit floats (each decoder was checked against torch's .float() on all 256 bytes).
    const auto e4m3 = st.get_as<float>("e4m3").to_vector();
    CHECK(e4m3[0] == 448.0f);
    CHECK(e4m3[1] == std::ldexp(1.0f, -9));
    CHECK(e4m3[2] == -1.0f);
    CHECK(std::isnan(e4m3[3]));
    CHECK(st.get_as<float>("e5m2").to_vector() == std::vector<float>{57344.0f, INFINITY, 1.0f});
    CHECK(st.get_as<float>("e4m3fnuz").to_vector()[0] == 1.0f);
    CHECK(std::isnan(st.get_as<float>("e4m3fnuz").to_vector()[1]));
    CHECK(st.get_as<float>("e5m2fnuz").to_vector()[0] == 1.0f);
    CHECK(std::isnan(st.get_as<double>("e5m2fnuz").to_vector()[1]));
    const auto e8m0 = st.get_as<float>("e8m0").to_vector();
    CHECK(e8m0[0] == 1.0f);
    CHECK(bits_of(e8m0[1]) == bits_of(std::ldexp(1.0f, -127)));
    CHECK(e8m0[2] == 2.0f);
    CHECK(std::isnan(e8m0[3]));
    CHECK_THROWS_WITH_AS(st.get_as<float>("f4"), Contains("tensor 'f4' is F4, which get_as does not convert; read its bytes()"),
                         Error);
}

TEST_CASE("safetensors: a missing tensor is named, with the closest names") {
    SafeTensorsWriter w;
    w.add("encoder.weight", Tensor<float>::zeros({1}));
    w.add("encoder.bias", Tensor<float>::zeros({1}));
    w.add("decoder.weight", Tensor<float>::zeros({1}));
    const SafeTensors st = SafeTensors::from_bytes(w.to_bytes(), "model.safetensors");
    CHECK(st.contains("encoder.bias"));
    CHECK_FALSE(st.contains("encoder.wieght"));
    CHECK_THROWS_WITH_AS(st.info("encoder.wieght"),
                         Contains("model.safetensors: no tensor named 'encoder.wieght' (did you mean 'encoder.weight', "
                                  "'decoder.weight'?); the file holds 3 tensors"),
                         Error);
    CHECK_THROWS_WITH_AS(st.get<float>("nothing like it"), Contains("no tensor named 'nothing like it'; the file holds 3"), Error);
    CHECK_THROWS_WITH_AS(st.bytes("x"), Contains("no tensor named 'x'"), Error);
}

TEST_CASE("did you mean: one rule for typos and for a missing or extra model prefix") {
    const std::vector<std::string> held = {"vit.embeddings.cls_token", "vit.pooler.dense.bias", "classifier.weight",
                                           "classifier.bias", "inspect", "predict"};
    using V = std::vector<std::string_view>;
    // Typos: within max(2, |word| / 3) edits, closest first.
    CHECK(closest_names("inspct", held) == V{"inspect"});
    CHECK(closest_names("classifier.wieght", held) == V{"classifier.weight", "classifier.bias"});
    CHECK(closest_names("classifer.bias", held) == V{"classifier.bias"});
    // A missing prefix ("vit."), however much longer than the edit limit ("vit.embeddings.").
    CHECK(closest_names("pooler.dense.bias", held) == V{"vit.pooler.dense.bias"});
    CHECK(closest_names("embeddings.cls_token", held) == V{"vit.embeddings.cls_token"});
    CHECK(closest_names("cls_token", held) == V{"vit.embeddings.cls_token"});
    // An extra one (PEFT's "base_model.model.").
    CHECK(closest_names("base_model.model.classifier.weight", held) == V{"classifier.weight"});
    // Only at a dot: "token" is not a dotted suffix of "cls_token".
    CHECK(closest_names("token", held).empty());
    CHECK(closest_names("nothing like it", held).empty());
    // The message: every name quoted, the prefix the caller shows before names.
    CHECK(did_you_mean("inspct", held) == " (did you mean 'inspect'?)");
    CHECK(did_you_mean("predcit", held, "--") == " (did you mean '--predict'?)");
    CHECK(did_you_mean("classifier.wieght", held) == " (did you mean 'classifier.weight', 'classifier.bias'?)");
    CHECK(did_you_mean(std::string("vit.pooler.dense.bia\n"), held) == " (did you mean 'vit.pooler.dense.bias'?)");
    CHECK(did_you_mean("pooler.dense.bias\n", std::vector<std::string>{"pooler.dense.bias\t"}) ==
          " (did you mean 'pooler.dense.bias\\x09'?)");
    CHECK(did_you_mean("zzz", held).empty());
    // At most three, ties in name order.
    CHECK(closest_names("x.a", std::vector<std::string>{"x.d", "x.c", "x.b", "x.e"}) == V{"x.b", "x.c", "x.d"});
}

TEST_CASE("did you mean: model directories suggest the name the files hold") {
    TempDir dir("hf_suggest");
    SafeTensorsWriter w;
    w.add("vit.embeddings.cls_token", Tensor<float>::zeros({1, 1, 4}));
    w.add("vit.encoder.layer.0.attention.attention.query.weight", Tensor<float>::zeros({4, 4}));
    w.add("classifier.weight", Tensor<float>::zeros({2, 4}));
    w.write(dir.path / "model.safetensors");
    spit(dir.path / "config.json", "{}");
    const ModelDir md = ModelDir::open(dir.path);
    const std::string d = dir.path.string();
    // The model's prefix missing: found however long the rest of the name is.
    const std::string no_prefix = d + ": no tensor 'embeddings.cls_token' (did you mean 'vit.embeddings.cls_token'?)";
    CHECK_THROWS_WITH_AS(md.file_of("embeddings.cls_token"), no_prefix.c_str(), Error);
    CHECK_THROWS_WITH_AS(md.file_of("encoder.layer.0.attention.attention.query.weight"),
                         Contains("(did you mean 'vit.encoder.layer.0.attention.attention.query.weight'?)"), Error);
    // A typo, and a name nothing is close to.
    CHECK_THROWS_WITH_AS(md.file_of("vit.encoder.layer.0.attention.attention.qeury.weight"),
                         Contains("(did you mean 'vit.encoder.layer.0.attention.attention.query.weight'?)"), Error);
    const std::string none_close = d + ": no tensor 'pooler.dense.bias'";
    CHECK_THROWS_WITH_AS(md.file_of("pooler.dense.bias"), none_close.c_str(), Error);
    // Binding: the scope's full name is what is missing; the suggestion is what the file holds.
    const nn::WeightScope scope(md);
    const std::string missing = d + ": missing tensor 'embeddings.cls_token' (did you mean 'vit.embeddings.cls_token'?)";
    CHECK_THROWS_WITH_AS(scope.sub("embeddings").get<float>("cls_token", {1, 1, 4}), missing.c_str(), Error);
    CHECK(nn::WeightScope(md, "", "vit").sub("embeddings").get<float>("cls_token", {1, 1, 4}).shape() == Shape{1, 1, 4});
}

TEST_CASE("safetensors: the malformed-file catalogue is refused, each with its rule") {
    const auto cases = safetensors_cases::malformed_cases();
    CHECK(cases.size() >= 60);
    TempDir dir("safetensors");
    int i = 0;
    for (const auto& c : cases) {
        CAPTURE(c.label);
        const std::string mem = refusal([&] { (void)SafeTensors::from_bytes(c.bytes, "case.safetensors"); });
        CAPTURE(mem);
        CHECK(mem.rfind("case.safetensors: ", 0) == 0);
        CHECK(mem.find(c.expect) != std::string::npos);
        // The same file through open() and the mapping.
        const fs::path p = dir.path / ("case-" + std::to_string(i++) + ".safetensors");
        spit(p, c.bytes);
        const std::string disk = refusal([&] { (void)SafeTensors::open(p); });
        CHECK(disk == p.string() + mem.substr(std::string("case.safetensors").size()));
    }
}

TEST_CASE("safetensors: the odd files the reference accepts are accepted") {
    TempDir dir("safetensors");
    for (const auto& c : safetensors_cases::quirk_cases()) {
        CAPTURE(c.label);
        CHECK(refusal([&] { (void)SafeTensors::from_bytes(c.bytes, "quirk"); }) == "<accepted>");
        spit(dir.path / "quirk.safetensors", c.bytes);
        CHECK(refusal([&] { (void)SafeTensors::open(dir.path / "quirk.safetensors"); }) == "<accepted>");
    }
    // Some of them, read.
    const auto cases = safetensors_cases::quirk_cases();
    auto find = [&](std::string_view label) {
        for (const auto& c : cases)
            if (c.label == label) return SafeTensors::from_bytes(c.bytes, std::string(label));
        FAIL("no quirk case " << label);
        return SafeTensors::from_bytes(safetensors_cases::file("{}"));
    };
    CHECK(find("header order differs from data order").names() == std::vector<std::string>{"a", "b"});
    CHECK(find("unknown fields, ignored").info("a").shape == Shape{1});
    CHECK(find("escaped names").contains(std::string("a\0b", 3)));
    CHECK(find("escaped names").contains("\xc3\xa9\"\\"));
    CHECK(find("scalar").get<float>("s").shape() == Shape{});
    CHECK(find("two empty tensors at one offset").get<int64_t>("b").shape() == Shape{3, 0});
    const auto huge = find("zero-size tensor with huge dimensions");
    CHECK(huge.info("a").shape == Shape{0, int64_t{1} << 62, int64_t{1} << 62});
    CHECK(huge.bytes("a").empty());
    CHECK_THROWS_WITH_AS(huge.get<float>("a"), Contains("is too large for a Tensor (its strides overflow int64)"), Error);
}

TEST_CASE("safetensors: reading the PyTorch-written fixture, and writing it again byte for byte") {
    const fs::path path = fs::path(COEFFNET_TEST_DATA) / "torch_save_file.safetensors";
    REQUIRE(fs::exists(path));
    const SafeTensors st = SafeTensors::open(path);
    CHECK(st.metadata() == std::map<std::string, std::string, std::less<>>{{"format", "pt"}, {"note", "coeffnet fixture"}});
    CHECK(st.size() == 10);

    CHECK(st.get<float>("f32").shape() == Shape{2, 3});
    CHECK(st.get<float>("f32").to_vector() == std::vector<float>{0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f});
    std::vector<uint16_t> f16;
    for (half_t x : st.get<half_t>("f16").to_vector()) f16.push_back(x.bits);
    CHECK(f16 == std::vector<uint16_t>{0x3800, 0xbc00, 0x7bff, 0x068e, 0x0000});  // 0.5, -1, 65504, ~1e-4, 0
    CHECK(half_t(1e-4f).bits == 0x068e);
    CHECK(st.get_as<float>("f16").to_vector() == std::vector<float>{0.5f, -1.0f, 65504.0f, half_t::to_float(0x068e), 0.0f});
    std::vector<uint16_t> bf16;
    for (bfloat16_t x : st.get<bfloat16_t>("bf16").to_vector()) bf16.push_back(x.bits);
    CHECK(bf16 == std::vector<uint16_t>{0x3f80, 0xc020, 0x4049, 0x3a83});  // 1, -2.5, 3.140625, ~0.001
    CHECK(bfloat16_t(0.001f).bits == 0x3a83);
    CHECK(st.get<bfloat16_t>("bf16").shape() == Shape{2, 2});
    CHECK(st.get<int64_t>("i64").to_vector() == std::vector<int64_t>{-1, 0, int64_t{1} << 40});
    CHECK(st.get<double>("f64").to_vector() == std::vector<double>{std::numbers::pi});
    CHECK(st.get<uint8_t>("u8").to_vector() == std::vector<uint8_t>{0, 1, 128, 255});
    CHECK(st.info("bool").dtype == DType::BOOL);
    CHECK(st.get<uint8_t>("bool").to_vector() == std::vector<uint8_t>{1, 0, 1});
    CHECK(st.get<int32_t>("i32").shape() == Shape{2, 1});
    CHECK(st.get<int32_t>("i32").to_vector() == std::vector<int32_t>{-7, 7});
    CHECK(st.get<float>("empty").shape() == Shape{0, 4});
    CHECK(st.get<float>("scalar").shape() == Shape{});
    CHECK(st.get<float>("scalar").item() == 2.5f);
    // Written by the reference with its padding, so every tensor is a view.
    for (const auto& name : {"f32", "scalar"}) CHECK(points_into(st.get<float>(name).data(), st.file_bytes()));

    const std::string original = slurp(path);
    SafeTensorsWriter copy;
    copy.copy_from(st);
    CHECK(copy.to_bytes() == original);

    // Built from the values alone, as a user would.
    SafeTensorsWriter w;
    w.add("f32", st.get<float>("f32"));
    w.add("f16", st.get<half_t>("f16"));
    w.add("bf16", st.get<bfloat16_t>("bf16"));
    w.add("i64", st.get<int64_t>("i64"));
    w.add("f64", st.get<double>("f64"));
    w.add("u8", Tensor<uint8_t>::from({0, 1, 128, 255}, {4}));
    w.add_raw("bool", DType::BOOL, {3}, std::vector<std::byte>{std::byte{1}, std::byte{0}, std::byte{1}});
    w.add("i32", Tensor<int32_t>::from({-7, 7}, {2, 1}));
    w.add("empty", Tensor<float>::zeros({0, 4}));
    w.add("scalar", Tensor<float>::scalar(2.5f));
    w.set_metadata({{"format", "pt"}, {"note", "coeffnet fixture"}});
    CHECK(w.to_bytes() == original);
    TempDir dir("safetensors");
    w.write(dir.path / "again.safetensors");
    CHECK(slurp(dir.path / "again.safetensors") == original);
}

TEST_CASE("safetensors: writer argument errors") {
    SafeTensorsWriter w;
    w.add("a", Tensor<float>::zeros({2}));
    CHECK_THROWS_WITH_AS(w.add("a", Tensor<double>::zeros({1})), Contains("SafeTensorsWriter: tensor 'a': added twice"), Error);
    CHECK_THROWS_WITH_AS(w.add("__metadata__", Tensor<float>::zeros({1})), Contains("the name is reserved"), Error);
    CHECK_THROWS_WITH_AS(w.add("bad\xff", Tensor<float>::zeros({1})), Contains("the name is not valid UTF-8"), Error);
    CHECK_THROWS_WITH_AS(w.add("u", Tensor<float>()), Contains("tensor 'u' is undefined"), Error);
    CHECK_THROWS_WITH_AS(w.add_raw("r", DType::F32, {2}, std::vector<std::byte>(7)),
                         Contains("tensor 'r': F32 [2] needs 8 bytes but 7 were given"), Error);
    CHECK_THROWS_WITH_AS(w.add_raw("n", DType::F32, {-1}, std::vector<std::byte>{}), Contains("negative dimension in shape [-1]"),
                         Error);
    CHECK_THROWS_WITH_AS(w.add_raw("q", DType::F4, {3}, std::vector<std::byte>(2)),
                         Contains("F4 [3] is 12 bits, not a whole number of bytes"), Error);
    CHECK_THROWS_WITH_AS(w.add_raw("o", DType::U8, {INT64_MAX, INT64_MAX}, std::vector<std::byte>{}), Contains("overflows 64 bits"),
                         Error);
    CHECK_THROWS_WITH_AS(w.set_metadata_ordered({{"k", "1"}, {"k", "2"}}), Contains("metadata key 'k' given twice"), Error);
    CHECK_THROWS_WITH_AS(w.set_metadata({{"k", "\xc0\x80"}}), Contains("metadata key 'k' or its value is not valid UTF-8"), Error);
    CHECK(w.size() == 1);  // the refused ones were not added
}

TEST_CASE("safetensors: write() is atomic") {
    TempDir dir("safetensors");
    SafeTensorsWriter big;
    big.add("x", Tensor<float>::full({1000}, 1.5f));
    SafeTensorsWriter small;
    small.add("y", Tensor<int32_t>::from({3}, {1}));

    // Into a directory that does not exist: throws, creates nothing.
    CHECK_THROWS_WITH_AS(small.write(dir.path / "missing" / "m.safetensors"), Contains("cannot create the temporary file"), Error);
    CHECK_FALSE(fs::exists(dir.path / "missing"));

    // A rename that fails (the target is a directory): throws and removes the temporary file.
    fs::create_directory(dir.path / "taken.safetensors");
    CHECK_THROWS_WITH_AS(small.write(dir.path / "taken.safetensors"), Contains("cannot rename"), Error);
    CHECK(dir.entries() == std::vector<std::string>{"taken.safetensors"});

    // Overwriting replaces the file whole, and a mapping of the old one stays valid.
    const fs::path p = dir.path / "model.safetensors";
    big.write(p);
    const SafeTensors old = SafeTensors::open(p);
    const auto old_view = old.get<float>("x");
    small.write(p);
    CHECK(slurp(p) == small.to_bytes());
    CHECK(dir.entries() == std::vector<std::string>{"model.safetensors", "taken.safetensors"});
    CHECK(old_view.to_vector() == std::vector<float>(1000, 1.5f));
    CHECK(SafeTensors::open(p).get<int32_t>("y").item() == 3);

    // A path with no directory part writes into the current directory.
    const fs::path cwd = fs::current_path();
    fs::current_path(dir.path);
    small.write("here.safetensors");
    fs::current_path(cwd);
    CHECK(slurp(dir.path / "here.safetensors") == small.to_bytes());
}

TEST_CASE("safetensors: open() refuses what is not a readable regular file") {
    TempDir dir("safetensors");
    CHECK_THROWS_WITH_AS(SafeTensors::open(dir.path / "absent.safetensors"),
                         Contains("absent.safetensors: cannot open: No such file or directory"), Error);
    CHECK_THROWS_WITH_AS(SafeTensors::open(dir.path), Contains(": not a regular file"), Error);
    spit(dir.path / "empty.safetensors", "");
    CHECK_THROWS_WITH_AS(SafeTensors::open(dir.path / "empty.safetensors"),
                         Contains("empty.safetensors: the file is 0 bytes, too short to hold the 8-byte header length"), Error);
}

TEST_CASE("save_module / load_module: every parameter by name, loaded in place, strict about names") {
    TempDir tmp("module");
    Generator gen(9);
    nn::CoeffAttention<float> a(8, 2, gen), b(8, 2, gen);
    a.enable_coeff(true);
    b.enable_coeff(true);
    Generator other(10);
    for (auto& [name, p] : a.named_parameters()) p.copy_(Tensor<float>::randn(p.shape(), other));
    nn::save_module(tmp.path / "attn.safetensors", a, {{"note", "a test"}});
    const auto st = SafeTensors::open(tmp.path / "attn.safetensors");
    CHECK(st.tensors().size() == a.named_parameters().size());
    CHECK(st.metadata().at("note") == "a test");

    const Tensor<float> held = b.alpha;  // an optimiser built before the load holds this
    const auto r = nn::load_module(tmp.path / "attn.safetensors", b);
    CHECK(r.loaded.size() == a.named_parameters().size());
    CHECK(r.missing.empty());
    CHECK(r.unused.empty());
    const auto pa = a.named_parameters(), pb = b.named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
        CAPTURE(pa[i].first);
        CHECK(pb[i].second.to_vector() == pa[i].second.to_vector());
    }
    CHECK(held.to_vector() == a.alpha.to_vector());

    // Another module: strict refuses and names both sides, and writes nothing; non-strict loads what matches.
    nn::Linear<float> lin(8, 8, gen);
    const auto before = lin.weight.to_vector();
    CHECK_THROWS_WITH_AS(nn::load_module(tmp.path / "attn.safetensors", lin),
                         Contains("parameters of the module not in the file: 'weight'"), Error);
    CHECK(lin.weight.to_vector() == before);
    const auto partial = nn::load_module(tmp.path / "attn.safetensors", lin, false);
    CHECK(partial.loaded.empty());
    CHECK(partial.missing.size() == 2);
    CHECK(partial.unused.size() == pa.size());
    // A shape mismatch always throws.
    nn::CoeffAttention<float> wide(16, 2, gen);
    wide.enable_coeff(true);
    CHECK_THROWS_WITH_AS(nn::load_module(tmp.path / "attn.safetensors", wide, false),
                         Contains("has shape [8, 8], the module's parameter has [16, 16]"), Error);
}
