// coeffnet/data/dataset.hpp: labelled image sets for training and evaluation.
//
//     data::ImageSet set = data::load_image_set("train.safetensors");   // or data::generate(...)
//     Tensor<float> x = data::to_pixels(set.images, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});  // [N, 3, H, W]
//     data::BatchOrder order(set.size(), 32, Generator(seed));
//     for (int64_t step = 0; step < steps; ++step) {
//         auto batch = data::gather(x, set.labels, order.next());   // [B, 3, H, W], [B]
//         ...
//     }
//
// An ImageSet is uint8 images [N, H, W, 3] (rows top to bottom, RGB interleaved, as decoded
// images are) with int64 labels [N] in [0, classes.size()). On disk it is a safetensors file
// with tensors "images" (U8 [N, H, W, 3]) and "labels" (I64 [N]) and, in "__metadata__",
// "classes": the class names as a JSON list of strings (without it, classes are named "0",
// "1", ... up to the largest label).
//
// to_pixels is transformers' ViTImageProcessor rescale-and-normalise step on images already at
// the model's size: (float32(x * rescale) - mean) / std, channels first, in float32 as NumPy
// computes it (io::preprocess_image's numbers exactly).
//
// BatchOrder shuffles: epoch e visits the indices in a permutation that is a pure function of
// the generator it was given (seed, offset) and e, so a run resumes bit-exactly from
// (seed, offset, step). It copies the generator and never advances the caller's.
//
// write_image_folder lays a set out as one folder per class of PNG files (io/png.hpp's
// write_png), which data/image_folder.hpp's load_image_folder reads back.
//
// This header needs no stb_image; data/image_folder.hpp (decoding image folders) does.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/rng.hpp"
#include "../io/png.hpp"
#include "../io/safetensors.hpp"
#include "../tensor/tensor.hpp"

namespace coeffnet::data {

// Labelled images: images uint8 [N, H, W, 3], labels int64 [N] in [0, classes.size()).
struct ImageSet {
    Tensor<uint8_t> images;
    Tensor<int64_t> labels;
    std::vector<std::string> classes;

