// vit_step: a ViT-B/16 forward and a Coeff-Tuning alpha step on the CPU, end to end, float32.
//
// What it measures: the wall time of two pieces of work through the whole library (model, ops,
// autograd, optimiser), on coeffnet::models::ViTForImageClassification<float> with the ViT-B/16
// config (ViTConfig's defaults: width 768, 12 layers, 12 heads, MLP 3072, 224 x 224, patch 16)
// and --labels classes (default 1000):
//   fwd    the forward pass to the logits at batch --batch (default 8), under coeffnet::NoGrad,
//          in evaluation mode, Coeff-Tuning off (inference);
//   alpha  one Coeff-Tuning step at the same batch, as train::Finetuner takes one for the alpha
//          method: every parameter of the backbone and the head frozen, enable_coeff(true,
//          CoeffSpec{0.0, true}) (a zero alpha [12, 12] per layer, residual, no alpha dropout),
//          training mode (every dropout p of the config is 0, so this is deterministic), forward,
//          cross_entropy(logits, labels), backward, one AdamW step on the 12 alphas (lr 1e-2,
//          weight decay 0: the Finetuner's alpha group), zero_grad.
// The model is built once and initialised from a fixed seed as transformers' _init_weights does
// (ViTModel::init_weights: every weight, the CLS token and the position embeddings normal(0,
// 0.02), biases zero, layer-norm gains one), and the classifier's weight normal(0, 0.02) with a
// zero bias; pixels are randn [B, 3, 224, 224] from another fixed seed; label i is i % labels.
// Two builds of this program therefore compute the same thing, and print the same checksums up
// to rounding differences between their kernels.
//
// Method. Before anything is timed, each work runs once outside the timed functions and is
// checked: the logits are finite; for alpha, every alpha has a gradient that is finite and not
// all zero, no frozen parameter has one, and the AdamW step leaves every alpha finite and moved.
// That run's logits give the checksum (sum and sum of |x|, in double), printed so two builds can
// be compared. Then --warmup untimed and --reps timed calls (default 1 and 5), one work after the
// other (fwd first, then alpha, whatever the order in --work), each timed alone on
// std::chrono::steady_clock; reported: min, median and max ms and every rep. The alpha reps
// keep stepping the same optimiser (the alphas move; the work per step does not change).
// Progress goes to stderr, one line per call.
//
// Callgrind. Each timed call is one call of a noinline (and, with GCC, noclone) function with a
// distinctive name, vit_step_timed_fwd or vit_step_timed_alpha, and nothing else runs inside
// them (the check run does not go through them), so callgrind can count exactly the timed work:
// --warmup + --reps calls of it. Valgrind 3.19 cannot run AVX-512 code: build a copy without
// -march=native (as for gemm_bench, bench/README.md), and use one thread (OpenMP's workers
// would run outside the toggled function):
// (each command is one line; no backslashes, which would continue this comment)
//   cmake -S . -B build-callgrind -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOEFFNET_NATIVE=OFF -DCMAKE_CXX_FLAGS="-march=x86-64-v3 -g" -DCOEFFNET_CUDA=OFF
//   cmake --build build-callgrind --target vit_step -j1
//   OMP_NUM_THREADS=1 valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*vit_step_timed_fwd*' ./build-callgrind/bench/vit_step --work fwd --reps 1 --warmup 0
// (then --toggle-collect='*vit_step_timed_alpha*' with --work alpha); the "Collected" line of
// valgrind's summary, or callgrind_annotate's total, is the instruction count of that one call.
//
// Usage: vit_step [--work fwd,alpha] [--batch N] [--labels N] [--reps N] [--warmup N] [--json] [--help]

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/models/vit.hpp>

#include "bench_util.hpp"

using coeffnet::Tensor;
using Model = coeffnet::models::ViTForImageClassification<float>;

// What one alpha step hands back: the logits (detached: the graph is freed inside the step) and
// the loss.
struct AlphaStepOut {
    Tensor<float> logits;
    double loss = 0;
};

