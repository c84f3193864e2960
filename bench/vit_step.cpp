// vit_step: a ViT-B/16 forward and the tuning steps (Coeff-Tuning alpha, alpha + LoRA, full) on
// the CPU, end to end, float32.
//
// What it measures: the wall time of these pieces of work through the whole library (model, ops,
// autograd, optimiser), on coeffnet::models::ViTForImageClassification<float> with the ViT-B/16
// config (ViTConfig's defaults: width 768, 12 layers, 12 heads, MLP 3072, 224 x 224, patch 16)
// and --labels classes (default 1000), or the checkpoint in --model DIR:
//   fwd    the forward pass to the logits at batch --batch (default 8), under coeffnet::NoGrad,
//          in evaluation mode, Coeff-Tuning off (inference);
//   alpha  one Coeff-Tuning step at the same batch: every parameter of the backbone and the head
//          frozen, enable_coeff(true, CoeffSpec{0.0, true}) (alpha [12, 12] per layer, residual,
//          no alpha dropout), training mode (every dropout p of the config is 0, so this is
//          deterministic), forward, cross_entropy(logits, labels), backward, one AdamW step on the
//          12 alphas (lr 1e-2, weight decay 0: the Finetuner's alpha group), zero_grad;
//   lora   the same with LoRA (rank 4, alpha 8, PEFT's init: A random, B zero) on every layer's
//          query and value (the model's lora_targets) trained beside the alphas (AdamW group lr
//          3e-3, as the Finetuner's coeff_lora method);
//   full   full fine-tuning: Coeff-Tuning and LoRA off, every parameter trained (AdamW lr 3e-4,
//          weight decay 0.01, the Finetuner's backbone group).
// The works run in that order on one model (full last: it changes the weights). Without --model
// the model is built once and initialised from a fixed seed as transformers' _init_weights does
// (ViTModel::init_weights: every weight, the CLS token and the position embeddings normal(0,
// 0.02), biases zero, layer-norm gains one), and the classifier's weight normal(0, 0.02) with a
// zero bias; pixels are randn [B, 3, 224, 224] from another fixed seed, or the first --batch
// images of the tensor "pixel_values" in --pixels FILE (safetensors); label i is i % labels.
// Two builds of this program therefore compute the same thing, and print the same checksums up
// to rounding differences between their kernels. --logits-out FILE writes the fwd check run's
// logits (tensor "logits", safetensors) for comparison with another implementation
// (bench/cpu_vs_torch.py compares them with PyTorch's before it times anything).
//
// Method. Before anything is timed, each work runs once outside the timed functions and is
// checked: the logits are finite; for a step, every trained parameter has a finite gradient (each
// alpha's not all zero; LoRA's A gets none in the first step, its B being zero), no frozen
// parameter has one, and the AdamW step leaves every trained parameter finite.
// That run's logits give the checksum (sum and sum of |x|, in double), printed so two builds can
// be compared. Then --warmup untimed and --reps timed calls (default 1 and 5), one work after the
// other (in the order above, whatever the order in --work), each timed alone on
// std::chrono::steady_clock; reported: min, median and max ms and every rep. A step's reps
// keep stepping the same optimiser (the parameters move; the work per step does not change).
// Progress goes to stderr, one line per call.
//
// Callgrind. Each timed call is one call of a noinline (and, with GCC, noclone) function with a
// distinctive name, vit_step_timed_fwd or vit_step_timed_step, and nothing else runs inside
// them (the check run does not go through them), so callgrind can count exactly the timed work:
// --warmup + --reps calls of it. Valgrind 3.19 cannot run AVX-512 code: build a copy without
// -march=native (as for gemm_bench, bench/README.md), and use one thread (OpenMP's workers
// would run outside the toggled function):
// (each command is one line; no backslashes, which would continue this comment)
//   cmake -S . -B build-callgrind -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOEFFNET_NATIVE=OFF -DCMAKE_CXX_FLAGS="-march=x86-64-v3 -g" -DCOEFFNET_CUDA=OFF
//   cmake --build build-callgrind --target vit_step -j1
//   OMP_NUM_THREADS=1 valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*vit_step_timed_fwd*' ./build-callgrind/bench/vit_step --work fwd --reps 1 --warmup 0
// (then --toggle-collect='*vit_step_timed_step*' with --work alpha); the "Collected" line of
// valgrind's summary, or callgrind_annotate's total, is the instruction count of that one call.
//
// Usage: vit_step [--work fwd,alpha,lora,full] [--batch N] [--labels N] [--model DIR] [--pixels FILE]
//                 [--logits-out FILE] [--reps N] [--warmup N] [--json] [--help]

