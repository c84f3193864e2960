// tools/tune.cpp: the `coeffnet tune` command (see tune.hpp): its options, the runs it makes,
// what it prints and writes.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <coeffnet/core/parallel.hpp>
#if defined(COEFFNET_WITH_CUDA)
#include <coeffnet/cuda/runtime.hpp>
#endif

#include "tune.hpp"

namespace coeffnet::tune {

namespace {

const std::vector<std::string> kDefaultTasks{"count", "conjunction", "same_shape"};

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

// --device: cpu, cuda, cuda:N or emu (Device::parse). Only the CPU runs the autograd graph yet:
// the CUDA backend has its kernels, GEMMs and device tensors, and the emulated device its kernels,
// but no backend table below the ops, so the others are refused with the reason (for cuda also
// what coeffnet::cuda::status() says when no GPU is usable).
void require_device(const std::string& text) {
    const Device device = Device::parse(text);
    if (device.is_cpu()) return;
    check(device.is_cuda(), "tune --device ", device,
          ": the emulated device runs the CUDA kernels in tests (coeffnet_emulated_tests), not the autograd "
          "graph yet; use --device cpu");
#if defined(COEFFNET_WITH_CUDA)
    cuda::require("tune --device cuda");
    fail("tune --device ", device, ": the GPU (", cuda::status().name,
         ") is usable, but coeffnet's autograd graph does not run on it yet; use --device cpu");
#else
    fail("tune --device ", device, ": this coeffnet was built without the CUDA backend (configure with "
         "-DCOEFFNET_CUDA=ON); use --device cpu");
#endif
}

// The whole command.
int cmd_tune(const cli::Args& a) {
    const auto t0 = std::chrono::steady_clock::now();
    require_device(a.str("device"));
    Experiment ex;
    ex.model_dir = a.has("model") ? fs::path(a.str("model")) : default_model_dir();
    ex.out = a.str("out");
    ex.checkpoint = a.flag("checkpoint") || a.flag("resume") || a.integer("stop-after") > 0;
    ex.resume = a.flag("resume");
    ex.stop_after = a.integer("stop-after");
    const bool quick = a.flag("quick"), ablation = a.flag("ablation"), json = a.flag("json");

    // The model's config only: each run loads the weights itself (and a bad checkpoint fails the
    // first run with the loader's message). Building the model here would instantiate all of it
    // in this file for nothing.
    const io::ModelDir md = io::ModelDir::open(ex.model_dir);
    const models::ViTConfig cfg = models::ViTConfig::from_json(md.config(), md.config_file());
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
    bool all_finished = true;
    for (const Run& r : ex.runs) all_finished = all_finished && r.finished;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const ojson result = results_json(ex, rows, ablation, quick, seeds, seconds);
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

}  // namespace

void declare(cli::Command& root) {
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
        .option("device", "DEV", "cpu, cuda, cuda:N or emu (only cpu runs yet, see the README's CUDA section)").default_value("cpu")
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
