// tools/vit_input.hpp: images as a ViT sees them: decoded, converted to RGB, resized and
// normalised as the model directory's preprocessor_config.json says (or with ViTImageProcessor's
// defaults at the model's image size), for `coeffnet vit predict` and `coeffnet vit filters`.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/io/hf.hpp>
#include <coeffnet/io/image.hpp>
#include <coeffnet/models/vit.hpp>

namespace coeffnet::tools {

struct Batch {
    Tensor<float> pixels;             // [B, C, H, W]
    std::vector<std::string> inputs;  // one name per item
};

// One image, prepared for the model.
struct PreparedImage {
    Tensor<float> pixels;           // [3, H, W], normalised: what the model takes
    io::Image seen;                 // the RGB image after resize and crop, before normalisation
    int64_t width = 0, height = 0;  // the image file's own size
    io::ImageProcessorConfig processor;  // what did it (its map_point takes file pixels to `seen`'s)
};

// The model directory's preprocessing, read once per model: its preprocessor_config.json, or
// ViTImageProcessor's defaults at the model's image size; `source` names which, for messages.
struct Preprocessing {
    io::ImageProcessorConfig config;
    std::string source;
};

inline Preprocessing image_processor(const std::filesystem::path& model_dir, const models::ViTConfig& cfg) {
    const int64_t H = cfg.image_height, W = cfg.image_width;
    check(cfg.num_channels == 3, model_dir.string(), ": the model takes ", cfg.num_channels,
          " channels; images are RGB (use --pixels for other inputs)");
    const std::filesystem::path pre = model_dir / "preprocessor_config.json";
    if (!std::filesystem::exists(pre)) return {io::ImageProcessorConfig::vit_defaults(H, W), "ViT defaults"};
    Preprocessing p{io::ImageProcessorConfig::from_file(pre, io::ImageProcessorConfig::vit_defaults(H, W)), pre.string()};
    p.config.validate();
    return p;
}

inline PreparedImage prepare_image(const std::string& file, const Preprocessing& pre, const models::ViTConfig& cfg) {
    const int64_t H = cfg.image_height, W = cfg.image_width;
    const io::ImageProcessorConfig& proc = pre.config;
    const io::Image rgb = io::to_rgb(io::read_image(file));
    const auto [h, w] = proc.output_size(rgb.height, rgb.width);
    check(h == H && w == W, file, ": the preprocessing (", pre.source, ") makes a ", rgb.width, " x ", rgb.height,
          " image ", w, " x ", h, ", but the model takes ", W, " x ", H);
    PreparedImage p;
    p.seen = proc.geometry(rgb);  // resized once: the picture shows what the model takes
    p.pixels = io::normalize_image<float>(p.seen, proc);
    p.width = rgb.width;
    p.height = rgb.height;
    p.processor = proc;
    return p;
}

inline Batch pixels_from_images(const std::vector<std::string>& files, const std::filesystem::path& model_dir,
                                const models::ViTConfig& cfg) {
    Batch b;
    b.pixels = Tensor<float>::empty({static_cast<int64_t>(files.size()), 3, cfg.image_height, cfg.image_width});
    const Preprocessing pre = image_processor(model_dir, cfg);
    for (size_t i = 0; i < files.size(); ++i) {
        const Tensor<float> x = prepare_image(files[i], pre, cfg).pixels;
        std::copy(x.data(), x.data() + x.numel(), b.pixels.data() + static_cast<int64_t>(i) * x.numel());
        b.inputs.push_back(files[i]);
    }
    return b;
}

}  // namespace coeffnet::tools