    int64_t size() const { return labels.defined() ? labels.numel() : 0; }
    int64_t num_classes() const { return static_cast<int64_t>(classes.size()); }
    int64_t height() const { return images.defined() && images.dim() == 4 ? images.size(1) : 0; }
    int64_t width() const { return images.defined() && images.dim() == 4 ? images.size(2) : 0; }
};

namespace detail {

inline std::string classes_str(const std::vector<std::string>& classes) {
    std::string s;
    for (size_t i = 0; i < classes.size() && i < 8; ++i) s += (i ? ", '" : "'") + classes[i] + "'";
    if (classes.size() > 8) s += ", ... (" + std::to_string(classes.size()) + " in all)";
    return s;
}

// Class names as folder names: not empty, not "." or "..", no '/' and no NUL.
inline void check_class_name(const std::string& name, const std::string& where) {
    check(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
              name.find('\0') == std::string::npos,
          where, ": class name '", name, "' cannot be a folder name");
}

}  // namespace detail

// Checks the rules of an ImageSet; `where` names it in messages.
inline void validate(const ImageSet& set, const std::string& where = "ImageSet") {
    check(set.images.defined() && set.labels.defined(), where, ": images or labels are undefined");
    check(set.images.dim() == 4 && set.images.size(3) == 3, where, ": images have shape ",
          shape_str(set.images.shape()), "; expected [N, H, W, 3] (RGB)");
    check(set.images.size(1) > 0 && set.images.size(2) > 0, where, ": images have shape ",
          shape_str(set.images.shape()), "; height and width must be positive");
    check(set.labels.dim() == 1, where, ": labels have shape ", shape_str(set.labels.shape()), "; expected [N]");
    check(set.labels.size(0) == set.images.size(0), where, ": ", set.images.size(0), " images but ",
          set.labels.size(0), " labels");
    check(!set.classes.empty(), where, ": no class names");
    std::set<std::string, std::less<>> seen;
    for (const auto& c : set.classes) check(seen.insert(c).second, where, ": class name '", c, "' appears twice");
    const int64_t K = set.num_classes();
    const Tensor<int64_t> lab = set.labels.contiguous();
    const int64_t* l = lab.data();
    for (int64_t i = 0; i < lab.numel(); ++i)
        check(l[i] >= 0 && l[i] < K, where, ": label ", l[i], " of image ", i, " is out of range [0, ", K,
              ") for classes ", detail::classes_str(set.classes));
}

// Reads a data set written by save_image_set (or any safetensors file with "images" U8
// [N, H, W, 3] and "labels" I64 [N]). The images stay in the file's memory mapping.
inline ImageSet load_image_set(const std::filesystem::path& path) {
    const io::SafeTensors file = io::SafeTensors::open(path);
    const std::string name = path.string();
    const char* layout = " (a data set holds 'images' U8 [N, H, W, 3] and 'labels' I64 [N])";
    for (const char* t : {"images", "labels"})
        check(file.contains(t), name, ": no '", t, "' tensor", layout);
    const io::TensorInfo& im = file.info("images");
    const io::TensorInfo& lb = file.info("labels");
    check(im.dtype == io::DType::U8, name, ": 'images' is ", io::dtype_name(im.dtype), "; expected U8", layout);
    check(lb.dtype == io::DType::I64, name, ": 'labels' is ", io::dtype_name(lb.dtype), "; expected I64", layout);
    check(im.shape.size() == 4 && im.shape[3] == 3, name, ": 'images' has shape ", shape_str(im.shape),
          "; expected [N, H, W, 3]");
    check(im.shape[1] > 0 && im.shape[2] > 0, name, ": 'images' has shape ", shape_str(im.shape),
          "; height and width must be positive");
    check(lb.shape.size() == 1, name, ": 'labels' has shape ", shape_str(lb.shape), "; expected [N]");
    check(lb.shape[0] == im.shape[0], name, ": ", im.shape[0], " images but ", lb.shape[0], " labels");

    ImageSet set;
    set.images = file.get<uint8_t>("images");
    set.labels = file.get<int64_t>("labels");
    const auto& meta = file.metadata();
    if (const auto it = meta.find("classes"); it != meta.end()) {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(it->second);
        } catch (const nlohmann::json::exception&) {
            fail(name, ": __metadata__ 'classes' is not valid JSON: ", it->second);
        }
        check(j.is_array() && !j.empty(), name, ": __metadata__ 'classes' should be a non-empty JSON list of strings, got ",
              it->second);
        for (const auto& c : j) {
            check(c.is_string(), name, ": __metadata__ 'classes' should be a JSON list of strings, got ", it->second);
            set.classes.push_back(c.get<std::string>());
        }
    } else {
        int64_t top = -1;
        const int64_t* l = set.labels.data();
        for (int64_t i = 0; i < set.labels.numel(); ++i) {
            check(l[i] >= 0, name, ": label ", l[i], " of image ", i, " is negative");
            top = std::max(top, l[i]);
        }
        for (int64_t c = 0; c <= std::max<int64_t>(top, 0); ++c) set.classes.push_back(std::to_string(c));
    }
    validate(set, name);
    return set;
}

// Writes a data set as a safetensors file (atomically: a temporary file renamed over `path`).
inline void save_image_set(const std::filesystem::path& path, const ImageSet& set) {
    validate(set, path.string());
    io::SafeTensorsWriter w;
    w.add("images", set.images);
    w.add("labels", set.labels);
    w.set_metadata({{"classes", nlohmann::json(set.classes).dump()}});
    w.write(path);
}

// The images at `indices`, in that order (any index may repeat).
inline ImageSet subset(const ImageSet& set, std::span<const int64_t> indices) {
    validate(set, "subset");
    const int64_t N = set.size(), H = set.height(), W = set.width();
    const Tensor<uint8_t> im = set.images.contiguous();
    const Tensor<int64_t> lb = set.labels.contiguous();
    ImageSet out;
    out.classes = set.classes;
    const auto B = static_cast<int64_t>(indices.size());
    out.images = Tensor<uint8_t>::empty({B, H, W, 3});
    out.labels = Tensor<int64_t>::empty({B});
    const auto row = static_cast<size_t>(H * W * 3);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t i = indices[static_cast<size_t>(b)];
        check(i >= 0 && i < N, "subset: index ", i, " is out of range for ", N, " images");
        std::memcpy(out.images.data() + static_cast<size_t>(b) * row, im.data() + static_cast<size_t>(i) * row, row);
        out.labels.data()[b] = lb.data()[i];
    }
    return out;
}

