// toy_graph: Coeff-Tuning's toy experiment (paper Section 4.1, Figure 3), in one page.
//
//   ./build/examples/toy_graph                  # table + toy_graph.svg
//   ./build/examples/toy_graph --json           # one JSON object on stdout
//   ./build/examples/toy_graph --seed 3 --steps 1000 --svg /tmp/fig3.svg
//
// Eight nodes on the square [-1,1]^2 go through ONE attention layer; the target is the same
// ring with its four edge midpoints pushed out to distance 2. Read an attention map as a
// graph filter: F = softmax(Q K^T) has positive rows that sum to 1, so row n of F X is a
// weighted average of the input nodes. Averages never leave the convex hull of what they
// average, so with W_q, W_k alone (and W_v^h = I/H, which keeps O an average of the heads'
// averages) the midpoints can get no closer than the square's edge: an MSE floor of 0.25.
//
// Coeff-Tuning mixes the heads' filters, Fhat_h = sum_i alpha'[h,i] F_i with alpha' = I + alpha,
// and alpha is unconstrained (Proposition 4.3). With W_v^h = I/H the layer collapses to
//     O = sum_i c_i F_i X,    c_i = (1/H) sum_h alpha'[h,i],
// so only alpha's column sums matter. Coefficients like c = (2, -1, 0, 0) extrapolate ("twice
// this filter minus that one"), which is how O leaves the hull while W_v stays untouched.
//
// Choices the paper leaves open (all in toy::Config): H = 4 heads, head dim d = 2, scale 1
// (softmax(X W_q W_k^T X^T) as the paper writes it, no 1/sqrt(d)), W_q, W_k ~ N(0, 1) from the
// seed, Adam (AdamW with weight decay 0) lr 0.03, 3000 full-batch steps, float64. All four
// settings start from the same W_q, W_k, W_v = I/H and alpha = 0.
//
// What the picture does and does not show. It shows one seed; the ten-seed sweep printed
// with it says how typical that is. qk sits just above the 0.25 floor: reaching it needs softmax
// weights of exactly 0 and 1, which only infinite logits give. The alpha that fits is one of many (only its column sums
// matter). And it does not show the paper's claim (ii), that tuning W_v too "still misses the
// target": here qkv fits as well, because W_v^h can scale each head's values outward (2 X is
// outside the hull of X). The hull bound is on O relative to the values X W_v, not to X.
//
// The values' hull, drawn in every panel. Without alpha, node n's output is
//     O[n] = sum_h sum_m F_h[n,m] (X W_v^h)[m],   each row F_h[n,:] a convex combination,
// so it lies in R = hull(X W_v^1) + ... + hull(X W_v^H) (a Minkowski sum; toy::value_region).
// With W_v^h = I/H, R is hull(X); tuning W_v reshapes R. Each panel outlines R at the setting's
// final W_v and marks node 1 ((0, 1) -> (0, 2), an edge midpoint whose target is furthest outside
// hull(X)): qk's and qkv's outputs must stay inside R; qk_alpha's leaves it. The table's last
// column and the JSON's "values_hull" (R's vertices, node 1's output, inside or not) say the same.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "toy_graph.hpp"

using namespace coeffnet;