// What the check run looks at between backward and the optimiser step.
struct AlphaProbe {
    bool every_grad_ok = true;  // each alpha: gradient defined, finite, not all zero
    std::string bad;            // the first alpha that failed, and why
    double grad_abs_sum = 0;    // sum of |gradient| over every alpha
    int64_t frozen_with_grad = 0;
};

namespace {

// The forward pass: logits [B, labels], no recording (the caller holds NoGrad), evaluation mode.
Tensor<float> run_fwd(Model& model, const Tensor<float>& pixels) { return model.forward(pixels).logits; }

// One alpha step: forward, loss, backward, (probe), AdamW step, zero_grad.
AlphaStepOut run_alpha(Model& model, coeffnet::AdamW<float>& opt, const std::vector<Tensor<float>>& alphas,
                       const Tensor<float>& pixels, const Tensor<int64_t>& labels, AlphaProbe* probe) {
    const Tensor<float> logits = model.forward(pixels).logits;
    const Tensor<float> loss = coeffnet::cross_entropy(logits, labels);
    loss.backward();
    if (probe) {
        for (size_t i = 0; i < alphas.size(); ++i) {
            const Tensor<float> g = alphas[i].grad();
            std::string why;
            double abs_sum = 0;
            if (!g.defined()) why = "no gradient";
            else {
                for (float v : g.to_vector()) {
                    if (!std::isfinite(v)) why = "a non-finite gradient entry";
                    abs_sum += std::fabs(static_cast<double>(v));
                }
                if (why.empty() && abs_sum == 0) why = "an all-zero gradient";
            }
            probe->grad_abs_sum += abs_sum;
            if (!why.empty() && probe->every_grad_ok) {
                probe->every_grad_ok = false;
                probe->bad = "alpha of layer " + std::to_string(i) + ": " + why;
            }
        }
        for (const auto& [name, p] : model.named_parameters())
            if (!p.requires_grad() && p.grad().defined()) ++probe->frozen_with_grad;
    }
    opt.step();
    opt.zero_grad();
    return {logits.detach(), static_cast<double>(loss.item())};
}

}  // namespace

// The timed functions, the only calls of run_fwd / run_alpha inside a timed interval. External
// linkage, noinline and (GCC) noclone, so that each exists under its own name in the binary and
// callgrind's --toggle-collect='*vit_step_timed_fwd*' finds it. Declared here to keep
// -Wmissing-declarations quiet where it is on.
#if defined(__GNUC__) && !defined(__clang__)
#define VIT_STEP_TIMED __attribute__((noinline, noclone))
#else
#define VIT_STEP_TIMED __attribute__((noinline))
#endif
VIT_STEP_TIMED Tensor<float> vit_step_timed_fwd(Model& model, const Tensor<float>& pixels);
VIT_STEP_TIMED AlphaStepOut vit_step_timed_alpha(Model& model, coeffnet::AdamW<float>& opt,
                                                 const std::vector<Tensor<float>>& alphas, const Tensor<float>& pixels,
                                                 const Tensor<int64_t>& labels);

// The empty asm after each call keeps the compiler from turning it into a tail call (a jump out
// of the function, after which it would no longer be on the stack while the work runs).
Tensor<float> vit_step_timed_fwd(Model& model, const Tensor<float>& pixels) {
    Tensor<float> logits = run_fwd(model, pixels);
    __asm__ __volatile__("" ::: "memory");
    return logits;
}

AlphaStepOut vit_step_timed_alpha(Model& model, coeffnet::AdamW<float>& opt, const std::vector<Tensor<float>>& alphas,
                                  const Tensor<float>& pixels, const Tensor<int64_t>& labels) {
    AlphaStepOut out = run_alpha(model, opt, alphas, pixels, labels, nullptr);
    __asm__ __volatile__("" ::: "memory");
    return out;
}

