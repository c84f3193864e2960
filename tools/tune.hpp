// tools/tune.hpp: `coeffnet tune`, the main job: Coeff-Tuning against the other ways to adapt a
// pretrained ViT, run for real and reported like the paper's Table 1.
//
//   coeffnet tune                       the default experiment (below), a few minutes on 2 cores
//   coeffnet tune --quick               the same, smaller (under a minute): what CI runs
//   coeffnet tune --ablation            alpha's parameterisation and dropout, on the same tasks
//   coeffnet tune --data DIR|FILE --methods coeff --out OUT     your own data: an image folder
//                                       (one sub-folder per class) or a safetensors data set
//
// The default experiment fine-tunes models/vit-shapes (a ViT that coeffnet pretrained on the
// procedural "shapes" task; see its MODEL_CARD.md) on three few-shot downstream tasks that ask
// for something else (counting, colour-shape conjunction, comparing two shapes; 100 training
// images per class, 5000 test images), with five methods (linear probing, alpha only, LoRA,
// alpha + LoRA, full fine-tuning) and three seeds. The training images are the same for every
// seed (as VTAB-1k's fixed splits); the seed moves the head's initialisation, the batch order
// and the dropout masks. Runs are independent, so they run in parallel, one per core, each
// single-threaded.
//
// Writes OUT/results.json (every run and the summary), OUT/results.svg (a bar chart per task)
// and, for seed 0 of each method and task, an adapter in OUT/adapters/<task>/<method> that
// `coeffnet vit predict --adapter` loads. --checkpoint saves each run's state at every epoch
// (OUT/checkpoints/<run>.safetensors); --resume continues any run that has one, bit for bit.
#pragma once

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/data/image_folder.hpp>
#include <coeffnet/data/procedural.hpp>
#include <coeffnet/io/adapter.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/train/finetune.hpp>
#if defined(COEFFNET_WITH_CUDA)
#include <coeffnet/cuda/runtime.hpp>
#endif
#include <coeffnet/train/progress.hpp>

#include "args.hpp"

