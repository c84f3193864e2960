// coeffnet/io/image.hpp: images for vision models. Decodes PNG and JPEG, converts them to RGB,
// resizes them as PIL's Image.resize does, and turns them into the tensor a Hugging Face image
// processor would make (resize, center crop, rescale, normalise).
//
//     io::Image img = io::to_rgb(io::read_image("cat.jpg"));
//     auto cfg = io::ImageProcessorConfig::from_file(dir / "preprocessor_config.json");
//     Tensor<float> x = io::preprocess_image<float>(img, cfg);   // [3, H, W]
//
// Decoding uses stb_image (Debian/Ubuntu package libstb-dev). Its implementation must be
// compiled into exactly one translation unit of a program: define COEFFNET_IMAGE_IMPLEMENTATION
// there before this header is first included (or link a library holding stb_image, -lstb):
//
//     #define COEFFNET_IMAGE_IMPLEMENTATION   // in one .cpp file only
//     #include <coeffnet/io/image.hpp>
//
// What each step matches:
//   read_image / decode_image   PNG and JPEG, told apart by their signatures (not the file
//       name); 16-bit PNG samples become 8 bits. Like PIL, a PNG whose chunk checksums fail, a PNG
//       without IEND and a JPEG without its end-of-image marker are refused (stb_image alone
//       accepts some of them), and so is a JPEG Huffman table with more than 256 codes (it
//       overflows stb_image 2.27's tables, Debian 12's). JPEG pixels come from stb_image's decoder,
//       not libjpeg's, so they may differ from PIL's by a few levels. EXIF orientation is not
//       applied (PIL's Image.open does not apply it either). Images over 178,956,970 pixels are
//       refused, PIL's limit against decompression bombs.
//   to_rgb   gray is repeated into R, G, B (PIL's convert("RGB")); an image with alpha is
//       composited onto white, bit for bit as transformers' convert_to_rgb (do_convert_rgb) does it
//       with PIL's alpha_composite.
//   resize   PIL's Image.resize of an 8-bit image, bit for bit: a separable filter whose support
//       grows with the downscale factor (so downscaling antialiases), fixed-point weights, a
//       horizontal then a vertical pass, each rounded to 8 bits; all six PIL filters.
//   preprocess_image   transformers' image processors on the PIL path: resize to size
//       {height, width} or {shortest_edge} and center crop (ImageProcessorConfig::geometry), then
//       rescale and normalise (normalize_image) with float32 arithmetic as NumPy does it, so the
//       values are transformers' to within float rounding.
//
// Every failure throws coeffnet::Error naming the file (or the function) and what is wrong.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../tensor/tensor.hpp"
#include "png.hpp"

#if defined(COEFFNET_IMAGE_IMPLEMENTATION) && !defined(STB_IMAGE_IMPLEMENTATION)
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG  // the decoders coeffnet uses; fewer formats, less code open to hostile files
#define STBI_ONLY_JPEG
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#elif __has_include(<stb_image.h>)
#include <stb_image.h>
#else
#error "coeffnet/io/image.hpp needs stb_image.h (Debian/Ubuntu: apt-get install libstb-dev)"
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace coeffnet::io {

// PIL's limit (Image.MAX_IMAGE_PIXELS * 2, where it raises DecompressionBombError).
inline constexpr int64_t kMaxImagePixels = 178'956'970;

// An 8-bit image, rows top to bottom, channels interleaved.
struct Image {
    int64_t width = 0, height = 0;
    int64_t channels = 0;         // 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
    std::vector<uint8_t> pixels;  // pixel (x, y), channel c at (y * width + x) * channels + c

    Image() = default;
    Image(int64_t w, int64_t h, int64_t c, uint8_t fill = 0) : width(w), height(h), channels(c) {
        check(w > 0 && h > 0, "Image: width and height must be positive, got ", w, " x ", h);
        check(c >= 1 && c <= 4, "Image: channels must be 1 to 4, got ", c);
        check(w <= kMaxImagePixels / h, "Image: ", w, " x ", h, " is over the limit of ", kMaxImagePixels, " pixels");
        pixels.assign(static_cast<size_t>(w * h * c), fill);
    }

    bool empty() const { return pixels.empty(); }
    uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[index(y, x, c)]; }
    uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[index(y, x, c)]; }