#include <algorithm>
#include <array>
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
#include <coeffnet/io/safetensors.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/train/finetune.hpp>

#include "bench_util.hpp"

using coeffnet::Tensor;
using Model = coeffnet::models::ViTForImageClassification<float>;

// What one step hands back: the logits (detached: the graph is freed inside the step) and the loss.
struct StepOut {
    Tensor<float> logits;
    double loss = 0;
};

// What the check run looks at between backward and the optimiser step.
struct StepProbe {
    bool every_grad_ok = true;  // each trained parameter: gradient defined and finite
    std::string bad;            // the first parameter that failed, and why
    double grad_abs_sum = 0;    // sum of |gradient| over the trained parameters
    double alpha_grad_abs_sum = 0;  // the same over the alphas alone
    int64_t frozen_with_grad = 0;
};

namespace {

// The forward pass: logits [B, labels], no recording (the caller holds NoGrad), evaluation mode.
Tensor<float> run_fwd(Model& model, const Tensor<float>& pixels) { return model.forward(pixels).logits; }

// Sum and sum of |x| of a tensor, in double, and whether every entry is finite.
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

// One training step: forward, loss, backward, (probe), AdamW step, zero_grad. `alphas` are
// checked for a non-zero gradient each (they get one from the first step on).
StepOut run_step(Model& model, coeffnet::AdamW<float>& opt, const Tensor<float>& pixels, const Tensor<int64_t>& labels,
                 StepProbe* probe) {
    const Tensor<float> logits = model.forward(pixels).logits;
    const Tensor<float> loss = coeffnet::cross_entropy(logits, labels);
    loss.backward();
    if (probe) {
        for (const auto& [name, p, role] : model.named_roles()) {
            if (!p->defined()) continue;
            const Tensor<float> g = p->grad();
            if (!p->requires_grad()) {
                if (g.defined()) ++probe->frozen_with_grad;
                continue;
            }
            std::string why;
            const Checksum c = g.defined() ? checksum(g) : Checksum{};
            const double s = c.abs_sum;
            if (!g.defined()) why = "no gradient";
            else if (!c.finite) why = "a non-finite gradient entry";
            else if (role == coeffnet::nn::ParamRole::alpha && s == 0) why = "an all-zero gradient";
            probe->grad_abs_sum += s;
            if (role == coeffnet::nn::ParamRole::alpha) probe->alpha_grad_abs_sum += s;
            if (!why.empty() && probe->every_grad_ok) {
                probe->every_grad_ok = false;
                probe->bad = name + ": " + why;
            }
        }
    }
    opt.step();
    opt.zero_grad();
    return {logits.detach(), static_cast<double>(loss.item())};
}

}  // namespace

// The timed functions, the only calls of run_fwd / run_step inside a timed interval. External
// linkage, noinline and (GCC) noclone, so that each exists under its own name in the binary and
// callgrind's --toggle-collect='*vit_step_timed_fwd*' finds it. Declared here to keep
// -Wmissing-declarations quiet where it is on.
#if defined(__GNUC__) && !defined(__clang__)
#define VIT_STEP_TIMED __attribute__((noinline, noclone))
#else
#define VIT_STEP_TIMED __attribute__((noinline))
#endif
VIT_STEP_TIMED Tensor<float> vit_step_timed_fwd(Model& model, const Tensor<float>& pixels);
VIT_STEP_TIMED StepOut vit_step_timed_step(Model& model, coeffnet::AdamW<float>& opt, const Tensor<float>& pixels,
                                           const Tensor<int64_t>& labels);

// The empty asm after each call keeps the compiler from turning it into a tail call (a jump out
// of the function, after which it would no longer be on the stack while the work runs).
Tensor<float> vit_step_timed_fwd(Model& model, const Tensor<float>& pixels) {
    Tensor<float> logits = run_fwd(model, pixels);
    __asm__ __volatile__("" ::: "memory");
    return logits;
}

