// tools/tune_json.cpp: the summary of `coeffnet tune` over seeds, and results.json (see tune.hpp).
#include <cmath>
#include <cstdio>

#include <coeffnet/core/parallel.hpp>

#include "tune.hpp"

namespace coeffnet::tune {

namespace {

struct Cell {
    double mean = 0, sd = 0;
    int n = 0;
};

Cell summarise(const std::vector<double>& v) {
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

}  // namespace

// The summary: per variant, per task, mean and sample standard deviation over seeds.
ojson summary_json(const Experiment& ex, const std::vector<std::string>& variants) {
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

std::string pct(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", 100.0 * x);
    return b;
}

ojson results_json(const Experiment& ex, const ojson& summary, bool ablation, bool quick, int64_t seeds, double seconds) {
    ojson runs = ojson::array();
    for (const Run& r : ex.runs)
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
    ojson tasks = ojson::array();
    for (const auto& t : ex.tasks)
        tasks.push_back({{"name", t.name}, {"classes", t.classes}, {"train", t.train_y.numel()}, {"test", t.test_y.numel()}});
    return {{"model", ex.model_dir.string()},
            {"kind", ablation ? "ablation" : "methods"},
            {"quick", quick},
            {"seeds", seeds},
            {"tasks", tasks},
            {"summary", summary},
            {"runs", runs},
            {"threads", num_threads()},
            {"seconds", seconds}};
}

}  // namespace coeffnet::tune
