// coeffnet/data/image_folder.hpp: image classification data sets from folders of PNG and JPEG
// files, one sub-folder per class (torchvision's ImageFolder layout):
//
//     dir/train/<class>/*.png|jpg|jpeg  and  dir/val/<class>/...    a given split, or
//     dir/<class>/...                                               split here, per class
//
//     auto [train, val] = data::load_image_folder("flowers", {.height = 32, .width = 32});
//
// Classes are the sub-folder names, sorted (byte order); with train/ and val/, the classes are
// train/'s, and val/ may hold a subset of them. Files are read in sorted name order; names
// starting with '.' and files that are not .png, .jpg or .jpeg (any case) are skipped. Each image
// is decoded (io::read_image), made RGB (io::to_rgb) and resized to height x width as PIL's
// Image.resize does (ViTImageProcessor's resize step; bilinear unless told otherwise).
//
// Without train/ and val/, each class's files are shuffled with Philox (options.seed) and
// round(val_fraction * count) of them go to val, but never the class's last image (val may then
// lack a class). Every failure throws coeffnet::Error naming the folder or file.
//
// This header includes io/image.hpp, hence stb_image: one translation unit of the program must
// define COEFFNET_IMAGE_IMPLEMENTATION before including it (see io/image.hpp).
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/rng.hpp"
#include "../io/image.hpp"
#include "dataset.hpp"

namespace coeffnet::data {

struct ImageFolderOptions {
    int64_t height = 32, width = 32;              // every image is resized to this
    io::Resample resample = io::Resample::bilinear;
    double val_fraction = 0.2;                    // without train/ and val/: the share of each class held out
    uint64_t seed = 0;                            // ... chosen with this seed
};

struct ImageFolderSplit {
    ImageSet train, val;
};

namespace detail {

inline bool is_image_name(const std::filesystem::path& p) {
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') return false;
    std::string ext = p.extension().string();
    for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

inline bool is_dir(const std::filesystem::path& p) {
    std::error_code ec;
    return std::filesystem::is_directory(p, ec);
}

// The class sub-folders of dir, sorted; each with its image files, sorted.
inline std::vector<std::pair<std::string, std::vector<std::filesystem::path>>> scan_class_folders(
    const std::filesystem::path& dir) {
    const std::string where = "load_image_folder: " + dir.string();
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) fail(where, ": no such folder");
    if (!is_dir(dir)) fail(where, ": not a folder");
    std::vector<std::pair<std::string, std::vector<std::filesystem::path>>> out;
    auto list = [&](const std::filesystem::path& d) {
        std::vector<std::filesystem::directory_entry> entries;
        std::error_code e;
        std::filesystem::directory_iterator it(d, e), end;
        if (e) fail("load_image_folder: ", d.string(), ": cannot list: ", e.message());
        for (; it != end; it.increment(e)) {
            if (e) fail("load_image_folder: ", d.string(), ": cannot list: ", e.message());
            entries.push_back(*it);
        }
        std::sort(entries.begin(), entries.end(),
                  [](const auto& a, const auto& b) { return a.path().filename().string() < b.path().filename().string(); });
        return entries;
    };
    for (const auto& e : list(dir)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.' || !is_dir(e.path())) continue;
        std::vector<std::filesystem::path> files;
        for (const auto& f : list(e.path())) {
            std::error_code fe;
            if (is_image_name(f.path()) && !std::filesystem::is_directory(f.path(), fe)) files.push_back(f.path());
        }
        if (files.empty())
            fail("load_image_folder: ", e.path().string(), ": class '", name, "' has no PNG or JPEG images (.png, .jpg, .jpeg)");
        out.emplace_back(name, std::move(files));
    }
    if (out.empty())
        fail(where, ": no class folders (expected one sub-folder of PNG or JPEG images per class, or train/ and val/ "
                    "folders laid out so)");
    return out;
}

// Decodes, converts and resizes files (in parallel) into an ImageSet.
inline ImageSet decode_files(const std::vector<std::pair<std::filesystem::path, int64_t>>& files,
                             const std::vector<std::string>& classes, const ImageFolderOptions& opt) {
    const auto n = static_cast<int64_t>(files.size());
    ImageSet set;
    set.classes = classes;
    set.images = Tensor<uint8_t>::empty({n, opt.height, opt.width, 3});
    set.labels = Tensor<int64_t>::empty({n});
    const auto bytes = static_cast<size_t>(opt.height * opt.width * 3);
    uint8_t* im = set.images.data();
    std::vector<std::string> errors(files.size());
    parallel_for(n, 100000, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            const auto& [path, label] = files[static_cast<size_t>(i)];
            try {
                const io::Image img = io::resize(io::to_rgb(io::read_image(path)), opt.width, opt.height, opt.resample);
                std::memcpy(im + static_cast<size_t>(i) * bytes, img.pixels.data(), bytes);
                set.labels.data()[i] = label;
            } catch (const std::exception& ex) {
                errors[static_cast<size_t>(i)] = ex.what();
            }
        }
    });
    for (const auto& e : errors)
        if (!e.empty()) fail("load_image_folder: ", e);
    return set;
}

}  // namespace detail