StepOut vit_step_timed_step(Model& model, coeffnet::AdamW<float>& opt, const Tensor<float>& pixels,
                            const Tensor<int64_t>& labels) {
    StepOut out = run_step(model, opt, pixels, labels, nullptr);
    __asm__ __volatile__("" ::: "memory");
    return out;
}

namespace {

using bench::Clock;
using bench::seconds_since;
using json = nlohmann::ordered_json;  // keys in the order written

constexpr uint64_t kModelSeed = 2024, kPixelSeed = 7;

[[noreturn]] void fail_check(const std::string& what) {
    std::fprintf(stderr, "vit_step: CHECK FAILED: %s\n", what.c_str());
    std::exit(1);
}

// The works, in the order they run.
enum class Work { fwd, alpha, lora, full };
constexpr std::array<Work, 4> kWorks{Work::fwd, Work::alpha, Work::lora, Work::full};
const char* work_name(Work w) {
    switch (w) {
        case Work::fwd: return "fwd";
        case Work::alpha: return "alpha";
        case Work::lora: return "lora";
        case Work::full: return "full";
    }
    return "?";
}

struct Options {
    std::array<bool, 4> run{true, true, false, false};  // by Work; default fwd,alpha
    bool as_json = false, batch_given = false, labels_given = false;
    int64_t batch = 8, labels = 1000;
    int reps = 5, warmup = 1;
    std::string model_dir, pixels_file, logits_out;
};

// Counted during each timed rep: the host caching allocator's raw mallocs (core/host_allocator.hpp;
// 0 in steady state) and what it holds, and the GEMM work (gemm_flops(), ops/matmul.hpp: 2 M N K
// per product), which divided by the machine's FMA peak is the time the call would take if every
// product ran at the peak and nothing else took time.
struct RepStats {
    std::vector<int64_t> raw_mallocs;
    std::vector<double> gemm_gflop;
    double reserved_mb = 0, peak_in_use_mb = 0;
    // The GEMM work per second over a whole call of median_ms.
    double gemm_gflops(double median_ms) const { return gemm_gflop.front() / (median_ms * 1e-3); }
};

// Times `call` warmup + reps times, one line per call on stderr; returns the timed reps in ms.
template <class F>
std::vector<double> time_reps(const char* work, const Options& o, RepStats& stats, F&& call) {
    std::vector<double> ms;
    coeffnet::host_allocator().reset_peak();
    for (int i = 0; i < o.warmup + o.reps; ++i) {
        const bool warm = i < o.warmup;
        const int64_t mallocs = coeffnet::host_allocator().stats().num_raw_malloc;
        const int64_t flops = coeffnet::gemm_flops().load();
        const auto t0 = Clock::now();
        call();
        const double t = seconds_since(t0) * 1e3;
        if (!warm) {
            ms.push_back(t);
            stats.raw_mallocs.push_back(coeffnet::host_allocator().stats().num_raw_malloc - mallocs);
            stats.gemm_gflop.push_back(static_cast<double>(coeffnet::gemm_flops().load() - flops) * 1e-9);
        }
        std::fprintf(stderr, "vit_step: %s %s %d/%d: %.1f ms\n", work, warm ? "warm-up" : "rep",
                     warm ? i + 1 : i - o.warmup + 1, warm ? o.warmup : o.reps, t);
    }
    const coeffnet::AllocatorStats st = coeffnet::host_allocator().stats();
    stats.reserved_mb = static_cast<double>(st.bytes_reserved) / 1e6;
    stats.peak_in_use_mb = static_cast<double>(st.peak_in_use) / 1e6;
    return ms;
}

json timing_json(const std::vector<double>& ms, const RepStats& stats) {
    return {{"ms", ms},
            {"ms_min", *std::min_element(ms.begin(), ms.end())},
            {"ms_median", bench::median(ms)},
            {"ms_max", *std::max_element(ms.begin(), ms.end())},
            {"host_cache",
             {{"raw_mallocs_per_rep", stats.raw_mallocs},
              {"reserved_mb", stats.reserved_mb},
              {"peak_in_use_mb", stats.peak_in_use_mb}}},
            {"gemm_gflop", stats.gemm_gflop.front()},
            {"gemm_gflops_over_the_call", stats.gemm_gflops(bench::median(ms))}};
}

void print_row(const char* work, const Options& o, const std::vector<double>& ms, const RepStats& stats,
               const Checksum& c) {
    const double med = bench::median(ms);
    std::printf("%-6s %5lld %5d %10.1f %10.1f %10.1f %8.2f %16.6f %16.6f\n", work, static_cast<long long>(o.batch),
                o.reps, *std::min_element(ms.begin(), ms.end()), med, *std::max_element(ms.begin(), ms.end()),
                static_cast<double>(o.batch) / (med * 1e-3), c.sum, c.abs_sum);
    std::printf("       per rep (ms):");
    for (double t : ms) std::printf(" %.1f", t);
    std::printf("\n       host cache: raw mallocs per rep");
    for (int64_t n : stats.raw_mallocs) std::printf(" %lld", static_cast<long long>(n));
    std::printf(", reserved %.0f MB, peak in use %.0f MB\n", stats.reserved_mb, stats.peak_in_use_mb);
    std::printf("       GEMM work %.1f GFLOP per call: %.1f GFLOP/s over the whole call (median)\n",
                stats.gemm_gflop.front(), stats.gemm_gflops(med));
    std::fflush(stdout);
}

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: vit_step [--work fwd,alpha,lora,full] [--batch N] [--labels N] [--model DIR] [--pixels FILE]\n"
                 "                [--logits-out FILE] [--reps N] [--warmup N] [--json] [--help]\n"
                 "\n"
                 "Wall time of a ViT-B/16 forward (fwd: NoGrad, evaluation mode) and of training steps on the\n"
                 "CPU, float32 (alpha: Coeff-Tuning, backbone and head frozen; lora: alpha + LoRA r=4 on query\n"
                 "and value; full: every parameter; each forward, cross-entropy, backward, AdamW, zero_grad).\n"
                 "\n"
                 "  --work LIST       comma-separated works: fwd, alpha, lora, full (default fwd,alpha; they\n"
                 "                    run in that order)\n"
                 "  --batch N         images per call (default 8)\n"
                 "  --labels N        classes of the head of the random model (default 1000)\n"
                 "  --model DIR       a save_pretrained ViTForImageClassification instead of random weights\n"
                 "  --pixels FILE     safetensors with \"pixel_values\" [>= N, 3, H, W]: its first N images\n"
                 "                    instead of random pixels\n"
                 "  --logits-out FILE write the fwd check run's logits there (safetensors, \"logits\")\n"
                 "  --reps N          timed calls per work (default 5)\n"
                 "  --warmup N        untimed calls before them (default 1)\n"
                 "  --json            print one JSON object instead of the table\n"
                 "  --help            this text\n"
                 "\n"
                 "Threads: OMP_NUM_THREADS or COEFFNET_NUM_THREADS (default: all cores). Each work runs once\n"
                 "and is checked (finite logits; for a step, a finite gradient on every trained parameter,\n"
                 "non-zero on every alpha, none on a frozen one) before it is timed; exit 1 when a check\n"
                 "fails, 2 on a bad argument. The logits' checksum (sum, sum of |x|) is printed so two builds\n"
                 "can be compared. For callgrind, the timed calls are the functions vit_step_timed_fwd and\n"
                 "vit_step_timed_step; see the header of bench/vit_step.cpp.\n");
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