namespace {

constexpr int kSweepSeeds = 10;

struct Args {
    toy::Config config;
    std::string svg_path = "toy_graph.svg";
    bool json = false;
};

const char* kUsage =
    "usage: toy_graph [--seed N] [--steps N] [--svg PATH] [--json] [--help]\n"
    "  Trains one attention layer to map a ring of 8 nodes onto a larger ring, in four settings\n"
    "  (qk, qk_alpha, qkv, qkv_alpha), and draws the paper's Figure 3.\n"
    "  --seed N     seed of the initial W_q, W_k (default 0); the sweep uses seeds N..N+9\n"
    "  --steps N    Adam steps per run (default 3000)\n"
    "  --svg PATH   where to write the picture (default toy_graph.svg)\n"
    "  --json       print one JSON object instead of the table\n";

// Fills `a` from the command line; on anything not understood, says why and returns false.
bool parse_args(int argc, char** argv, Args& a) {
    auto number = [](const std::string& s, auto& out) {
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return !s.empty() && ec == std::errc() && end == s.data() + s.size();
    };
    for (int i = 1; i < argc; ++i) {
        const std::string opt = argv[i];
        if (opt == "--json") {
            a.json = true;
            continue;
        }
        if (opt != "--seed" && opt != "--steps" && opt != "--svg") {
            std::cerr << "toy_graph: unknown option '" << opt << "' (see --help)\n";
            return false;
        }
        if (i + 1 == argc) {
            std::cerr << "toy_graph: " << opt << " needs a value\n";
            return false;
        }
        const std::string v = argv[++i];
        bool ok = !v.empty();
        if (opt == "--seed") ok = number(v, a.config.seed);
        else if (opt == "--steps") ok = number(v, a.config.steps) && a.config.steps >= 0;
        else a.svg_path = v;
        if (!ok) {
            std::cerr << "toy_graph: bad value '" << v << "' for " << opt << " (see --help)\n";
            return false;
        }
    }
    return true;
}

// Writes next to the destination, then renames: a reader never sees half a picture.
void write_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    std::ofstream f(tmp, std::ios::binary);
    f << text;
    f.close();
    std::error_code ec;
    if (f) std::filesystem::rename(tmp, path, ec);
    if (!f || ec) {
        const std::string why = f ? ec.message() : "write to " + tmp + " failed";
        std::filesystem::remove(tmp, ec);
        throw std::runtime_error(path + ": " + why);
    }
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
            std::cout << kUsage;
            return 0;
        }
    }
    Args args;
    if (!parse_args(argc, argv, args)) return 2;
    const toy::Config& cfg = args.config;

    // 1. The four settings, each trained from the same initial weights.
    std::vector<toy::Run> runs;
    for (const toy::Setting& s : toy::settings()) runs.push_back(toy::train(s, cfg));

    // 2. Is it the seed? Count the fits (final MSE <= 1e-3) over ten seeds.
    std::vector<int> fits(runs.size(), 0);
    std::vector<uint64_t> seeds;
    for (int k = 0; k < kSweepSeeds; ++k) {
        toy::Config c = cfg;
        c.seed = cfg.seed + static_cast<uint64_t>(k);
        seeds.push_back(c.seed);
        for (size_t s = 0; s < runs.size(); ++s) {
            const double m = k == 0 ? runs[s].final_mse : toy::train(toy::settings()[s], c).final_mse;
            if (m <= toy::kFitThreshold) ++fits[s];
        }
    }

    // 3. The picture.
    try {
        write_file(args.svg_path, toy::svg(runs, cfg));
    } catch (const std::exception& e) {
        std::cerr << "toy_graph: could not write the picture: " << e.what() << "\n";
        return 1;
    }

    // 4. The report. c_i (alpha's column sums / H) is only meaningful while W_v = I/H.
    const toy::Run& qk_alpha = runs[1];  // settings() order: qk, qk_alpha, qkv, qkv_alpha
    const std::vector<double> c = toy::filter_coeffs(qk_alpha.params);
    std::vector<bool> in_region;  // is the query node's output inside R = sum_h hull(X W_v^h)?
    for (const toy::Run& r : runs) in_region.push_back(toy::inside(toy::value_region(r.params.wv), toy::output_point(r)));
    if (args.json) {
        nlohmann::ordered_json j;  // keys in the order written: settings first
        for (size_t s = 0; s < runs.size(); ++s) {
            nlohmann::ordered_json region = nlohmann::json::array();
            for (toy::Point p : toy::value_region(runs[s].params.wv)) region.push_back({p.x, p.y});
            const toy::Point o = toy::output_point(runs[s]);
            j["settings"].push_back({{"name", runs[s].setting.name}, {"tunes", runs[s].setting.tunes},
                                     {"final_mse", runs[s].final_mse}, {"max_abs_coord", runs[s].max_abs_coord},
                                     {"output", runs[s].out},
                                     {"values_hull", {{"node", toy::kQueryNode},
                                                      {"vertices", region},
                                                      {"output", {o.x, o.y}},
                                                      {"output_inside", in_region[s]}}}});
        }
        j["config"] = {{"heads", cfg.heads}, {"head_dim", cfg.head_dim}, {"scale", cfg.scale},
                       {"init", "W_q, W_k ~ N(0, 1); W_v^h = I/H; alpha = 0"},
                       {"optimizer", "Adam (AdamW, weight_decay 0, betas 0.9/0.999, eps 1e-8)"},
                       {"lr", cfg.lr}, {"steps", cfg.steps}, {"dtype", "float64"}, {"seed", cfg.seed},
                       {"loss", "mean squared error over the 8x2 coordinates"}};
        j["hull_floor_mse"] = toy::hull_floor_mse();
        j["qk_alpha_filter_coeffs"] = c;
        j["seed_sweep"] = {{"seeds", seeds}, {"fit_threshold", toy::kFitThreshold}};
        for (size_t s = 0; s < runs.size(); ++s) j["seed_sweep"]["fits"][runs[s].setting.name] = fits[s];
        j["svg"] = args.svg_path;
        std::cout << j.dump() << "\n";
        return 0;
    }
    std::printf("Coeff-Tuning toy experiment (paper Section 4.1, Figure 3)\n");
    std::printf("H = %lld heads, d = %lld, scale %g, W_q,W_k ~ N(0,1), W_v = I/H, alpha = 0 at start;\n",
                static_cast<long long>(cfg.heads), static_cast<long long>(cfg.head_dim), cfg.scale);
    std::printf("Adam lr %g, %lld steps, float64, seed %llu. Loss: MSE over the 8x2 coordinates.\n\n", cfg.lr,
                static_cast<long long>(cfg.steps), static_cast<unsigned long long>(cfg.seed));
    std::printf("%-10s %-22s %12s %14s %18s %10s\n", "setting", "tunes", "final MSE", "max |coord|", "fits, 10 seeds",
                ("node " + std::to_string(toy::kQueryNode) + " in R").c_str());
    for (size_t s = 0; s < runs.size(); ++s)
        std::printf("%-10s %-22s %12.4e %14.5f %15d/%d %10s\n", runs[s].setting.name, runs[s].setting.tunes,
                    runs[s].final_mse, runs[s].max_abs_coord, fits[s], kSweepSeeds, in_region[s] ? "yes" : "no");
    std::printf("\n(fits: final MSE <= %g on seeds %llu..%llu)\n", toy::kFitThreshold,
                static_cast<unsigned long long>(cfg.seed), static_cast<unsigned long long>(cfg.seed + kSweepSeeds - 1));
    std::printf("qk_alpha's filter coefficients c_i = (1/H) sum_h alpha'[h,i]:");
    for (double v : c) std::printf(" %.3f", v);
    std::printf("\n\n");
    std::printf(
        "Reading it: each attention map is a graph filter whose rows average the input nodes, so\n"
        "qk cannot leave the input's convex hull (max |coord| <= 1; MSE floor %.2f). alpha mixes\n"
        "the filters with free coefficients; with W_v fixed at I/H the output is sum_i c_i F_i X,\n"
        "so only alpha's column sums (c above) matter. c need not be positive or sum to 1, so the\n"
        "mixed filter extrapolates instead of averaging and O leaves the hull with W_v untouched.\n"
        "The paper says tuning W_v as well still misses the target; here qkv fitted on %d/%d seeds:\n"
        "W_v scales the values themselves outward, and the hull bound is on the values, not on X.\n"
        "'node %lld in R': is that node's output inside R = sum_h hull(X W_v^h), the region any\n"
        "softmax filter confines it to without alpha (R = hull(X) while W_v = I/H)?\n\n"
        "picture: %s\n",
        toy::hull_floor_mse(), fits[2] /* qkv */, kSweepSeeds, static_cast<long long>(toy::kQueryNode),
        args.svg_path.c_str());
    return 0;
}