namespace {

using bench::Clock;
using bench::seconds_since;
using json = nlohmann::ordered_json;  // keys in the order written

constexpr uint64_t kModelSeed = 2024, kPixelSeed = 7;

struct Checksum {
    double sum = 0, abs_sum = 0;
    bool finite = true;
};

Checksum checksum(const Tensor<float>& t) {
    Checksum c;
    for (float v : t.to_vector()) {
        if (!std::isfinite(v)) c.finite = false;
        c.sum += static_cast<double>(v);
        c.abs_sum += std::fabs(static_cast<double>(v));
    }
    return c;
}

[[noreturn]] void fail_check(const std::string& what) {
    std::fprintf(stderr, "vit_step: CHECK FAILED: %s\n", what.c_str());
    std::exit(1);
}

std::string compiler_name() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return "unknown";
#endif
}

struct Options {
    bool fwd = true, alpha = true, as_json = false;
    int64_t batch = 8, labels = 1000;
    int reps = 5, warmup = 1;
};

// Times `call` warmup + reps times, one line per call on stderr; returns the timed reps in ms.
template <class F>
std::vector<double> time_reps(const char* work, const Options& o, F&& call) {
    std::vector<double> ms;
    for (int i = 0; i < o.warmup + o.reps; ++i) {
        const bool warm = i < o.warmup;
        const auto t0 = Clock::now();
        call();
        const double t = seconds_since(t0) * 1e3;
        if (!warm) ms.push_back(t);
        std::fprintf(stderr, "vit_step: %s %s %d/%d: %.1f ms\n", work, warm ? "warm-up" : "rep",
                     warm ? i + 1 : i - o.warmup + 1, warm ? o.warmup : o.reps, t);
    }
    return ms;
}

json timing_json(const std::vector<double>& ms) {
    return {{"ms", ms},
            {"ms_min", *std::min_element(ms.begin(), ms.end())},
            {"ms_median", bench::median(ms)},
            {"ms_max", *std::max_element(ms.begin(), ms.end())}};
}

void print_row(const char* work, const Options& o, const std::vector<double>& ms, const Checksum& c) {
    const double med = bench::median(ms);
    std::printf("%-6s %5lld %5d %10.1f %10.1f %10.1f %8.2f %16.6f %16.6f\n", work, static_cast<long long>(o.batch),
                o.reps, *std::min_element(ms.begin(), ms.end()), med, *std::max_element(ms.begin(), ms.end()),
                static_cast<double>(o.batch) / (med * 1e-3), c.sum, c.abs_sum);
    std::printf("       per rep (ms):");
    for (double t : ms) std::printf(" %.1f", t);
    std::printf("\n");
    std::fflush(stdout);
}

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: vit_step [--work fwd,alpha] [--batch N] [--labels N] [--reps N] [--warmup N] [--json] [--help]\n"
                 "\n"
                 "Wall time of a ViT-B/16 forward (fwd: NoGrad, evaluation mode) and of a Coeff-Tuning alpha\n"
                 "step (alpha: backbone and head frozen, forward, cross-entropy, backward, AdamW on the 12\n"
                 "alphas, zero_grad) on the CPU, float32, random weights and pixels from fixed seeds.\n"
                 "\n"
                 "  --work LIST   comma-separated works to run: fwd, alpha (default fwd,alpha; run in that order)\n"
                 "  --batch N     images per call (default 8)\n"
                 "  --labels N    classes of the head (default 1000)\n"
                 "  --reps N      timed calls per work (default 5)\n"
                 "  --warmup N    untimed calls before them (default 1)\n"
                 "  --json        print one JSON object instead of the table\n"
                 "  --help        this text\n"
                 "\n"
                 "Threads: OMP_NUM_THREADS or COEFFNET_NUM_THREADS (default: all cores). Each work runs once\n"
                 "and is checked (finite logits; for alpha, a finite non-zero gradient on every alpha) before\n"
                 "it is timed; exit 1 when a check fails, 2 on a bad argument. The logits' checksum (sum, sum\n"
                 "of |x|) is printed so two builds can be compared. For callgrind, the timed calls are the\n"
                 "functions vit_step_timed_fwd and vit_step_timed_alpha; see the header of bench/vit_step.cpp.\n");
}