[[noreturn]] void bad_argument(const std::string& why) {
    std::fprintf(stderr, "vit_step: %s (try --help)\n", why.c_str());
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) bad_argument(std::string(flag) + " needs a value");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(stdout);
            std::exit(0);
        } else if (a == "--json") {
            o.as_json = true;
        } else if (a == "--batch") {
            o.batch = parse_int("--batch", value("--batch"), 1, 4096);
            o.batch_given = true;
        } else if (a == "--labels") {
            o.labels = parse_int("--labels", value("--labels"), 1, 1000000);
            o.labels_given = true;
        } else if (a == "--reps") {
            o.reps = static_cast<int>(parse_int("--reps", value("--reps"), 1, 1000));
        } else if (a == "--warmup") {
            o.warmup = static_cast<int>(parse_int("--warmup", value("--warmup"), 0, 1000));
        } else if (a == "--model") {
            o.model_dir = value("--model");
        } else if (a == "--pixels") {
            o.pixels_file = value("--pixels");
        } else if (a == "--logits-out") {
            o.logits_out = value("--logits-out");
        } else if (a == "--work") {
            const std::string list = value("--work");
            o.run.fill(false);
            size_t start = 0;
            for (;;) {
                const size_t comma = list.find(',', start);
                const std::string w = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
                bool known = false;
                for (Work k : kWorks)
                    if (w == work_name(k)) o.run[static_cast<size_t>(k)] = known = true;
                if (!known) bad_argument("--work: unknown work '" + w + "' in '" + list + "' (fwd, alpha, lora, full)");
                if (comma == std::string::npos) break;
                start = comma + 1;
            }
        } else {
            bad_argument("unknown argument '" + a + "'");
        }
    }
    if (!o.model_dir.empty() && o.labels_given) bad_argument("--labels is for the random model; --model has its own");
    if (!o.logits_out.empty() && !o.run[static_cast<size_t>(Work::fwd)])
        bad_argument("--logits-out writes the fwd work's logits: add fwd to --work");
    return o;
}

