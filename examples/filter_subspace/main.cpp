// filter_subspace: attention heads as graph filters, and alpha building new filters from them.
//
//   ./build/examples/filter_subspace                 # prints, and writes two pictures into the current directory
//   ./build/examples/filter_subspace --out DIR --image 2 --query 6
//
// The idea (docs/graph-filter-view.md). In one attention layer, head h computes
//
//     P_h = softmax(Q_h K_h^T / sqrt(d))        one row per query token, rows >= 0 and summing to 1
//
// Row q of P_h, F_h = P_h[q, :], is a graph filter: the token q's new value is sum_t F_h[t] V_h[t],
// a weighted average of the values. The H heads' filters span a "filter subspace". Coeff-Tuning
// learns alpha (H x H) per layer and gives head h the filter
//
//     Fhat_h = sum_i alpha'[h, i] F_i,           alpha' = I + alpha
//
// a combination of all heads' filters. alpha is unconstrained, so Fhat_h can weigh a token
// negatively and its weights need not sum to 1: the output can leave the convex hull of the
// values, which no softmax row can.
//
// This program shows it on models/vit-shapes (a ViT that coeffnet pretrained on the "shapes" task)
// and models/vit-shapes-count-alpha (alpha tuned by `coeffnet tune` to count the objects): it
// prints where each head of the last layer looks from one query token, applies the tuned alpha,
// prints the mixed filters and checks Fhat = alpha' F by hand, then draws both (the pictures of
// `coeffnet vit filters`, tools/filters_render.hpp).
#define COEFFNET_IMAGE_IMPLEMENTATION  // stb_image's implementation lives in this program
#include <coeffnet/io/image.hpp>

#include <charconv>
#include <cmath>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/data/procedural.hpp>
#include <coeffnet/io/png.hpp>
#include <coeffnet/models/vit.hpp>

#include "filters_render.hpp"  // tools/: the pictures

using namespace coeffnet;
namespace fs = std::filesystem;

// One head's filter over the 4 x 4 patches, as percentages, with its weight on the CLS token.
void print_filter(const char* name, int64_t h, const std::vector<float>& row, int64_t grid) {
    std::printf("  %s_%lld   CLS %6.1f%%\n", name, static_cast<long long>(h), 100 * row[0]);
    for (int64_t r = 0; r < grid; ++r) {
        std::printf("        ");
        for (int64_t c = 0; c < grid; ++c) std::printf(" %6.1f", 100 * row[static_cast<size_t>(1 + r * grid + c)]);
        std::printf("\n");
    }
}

