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
//
// One translation unit per job, all declared here:
//   tune.cpp             the command: options, the runs it makes, what it prints and writes
//   tune_data.cpp        the tasks' images (procedural or the user's), preprocessed for the model
//   tune_experiment.cpp  training and evaluating the runs, in parallel, with the progress bar
//   tune_json.cpp        the summary over seeds and results.json
//   tune_table.cpp       the table on the terminal
//   tune_svg.cpp         the chart, results.svg
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/io/hf.hpp>
#include <coeffnet/io/image.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/train/finetune.hpp>

#include "args.hpp"

namespace coeffnet::tune {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// One task's data, preprocessed as the model's preprocessor_config.json says.
struct TaskData {
    std::string name;
    std::vector<std::string> classes;
    Tensor<float> train_px, test_px, val_px;  // val: evaluated after every epoch
    Tensor<int64_t> train_y, test_y, val_y;

    // The accuracy of a uniform guess.
    double chance() const { return classes.empty() ? 0.0 : 1.0 / static_cast<double>(classes.size()); }
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

struct Experiment {
    fs::path model_dir, out;
    std::vector<TaskData> tasks;
    std::vector<Run> runs;
    bool checkpoint = false, resume = false, save_adapters = true;
    int64_t stop_after = 0;  // > 0: stop each run after this many steps (to test --resume)
};

// tune.cpp: adds `tune` to the tool's commands.
void declare(cli::Command& root);

// tune_data.cpp
fs::path default_model_dir();  // $COEFFNET_MODELS_DIR/vit-shapes, else the source tree's
io::ImageProcessorConfig preprocessing(const fs::path& model_dir, const models::ViTConfig& cfg);
TaskData procedural_task(const std::string& name, int64_t per_class, int64_t n_test, const io::ImageProcessorConfig& pre,
                         const models::ViTConfig& cfg);
TaskData user_task(const fs::path& path, const io::ImageProcessorConfig& pre, const models::ViTConfig& cfg);

// tune_experiment.cpp: runs every run of `ex` (in parallel, each single-threaded), filling in
// its results; a progress bar on stderr when `show_progress`.
void execute_all(Experiment& ex, bool show_progress);

// tune_json.cpp: the summary (per variant, per task: mean and sample standard deviation over
// seeds), and results.json's object.
ojson summary_json(const Experiment& ex, const std::vector<std::string>& variants);
ojson results_json(const Experiment& ex, const ojson& summary, bool ablation, bool quick, int64_t seeds, double seconds);
std::string pct(double x);  // 0.4191 -> "41.9"

// tune_table.cpp: the summary as a text table; `first_col` heads the variants' column.
void print_table(std::ostream& os, const Experiment& ex, const ojson& summary, const std::string& first_col);

// tune_svg.cpp: the summary as a grouped bar chart (SVG).
std::string chart_svg(const Experiment& ex, const ojson& summary, const std::string& title);

}  // namespace coeffnet::tune