private:
    size_t index(int64_t y, int64_t x, int64_t c) const { return static_cast<size_t>((y * width + x) * channels + c); }
};

enum class ImageFormat { unknown, png, jpeg };

inline const char* image_format_name(ImageFormat f) {
    return f == ImageFormat::png ? "PNG" : f == ImageFormat::jpeg ? "JPEG" : "unknown";
}

// The format by the file's first bytes.
inline ImageFormat sniff_image_format(std::span<const uint8_t> b) {
    if (b.size() >= 8 && std::equal(kPngSignature.begin(), kPngSignature.end(), b.begin())) return ImageFormat::png;
    if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return ImageFormat::jpeg;
    return ImageFormat::unknown;
}

namespace detail {

// Walks a JPEG's markers to its end-of-image marker, as stb_image will walk them; refuses data
// that ends first and Huffman tables stb_image 2.27 would overflow on. Other damage is left to
// the decoder. Returns the width and height of the first frame header ({0, 0} if none
// was seen).
inline std::pair<int64_t, int64_t> check_jpeg_complete(std::span<const uint8_t> b, const std::string& name) {
    auto truncated = [&]() { fail(name, ": the JPEG data is truncated (no end-of-image marker before byte ", b.size(), ")"); };
    std::pair<int64_t, int64_t> size{0, 0};
    size_t pos = 2;
    while (true) {
        if (pos >= b.size()) truncated();
        if (b[pos] != 0xff) {  // extraneous bytes before a marker: skipped, as stb_image and libjpeg skip them
            ++pos;
            continue;
        }
        while (pos < b.size() && b[pos] == 0xff) ++pos;  // fill bytes
        if (pos >= b.size()) truncated();
        const uint8_t marker = b[pos++];
        if (marker == 0xd9) return size;                                   // EOI
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;  // no length
        if (b.size() - pos < 2) truncated();
        const size_t len = (size_t{b[pos]} << 8) | b[pos + 1];
        if (len < 2) return size;
        if (b.size() - pos < len) truncated();
        // Huffman tables whose code counts add up past 256 overflow stb_image 2.27's tables
        // (fixed upstream in 2.28); refuse them here, as libjpeg does.
        if (marker == 0xc4) {
            for (size_t at = pos + 2, end = pos + len; at < end;) {
                if (end - at < 17) fail(name, ": corrupt JPEG: a Huffman table (DHT) at byte ", pos - 2, " is cut short");
                size_t symbols = 0;
                for (size_t i = 1; i <= 16; ++i) symbols += b[at + i];
                if (symbols > 256 || end - at - 17 < symbols)
                    fail(name, ": corrupt JPEG: a Huffman table (DHT) at byte ", pos - 2, " declares ", symbols,
                         " codes", symbols > 256 ? " (at most 256)" : ", more than the segment holds");
                at += 17 + symbols;
            }
        }
        // A frame header (SOF0-15 but DHT C4, JPG C8, DAC CC): precision, height, width.
        const bool sof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
        if (sof && len >= 7 && size.first == 0)
            size = {(int64_t{b[pos + 5]} << 8) | b[pos + 6], (int64_t{b[pos + 3]} << 8) | b[pos + 4]};
        pos += len;
        if (marker != 0xda) continue;
        // After SOS, entropy-coded data up to the next marker (FF 00 is a stuffed FF; FF D0-D7 are restarts).
        while (true) {
            if (pos >= b.size()) truncated();
            if (b[pos] != 0xff) {
                ++pos;
                continue;
            }
            if (pos + 1 >= b.size()) truncated();
            const uint8_t next = b[pos + 1];
            if (next == 0x00 || (next >= 0xd0 && next <= 0xd7)) pos += 2;
            else if (next == 0xff) ++pos;
            else break;
        }
    }
}

struct StbiFree {
    void operator()(unsigned char* p) const { stbi_image_free(p); }
};

inline std::string describe_start(std::span<const uint8_t> b) {
    if (b.empty()) return "the file is empty";
    static constexpr char hex[] = "0123456789abcdef";
    std::string s = "it starts with";
    for (size_t i = 0; i < b.size() && i < 8; ++i) s += {' ', hex[b[i] >> 4], hex[b[i] & 15]};
    return s;
}

}  // namespace detail