int run(int argc, char** argv) {
    fs::path out = ".";
    int64_t which = 2, query = 0;  // image 2 of the generated count images; query 0 = CLS
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : "";
        auto number = [&](int64_t& x) { return std::from_chars(v, v + std::char_traits<char>::length(v), x).ec == std::errc(); };
        if (a == "--out" && *v) out = argv[++i];
        else if (a == "--image" && number(which) && which >= 0 && which < 8) ++i;
        else if (a == "--query" && number(query) && query >= 0 && query <= 16) ++i;
        else {
            std::printf("usage: filter_subspace [--out DIR] [--image 0..7] [--query 0..16]\n");
            return a == "--help" ? 0 : 2;
        }
    }
    const fs::path models = COEFFNET_MODELS_DIR;  // the repository's models/
    fs::create_directories(out);

    // 1. The model, and an image of the downstream task (counting objects: 1 to 4).
    auto model = models::load_vit_for_image_classification<float>(models / "vit-shapes");
    model->eval();
    const data::ImageSet set = data::generate("count", /*seed=*/7, /*n=*/8);
    const Tensor<uint8_t> image = set.images.select(0, which).contiguous();  // [32, 32, 3]
    io::Image rgb(32, 32, 3);
    std::copy(image.data(), image.data() + image.numel(), rgb.pixels.begin());
    const fs::path image_path = out / "filter_subspace_image.png";
    io::write_png(image_path, rgb.pixels, 32, 32, 3);
    std::printf("image %lld of the count task (%s objects): %s\n", static_cast<long long>(which),
                set.classes[static_cast<size_t>(set.labels.data()[which])].c_str(), image_path.c_str());
    // Preprocessed as the model's preprocessor_config.json says (x / 255 - 0.5) / 0.5.
    const auto proc = io::ImageProcessorConfig::from_file(models / "vit-shapes" / "preprocessor_config.json",
                                                          io::ImageProcessorConfig::vit_defaults(32, 32));
    const Tensor<float> pixels = io::preprocess_image<float>(rgb, proc).reshape({1, 3, 32, 32});

    // 2. Each head's filter: row `query` of P_h in the last layer.
    const int64_t L = model->config().num_hidden_layers, H = model->config().num_attention_heads, grid = 4, T = 17;
    NoGrad no_grad;
    auto plain = model->vit.forward(pixels, /*return_maps=*/true);
    const std::vector<float> P = plain.maps[static_cast<size_t>(L - 1)].contiguous().to_vector();  // [1, H, T, T]
    auto filter = [&](const std::vector<float>& maps, int64_t h) {
        const float* row = &maps[static_cast<size_t>((h * T + query) * T)];
        return std::vector<float>(row, row + T);
    };
    std::printf("\nlayer %lld, query token %lld%s: each head's filter F_h (%% of the weight on each patch)\n",
                static_cast<long long>(L - 1), static_cast<long long>(query), query == 0 ? " (CLS)" : "");
    for (int64_t h = 0; h < H; ++h) print_filter("F", h, filter(P, h), grid);

    // 3. Coeff-Tuning's alpha for counting: alpha' = I + alpha mixes the heads' filters.
    models::apply_adapter(*model, models / "vit-shapes-count-alpha");
    model->eval();
    auto tuned = model->vit.forward(pixels, true);
    const Tensor<float>& alpha = model->vit.encoder.layer[static_cast<size_t>(L - 1)]->attention.attention.alpha;
    std::vector<float> ap = alpha.contiguous().to_vector();
    for (int64_t h = 0; h < H; ++h) ap[static_cast<size_t>(h * H + h)] += 1.0f;  // alpha' = I + alpha
    const std::vector<float> Pt = tuned.maps[static_cast<size_t>(L - 1)].contiguous().to_vector();
    const std::vector<float> Phat = tuned.mixed_maps[static_cast<size_t>(L - 1)].contiguous().to_vector();
    std::printf("\nwith the count adapter's alpha: the mixed filters Fhat_h = sum_i alpha'[h, i] F_i\n");
    double worst = 0;
    for (int64_t h = 0; h < H; ++h) {
        const std::vector<float> mixed = filter(Phat, h);
        // By hand, from the same layer's plain filters (the earlier layers changed too, so P is
        // the tuned model's own): the model's mixed maps are exactly this sum.
        double sum = 0, low = INFINITY;
        for (int64_t t = 0; t < T; ++t) {
            double want = 0;
            for (int64_t i = 0; i < H; ++i) want += ap[static_cast<size_t>(h * H + i)] * filter(Pt, i)[static_cast<size_t>(t)];
            worst = std::max(worst, std::abs(want - mixed[static_cast<size_t>(t)]));
            sum += mixed[static_cast<size_t>(t)];
            low = std::min(low, static_cast<double>(mixed[static_cast<size_t>(t)]));
        }
        print_filter("Fhat", h, mixed, grid);
        std::printf("           weights sum to %.3f, smallest %.3f%s\n", sum, low,
                    low < 0 || std::abs(sum - 1) > 1e-3 ? ": not a convex combination" : "");
    }
    std::printf("max |Fhat - alpha' F| computed by hand: %.2g\n", worst);

    // 4. The pictures: `coeffnet vit filters` draws these too.
    tools::FilterView view;
    view.model = "vit-shapes";
    view.layer = L - 1;
    view.layers = L;
    view.heads = H;
    view.grid_h = view.grid_w = grid;
    view.query = query;
    view.image = rgb;
    view.maps = P;
    tools::write_filters_png(view, out / "filter_subspace_plain.png");
    view.adapter = "vit-shapes-count-alpha";
    view.maps = Pt;
    view.alpha_prime = ap;
    tools::write_filters_png(view, out / "filter_subspace_alpha.png");
    std::printf("wrote %s and %s\n", (out / "filter_subspace_plain.png").c_str(), (out / "filter_subspace_alpha.png").c_str());
    return worst < 1e-5 ? 0 : 1;
}

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "filter_subspace: %s\n", e.what());
        return 1;
    }
}
