// tools/filters.cpp: `coeffnet vit filters` (see filters.hpp): the model side. It runs the ViT
// with its maps, picks the layer and the query, and hands a FilterView to the renderer.
#include "filters.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/io/safetensors.hpp>
#include <coeffnet/models/vit.hpp>

#include "filters_render.hpp"
#include "vit_input.hpp"

namespace coeffnet::tools {
namespace {

namespace fs = std::filesystem;

// "X,Y" in the image file's pixels -> the query token of the patch under it.
int64_t token_at(const std::string& xy, const PreparedImage& img, const models::ViTConfig& cfg) {
    double x = 0, y = 0;
    char extra = 0;
    if (std::sscanf(xy.c_str(), "%lf,%lf%c", &x, &y, &extra) != 2 || !std::isfinite(x) || !std::isfinite(y))
        throw cli::UsageError("--query-xy: expected X,Y (pixels of the image), got '" + xy + "'");
    check(x >= 0 && y >= 0 && x < static_cast<double>(img.width) && y < static_cast<double>(img.height), "--query-xy ", xy,
          ": the point is outside the image (", img.width, " x ", img.height, " pixels; x in [0, ", img.width,
          "), y in [0, ", img.height, "))");
    const auto [mx, my] = img.processor.map_point(x, y, img.height, img.width);
    const int64_t gw = cfg.image_width / cfg.patch_width, gh = cfg.image_height / cfg.patch_height;
    const auto col = static_cast<int64_t>(std::floor(mx / static_cast<double>(cfg.patch_width)));
    const auto row = static_cast<int64_t>(std::floor(my / static_cast<double>(cfg.patch_height)));
    check(col >= 0 && row >= 0 && col < gw && row < gh, "--query-xy ", xy, ": the point lands at (", mx, ", ", my,
          ") of the model's ", cfg.image_width, " x ", cfg.image_height, " input, outside its ", gh, " x ", gw,
          " patches of ", cfg.patch_width, " x ", cfg.patch_height, " pixels (they cover ", gw * cfg.patch_width, " x ",
          gh * cfg.patch_height, ")");
    return 1 + row * gw + col;
}

int cmd_vit_filters(const cli::Args& a) {
    const fs::path dir = a.str("model");
    auto model = models::load_vit_for_image_classification<float>(dir);
    std::string adapter;
    if (a.has("adapter")) {
        adapter = a.str("adapter");
        models::apply_adapter(*model, adapter);
    }
    model->eval();
    const models::ViTConfig& cfg = model->config();
    const int64_t layers = cfg.num_hidden_layers, heads = cfg.num_attention_heads;
    const int64_t gw = cfg.image_width / cfg.patch_width, gh = cfg.image_height / cfg.patch_height, tokens = 1 + gw * gh;

    const int64_t layer = a.has("layer") ? a.integer("layer") : layers - 1;
    check(layer >= 0 && layer < layers, "--layer ", layer, " is out of range: ", dir.string(), " has ", layers,
          " layers (0 to ", layers - 1, ")");
    const PreparedImage img = prepare_image(a.str("image"), image_processor(dir, cfg), cfg);
    int64_t query = 0;
    if (a.has("query")) {
        query = a.integer("query");
        check(query >= 0 && query < tokens, "--query ", query, " is out of range: layer ", layer, " has ", tokens,
              " tokens (0 is CLS, 1 to ", tokens - 1, " the ", gh, " x ", gw, " patches row by row)");
    } else if (a.has("query-xy")) {
        query = token_at(a.str("query-xy"), img, cfg);
    }

    NoGrad no_grad;
    const auto out = model->vit.forward(img.pixels.reshape({1, 3, cfg.image_height, cfg.image_width}), /*return_maps=*/true);
    FilterView v;
    v.model = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
    v.adapter = adapter;
    v.layer = layer;
    v.layers = layers;
    v.heads = heads;
    v.grid_h = gh;
    v.grid_w = gw;
    v.query = query;
    v.image = img.seen;
    v.maps = out.maps[static_cast<size_t>(layer)].contiguous().to_vector();
    const Tensor<float>& alpha = model->vit.encoder.layer[static_cast<size_t>(layer)]->attention.attention.alpha;
    if (alpha.defined()) {  // alpha' by the op's own rule (residual or not); evaluation: no dropout
        AttentionOptions o;
        o.coeff = model->vit.coeff;
        v.alpha_prime = alpha_prime(alpha, o).contiguous().to_vector();
    }

    write_filters_png(v, a.str("out"));
    if (a.has("html")) io::write_file_atomic(a.str("html"), filters_html(v));
    if (a.has("dump")) {
        io::SafeTensorsWriter w;
        for (int64_t l = 0; l < layers; ++l) {
            w.add("layer." + std::to_string(l) + ".maps", out.maps[static_cast<size_t>(l)]);
            w.add("layer." + std::to_string(l) + ".mixed_maps", out.mixed_maps[static_cast<size_t>(l)]);
        }
        w.set_metadata({{"model", dir.string()}, {"adapter", adapter}, {"image", a.str("image")}, {"query", std::to_string(query)}});
        w.write(a.str("dump"));
    }
    if (a.flag("json")) {
        std::cout << filters_json(v).dump(2) << "\n";
        return cli::kExitOk;
    }
    std::cout << "layer " << layer << " of " << layers << ", query token " << query
              << (query == 0 ? " (CLS)" : "") << ", " << heads << " heads" << (v.alpha_prime.empty() ? "" : ", mixed by alpha'")
              << "\nwrote " << a.str("out");
    if (a.has("html")) std::cout << ", " << a.str("html");
    if (a.has("dump")) std::cout << ", " << a.str("dump");
    std::cout << "\n";
    return cli::kExitOk;
}

}  // namespace

void declare_filters(cli::Command& vit) {
    vit.add("filters", "draw one layer's attention maps as graph filters over the image, mixed by an adapter's alpha")
        .description(
            "Runs the ViTForImageClassification in DIR on one image and draws, for one layer (default: the last) and "
            "one query token (default: CLS; --query-xy picks the patch under a point of the image), each head's "
            "attention map as a filter over the image patches (F_h). With an adapter that carries alpha (coeffnet tune "
            "writes them), also the mixed filters Fhat_h = sum_i alpha'[h, i] F_i, which may be negative, and "
            "alpha' = I + alpha.")
        .option("model", "DIR", "the model directory").required()
        .option("image", "FILE", "a PNG or JPEG image").required()
        .option("adapter", "DIR", "an adapter directory (adapter_model.safetensors), e.g. one with alpha")
        .option("layer", "L", "the layer to draw, 0-based (default: the last)").integer(0)
        .option("query", "TOKEN", "the query token: 0 is CLS, 1 + row * columns + column a patch").integer(0)
        .option("query-xy", "X,Y", "the query is the patch under this point of the image file (pixels)")
        .one_of({"query", "query-xy"}, false)
        .option("out", "FILE", "the PNG to write").required()
        .flag("json", "print the numbers drawn as JSON")
        .option("dump", "FILE", "also write every layer's maps and mixed maps (safetensors, [1, H, N, N] float32)")
        .option("html", "FILE", "also write a self-contained page: click a patch to pick the query, sliders change alpha'")
        .example("coeffnet vit filters --model models/vit-shapes --image shape.png --out filters.png")
        .example("coeffnet vit filters --model models/vit-shapes --adapter models/vit-shapes-count-alpha --image shape.png "
                 "--query-xy 12,20 --out filters.png --html filters.html")
        .run(cmd_vit_filters);
}

}  // namespace coeffnet::tools