// Decodes PNG or JPEG bytes to an Image with the file's own channels (1 to 4). `name` stands
// for the file in messages.
inline Image decode_image(std::span<const uint8_t> bytes, const std::string& name = "<memory>") {
    const ImageFormat format = sniff_image_format(bytes);
    if (format == ImageFormat::unknown) fail(name, ": not a PNG or JPEG image (", detail::describe_start(bytes), ")");
    if (bytes.size() > static_cast<size_t>(INT_MAX))
        fail(name, ": ", bytes.size(), " bytes is more than the decoder takes (", INT_MAX, ")");
    // The checks stb_image skips, and the size from the header, before anything is allocated.
    const auto [w0, h0] = format == ImageFormat::png ? detail::check_png_chunks(bytes, name)
                                                     : detail::check_jpeg_complete(bytes, name);
    const char* fmt = image_format_name(format);
    if (w0 > 0 && h0 > 0 && w0 > kMaxImagePixels / h0)
        fail(name, ": the ", fmt, " image is ", w0, " x ", h0, " pixels, over the limit of ", kMaxImagePixels, " pixels");
    const int len = static_cast<int>(bytes.size());
    int w = 0, h = 0, n = 0;
    std::unique_ptr<unsigned char, detail::StbiFree> data(stbi_load_from_memory(bytes.data(), len, &w, &h, &n, 0));
    if (!data) {
        const char* why = stbi_failure_reason();
        fail(name, ": cannot decode the ", fmt, " image: ", why ? why : "unknown error");
    }
    check(w > 0 && h > 0 && n >= 1 && n <= 4 && static_cast<int64_t>(w) <= kMaxImagePixels / h, name,
          ": the decoder returned a ", w, " x ", h, " image with ", n, " channels");
    Image out(w, h, n);
    std::memcpy(out.pixels.data(), data.get(), out.pixels.size());
    return out;
}

// Reads and decodes a PNG or JPEG file.
inline Image read_image(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) fail(name, ": no such file");
    if (!std::filesystem::is_regular_file(status)) fail(name, ": not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) fail(name, ": cannot read its size: ", ec.message());
    if (size > static_cast<uintmax_t>(INT_MAX)) fail(name, ": ", size, " bytes is more than the decoder takes (", INT_MAX, ")");
    std::ifstream in(path, std::ios::binary);
    check(static_cast<bool>(in), name, ": cannot open");
    std::vector<uint8_t> bytes(static_cast<size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    check(in.gcount() == static_cast<std::streamsize>(bytes.size()), name, ": read failed");
    return decode_image(bytes, name);
}

// Three channels: gray repeated, alpha composited onto white (PIL's alpha_composite, exactly).
inline Image to_rgb(const Image& in) {
    check(!in.empty() && in.channels >= 1 && in.channels <= 4, "to_rgb: expected an image with 1 to 4 channels");
    if (in.channels == 3) return in;
    Image out(in.width, in.height, 3);
    // PIL's AlphaComposite.c with an opaque white destination: 7 extra bits, rounded divisions.
    auto over_white = [](uint32_t c, uint32_t a) -> uint8_t {
        if (a == 0) return 255;
        const uint32_t outa255 = a * 255 + 255 * (255 - a);
        const uint32_t coef1 = a * 255 * 255 * 128 / outa255, coef2 = 255 * 128 - coef1;
        const uint32_t t = c * coef1 + 255 * coef2 + (0x80u << 7);
        return static_cast<uint8_t>((((t >> 8) + t) >> 8) >> 7);
    };
    const size_t n = static_cast<size_t>(in.width * in.height), ci = static_cast<size_t>(in.channels);
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = &in.pixels[i * ci];
        uint8_t* o = &out.pixels[i * 3];
        switch (in.channels) {
            case 1: o[0] = o[1] = o[2] = p[0]; break;
            case 2: o[0] = o[1] = o[2] = over_white(p[0], p[1]); break;
            default:
                for (int c = 0; c < 3; ++c) o[c] = over_white(p[c], p[3]);
        }
    }
    return out;
}