// ---- model inputs ----------------------------------------------------------------------------

// images uint8 [N, H, W, 3] -> [N, 3, H, W]: (float32(x * rescale) - mean[c]) / std[c], computed
// in float32 as transformers' ViTImageProcessor does (mean and std rounded to float32 first).
template <class T = float>
Tensor<T> to_pixels(const Tensor<uint8_t>& images, const std::array<double, 3>& mean, const std::array<double, 3>& std,
                    double rescale = 1.0 / 255.0) {
    check(images.defined() && images.dim() == 4 && images.size(3) == 3, "to_pixels: images have shape ",
          images.defined() ? shape_str(images.shape()) : std::string("(undefined)"), "; expected [N, H, W, 3]");
    check(std::isfinite(rescale), "to_pixels: rescale must be finite");
    std::array<std::array<T, 256>, 3> lut{};
    for (size_t c = 0; c < 3; ++c) {
        check(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] != 0.0,
              "to_pixels: mean must be finite and std finite and nonzero");
        const auto m = static_cast<float>(mean[c]), s = static_cast<float>(std[c]);
        for (int v = 0; v < 256; ++v) {
            const auto x = static_cast<float>(static_cast<double>(v) * rescale);
            lut[c][static_cast<size_t>(v)] = static_cast<T>((x - m) / s);
        }
    }
    const Tensor<uint8_t> im = images.contiguous();
    const int64_t N = im.size(0), H = im.size(1), W = im.size(2), HW = H * W;
    Tensor<T> out = Tensor<T>::empty({N, 3, H, W});
    const uint8_t* src = im.data();
    T* dst = out.data();
    parallel_for(N, HW * 3, [&](int64_t b, int64_t e) {
        for (int64_t n = b; n < e; ++n) {
            const uint8_t* p = src + n * HW * 3;
            T* o = dst + n * 3 * HW;
            for (int64_t i = 0; i < HW; ++i)
                for (size_t c = 0; c < 3; ++c) o[static_cast<int64_t>(c) * HW + i] = lut[c][p[i * 3 + static_cast<int64_t>(c)]];
        }
    });
    return out;
}

// A batch: rows of `pixels` (any [N, ...] tensor) and their labels.
template <class T>
struct Batch {
    Tensor<T> pixels;
    Tensor<int64_t> labels;
};

// The rows `indices` of pixels [N, ...] and labels [N], in that order.
template <class T>
Batch<T> gather(const Tensor<T>& pixels, const Tensor<int64_t>& labels, std::span<const int64_t> indices) {
    check(pixels.defined() && pixels.dim() >= 1, "gather: pixels must be a tensor of rank 1 or more");
    check(labels.defined() && labels.dim() == 1 && labels.size(0) == pixels.size(0), "gather: labels have shape ",
          labels.defined() ? shape_str(labels.shape()) : std::string("(undefined)"), " for pixels ",
          shape_str(pixels.shape()), "; expected [", pixels.size(0), "]");
    const Tensor<T> px = pixels.contiguous();
    const Tensor<int64_t> lb = labels.contiguous();
    const int64_t N = px.size(0), row = N ? px.numel() / N : 0;
    Shape shape = px.shape();
    shape[0] = static_cast<int64_t>(indices.size());
    Batch<T> out{Tensor<T>::empty(shape), Tensor<int64_t>::empty({shape[0]})};
    for (size_t b = 0; b < indices.size(); ++b) {
        const int64_t i = indices[b];
        check(i >= 0 && i < N, "gather: index ", i, " is out of range for ", N, " rows");
        std::memcpy(static_cast<void*>(out.pixels.data() + static_cast<int64_t>(b) * row),
                    static_cast<const void*>(px.data() + i * row), static_cast<size_t>(row) * sizeof(T));
        out.labels.data()[b] = lb.data()[i];
    }
    return out;
}