// A whole number in [lo, hi], or exit 2 naming the flag.
int64_t parse_int(const char* flag, const char* s, int64_t lo, int64_t hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        std::fprintf(stderr, "vit_step: %s needs a whole number in [%lld, %lld], got '%s'\n", flag,
                     static_cast<long long>(lo), static_cast<long long>(hi), s);
        std::exit(2);
    }
    return v;
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "vit_step: %s needs a value (try --help)\n", flag);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(stdout);
            std::exit(0);
        } else if (a == "--json") {
            o.as_json = true;
        } else if (a == "--batch") {
            o.batch = parse_int("--batch", value("--batch"), 1, 4096);
        } else if (a == "--labels") {
            o.labels = parse_int("--labels", value("--labels"), 1, 1000000);
        } else if (a == "--reps") {
            o.reps = static_cast<int>(parse_int("--reps", value("--reps"), 1, 1000));
        } else if (a == "--warmup") {
            o.warmup = static_cast<int>(parse_int("--warmup", value("--warmup"), 0, 1000));
        } else if (a == "--work") {
            const std::string list = value("--work");
            o.fwd = o.alpha = false;
            size_t start = 0;
            for (;;) {
                const size_t comma = list.find(',', start);
                const std::string w = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                if (w == "fwd") o.fwd = true;
                else if (w == "alpha") o.alpha = true;
                else {
                    std::fprintf(stderr, "vit_step: --work: unknown work '%s' in '%s' (fwd, alpha)\n", w.c_str(),
                                 list.c_str());
                    std::exit(2);
                }
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else {
            std::fprintf(stderr, "vit_step: unknown argument '%s' (try --help)\n", argv[i]);
            std::exit(2);
        }
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_args(argc, argv);
    try {
        (void)coeffnet::num_threads();  // applies COEFFNET_NUM_THREADS, if set, before anything runs
        const double load_before = bench::loadavg_1min();

        // ---- the model, its weights, the batch ----------------------------------------------
        const auto t_setup = Clock::now();
        coeffnet::models::ViTConfig cfg;  // ViT-B/16
        cfg.id2label.clear();
        for (int64_t i = 0; i < o.labels; ++i) cfg.id2label.push_back("LABEL_" + std::to_string(i));
        auto model = std::make_unique<Model>(cfg);
        {
            coeffnet::Generator gen(kModelSeed);
            model->vit.init_weights(gen);
            coeffnet::nn::init_normal(model->classifier.weight, gen, cfg.initializer_range);
            model->classifier.bias.fill_(0.0f);
        }
        model->set_requires_grad(false);
        const int64_t n_params = model->num_parameters();
        coeffnet::Generator pixel_gen(kPixelSeed);
        const Tensor<float> pixels =
            Tensor<float>::randn({o.batch, cfg.num_channels, cfg.image_height, cfg.image_width}, pixel_gen);
        std::vector<int64_t> label_values;
        for (int64_t i = 0; i < o.batch; ++i) label_values.push_back(i % o.labels);
        const Tensor<int64_t> labels = Tensor<int64_t>::from(label_values, {o.batch});
        std::fprintf(stderr, "vit_step: model built and initialised (%lld parameters) in %.1f s\n",
                     static_cast<long long>(n_params), seconds_since(t_setup));

        const char* omp_env = std::getenv("OMP_NUM_THREADS");
        const char* cn_env = std::getenv("COEFFNET_NUM_THREADS");
        json j;
        j["benchmark"] = "vit_step";
        j["date_utc"] = bench::utc_now();
        j["machine"] = {{"cpu", bench::cpu_model()},
                        {"threads", bench::max_threads()},
                        {"omp_num_threads_env", omp_env ? json(omp_env) : json(nullptr)},
                        {"coeffnet_num_threads_env", cn_env ? json(cn_env) : json(nullptr)},
                        {"compiler", compiler_name()},
                        {"eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                                              "." + std::to_string(EIGEN_MINOR_VERSION)},
                        {"eigen_simd", Eigen::SimdInstructionSetsInUse()},
                        {"loadavg_1min_at_start", load_before}};
        j["config"] = {{"model", "ViT-B/16"},
                       {"hidden_size", cfg.hidden_size},
                       {"num_hidden_layers", cfg.num_hidden_layers},
                       {"num_attention_heads", cfg.num_attention_heads},
                       {"intermediate_size", cfg.intermediate_size},
                       {"image_size", cfg.image_height},
                       {"patch_size", cfg.patch_height},
                       {"num_labels", o.labels},
                       {"parameters", n_params},
                       {"dtype", "float32"},
                       {"batch", o.batch},
                       {"reps", o.reps},
                       {"warmup", o.warmup},
                       {"model_seed", kModelSeed},
                       {"pixel_seed", kPixelSeed}};
        j["results"] = json::array();

        if (!o.as_json) {
            std::printf("vit_step  %s\n", j["date_utc"].get<std::string>().c_str());
            std::printf("cpu: %s | threads: %d%s | %s | Eigen %s (%s) | load average %.2f\n",
                        j["machine"]["cpu"].get<std::string>().c_str(), bench::max_threads(),
                        omp_env || cn_env ? " (from the environment)" : "", compiler_name().c_str(),
                        j["machine"]["eigen_version"].get<std::string>().c_str(), Eigen::SimdInstructionSetsInUse(),
                        load_before);
            std::printf("model: ViT-B/16 (%lld wide, %lld layers, %lld heads, %lldx%lld, patch %lld), %lld labels, "
                        "%lld parameters, float32; batch %lld; %d warm-up + %d timed calls per work\n\n",
                        static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_hidden_layers),
                        static_cast<long long>(cfg.num_attention_heads), static_cast<long long>(cfg.image_height),
                        static_cast<long long>(cfg.image_width), static_cast<long long>(cfg.patch_height),
                        static_cast<long long>(o.labels), static_cast<long long>(n_params),
                        static_cast<long long>(o.batch), o.warmup, o.reps);
            std::printf("%-6s %5s %5s %10s %10s %10s %8s %16s %16s\n", "work", "batch", "reps", "min ms", "median ms",
                        "max ms", "img/s", "logits sum", "logits sum|x|");
            std::fflush(stdout);
        }

        // ---- fwd ----------------------------------------------------------------------------
        if (o.fwd) {
            coeffnet::NoGrad no_grad;
            model->eval();
            const Checksum c = checksum(run_fwd(*model, pixels));
            if (!c.finite) fail_check("fwd: the logits are not all finite");
            bool repeatable = true;
            const std::vector<double> ms = time_reps("fwd", o, [&] {
                const Tensor<float> logits = vit_step_timed_fwd(*model, pixels);
                const Checksum r = checksum(logits);
                if (r.sum != c.sum || r.abs_sum != c.abs_sum) repeatable = false;
            });
            if (!repeatable)
                std::fprintf(stderr, "vit_step: warning: fwd: a timed call's logits differ from the check run's\n");
            json row = {{"work", "fwd"}, {"batch", o.batch}, {"reps", o.reps}, {"warmup", o.warmup}};
            row.update(timing_json(ms));
            row["images_per_s"] = static_cast<double>(o.batch) / (bench::median(ms) * 1e-3);
            row["checksum"] = {{"logits_sum", c.sum}, {"logits_abs_sum", c.abs_sum}};
            row["reps_match_check"] = repeatable;
            j["results"].push_back(row);
            if (!o.as_json) print_row("fwd", o, ms, c);
        }

        // ---- alpha --------------------------------------------------------------------------
        if (o.alpha) {
            model->enable_coeff(true, coeffnet::CoeffSpec{0.0, true});
            model->train();
            const std::vector<Tensor<float>> alphas = model->vit.alphas();
            if (alphas.size() != static_cast<size_t>(cfg.num_hidden_layers))
                fail_check("alpha: " + std::to_string(alphas.size()) + " alphas, expected one per layer");
            coeffnet::AdamW<float> opt(std::vector<coeffnet::ParamGroup<float>>{{alphas, 1e-2, 0.0, "alpha"}},
                                       coeffnet::AdamW<float>::Options{.lr = 1e-2, .weight_decay = 0.0});
            int64_t trainable = 0;
            for (const auto& [name, p] : model->named_parameters())
                if (p.requires_grad()) trainable += p.numel();
            if (trainable != cfg.num_hidden_layers * cfg.num_attention_heads * cfg.num_attention_heads)
                fail_check("alpha: " + std::to_string(trainable) + " trainable parameters, expected only the alphas");

            AlphaProbe probe;
            const AlphaStepOut first = run_alpha(*model, opt, alphas, pixels, labels, &probe);
            const Checksum c = checksum(first.logits);
            if (!c.finite) fail_check("alpha: the logits are not all finite");
            if (!std::isfinite(first.loss)) fail_check("alpha: the loss is not finite");
            if (!probe.every_grad_ok) fail_check("alpha: " + probe.bad);
            if (probe.frozen_with_grad > 0)
                fail_check("alpha: " + std::to_string(probe.frozen_with_grad) + " frozen parameters got a gradient");
            double alpha_abs_sum = 0;
            for (const auto& a : alphas) {
                if (a.grad().defined()) fail_check("alpha: zero_grad left a gradient on an alpha");
                const Checksum ac = checksum(a);
                if (!ac.finite) fail_check("alpha: an alpha is not finite after the AdamW step");
                if (ac.abs_sum == 0) fail_check("alpha: an alpha did not move in the AdamW step");
                alpha_abs_sum += ac.abs_sum;
            }

            std::vector<double> losses;
            const std::vector<double> ms = time_reps("alpha", o, [&] {
                const AlphaStepOut r = vit_step_timed_alpha(*model, opt, alphas, pixels, labels);
                losses.push_back(r.loss);
            });
            for (double l : losses)
                if (!std::isfinite(l)) fail_check("alpha: a timed step's loss is not finite");
            json row = {{"work", "alpha"}, {"batch", o.batch}, {"reps", o.reps}, {"warmup", o.warmup}};
            row.update(timing_json(ms));
            row["images_per_s"] = static_cast<double>(o.batch) / (bench::median(ms) * 1e-3);
            row["checksum"] = {{"logits_sum", c.sum},
                               {"logits_abs_sum", c.abs_sum},
                               {"loss", first.loss},
                               {"alpha_grad_abs_sum", probe.grad_abs_sum},
                               {"alpha_abs_sum_after_step", alpha_abs_sum}};
            row["alphas"] = alphas.size();
            row["trainable_parameters"] = trainable;
            row["losses"] = losses;
            j["results"].push_back(row);
            if (!o.as_json) {
                print_row("alpha", o, ms, c);
                std::printf("       check step: loss %.9g, sum|grad| over the %zu alphas %.9g, sum|alpha| after its "
                            "AdamW step %.9g\n",
                            first.loss, alphas.size(), probe.grad_abs_sum, alpha_abs_sum);
            }
            model->enable_coeff(false, {});
        }

        const double load_after = bench::loadavg_1min();
        j["machine"]["loadavg_1min_at_end"] = load_after;
        if (o.as_json) std::printf("%s\n", j.dump(2).c_str());
        else
            std::printf("\nChecks passed (finite logits%s). Checksums are of the check run's logits, in double. "
                        "Load average at end %.2f.\n",
                        o.alpha ? "; every alpha got a finite, non-zero gradient" : "", load_after);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vit_step: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