// Sets the model up for a step work and returns its optimiser's groups: everything frozen and
// Coeff-Tuning and LoRA off, then what the work trains (see the header).
std::vector<coeffnet::ParamGroup<float>> setup_step(Model& model, Work w, coeffnet::Generator& init) {
    model.enable_coeff(false, {});
    for (auto& [name, lin] : model.lora_targets()) lin->disable_lora();
    model.set_requires_grad(false);
    model.train();
    std::vector<coeffnet::ParamGroup<float>> groups;
    if (w == Work::alpha || w == Work::lora) {
        model.enable_coeff(true, coeffnet::CoeffSpec{0.0, true});
        groups.push_back({model.vit.alphas(), 1e-2, 0.0, "alpha"});
    }
    if (w == Work::lora) {
        for (auto& [name, lin] : model.lora_targets()) lin->enable_lora(4, 8.0, init);
        groups.push_back({coeffnet::train::parameters_with_role(model, coeffnet::nn::ParamRole::lora), 3e-3, 0.0, "lora"});
    }
    if (w == Work::full) {
        std::vector<Tensor<float>> all;
        for (auto& p : model.parameters()) all.push_back(p.set_requires_grad(true));
        groups.push_back({all, 3e-4, 0.01, "all"});
    }
    return groups;
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse_args(argc, argv);  // o.labels is replaced by --model's
    try {
        (void)coeffnet::num_threads();  // applies COEFFNET_NUM_THREADS, if set, before anything runs
        const double load_before = bench::loadavg_1min();

        // ---- the model, its weights, the batch ----------------------------------------------
        const auto t_setup = Clock::now();
        std::unique_ptr<Model> model;
        if (!o.model_dir.empty()) {
            coeffnet::nn::LoadReport report;
            model = coeffnet::models::load_vit_for_image_classification<float>(o.model_dir, &report);
            o.labels = model->config().num_labels();
        } else {
            coeffnet::models::ViTConfig cfg;  // ViT-B/16
            cfg.id2label.clear();
            for (int64_t i = 0; i < o.labels; ++i) cfg.id2label.push_back("LABEL_" + std::to_string(i));
            model = std::make_unique<Model>(cfg);
            coeffnet::Generator gen(kModelSeed);
            model->vit.init_weights(gen);
            coeffnet::nn::init_normal(model->classifier.weight, gen, cfg.initializer_range);
            model->classifier.bias.fill_(0.0f);
        }
        const coeffnet::models::ViTConfig& cfg = model->config();
        model->set_requires_grad(false);
        const int64_t n_params = model->num_parameters();
        Tensor<float> pixels;
        if (!o.pixels_file.empty()) {
            const coeffnet::io::SafeTensors st = coeffnet::io::SafeTensors::open(o.pixels_file);
            const Tensor<float> all = st.get_as<float>("pixel_values");
            const coeffnet::Shape want{cfg.num_channels, cfg.image_height, cfg.image_width};
            if (all.dim() != 4 || coeffnet::Shape(all.shape().begin() + 1, all.shape().end()) != want ||
                all.shape()[0] < o.batch)
                throw std::runtime_error(o.pixels_file + ": pixel_values is " + coeffnet::shape_str(all.shape()) +
                                         "; the model needs [>= " + std::to_string(o.batch) + ", " +
                                         std::to_string(cfg.num_channels) + ", " + std::to_string(cfg.image_height) +
                                         ", " + std::to_string(cfg.image_width) + "]");
            pixels = all.slice(0, 0, o.batch).contiguous();
        } else {
            coeffnet::Generator pixel_gen(kPixelSeed);
            pixels = Tensor<float>::randn({o.batch, cfg.num_channels, cfg.image_height, cfg.image_width}, pixel_gen);
        }
        std::vector<int64_t> label_values;
        for (int64_t i = 0; i < o.batch; ++i) label_values.push_back(i % o.labels);
        const Tensor<int64_t> labels = Tensor<int64_t>::from(label_values, {o.batch});
        std::fprintf(stderr, "vit_step: model %s (%lld parameters) in %.1f s\n",
                     o.model_dir.empty() ? "built and initialised" : ("loaded from " + o.model_dir).c_str(),
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
                        {"compiler", bench::compiler_name()},
                        {"eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                                              "." + std::to_string(EIGEN_MINOR_VERSION)},
                        {"eigen_simd", Eigen::SimdInstructionSetsInUse()},
                        {"loadavg_1min_at_start", load_before}};
        j["config"] = {{"model", o.model_dir.empty() ? json("ViT-B/16 (random)") : json(o.model_dir)},
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
                       {"model_seed", o.model_dir.empty() ? json(kModelSeed) : json(nullptr)},
                       {"pixels", o.pixels_file.empty() ? json("randn, seed " + std::to_string(kPixelSeed))
                                                        : json(o.pixels_file)}};
        j["results"] = json::array();

        if (!o.as_json) {
            std::printf("vit_step  %s\n", j["date_utc"].get<std::string>().c_str());
            std::printf("cpu: %s | threads: %d%s | %s | Eigen %s (%s) | load average %.2f\n",
                        j["machine"]["cpu"].get<std::string>().c_str(), bench::max_threads(),
                        omp_env || cn_env ? " (from the environment)" : "", bench::compiler_name().c_str(),
                        j["machine"]["eigen_version"].get<std::string>().c_str(), Eigen::SimdInstructionSetsInUse(),
                        load_before);
            std::printf("model: %s (%lld wide, %lld layers, %lld heads, %lldx%lld, patch %lld), %lld labels, "
                        "%lld parameters, float32; batch %lld; %d warm-up + %d timed calls per work\n\n",
                        j["config"]["model"].get<std::string>().c_str(), static_cast<long long>(cfg.hidden_size),
                        static_cast<long long>(cfg.num_hidden_layers), static_cast<long long>(cfg.num_attention_heads),
                        static_cast<long long>(cfg.image_height), static_cast<long long>(cfg.image_width),
                        static_cast<long long>(cfg.patch_height), static_cast<long long>(o.labels),
                        static_cast<long long>(n_params), static_cast<long long>(o.batch), o.warmup, o.reps);
            std::printf("%-6s %5s %5s %10s %10s %10s %8s %16s %16s\n", "work", "batch", "reps", "min ms", "median ms",
                        "max ms", "img/s", "logits sum", "logits sum|x|");
            std::fflush(stdout);
        }

        // ---- fwd ----------------------------------------------------------------------------
        if (o.run[static_cast<size_t>(Work::fwd)]) {
            coeffnet::NoGrad no_grad;
            model->eval();
            const Tensor<float> first = run_fwd(*model, pixels);
            const Checksum c = checksum(first);
            if (!c.finite) fail_check("fwd: the logits are not all finite");
            if (!o.logits_out.empty()) {
                coeffnet::io::SafeTensorsWriter w;
                w.add("logits", first);
                w.write(o.logits_out);
            }
            bool repeatable = true;
            RepStats stats;
            const std::vector<double> ms = time_reps("fwd", o, stats, [&] {
                const Tensor<float> logits = vit_step_timed_fwd(*model, pixels);
                const Checksum r = checksum(logits);
                if (r.sum != c.sum || r.abs_sum != c.abs_sum) repeatable = false;
            });
            if (!repeatable)
                std::fprintf(stderr, "vit_step: warning: fwd: a timed call's logits differ from the check run's\n");
            json row = {{"work", "fwd"}, {"batch", o.batch}, {"reps", o.reps}, {"warmup", o.warmup}};
            row.update(timing_json(ms, stats));
            row["images_per_s"] = static_cast<double>(o.batch) / (bench::median(ms) * 1e-3);
            row["checksum"] = {{"logits_sum", c.sum}, {"logits_abs_sum", c.abs_sum}};
            row["reps_match_check"] = repeatable;
            j["results"].push_back(row);
            if (!o.as_json) print_row("fwd", o, ms, stats, c);
        }

        // ---- the steps ----------------------------------------------------------------------
        coeffnet::Generator lora_init(kModelSeed + 1);
        for (Work w : {Work::alpha, Work::lora, Work::full}) {
            if (!o.run[static_cast<size_t>(w)]) continue;
            const char* name = work_name(w);
            const std::vector<coeffnet::ParamGroup<float>> groups = setup_step(*model, w, lora_init);
            coeffnet::AdamW<float> opt(groups, coeffnet::AdamW<float>::Options{});
            const int64_t trainable = coeffnet::train::count_parameters(groups);
            int64_t needing_grad = 0;
            for (const auto& p : model->parameters())
                if (p.requires_grad()) needing_grad += p.numel();
            if (needing_grad != trainable)
                fail_check(std::string(name) + ": " + std::to_string(needing_grad) + " parameters require a gradient, " +
                           std::to_string(trainable) + " are in the optimiser");
            const int64_t n_alphas = static_cast<int64_t>(model->vit.alphas().size());
            if (w != Work::full && n_alphas != cfg.num_hidden_layers)
                fail_check(std::string(name) + ": " + std::to_string(n_alphas) + " alphas, expected one per layer");

            StepProbe probe;
            const StepOut first = run_step(*model, opt, pixels, labels, &probe);
            const Checksum c = checksum(first.logits);
            if (!c.finite) fail_check(std::string(name) + ": the logits are not all finite");
            if (!std::isfinite(first.loss)) fail_check(std::string(name) + ": the loss is not finite");
            if (!probe.every_grad_ok) fail_check(std::string(name) + ": " + probe.bad);
            if (probe.frozen_with_grad > 0)
                fail_check(std::string(name) + ": " + std::to_string(probe.frozen_with_grad) +
                           " frozen parameters got a gradient");
            double param_abs_sum = 0;
            for (const auto& g : groups)
                for (const auto& p : g.params) {
                    if (p.grad().defined()) fail_check(std::string(name) + ": zero_grad left a gradient");
                    const Checksum c = checksum(p);
                    param_abs_sum += c.abs_sum;
                    if (!c.finite) fail_check(std::string(name) + ": a parameter is not finite after the AdamW step");
                }

            std::vector<double> losses;
            RepStats stats;
            const std::vector<double> ms = time_reps(name, o, stats, [&] {
                const StepOut r = vit_step_timed_step(*model, opt, pixels, labels);
                losses.push_back(r.loss);
            });
            for (double l : losses)
                if (!std::isfinite(l)) fail_check(std::string(name) + ": a timed step's loss is not finite");
            json row = {{"work", name}, {"batch", o.batch}, {"reps", o.reps}, {"warmup", o.warmup}};
            row.update(timing_json(ms, stats));
            row["images_per_s"] = static_cast<double>(o.batch) / (bench::median(ms) * 1e-3);
            row["checksum"] = {{"logits_sum", c.sum},
                               {"logits_abs_sum", c.abs_sum},
                               {"loss", first.loss},
                               {"grad_abs_sum", probe.grad_abs_sum},
                               {"alpha_grad_abs_sum", probe.alpha_grad_abs_sum},
                               {"trained_abs_sum_after_step", param_abs_sum}};
            row["trainable_parameters"] = trainable;
            row["losses"] = losses;
            j["results"].push_back(row);
            if (!o.as_json) {
                print_row(name, o, ms, stats, c);
                std::printf("       check step: loss %.9g, sum|grad| over the %lld trained parameters %.9g (alphas "
                            "%.9g), sum|p| after its AdamW step %.9g\n",
                            first.loss, static_cast<long long>(trainable), probe.grad_abs_sum,
                            probe.alpha_grad_abs_sum, param_abs_sum);
            }
        }

        const double load_after = bench::loadavg_1min();
        j["machine"]["loadavg_1min_at_end"] = load_after;
        // The whole process's peak resident set (model, inputs, every work run).
        j["peak_rss_mb"] = static_cast<double>(bench::proc_status_kib("VmHWM:")) / 1024.0;
        if (o.as_json) std::printf("%s\n", j.dump(2).c_str());
        else
            std::printf("\nChecks passed (finite logits; for the steps, finite gradients on every trained parameter). "
                        "Checksums are of the check run's logits, in double. Load average at end %.2f.\n",
                        load_after);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vit_step: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