// Shuffled mini-batches of [0, n). Epoch e's order is a permutation drawn from Philox blocks
// [offset + e * ceil(n / 4), offset + (e + 1) * ceil(n / 4)) of the given generator's seed
// (a Fisher-Yates shuffle, word i of the draw choosing the partner of position i), so
// batch(step) is a pure function of (seed, offset, step): save those three to resume.
// The last batch of an epoch is smaller when batch_size does not divide n, unless drop_last.
class BatchOrder {
public:
    BatchOrder(int64_t n, int64_t batch_size, const Generator& gen, bool drop_last = false)
        : n_(n), batch_(batch_size), drop_last_(drop_last), seed_(gen.seed), offset_(gen.offset) {
        check(n > 0, "BatchOrder: the data set is empty");
        check(batch_size > 0, "BatchOrder: batch size must be positive, got ", batch_size);
        check(n <= int64_t{1} << 32, "BatchOrder: ", n, " items is more than 2^32");
        check(!drop_last || batch_size <= n, "BatchOrder: batch size ", batch_size, " is more than the ", n,
              " items and drop_last is on: no batch at all");
    }

    int64_t size() const { return n_; }
    int64_t batch_size() const { return batch_; }
    int64_t batches_per_epoch() const { return drop_last_ ? n_ / batch_ : (n_ + batch_ - 1) / batch_; }

    // Epoch e's order of [0, n).
    std::vector<int64_t> permutation(int64_t epoch) const {
        check(epoch >= 0, "BatchOrder: negative epoch ", epoch);
        std::vector<int64_t> p(static_cast<size_t>(n_));
        std::iota(p.begin(), p.end(), int64_t{0});
        const uint64_t blocks = (static_cast<uint64_t>(n_) + 3) / 4;
        const uint64_t first = offset_ + static_cast<uint64_t>(epoch) * blocks;
        for_each_draw(seed_, first, n_, [&](int64_t i, uint32_t w) {
            if (i == 0) return;  // the draw is walked upwards: position i swaps with one of [0, i]
            const auto j = static_cast<int64_t>((uint64_t{w} * static_cast<uint64_t>(i + 1)) >> 32);
            std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
        });
        return p;
    }

    // The indices of batch `step` (counted from the first batch of epoch 0).
    std::vector<int64_t> batch(int64_t step) const {
        check(step >= 0, "BatchOrder: negative step ", step);
        const int64_t per = batches_per_epoch(), epoch = step / per, k = step % per;
        if (epoch != cached_epoch_) {
            cache_ = permutation(epoch);
            cached_epoch_ = epoch;
        }
        const int64_t b = k * batch_, e = std::min(n_, b + batch_);
        return {cache_.begin() + b, cache_.begin() + e};
    }

    // The batch at the current step, then steps on.
    std::vector<int64_t> next() { return batch(step_++); }
    int64_t step() const { return step_; }
    void seek(int64_t step) {
        check(step >= 0, "BatchOrder: negative step ", step);
        step_ = step;
    }
    int64_t epoch() const { return step_ / batches_per_epoch(); }

private:
    int64_t n_, batch_;
    bool drop_last_;
    uint64_t seed_, offset_;
    int64_t step_ = 0;
    mutable int64_t cached_epoch_ = -1;
    mutable std::vector<int64_t> cache_;
};

// Lays a set out as dir/<class>/<index, 6 digits>.png, the layout load_image_folder reads: a
// folder for each class that has images (load_image_folder refuses empty class folders, so a
// class without images does not come back).
inline void write_image_folder(const std::filesystem::path& dir, const ImageSet& set) {
    validate(set, "write_image_folder");
    const Tensor<uint8_t> im = set.images.contiguous();
    const Tensor<int64_t> lb = set.labels.contiguous();
    std::vector<bool> used(set.classes.size(), false);
    for (int64_t i = 0; i < set.size(); ++i) used[static_cast<size_t>(lb.data()[i])] = true;
    for (size_t c = 0; c < set.classes.size(); ++c) {
        detail::check_class_name(set.classes[c], "write_image_folder");
        if (!used[c]) continue;
        std::error_code ec;
        std::filesystem::create_directories(dir / set.classes[c], ec);
        check(!ec, (dir / set.classes[c]).string(), ": cannot create: ", ec.message());
    }
    const int64_t H = set.height(), W = set.width();
    const auto n = static_cast<size_t>(H * W * 3);
    for (int64_t i = 0; i < set.size(); ++i) {
        std::string file = std::to_string(i);
        file = std::string(file.size() < 6 ? 6 - file.size() : 0, '0') + file + ".png";
        io::write_png(dir / set.classes[static_cast<size_t>(lb.data()[i])] / file,
                  {im.data() + static_cast<size_t>(i) * n, n}, W, H, 3);
    }
}

}  // namespace coeffnet::data