inline ImageFolderSplit load_image_folder(const std::filesystem::path& dir, const ImageFolderOptions& opt = {}) {
    check(opt.height > 0 && opt.width > 0 && opt.height <= 4096 && opt.width <= 4096,
          "load_image_folder: image size must be 1 to 4096 pixels a side, got ", opt.width, " x ", opt.height);
    check(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0, "load_image_folder: val_fraction must be in [0, 1), got ",
          opt.val_fraction);
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) fail("load_image_folder: ", dir.string(), ": no such folder");
    const bool has_train = detail::is_dir(dir / "train"), has_val = detail::is_dir(dir / "val");
    using FileList = std::vector<std::pair<std::filesystem::path, int64_t>>;
    ImageFolderSplit out;
    if (has_train || has_val) {
        check(has_train && has_val, "load_image_folder: ", dir.string(), ": has ", has_train ? "train/" : "val/",
              " but no ", has_train ? "val/" : "train/", " folder");
        const auto train = detail::scan_class_folders(dir / "train");
        const auto val = detail::scan_class_folders(dir / "val");
        std::vector<std::string> classes;
        FileList tf, vf;
        for (size_t c = 0; c < train.size(); ++c) {
            classes.push_back(train[c].first);
            for (const auto& f : train[c].second) tf.emplace_back(f, static_cast<int64_t>(c));
        }
        for (const auto& [name, files] : val) {
            const auto it = std::find(classes.begin(), classes.end(), name);
            check(it != classes.end(), "load_image_folder: ", (dir / "val" / name).string(), ": class '", name,
                  "' is not among train/'s classes (", detail::classes_str(classes), ")");
            for (const auto& f : files) vf.emplace_back(f, static_cast<int64_t>(it - classes.begin()));
        }
        out.train = detail::decode_files(tf, classes, opt);
        out.val = detail::decode_files(vf, classes, opt);
        return out;
    }
    const auto all = detail::scan_class_folders(dir);
    std::vector<std::string> classes;
    FileList tf, vf;
    for (size_t c = 0; c < all.size(); ++c) {
        classes.push_back(all[c].first);
        const auto& files = all[c].second;
        const auto n = static_cast<int64_t>(files.size());
        // A permutation of the class's files: Fisher-Yates on Philox (seed, class c's stream).
        std::vector<int64_t> p(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
        for (int64_t i = n - 1; i > 0; --i) {
            const uint32_t w = philox4x32_10({static_cast<uint32_t>(i), static_cast<uint32_t>(c), 0x646174u, 0u},
                                             {static_cast<uint32_t>(opt.seed), static_cast<uint32_t>(opt.seed >> 32)})[0];
            const auto j = static_cast<int64_t>((uint64_t{w} * static_cast<uint64_t>(i + 1)) >> 32);
            std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
        }
        const auto n_val = std::min<int64_t>(n - 1, std::llround(opt.val_fraction * static_cast<double>(n)));
        std::vector<bool> is_val(static_cast<size_t>(n), false);
        for (int64_t k = 0; k < n_val; ++k) is_val[static_cast<size_t>(p[static_cast<size_t>(k)])] = true;
        for (int64_t i = 0; i < n; ++i)
            (is_val[static_cast<size_t>(i)] ? vf : tf).emplace_back(files[static_cast<size_t>(i)], static_cast<int64_t>(c));
    }
    out.train = detail::decode_files(tf, classes, opt);
    out.val = detail::decode_files(vf, classes, opt);
    return out;
}

}  // namespace coeffnet::data
