// tools/tune_data.cpp: the tasks of `coeffnet tune` (see tune.hpp): procedural few-shot tasks or
// the user's images, preprocessed as the base model expects.
#include <array>
#include <cstdlib>
#include <span>

#include <coeffnet/data/dataset.hpp>
#include <coeffnet/data/image_folder.hpp>
#include <coeffnet/data/procedural.hpp>

#include "tune.hpp"

namespace coeffnet::tune {

fs::path default_model_dir() {
    if (const char* env = std::getenv("COEFFNET_MODELS_DIR")) return fs::path(env) / "vit-shapes";
#ifdef COEFFNET_MODELS_DIR
    return fs::path(COEFFNET_MODELS_DIR) / "vit-shapes";
#else
    return "models/vit-shapes";
#endif
}

io::ImageProcessorConfig preprocessing(const fs::path& model_dir, const models::ViTConfig& cfg) {
    const fs::path p = model_dir / "preprocessor_config.json";
    const auto defaults = io::ImageProcessorConfig::vit_defaults(cfg.image_height, cfg.image_width);
    return fs::exists(p) ? io::ImageProcessorConfig::from_json(io::read_json(p), p.string(), defaults) : defaults;
}

namespace {

Tensor<float> pixels_of(const data::ImageSet& set, const io::ImageProcessorConfig& pre, const models::ViTConfig& cfg,
                        const std::string& what) {
    check(set.images.size(1) == cfg.image_height && set.images.size(2) == cfg.image_width, what, ": images are ",
          set.images.size(1), " x ", set.images.size(2), ", the model takes ", cfg.image_height, " x ", cfg.image_width);
    std::array<double, 3> mean{0, 0, 0}, stdev{1, 1, 1};
    for (size_t c = 0; c < 3; ++c) {
        if (pre.do_normalize) {
            mean[c] = pre.image_mean.at(c);
            stdev[c] = pre.image_std.at(c);
        }
    }
    return data::to_pixels(set.images, mean, stdev, pre.do_rescale ? pre.rescale_factor : 1.0);
}

// The procedural tasks: train_per_class x classes training images (data seed 1, indices from
// 0), n_test test images (the same stream, after them), then kValImages validation images,
// evaluated after every epoch (the test set only at the end).
constexpr int64_t kValImages = 400;

}  // namespace

TaskData procedural_task(const std::string& name, int64_t per_class, int64_t n_test, const io::ImageProcessorConfig& pre,
                         const models::ViTConfig& cfg) {
    const data::TaskSpec& spec = data::task(name);
    check(!spec.pretraining, "tune: '", name, "' is the pretraining task; pick a downstream task");
    const int64_t n_train = per_class * static_cast<int64_t>(spec.classes.size());
    const data::ImageSet train = data::generate(name, 1, n_train, cfg.image_height);
    const data::ImageSet test = data::generate(name, 1, n_test, cfg.image_height, n_train);
    const data::ImageSet val = data::generate(name, 1, kValImages, cfg.image_height, n_train + n_test);
    return {name,         spec.classes, pixels_of(train, pre, cfg, name), pixels_of(test, pre, cfg, name),
            pixels_of(val, pre, cfg, name), train.labels, test.labels, val.labels};
}

// User data: an image folder (train/ + val/, or one folder split 80/20) or a safetensors data set
// (split 80/20 with the seed). The held-out part is the test set.
TaskData user_task(const fs::path& path, const io::ImageProcessorConfig& pre, const models::ViTConfig& cfg) {
    data::ImageSet train, test;
    if (fs::is_directory(path)) {
        data::ImageFolderOptions o;
        o.height = cfg.image_height;
        o.width = cfg.image_width;
        auto split = data::load_image_folder(path, o);
        train = std::move(split.train);
        test = std::move(split.val);
    } else {
        check(fs::exists(path), "tune: --data ", path.string(), ": no such file or folder");
        const data::ImageSet all = data::load_image_set(path);
        const int64_t n = all.labels.numel();
        check(n >= 2, "tune: --data ", path.string(), ": needs at least 2 images");
        const auto perm = data::BatchOrder(n, n, Generator(7)).permutation(0);
        const int64_t n_test = std::max<int64_t>(1, n / 5);
        train = data::subset(all, std::span(perm).subspan(static_cast<size_t>(n_test)));
        test = data::subset(all, std::span(perm).first(static_cast<size_t>(n_test)));
    }
    check(train.labels.numel() > 0 && test.labels.numel() > 0, "tune: --data ", path.string(),
          ": both the training and the test part need images");
    // The held-out part is both the per-epoch validation set and the final test set.
    const Tensor<float> test_px = pixels_of(test, pre, cfg, path.string());
    return {path.filename().string(), train.classes, pixels_of(train, pre, cfg, path.string()), test_px, test_px,
            train.labels, test.labels, test.labels};
}

}  // namespace coeffnet::tune
