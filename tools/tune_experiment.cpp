// tools/tune_experiment.cpp: trains and evaluates the runs of `coeffnet tune` (see tune.hpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>

#include <coeffnet/core/parallel.hpp>
#include <coeffnet/io/adapter.hpp>
#include <coeffnet/nn/weights.hpp>

#include "progress.hpp"
#include "tune.hpp"

namespace coeffnet::tune {

namespace {

std::string run_id(const Run& r, const std::vector<TaskData>& tasks) {
    return tasks[r.task].name + "." + r.variant + ".seed" + std::to_string(r.config.seed);
}

// Trains and evaluates one run; thread-safe (its own model, optimiser and generators).
// progress(steps, images, summed loss, correct predictions) after every step.
using Progress = std::function<void(int64_t, int64_t, double, int64_t)>;

void execute(Experiment& ex, Run& r, const Progress& progress) {
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
    tuner.fit([&](const train::StepReport& s) {
        loss = s.loss;
        progress(1, s.images, s.loss * static_cast<double>(s.images), s.correct);
        if (s.epoch_end) r.val_accuracy.push_back(tuner.evaluate(t.val_px, t.val_y));
        const bool stop = ex.stop_after > 0 && s.step >= ex.stop_after;
        if ((ex.checkpoint && s.epoch_end) || stop) {
            fs::create_directories(ckpt.parent_path());
            tuner.save_checkpoint(ckpt);
        }
        return !stop;
    });
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
                // PEFT's target_modules: the last component of each LoRA target's name.
                for (const auto& [name, lin] : model->lora_targets()) {
                    const std::string leaf = name.substr(name.rfind('.') + 1);
                    if (std::find(a.target_modules.begin(), a.target_modules.end(), leaf) == a.target_modules.end())
                        a.target_modules.push_back(leaf);
                }
                a.r = r.config.lora_rank;
                a.lora_alpha = r.config.lora_alpha;
            }
            a.modules_to_save = {"classifier"};
            a.id2label = t.classes;
            a.base_model = ex.model_dir.lexically_normal().generic_string();  // as given (PEFT's base_model_name_or_path)
            nn::save_adapter(ex.out / "adapters" / t.name / r.variant, *model, a);
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// In parallel over runs (each single-threaded), with one progress bar.
void execute_all(Experiment& ex, bool show_progress) {
    int64_t total = 0;
    for (const Run& r : ex.runs) {
        const int64_t n = ex.tasks[r.task].train_y.numel(), b = r.config.batch_size;
        total += r.config.epochs * ((n + b - 1) / b);
    }
    cli::ProgressBar bar(total, "step", "tune", show_progress);
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

}  // namespace coeffnet::tune