// PIL's resampling filters, with PIL's numbers (Image.Resampling).
enum class Resample { nearest = 0, lanczos = 1, bilinear = 2, bicubic = 3, box = 4, hamming = 5 };

inline const char* resample_name(Resample r) {
    switch (r) {
        case Resample::nearest: return "nearest";
        case Resample::lanczos: return "lanczos";
        case Resample::bilinear: return "bilinear";
        case Resample::bicubic: return "bicubic";
        case Resample::box: return "box";
        case Resample::hamming: return "hamming";
    }
    return "?";
}

namespace detail {

// PIL's Resample.c: each filter and its support at scale 1.
struct ResampleFilter {
    double (*weight)(double);
    double support;
};

inline ResampleFilter resample_filter(Resample r) {
    constexpr double pi = 3.14159265358979323846;
    switch (r) {
        case Resample::box:
            return {[](double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }, 0.5};
        case Resample::bilinear:
            return {[](double x) { x = std::abs(x); return x < 1.0 ? 1.0 - x : 0.0; }, 1.0};
        case Resample::hamming:
            return {[](double x) {
                        x = std::abs(x);
                        if (x == 0.0) return 1.0;
                        if (x >= 1.0) return 0.0;
                        x *= pi;
                        return std::sin(x) / x * (0.54 + 0.46 * std::cos(x));
                    },
                    1.0};
        case Resample::bicubic:
            return {[](double x) {
                        constexpr double a = -0.5;
                        x = std::abs(x);
                        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                        return 0.0;
                    },
                    2.0};
        case Resample::lanczos:
            return {[](double x) {
                        auto sinc = [](double v) { return v == 0.0 ? 1.0 : std::sin(v * pi) / (v * pi); };
                        return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
                    },
                    3.0};
        case Resample::nearest: break;
    }
    fail("resize: no filter for ", resample_name(r));
}

// One axis's weights: output i reads inputs [first[i], first[i] + count[i]) with fixed-point
// weights w[i * ksize + k] (22 fraction bits), as PIL's precompute_coeffs and normalize_coeffs_8bpc.
struct AxisWeights {
    int64_t ksize = 0;
    std::vector<int64_t> first, count;
    std::vector<int32_t> w;
};

inline constexpr int kPrecisionBits = 32 - 8 - 2;

inline AxisWeights axis_weights(int64_t in_size, int64_t out_size, const ResampleFilter& f) {
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    const double filterscale = std::max(scale, 1.0);
    const double support = f.support * filterscale;
    AxisWeights a;
    a.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    a.first.resize(static_cast<size_t>(out_size));
    a.count.resize(static_cast<size_t>(out_size));
    a.w.assign(static_cast<size_t>(out_size * a.ksize), 0);
    std::vector<double> k(static_cast<size_t>(a.ksize));
    for (int64_t i = 0; i < out_size; ++i) {
        const double center = (static_cast<double>(i) + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
        const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
        double ww = 0.0;
        for (int64_t x = 0; x < xmax; ++x) {
            const double v = f.weight((static_cast<double>(x + xmin) - center + 0.5) * ss);
            k[static_cast<size_t>(x)] = v;
            ww += v;
        }
        for (int64_t x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? k[static_cast<size_t>(x)] / ww : k[static_cast<size_t>(x)];
            const double fixed = v * static_cast<double>(1 << kPrecisionBits);
            a.w[static_cast<size_t>(i * a.ksize + x)] = static_cast<int32_t>(v < 0 ? fixed - 0.5 : fixed + 0.5);
        }
        a.first[static_cast<size_t>(i)] = xmin;
        a.count[static_cast<size_t>(i)] = std::max<int64_t>(xmax, 0);
    }
    return a;
}

inline uint8_t clip8(int64_t v) {
    if (v >= (int64_t{1} << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return static_cast<uint8_t>(v >> kPrecisionBits);
}

// Rows [row0, row0 + rows) of `in`, resampled along x to `out_w`.
inline Image resample_x(const Image& in, int64_t row0, int64_t rows, int64_t out_w, const AxisWeights& a) {
    Image out(out_w, rows, in.channels);
    const int64_t C = in.channels;
    for (int64_t y = 0; y < rows; ++y) {
        const uint8_t* src = &in.pixels[static_cast<size_t>((row0 + y) * in.width * C)];
        uint8_t* dst = &out.pixels[static_cast<size_t>(y * out_w * C)];
        for (int64_t x = 0; x < out_w; ++x) {
            const int32_t* w = &a.w[static_cast<size_t>(x * a.ksize)];
            const int64_t x0 = a.first[static_cast<size_t>(x)], n = a.count[static_cast<size_t>(x)];
            for (int64_t c = 0; c < C; ++c) {
                int64_t s = int64_t{1} << (kPrecisionBits - 1);
                for (int64_t k = 0; k < n; ++k) s += int64_t{src[(x0 + k) * C + c]} * w[k];
                dst[x * C + c] = clip8(s);
            }
        }
    }
    return out;
}

// `in` resampled along y to `out_h`, reading input row a.first[i] - row0 for output row i.
inline Image resample_y(const Image& in, int64_t row0, int64_t out_h, const AxisWeights& a) {
    Image out(in.width, out_h, in.channels);
    const int64_t row = in.width * in.channels;
    for (int64_t y = 0; y < out_h; ++y) {
        const int32_t* w = &a.w[static_cast<size_t>(y * a.ksize)];
        const int64_t y0 = a.first[static_cast<size_t>(y)] - row0, n = a.count[static_cast<size_t>(y)];
        uint8_t* dst = &out.pixels[static_cast<size_t>(y * row)];
        for (int64_t i = 0; i < row; ++i) {
            int64_t s = int64_t{1} << (kPrecisionBits - 1);
            for (int64_t k = 0; k < n; ++k) s += int64_t{in.pixels[static_cast<size_t>((y0 + k) * row + i)]} * w[k];
            dst[i] = clip8(s);
        }
    }
    return out;
}

// PIL's nearest neighbour (ImagingScaleAffine): source index = int(x-offset), the offset
// accumulated in steps of in/out from half a step, as PIL accumulates it.
inline std::vector<int64_t> nearest_index(int64_t in_size, int64_t out_size) {
    const double step = static_cast<double>(in_size) / static_cast<double>(out_size);
    std::vector<int64_t> idx(static_cast<size_t>(out_size));
    double at = step * 0.5;
    for (int64_t i = 0; i < out_size; ++i, at += step)
        idx[static_cast<size_t>(i)] = std::clamp<int64_t>(static_cast<int64_t>(at), 0, in_size - 1);
    return idx;
}

}  // namespace detail

// PIL's Image.resize((width, height), filter) of an 8-bit image. Channels are resampled
// independently (PIL premultiplies alpha first; convert with to_rgb before resizing).
inline Image resize(const Image& in, int64_t width, int64_t height, Resample filter = Resample::bilinear) {
    check(!in.empty(), "resize: the image is empty");
    check(width > 0 && height > 0, "resize: the size must be positive, got ", width, " x ", height);
    if (width == in.width && height == in.height) return in;
    if (filter == Resample::nearest) {
        Image out(width, height, in.channels);
        const auto xs = detail::nearest_index(in.width, width), ys = detail::nearest_index(in.height, height);
        for (int64_t y = 0; y < height; ++y)
            for (int64_t x = 0; x < width; ++x)
                for (int64_t c = 0; c < in.channels; ++c)
                    out.at(y, x, c) = in.at(ys[static_cast<size_t>(y)], xs[static_cast<size_t>(x)], c);
        return out;
    }
    const detail::ResampleFilter f = detail::resample_filter(filter);
    const bool horizontal = width != in.width, vertical = height != in.height;
    if (!vertical) return detail::resample_x(in, 0, in.height, width, detail::axis_weights(in.width, width, f));
    const detail::AxisWeights ay = detail::axis_weights(in.height, height, f);
    if (!horizontal) return detail::resample_y(in, 0, height, ay);
    // Horizontal first, on the rows the vertical pass reads only (PIL's order and rounding).
    const int64_t first = ay.first.front();
    const int64_t last = ay.first.back() + ay.count.back();
    const Image tmp = detail::resample_x(in, first, last - first, width, detail::axis_weights(in.width, width, f));
    return detail::resample_y(tmp, first, height, ay);
}

// transformers' center_crop: the central height x width region; where the image is smaller,
// it is centred on black (zero) padding.
// One axis of a center crop from src to dst pixels: where the copy starts in the source and in
// the destination, and its length (transformers pads ceil(extra / 2) before when dst > src).
inline std::array<int64_t, 3> center_crop_axis(int64_t src, int64_t dst) {
    if (dst <= src) return std::array<int64_t, 3>{(src - dst) / 2, 0, dst};
    return std::array<int64_t, 3>{0, (dst - src + 1) / 2, src};
}

inline Image center_crop(const Image& in, int64_t width, int64_t height) {
    check(!in.empty(), "center_crop: the image is empty");
    check(width > 0 && height > 0, "center_crop: the size must be positive, got ", width, " x ", height);
    Image out(width, height, in.channels);
    const auto [sx, dx, nx] = center_crop_axis(in.width, width);
    const auto [sy, dy, ny] = center_crop_axis(in.height, height);
    const size_t C = static_cast<size_t>(in.channels);
    for (int64_t y = 0; y < ny; ++y)
        std::memcpy(&out.pixels[static_cast<size_t>(((dy + y) * width + dx)) * C],
                    &in.pixels[static_cast<size_t>(((sy + y) * in.width + sx)) * C], static_cast<size_t>(nx) * C);
    return out;
}

// What a Hugging Face image processor's preprocessor_config.json says to do, with transformers'
// ViTImageProcessor defaults.
struct ImageProcessorConfig {
    bool do_resize = true;
    int64_t height = 224, width = 224;  // size {"height", "width"}
    int64_t shortest_edge = 0;          // size {"shortest_edge"} (> 0): keep the aspect ratio
    Resample resample = Resample::bilinear;
    bool do_center_crop = false;
    int64_t crop_height = 224, crop_width = 224;
    bool do_rescale = true;
    double rescale_factor = 1.0 / 255.0;
    bool do_normalize = true;
    std::vector<double> image_mean{0.5, 0.5, 0.5}, image_std{0.5, 0.5, 0.5};

    // ViTImageProcessor's defaults for a model of the given input size.
    static ImageProcessorConfig vit_defaults(int64_t h, int64_t w) {
        ImageProcessorConfig c;
        c.height = c.crop_height = h;
        c.width = c.crop_width = w;
        return c;
    }

    // Keys missing or null keep the values of `defaults` (ViTImageProcessor's when not given);
    // unknown keys are ignored.
    static ImageProcessorConfig from_json(const nlohmann::json& j, const std::string& file) {
        return from_json(j, file, ImageProcessorConfig());
    }
    static ImageProcessorConfig from_json(const nlohmann::json& j, const std::string& file,
                                          const ImageProcessorConfig& defaults) {
        check(j.is_object(), file, ": expected a JSON object");
        ImageProcessorConfig c = defaults;
        auto has = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
        auto boolean = [&](const char* key, bool& out) {
            if (!has(key)) return;
            check(j[key].is_boolean(), file, ": '", key, "' should be true or false, got ", j[key].dump());
            out = j[key].get<bool>();
        };
        auto positive = [&](const nlohmann::json& v, const std::string& key) {
            check(v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= 1'000'000, file, ": '", key,
                  "' should be a positive integer, got ", v.dump());
            return v.get<int64_t>();
        };
        // size / crop_size: {"height", "width"}, {"shortest_edge"} (size only) or one integer.
        auto size_dict = [&](const char* key, int64_t& h, int64_t& w, int64_t* shortest) {
            if (!has(key)) return;
            const auto& s = j[key];
            if (s.is_number()) {
                h = w = positive(s, key);
                if (shortest) *shortest = 0;
                return;
            }
            check(s.is_object(), file, ": '", key, "' should be an object, got ", s.dump());
            const auto get = [&](const char* k) -> std::optional<int64_t> {
                if (!s.contains(k) || s[k].is_null()) return std::nullopt;
                return positive(s[k], std::string(key) + "." + k);
            };
            const auto hh = get("height"), ww = get("width"), se = get("shortest_edge");
            if (hh && ww) {
                h = *hh;
                w = *ww;
                if (shortest) *shortest = 0;
            } else if (se && shortest && !get("longest_edge")) {
                *shortest = *se;
            } else {
                fail(file, ": '", key, "' ", s.dump(), " is not supported (coeffnet reads {\"height\", \"width\"}",
                     shortest ? " or {\"shortest_edge\"})" : ")");
            }
        };
        auto channels = [&](const char* key, std::vector<double>& out) {
            if (!has(key)) return;
            const auto& v = j[key];
            if (v.is_number()) {
                out.assign(3, v.get<double>());
                return;
            }
            check(v.is_array() && !v.empty(), file, ": '", key, "' should be a number or a list of numbers, got ", v.dump());
            out.clear();
            for (const auto& x : v) {
                check(x.is_number(), file, ": '", key, "' should be a list of numbers, got ", v.dump());
                out.push_back(x.get<double>());
            }
        };
        boolean("do_resize", c.do_resize);
        size_dict("size", c.height, c.width, &c.shortest_edge);
        if (has("resample")) {
            const auto& r = j["resample"];
            check(r.is_number_integer() && r.get<int64_t>() >= 0 && r.get<int64_t>() <= 5, file,
                  ": 'resample' should be one of PIL's filter numbers 0 to 5, got ", r.dump());
            c.resample = static_cast<Resample>(r.get<int>());
        }
        boolean("do_center_crop", c.do_center_crop);
        size_dict("crop_size", c.crop_height, c.crop_width, nullptr);
        boolean("do_rescale", c.do_rescale);
        if (has("rescale_factor")) {
            check(j["rescale_factor"].is_number(), file, ": 'rescale_factor' should be a number, got ", j["rescale_factor"].dump());
            c.rescale_factor = j["rescale_factor"].get<double>();
        }
        boolean("do_normalize", c.do_normalize);
        channels("image_mean", c.image_mean);
        channels("image_std", c.image_std);
        c.validate(file);
        return c;
    }

    static ImageProcessorConfig from_file(const std::filesystem::path& path) {
        return from_file(path, ImageProcessorConfig());
    }
    static ImageProcessorConfig from_file(const std::filesystem::path& path, const ImageProcessorConfig& defaults) {
        std::ifstream in(path, std::ios::binary);
        check(static_cast<bool>(in), path.string(), ": cannot open");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            fail(path.string(), ": not valid JSON: ", e.what());
        }
        return from_json(j, path.string(), defaults);
    }

    void validate(const std::string& file = "ImageProcessorConfig") const {
        check(height > 0 && width > 0 && crop_height > 0 && crop_width > 0 && shortest_edge >= 0, file,
              ": sizes must be positive");
        check(std::isfinite(rescale_factor), file, ": rescale_factor must be finite");
        if (do_normalize) {
            check(image_mean.size() == 3 && image_std.size() == 3, file, ": image_mean and image_std need 3 values (RGB), got ",
                  image_mean.size(), " and ", image_std.size());
            for (size_t c = 0; c < 3; ++c)
                check(std::isfinite(image_mean[c]) && std::isfinite(image_std[c]) && image_std[c] != 0.0, file,
                      ": image_mean must be finite and image_std finite and nonzero");
        }
    }

    // The [height, width] of the tensor an input of in_h x in_w becomes.
    std::pair<int64_t, int64_t> output_size(int64_t in_h, int64_t in_w) const {
        auto [h, w] = resized_size(in_h, in_w);
        if (do_center_crop) return {crop_height, crop_width};
        return {h, w};
    }

    // The image's geometry steps on 8-bit pixels (resize, then center crop): what the model sees,
    // before rescaling and normalisation.
    Image geometry(const Image& img) const {
        Image out = img;
        if (do_resize) {
            const auto [h, w] = resized_size(img.height, img.width);
            check(h > 0 && w > 0, "preprocess_image: a ", img.width, " x ", img.height, " image resizes to ", w, " x ", h);
            out = resize(out, w, h, resample);
        }
        if (do_center_crop) out = center_crop(out, crop_width, crop_height);
        return out;
    }

    // Where the point (x, y) of an in_w x in_h input lands in the output (pixel units, same
    // convention: pixel i covers [i, i + 1)).
    std::pair<double, double> map_point(double x, double y, int64_t in_h, int64_t in_w) const {
        const auto [h, w] = resized_size(in_h, in_w);
        x *= static_cast<double>(w) / static_cast<double>(in_w);
        y *= static_cast<double>(h) / static_cast<double>(in_h);
        if (do_center_crop) {
            const auto cx = center_crop_axis(w, crop_width), cy = center_crop_axis(h, crop_height);
            x += static_cast<double>(cx[1] - cx[0]);
            y += static_cast<double>(cy[1] - cy[0]);
        }
        return {x, y};
    }

    // The size after the resize step (the input's own when do_resize is off); transformers'
    // get_resize_output_image_size for shortest_edge.
    std::pair<int64_t, int64_t> resized_size(int64_t in_h, int64_t in_w) const {
        if (!do_resize) return {in_h, in_w};
        if (shortest_edge <= 0) return {height, width};
        const int64_t s = std::min(in_h, in_w), l = std::max(in_h, in_w);
        const auto long_side = static_cast<int64_t>(static_cast<double>(shortest_edge) * static_cast<double>(l) /
                                                    static_cast<double>(s));
        return in_w <= in_h ? std::pair{long_side, shortest_edge} : std::pair{shortest_edge, long_side};
    }
};

// The pixel steps alone on an image that already went through c.geometry: [3, H, W]. Rescale and
// normalise compute in float32 as transformers' NumPy code does (x = float32(u8 * factor);
// (x - mean) / std), then convert to T.
template <class T>
Tensor<T> normalize_image(const Image& img, const ImageProcessorConfig& c) {
    check(img.channels == 3 && !img.empty(), "normalize_image: expected an RGB image (use to_rgb), got ", img.channels,
          " channels");
    c.validate();
    const int64_t H = img.height, W = img.width;
    Tensor<T> out = Tensor<T>::empty({3, H, W});
    T* o = out.data();
    for (int64_t ch = 0; ch < 3; ++ch) {
        const float mean = c.do_normalize ? static_cast<float>(c.image_mean[static_cast<size_t>(ch)]) : 0.0f;
        const float sd = c.do_normalize ? static_cast<float>(c.image_std[static_cast<size_t>(ch)]) : 1.0f;
        std::array<float, 256> lut{};  // every 8-bit value's result
        for (int v = 0; v < 256; ++v) {
            float x = c.do_rescale ? static_cast<float>(static_cast<double>(v) * c.rescale_factor) : static_cast<float>(v);
            if (c.do_normalize) x = (x - mean) / sd;
            lut[static_cast<size_t>(v)] = x;
        }
        for (int64_t i = 0; i < H * W; ++i)
            o[ch * H * W + i] = static_cast<T>(lut[img.pixels[static_cast<size_t>(i * 3 + ch)]]);
    }
    return out;
}

// An RGB image through the processor: geometry (resize, crop), then normalize_image: [3, H, W].
template <class T>
Tensor<T> preprocess_image(const Image& rgb, const ImageProcessorConfig& c) {
    check(rgb.channels == 3 && !rgb.empty(), "preprocess_image: expected an RGB image (use to_rgb), got ", rgb.channels,
          " channels");
    c.validate();
    return normalize_image<T>(c.geometry(rgb), c);
}

}  // namespace coeffnet::io
