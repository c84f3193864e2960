// tools/pretrain_vit.cpp: pretrains the small ViT that `coeffnet tune` fine-tunes by default.
//
//   build/tools/pretrain_vit --out models/vit-shapes        # what made the shipped model
//   build/tools/pretrain_vit --images 2000 --epochs 1 --out /tmp/x   # a quick try
//
// The task is data::pretraining_task() ("shapes": the shape of one object among clutter,
// 6 classes, 32 x 32 images, generated from the seed). The model is ViT-tiny-sized: patch 8,
// hidden 128, 4 layers of 8 heads, MLP 256; initialised as transformers initialises ViT and
// trained from scratch with AdamW under a cosine schedule. It writes the model in the Hugging
// Face layout (config.json, model.safetensors, preprocessor_config.json) and a model card
// (MODEL_CARD.md: the task, the command, steps, accuracy, time). Everything is seeded: the
// same command with the same thread count on the same build writes the same weights (the
// GEMMs' summation order depends on the thread count).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <coeffnet/coeffnet.hpp>
#include <coeffnet/data/procedural.hpp>
#include <coeffnet/models/vit.hpp>
#include <coeffnet/train/finetune.hpp>

#include "args.hpp"
#include "progress.hpp"

using namespace coeffnet;

namespace {

models::ViTConfig tiny_config(const std::vector<std::string>& classes) {
    models::ViTConfig c;
    c.hidden_size = 128;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.intermediate_size = 256;
    c.image_height = c.image_width = 32;
    c.patch_height = c.patch_width = 8;
    c.layer_norm_eps = 1e-6;
    c.id2label = classes;
    return c;
}

int run(const cli::Args& a) {
    const auto t0 = std::chrono::steady_clock::now();
    const data::TaskSpec& task = data::pretraining_task();
    const uint64_t seed = static_cast<uint64_t>(a.integer("seed"));
    const int64_t n_train = a.integer("images"), n_val = a.integer("val-images");
    const std::filesystem::path out = a.str("out");

    // Train and validation images come from disjoint index ranges of the same stream.
    const data::ImageSet train_set = data::generate(task.name, seed, n_train);
    const data::ImageSet val_set = data::generate(task.name, seed, n_val, 32, n_train);
    const std::array<double, 3> mean{0.5, 0.5, 0.5}, stdev{0.5, 0.5, 0.5};
    const Tensor<float> train_px = data::to_pixels(train_set.images, mean, stdev);
    const Tensor<float> val_px = data::to_pixels(val_set.images, mean, stdev);

    models::ViTForImageClassification<float> model(tiny_config(task.classes));
    Generator init(seed);
    model.vit.init_weights(init);

    train::TuneConfig c;
    c.method = train::Method::full;
    c.epochs = a.integer("epochs");
    c.batch_size = a.integer("batch");
    c.warmup_fraction = 0.05;
    c.head = c.backbone = {a.number("lr"), 0.05};
    c.seed = seed;
    train::Finetuner<float> tuner(model, c, task.classes, train_px, train_set.labels);

    const bool json = a.flag("json");
    nlohmann::json epochs = nlohmann::json::array();
    double val_acc = 0;
    // Per epoch: a bar, the running loss and training accuracy, then the validation accuracy.
    const int64_t per_epoch = tuner.steps_per_epoch();
    int64_t epoch = 0, steps = 0, right = 0, seen = 0;
    double loss = 0;
    auto epoch_bar = [&] {
        return std::make_unique<cli::ProgressBar>(per_epoch, "step",
                                                  "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs));
    };
    auto bar = epoch_bar();
    tuner.fit([&](const train::StepReport& s) {
        loss += s.loss;
        right += s.correct;
        seen += s.images;
        ++steps;
        char m[128];
        std::snprintf(m, sizeof m, "loss %.3f  acc %.1f%%", loss / double(steps), 100.0 * double(right) / double(seen));
        bar->update(steps, m);
        if (s.epoch_end) {
            val_acc = tuner.evaluate(val_px, val_set.labels);
            std::snprintf(m, sizeof m, "loss %.3f  train acc %.1f%%  val acc %.2f%%", loss / double(steps),
                          100.0 * double(right) / double(seen), 100.0 * val_acc);
            bar->finish(m);
            epochs.push_back({{"epoch", epoch + 1},
                              {"loss", loss / double(steps)},
                              {"train_accuracy", double(right) / double(seen)},
                              {"val_accuracy", val_acc}});
            ++epoch;
            steps = right = seen = 0;
            loss = 0;
            if (epoch < c.epochs) bar = epoch_bar();
        }
        return true;
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    model.vit.enable_coeff(false);
    const nlohmann::json preprocessor = {{"do_normalize", true},
                                         {"do_rescale", true},
                                         {"do_resize", true},
                                         {"image_mean", mean},
                                         {"image_std", stdev},
                                         {"image_processor_type", "ViTImageProcessor"},
                                         {"resample", 2},
                                         {"rescale_factor", 1.0 / 255.0},
                                         {"size", {{"height", 32}, {"width", 32}}}};
    models::save_pretrained(out, model, preprocessor);

    std::ostringstream card;
    card << "# vit-shapes: a small ViT pretrained by coeffnet\n\n"
         << "The base model of `coeffnet tune`'s default experiment. Made by coeffnet itself, from "
            "scratch, on a procedurally generated task; nothing here comes from a model hub.\n\n"
         << "| | |\n|---|---|\n"
         << "| task | `" << task.name << "`: " << task.description << " |\n"
         << "| classes | ";
    for (size_t i = 0; i < task.classes.size(); ++i) card << (i ? ", " : "") << task.classes[i];
    card << " |\n"
         << "| architecture | ViTForImageClassification: image 32x32, patch 8 (16 patches + CLS), hidden "
         << model.config().hidden_size << ", " << model.config().num_hidden_layers << " layers of "
         << model.config().num_attention_heads << " heads, MLP " << model.config().intermediate_size << ", "
         << model.num_parameters() << " parameters |\n"
         << "| data | " << n_train << " training images (indices 0.." << n_train - 1 << " of seed " << seed << "), "
         << n_val << " validation images (the next " << n_val << ") |\n"
         << "| training | AdamW lr " << c.head.lr << ", weight decay 0.05, batch " << c.batch_size
         << ", cosine schedule with 5% warm-up, " << c.epochs << " epochs = " << tuner.total_steps() << " steps |\n";
    char acc[64];
    std::snprintf(acc, sizeof acc, "%.2f%%", 100.0 * val_acc);
    card << "| validation accuracy | " << acc << " (chance " << 100.0 / double(task.classes.size()) << "%) |\n";
    std::snprintf(acc, sizeof acc, "%.0f s", seconds);
    card << "| time | " << acc << " on " << num_threads() << " thread(s) |\n"
         << "| command | `OMP_NUM_THREADS=" << num_threads() << " build/tools/pretrain_vit --out " << out.string() << " --images " << n_train << " --val-images " << n_val << " --epochs "
         << c.epochs << " --seed " << seed << " --lr " << c.head.lr << " --batch " << c.batch_size << "` |\n\n"
         << "Per epoch (loss, training accuracy, validation accuracy):\n\n| epoch | loss | train acc | val acc |\n"
            "|---|---|---|---|\n";
    for (const auto& e : epochs) {
        char row[128];
        std::snprintf(row, sizeof row, "| %d | %.4f | %.2f%% | %.2f%% |\n", e["epoch"].get<int>(), e["loss"].get<double>(),
                      100.0 * e["train_accuracy"].get<double>(), 100.0 * e["val_accuracy"].get<double>());
        card << row;
    }
    io::write_file_atomic(out / "MODEL_CARD.md", card.str());

    const nlohmann::json report = {{"out", out.string()},       {"task", task.name},
                                   {"parameters", model.num_parameters()}, {"steps", tuner.total_steps()},
                                   {"val_accuracy", val_acc},   {"seconds", seconds},
                                   {"epochs", epochs}};
    if (json) std::cout << report.dump(2) << "\n";
    else std::printf("pretrain_vit: %s written; validation accuracy %.2f%% after %lld steps, %.0f s\n", out.c_str(),
                     100.0 * val_acc, static_cast<long long>(tuner.total_steps()), seconds);
    return cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        cli::Command root("pretrain_vit", "pretrains the small ViT of `coeffnet tune` on the procedural shapes task");
        root.option("out", "DIR", "where to write the model (config.json, model.safetensors, ...)")
            .default_value("models/vit-shapes")
            .option("images", "N", "training images").integer(64).default_value("40000")
            .option("val-images", "N", "validation images").integer(1).default_value("4000")
            .option("epochs", "N", "passes over the training images").integer(1).default_value("12")
            .option("batch", "N", "batch size").integer(1).default_value("64")
            .option("lr", "LR", "peak learning rate").number(0).default_value("0.001")
            .option("seed", "N", "seed of the data, the initialisation and the batch order").integer(0).default_value("0")
            .flag("json", "print a JSON report on stdout")
            .run(run);
        return root.main(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "pretrain_vit: error: " << e.what() << "\n";
        return cli::kExitError;
    }
}