namespace coeffnet::tune {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

inline const std::vector<std::string> kDefaultTasks{"count", "conjunction", "same_shape"};

// Where the shipped model lives: $COEFFNET_MODELS_DIR, else the source tree's models/.
inline fs::path default_model_dir() {
    if (const char* env = std::getenv("COEFFNET_MODELS_DIR")) return fs::path(env) / "vit-shapes";
#ifdef COEFFNET_MODELS_DIR
    return fs::path(COEFFNET_MODELS_DIR) / "vit-shapes";
#else
    return "models/vit-shapes";
#endif
}

// One task's data, preprocessed as the model's preprocessor_config.json says.
struct TaskData {
    std::string name;
    std::vector<std::string> classes;
    Tensor<float> train_px, test_px, val_px;  // val: evaluated after every epoch
    Tensor<int64_t> train_y, test_y, val_y;
};

// A run: one variant (a method, or an ablation setting) on one task with one seed.
struct Run {
    size_t task = 0;
    std::string variant;
    train::TuneConfig config;
    double accuracy = 0, seconds = 0, final_loss = 0;
    std::vector<double> val_accuracy;  // after each epoch
    int64_t trainable = 0, head = 0, steps = 0;  // trainable includes the head (D x C + C)
    bool finished = false;
};

inline std::string run_id(const Run& r, const std::vector<TaskData>& tasks) {
    return tasks[r.task].name + "." + r.variant + ".seed" + std::to_string(r.config.seed);
}

inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

inline io::ImageProcessorConfig preprocessing(const fs::path& model_dir, const models::ViTConfig& cfg) {
    const fs::path p = model_dir / "preprocessor_config.json";
    const auto defaults = io::ImageProcessorConfig::vit_defaults(cfg.image_height, cfg.image_width);
    return fs::exists(p) ? io::ImageProcessorConfig::from_json(io::read_json(p), p.string(), defaults) : defaults;
}

inline Tensor<float> pixels_of(const data::ImageSet& set, const io::ImageProcessorConfig& pre,
                               const models::ViTConfig& cfg, const std::string& what) {
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
inline constexpr int64_t kValImages = 400;
inline TaskData procedural_task(const std::string& name, int64_t per_class, int64_t n_test,
                                const io::ImageProcessorConfig& pre, const models::ViTConfig& cfg) {
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
inline TaskData user_task(const fs::path& path, const io::ImageProcessorConfig& pre, const models::ViTConfig& cfg) {
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
        std::vector<int64_t> order(static_cast<size_t>(n));
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

struct Experiment {
    fs::path model_dir, out;
    std::vector<TaskData> tasks;
    std::vector<Run> runs;
    bool checkpoint = false, resume = false, save_adapters = true;
    int64_t stop_after = 0;  // > 0: stop each run after this many steps (to test --resume)
};

// Trains and evaluates one run; thread-safe (its own model, optimiser and generators).
// progress(steps, images, summed loss, correct predictions) after every step.
using Progress = std::function<void(int64_t, int64_t, double, int64_t)>;

inline void execute(Experiment& ex, Run& r, const Progress& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const TaskData& t = ex.tasks[r.task];
    auto model = models::load_vit_for_image_classification<float>(ex.model_dir);
    train::Finetuner<float> tuner(*model, r.config, t.classes, t.train_px, t.train_y);
    r.trainable = tuner.trainable_parameters();
    r.head = model->classifier.weight.numel() + model->classifier.bias.numel();
    const fs::path ckpt = ex.out / "checkpoints" / (run_id(r, ex.tasks) + ".safetensors");
    if (ex.resume && fs::exists(ckpt)) {
        tuner.load_checkpoint(ckpt);
        progress(tuner.step(), 0, 0.0, 0);
    }
    double loss = 0;
    const int64_t n = t.train_y.numel(), bs = r.config.batch_size;
    while (!tuner.done()) {
        const int64_t images = std::min(bs, n - (tuner.step() % tuner.steps_per_epoch()) * bs);
        const auto [l, right] = tuner.train_step();
        loss = l;
        progress(1, images, l * static_cast<double>(images), right);
        const bool epoch_end = tuner.step() % tuner.steps_per_epoch() == 0;
        if (epoch_end) r.val_accuracy.push_back(tuner.evaluate(t.val_px, t.val_y));
        const bool stop = ex.stop_after > 0 && tuner.step() >= ex.stop_after;
        if ((ex.checkpoint && epoch_end) || stop) {
            fs::create_directories(ckpt.parent_path());
            tuner.save_checkpoint(ckpt);
        }
        if (stop) break;
    }
    r.steps = tuner.step();
    r.final_loss = loss;
    r.finished = tuner.done();
    if (r.finished) {
        // User data has one held-out set for both roles: its last per-epoch figure is the test accuracy.
        const bool val_is_test = t.val_px.impl() == t.test_px.impl() && t.val_y.impl() == t.test_y.impl();
        r.accuracy = val_is_test && !r.val_accuracy.empty() ? r.val_accuracy.back() : tuner.evaluate(t.test_px, t.test_y);
        if (ex.save_adapters && r.config.seed == 0) {
            io::AdapterConfig a;
            a.method = train::method_name(r.config.method);
            a.coeff = r.config.coeff();
            if (train::uses_alpha(r.config.method)) a.target_modules.push_back("attention.attention");
            if (train::uses_lora(r.config.method)) {
                a.target_modules.insert(a.target_modules.end(), {"query", "value"});
                a.r = r.config.lora_rank;
                a.lora_alpha = r.config.lora_alpha;
            }
            a.modules_to_save = {"classifier"};
            a.id2label = t.classes;
            a.base_model = fs::absolute(ex.model_dir).string();
            nn::save_adapter(ex.out / "adapters" / t.name / r.variant, *model, a);
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs every run, in parallel over runs (each single-threaded), with one progress bar.
inline void execute_all(Experiment& ex, bool show_progress) {
    int64_t total = 0;
    for (const Run& r : ex.runs) {
        const int64_t n = ex.tasks[r.task].train_y.numel(), b = r.config.batch_size;
        total += r.config.epochs * ((n + b - 1) / b);
    }
    ProgressBar bar(total, "step", "tune", show_progress);
    std::mutex mu;
    int64_t done = 0, runs_done = 0, images = 0, right = 0, all_images = 0;
    double loss = 0;
    const auto t0 = std::chrono::steady_clock::now();
    // The bar shows the training loss and accuracy over the last ~200 steps of all runs.
    auto progress = [&](int64_t steps, int64_t imgs, double loss_sum, int64_t correct) {
        std::lock_guard<std::mutex> lock(mu);
        done += steps;
        images += imgs;
        all_images += imgs;
        loss += loss_sum;
        right += correct;
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char m[160];
        std::snprintf(m, sizeof m, "loss %.3f  acc %.1f%%  %.0f img/s  %lld/%zu runs", images ? loss / double(images) : 0.0,
                      images ? 100.0 * double(right) / double(images) : 0.0, secs > 0 ? double(all_images) / secs : 0.0,
                      static_cast<long long>(runs_done), ex.runs.size());
        bar.update(done, m);
        if (images > 200 * 32) {  // forget old steps so the numbers follow the training
            loss *= 0.5;
            right /= 2;
            images /= 2;
        }
    };
    std::exception_ptr error;
    const int64_t n_runs = static_cast<int64_t>(ex.runs.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n_runs; ++i) {
        try {
            execute(ex, ex.runs[static_cast<size_t>(i)], progress);
            std::lock_guard<std::mutex> lock(mu);
            ++runs_done;
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu);
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
    bar.finish(std::to_string(runs_done) + "/" + std::to_string(ex.runs.size()) + " runs");
}

struct Cell {
    double mean = 0, sd = 0;
    int n = 0;
};

inline Cell summarise(const std::vector<double>& v) {
    Cell c;
    c.n = static_cast<int>(v.size());
    if (v.empty()) return c;
    for (double x : v) c.mean += x;
    c.mean /= static_cast<double>(v.size());
    if (v.size() > 1) {
        for (double x : v) c.sd += (x - c.mean) * (x - c.mean);
        c.sd = std::sqrt(c.sd / static_cast<double>(v.size() - 1));
    }
    return c;
}

// The summary: per variant, per task, mean and sample standard deviation over seeds.
inline ojson summary_json(const Experiment& ex, const std::vector<std::string>& variants) {
    ojson rows = ojson::array();
    for (const auto& v : variants) {
        ojson row{{"variant", v}}, per_task = ojson::object();
        double overall = 0, seconds = 0;
        int64_t tuned = 0;  // without the head, whose size depends on the task
        for (size_t t = 0; t < ex.tasks.size(); ++t) {
            std::vector<double> accs;
            for (const Run& r : ex.runs)
                if (r.variant == v && r.task == t && r.finished) {
                    accs.push_back(r.accuracy);
                    tuned = r.trainable - r.head;
                    seconds += r.seconds;
                }
            const Cell c = summarise(accs);
            per_task[ex.tasks[t].name] = {{"mean", c.mean}, {"sd", c.sd}, {"seeds", c.n}, {"accuracies", accs}};
            overall += c.mean / static_cast<double>(ex.tasks.size());
        }
        row["tasks"] = per_task;
        row["mean"] = overall;
        row["tuned_parameters"] = tuned;
        row["seconds"] = seconds;
        rows.push_back(row);
    }
    return rows;
}

inline std::string pct(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", 100.0 * x);
    return b;
}

inline void print_table(std::ostream& os, const Experiment& ex, const ojson& rows, const std::string& first_col) {
    std::vector<std::vector<std::string>> t;
    std::vector<std::string> head{first_col};
    for (const auto& task : ex.tasks) head.push_back(task.name);
    head.insert(head.end(), {"mean", "tuned", "time"});
    t.push_back(head);
    for (const auto& r : rows) {
        std::vector<std::string> line{r["variant"].get<std::string>()};
        for (const auto& task : ex.tasks) {
            const auto& c = r["tasks"][task.name];
            line.push_back(pct(c["mean"].get<double>()) + (c["seeds"].get<int>() > 1 ? " ± " + pct(c["sd"].get<double>()) : ""));
        }
        line.push_back(pct(r["mean"].get<double>()));
        line.push_back(std::to_string(r["tuned_parameters"].get<int64_t>()));
        char s[32];
        std::snprintf(s, sizeof s, "%.0f s", r["seconds"].get<double>());
        line.push_back(s);
        t.push_back(line);
    }
    std::vector<size_t> width(head.size(), 0);
    for (const auto& line : t)
        for (size_t i = 0; i < line.size(); ++i) {
            size_t w = 0;
            for (unsigned char ch : line[i]) w += (ch & 0xc0) != 0x80;  // count UTF-8 characters
            width[i] = std::max(width[i], w);
        }
    for (size_t li = 0; li < t.size(); ++li) {
        for (size_t i = 0; i < t[li].size(); ++i) {
            size_t w = 0;
            for (unsigned char ch : t[li][i]) w += (ch & 0xc0) != 0x80;
            const std::string pad(width[i] - w, ' ');
            os << (i == 0 ? t[li][i] + pad : "  " + pad + t[li][i]);
        }
        os << "\n";
    }
}

// A grouped bar chart: one group per task plus the mean, one bar per variant, with the seeds'
// standard deviation as whiskers.
inline std::string chart_svg(const Experiment& ex, const ojson& rows, const std::string& title) {
    const std::vector<std::string> colors{"#8c8c8c", "#d62728", "#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e", "#17becf",
                                          "#bcbd22"};
    const size_t groups = ex.tasks.size() + 1, bars = rows.size();
    const double W = 160.0 * static_cast<double>(groups) + 120, H = 360, x0 = 60, y0 = 50, ph = 230;
    const double gw = (W - x0 - 20) / static_cast<double>(groups), bw = gw * 0.8 / static_cast<double>(std::max<size_t>(bars, 1));
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H + 40
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
    for (int k = 0; k <= 10; k += 2) {
        const double y = y0 + ph - ph * k / 10.0;
        s << "<line x1=\"" << x0 << "\" x2=\"" << W - 20 << "\" y1=\"" << y << "\" y2=\"" << y
          << "\" stroke=\"#ddd\"/><text x=\"" << x0 - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << k * 10
          << "%</text>\n";
    }
    for (size_t g = 0; g < groups; ++g) {
        const std::string name = g < ex.tasks.size() ? ex.tasks[g].name : "mean";
        const double gx = x0 + gw * static_cast<double>(g) + gw * 0.1;
        for (size_t b = 0; b < bars; ++b) {
            const auto& r = rows[b];
            const double m = g < ex.tasks.size() ? r["tasks"][name]["mean"].get<double>() : r["mean"].get<double>();
            const double sd = g < ex.tasks.size() ? r["tasks"][name]["sd"].get<double>() : 0.0;
            const double x = gx + bw * static_cast<double>(b), h = ph * m;
            s << "<rect x=\"" << x << "\" y=\"" << y0 + ph - h << "\" width=\"" << bw * 0.9 << "\" height=\"" << h
              << "\" fill=\"" << colors[b % colors.size()] << "\"><title>" << r["variant"].get<std::string>() << " "
              << name << ": " << pct(m) << "%</title></rect>\n";
            if (sd > 0) {
                const double cx = x + bw * 0.45;
                s << "<line x1=\"" << cx << "\" x2=\"" << cx << "\" y1=\"" << y0 + ph - ph * (m + sd) << "\" y2=\""
                  << y0 + ph - ph * (m - sd) << "\" stroke=\"black\"/>\n";
            }
        }
        s << "<text x=\"" << gx + gw * 0.4 << "\" y=\"" << y0 + ph + 18 << "\" text-anchor=\"middle\">" << name
          << "</text>\n";
    }
    for (size_t b = 0; b < bars; ++b) {
        const double x = x0 + 140.0 * static_cast<double>(b % 6), y = y0 + ph + 45 + 18.0 * static_cast<double>(b / 6);
        s << "<rect x=\"" << x << "\" y=\"" << y - 10 << "\" width=\"12\" height=\"12\" fill=\"" << colors[b % colors.size()]
          << "\"/><text x=\"" << x + 16 << "\" y=\"" << y << "\">" << rows[b]["variant"].get<std::string>()
          << " (" << rows[b]["tuned_parameters"].get<int64_t>() << " + head)</text>\n";
    }
    s << "</svg>\n";
    return s.str();
}

// --device: cpu, or cuda. The CUDA backend has its kernels, GEMMs and device tensors, but the
// autograd graph does not run on the GPU yet, so cuda is refused with the reason: no usable GPU
// (what coeffnet::cuda::status() says), or that missing piece.
inline void require_device(const std::string& device) {
    if (device == "cpu") return;
    check(device == "cuda", "tune: --device ", device, ": unknown device (cpu or cuda)");
#if defined(COEFFNET_WITH_CUDA)
    cuda::require("tune --device cuda");
    fail("tune --device cuda: the GPU (", cuda::status().name,
         ") is usable, but coeffnet's autograd graph does not run on it yet; use --device cpu");
#else
    fail("tune --device cuda: this coeffnet was built without the CUDA backend (configure with -DCOEFFNET_CUDA=ON); "
         "use --device cpu");
#endif
}

// The whole command.
inline int cmd_tune(const cli::Args& a) {
    const auto t0 = std::chrono::steady_clock::now();
    require_device(a.str("device"));
    Experiment ex;
    ex.model_dir = a.has("model") ? fs::path(a.str("model")) : default_model_dir();
    ex.out = a.str("out");
    ex.checkpoint = a.flag("checkpoint") || a.flag("resume") || a.integer("stop-after") > 0;
    ex.resume = a.flag("resume");
    ex.stop_after = a.integer("stop-after");
    const bool quick = a.flag("quick"), ablation = a.flag("ablation"), json = a.flag("json");

    auto probe = models::load_vit_for_image_classification<float>(ex.model_dir);
    const models::ViTConfig cfg = probe->config();
    const io::ImageProcessorConfig pre = preprocessing(ex.model_dir, cfg);

    const int64_t per_class = a.integer("train-per-class");
    const int64_t n_test = quick ? std::min<int64_t>(a.integer("test-images"), 1000) : a.integer("test-images");
    if (a.has("data")) {
        ex.tasks.push_back(user_task(a.str("data"), pre, cfg));
    } else {
        const std::vector<std::string> names = a.has("tasks") ? split_list(a.str("tasks")) : kDefaultTasks;
        check(!names.empty(), "tune: --tasks lists no task");
        for (const auto& n : names) ex.tasks.push_back(procedural_task(n, per_class, n_test, pre, cfg));
    }

    train::TuneConfig base;
    base.epochs = quick ? std::min<int64_t>(a.integer("epochs"), 4) : a.integer("epochs");
    base.batch_size = a.integer("batch");
    base.alpha_dropout = a.number("alpha-dropout");
    base.alpha_init = train::parse_alpha_init(a.str("alpha-init"));
    base.lora_rank = a.integer("lora-rank");
    base.lora_alpha = a.number("lora-alpha");
    base.head = {a.number("lr-head"), a.number("wd-head")};
    base.alpha = {a.number("lr-alpha"), a.number("wd-alpha")};
    base.lora = {a.number("lr-lora"), a.number("wd-lora")};
    base.backbone = {a.number("lr-full"), a.number("wd-full")};
    const int64_t seeds = quick ? 1 : a.integer("seeds");

    // The variants: the methods, or the ablation's settings of alpha.
    std::vector<std::pair<std::string, train::TuneConfig>> variants;
    if (ablation) {
        // Residual zero init vs identity init vs random init, with weight decay and dropout on
        // (they are what separates the first two), then alpha dropout p with residual init.
        const double wd = a.has("wd-alpha") && a.number("wd-alpha") > 0 ? a.number("wd-alpha") : 0.05;
        const double p = a.number("alpha-dropout") > 0 ? a.number("alpha-dropout") : 0.1;
        for (auto init : {train::AlphaInit::residual_zero, train::AlphaInit::identity, train::AlphaInit::random}) {
            train::TuneConfig c = base;
            c.method = train::Method::coeff;
            c.alpha_init = init;
            c.alpha = {base.alpha.lr, wd};
            c.alpha_dropout = p;
            variants.push_back({"init=" + train::alpha_init_name(init), c});
        }
        for (double q : {0.0, 0.1, 0.2, 0.4}) {
            train::TuneConfig c = base;
            c.method = train::Method::coeff;
            c.alpha_dropout = q;
            char name[32];
            std::snprintf(name, sizeof name, "dropout=%.1f", q);
            variants.push_back({name, c});
        }
    } else {
        const std::vector<std::string> methods =
            a.has("methods") ? split_list(a.str("methods"))
                             : std::vector<std::string>{"linear_probe", "coeff", "lora", "coeff_lora", "full"};
        check(!methods.empty(), "tune: --methods lists no method");
        for (const auto& m : methods) {
            train::TuneConfig c = base;
            c.method = train::parse_method(m);
            variants.push_back({train::method_name(c.method), c});
        }
    }
    for (size_t t = 0; t < ex.tasks.size(); ++t)
        for (const auto& [name, c] : variants)
            for (int64_t s = 0; s < seeds; ++s) {
                Run r;
                r.task = t;
                r.variant = name;
                r.config = c;
                r.config.seed = static_cast<uint64_t>(s);
                ex.runs.push_back(r);
            }

    if (!json) {
        std::cout << "coeffnet tune: " << ex.runs.size() << " runs (" << variants.size() << " "
                  << (ablation ? "settings" : "methods") << " x " << ex.tasks.size() << " task"
                  << (ex.tasks.size() == 1 ? "" : "s") << " x " << seeds << " seed" << (seeds == 1 ? "" : "s")
                  << ") on " << ex.model_dir.string() << ", " << num_threads() << " in parallel\n";
        for (const auto& t : ex.tasks)
            std::cout << "  " << t.name << ": " << t.classes.size() << " classes, " << t.train_y.numel()
                      << " training / " << t.test_y.numel() << " test images\n";
    }
    fs::create_directories(ex.out);
    execute_all(ex, !json);

    std::vector<std::string> names;
    for (const auto& v : variants) names.push_back(v.first);
    const ojson rows = summary_json(ex, names);
    ojson runs = ojson::array();
    bool all_finished = true;
    for (const Run& r : ex.runs) {
        all_finished = all_finished && r.finished;
        runs.push_back({{"task", ex.tasks[r.task].name},
                        {"variant", r.variant},
                        {"seed", r.config.seed},
                        {"finished", r.finished},
                        {"steps", r.steps},
                        {"accuracy", r.accuracy},
                        {"final_loss", r.final_loss},
                        {"val_accuracy_per_epoch", r.val_accuracy},
                        {"trainable_parameters", r.trainable},
                        {"head_parameters", r.head},
                        {"seconds", r.seconds},
                        {"config", r.config.to_json()}});
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ojson tasks = ojson::array();
    for (const auto& t : ex.tasks)
        tasks.push_back({{"name", t.name}, {"classes", t.classes}, {"train", t.train_y.numel()}, {"test", t.test_y.numel()}});
    const ojson result{{"model", ex.model_dir.string()},
                       {"kind", ablation ? "ablation" : "methods"},
                       {"quick", quick},
                       {"seeds", seeds},
                       {"tasks", tasks},
                       {"summary", rows},
                       {"runs", runs},
                       {"threads", num_threads()},
                       {"seconds", seconds}};
    io::write_file_atomic(ex.out / "results.json", result.dump(2) + "\n");
    if (!all_finished) {
        if (!json) std::cout << "stopped after " << ex.stop_after << " steps per run; resume with --resume\n";
        else std::cout << result.dump(2) << "\n";
        return cli::kExitOk;
    }
    const std::string title = ablation ? "Coeff-Tuning ablation: test accuracy" : "Test accuracy by method and task";
    io::write_file_atomic(ex.out / "results.svg", chart_svg(ex, rows, title));
    if (json) {
        std::cout << result.dump(2) << "\n";
    } else {
        std::cout << "\nTest accuracy (%), mean ± sd over " << seeds << " seed" << (seeds == 1 ? "" : "s") << ":\n\n";
        print_table(std::cout, ex, rows, ablation ? "setting" : "method");
        std::cout << "\ntuned: parameters trained besides the task's head (" << cfg.hidden_size << " x classes + classes); time: "
                  << "the runs' own seconds, summed\n";
        char s[64];
        std::snprintf(s, sizeof s, "%.0f s", seconds);
        std::cout << "\nresults: " << (ex.out / "results.json").string() << ", chart: " << (ex.out / "results.svg").string()
                  << (ex.save_adapters ? ", adapters: " + (ex.out / "adapters").string() : std::string()) << " (" << s
                  << ")\n";
    }
    return cli::kExitOk;
}

inline void declare(cli::Command& root) {
    root.add("tune", "fine-tune a ViT with Coeff-Tuning and the methods it is compared with, and report")
        .description(
            "With no arguments: the default experiment (models/vit-shapes fine-tuned on three procedural few-shot "
            "tasks with linear probing, alpha only, LoRA, alpha + LoRA and full fine-tuning, 3 seeds), printed as a "
            "table like the paper's Table 1 and written to OUT/results.json and OUT/results.svg, with adapters in "
            "OUT/adapters. Runs go in parallel, one per core.")
        .option("model", "DIR", "the base model (default: the shipped models/vit-shapes)")
        .option("data", "PATH", "your data instead of the procedural tasks: an image folder or a safetensors data set")
        .option("tasks", "LIST", "procedural tasks, comma-separated (default count,conjunction,same_shape)")
        .option("methods", "LIST", "linear_probe,coeff,lora,coeff_lora,full (default: all five)")
        .option("seeds", "N", "seeds per method and task").integer(1).default_value("3")
        .option("epochs", "N", "passes over the training images").integer(1).default_value("15")
        .option("batch", "N", "batch size").integer(1).default_value("32")
        .option("train-per-class", "N", "training images per class of a procedural task").integer(1).default_value("100")
        .option("test-images", "N", "test images per procedural task").integer(1).default_value("5000")
        .option("lr-head", "LR", "learning rate of the head").number(0).default_value("0.003")
        .option("lr-alpha", "LR", "learning rate of alpha").number(0).default_value("0.01")
        .option("lr-lora", "LR", "learning rate of LoRA's A and B").number(0).default_value("0.003")
        .option("lr-full", "LR", "learning rate of the backbone in full fine-tuning").number(0).default_value("0.0003")
        .option("wd-head", "WD", "weight decay of the head").number(0).default_value("0")
        .option("wd-alpha", "WD", "weight decay of alpha (ablation default 0.05)").number(0).default_value("0")
        .option("wd-lora", "WD", "weight decay of LoRA").number(0).default_value("0")
        .option("wd-full", "WD", "weight decay of the backbone").number(0).default_value("0.01")
        .option("alpha-dropout", "P", "dropout on alpha").number(0).default_value("0")
        .option("alpha-init", "INIT", "residual_zero, identity or random").default_value("residual_zero")
        .option("lora-rank", "R", "LoRA rank").integer(1).default_value("4")
        .option("lora-alpha", "A", "LoRA alpha (scaling alpha / r)").number(0).default_value("8")
        .option("out", "DIR", "where results, adapters and checkpoints go").default_value("tune_out")
        .option("device", "DEV", "cpu or cuda (cuda: not yet, see the README's CUDA section)").default_value("cpu")
        .option("stop-after", "N", "stop every run after N steps, with a checkpoint (then --resume)").integer(0).default_value("0")
        .flag("checkpoint", "save each run's state at every epoch in OUT/checkpoints")
        .flag("resume", "continue runs from OUT/checkpoints")
        .flag("quick", "a small version (1 seed, at most 4 epochs, 1000 test images): under a minute")
        .flag("ablation", "alpha's parameterisation and dropout instead of the methods")
        .flag("json", "print the results as one JSON object")
        .example("coeffnet tune")
        .example("coeffnet tune --quick --json")
        .example("coeffnet tune --ablation")
        .example("coeffnet tune --data my_images/ --methods coeff,lora --seeds 1 --out my_run")
        .run(cmd_tune);
}

}  // namespace coeffnet::tune
