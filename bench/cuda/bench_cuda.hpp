// bench/cuda/bench_cuda.hpp: what every CUDA benchmark here (bench/cuda/*.cpp) shares: the
// command line, the no-GPU exit, cudaEvent timing, and the JSON record written via a temp file.
//
// Command line: --help/-h, --quick, --json PATH, --reps N and --filter STR are parsed here; a
// bench's own flags go to the `extra` callback of parse_args. A flag that needs a value and has
// none, an unknown flag, or a bad value exits with status 64 and a line on stderr.
// Exit status of every bench: 0 ok, 1 a check failed or a CUDA error, 2 no usable GPU, 64 bad arguments.
//
// Timing: cudaEvents recorded on the context stream around `iters` back-to-back calls; the
// per-call time of a batch is its elapsed time / iters, and a result is the middle one of the
// sorted batch times (the upper middle for an even count).
//
// JSON: one object, {"bench", "date" (UTC, ISO 8601), "device_name", "compute_capability",
// "quick", "ok", "results"} plus what each bench adds, written to PATH.tmp and renamed to PATH.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/runtime.hpp>

namespace bench::cuda {

namespace cu = coeffnet::cuda;

// Exit statuses.
constexpr int kExitOk = 0, kExitFailed = 1, kExitNoGpu = 2, kExitUsage = 64;

// The flags every CUDA bench takes.
struct Options {
    bool quick = false;
    std::string json;
    int reps = 15;
    std::string filter;

    // Whether --filter lets the case (or shape) `name` run.
    bool selected(const std::string& name) const { return filter.empty() || name.find(filter) != std::string::npos; }
};

// Parses argv into opt. `extra(flag, value)` is asked about every flag that is not a common one
// and returns whether it took it; value(flag) returns the next argument (exiting with 64 where
// there is none). Returns -1 to go on, or the status main should exit with (0 after --help).
template <class Extra>
int parse_args(const char* prog, const char* usage, int argc, char** argv, Options& opt, Extra&& extra) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* flag) -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s: %s needs a value\n", prog, flag);
                std::exit(kExitUsage);
            }
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::puts(usage);
            return kExitOk;
        } else if (a == "--quick") {
            opt.quick = true;
        } else if (a == "--json") {
            opt.json = value("--json");
        } else if (a == "--reps") {
            opt.reps = std::max(1, std::atoi(value("--reps").c_str()));
        } else if (a == "--filter") {
            opt.filter = value("--filter");
        } else if (!extra(a, value)) {
            std::fprintf(stderr, "%s: unknown argument %s (see --help)\n", prog, a.c_str());
            return kExitUsage;
        }
    }
    return -1;
}

inline int parse_args(const char* prog, const char* usage, int argc, char** argv, Options& opt) {
    return parse_args(prog, usage, argc, argv, opt, [](const std::string&, auto&&) { return false; });
}

// The device's status where one is usable; otherwise nullptr, after saying so on stderr (the
// caller exits with kExitNoGpu).
inline const cu::Status* usable_gpu(const char* prog) {
    const cu::Status& st = cu::status();
    if (!st.usable) {
        std::fprintf(stderr, "%s: no usable CUDA device (%s); nothing was measured\n", prog, st.reason.c_str());
        return nullptr;
    }
    return &st;
}

// Runs body; an exception is reported on stderr as "<prog>: <what>". Returns false when one was thrown.
template <class F>
bool guarded(const char* prog, F&& body) {
    try {
        body();
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", prog, e.what());
        return false;
    }
}

// ---- timing ---------------------------------------------------------------------------------------

// A pair of cudaEvents timing calls on the context stream.
class EventTimer {
public:
    EventTimer() {
        COEFFNET_CUDA_CHECK(cudaEventCreate(&e0_));
        COEFFNET_CUDA_CHECK(cudaEventCreate(&e1_));
    }
    ~EventTimer() {
        COEFFNET_CUDA_LOG(cudaEventDestroy(e0_));
        COEFFNET_CUDA_LOG(cudaEventDestroy(e1_));
    }
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;

    // Milliseconds per call of `iters` back-to-back calls of f (waits for them to finish).
    template <class F>
    double ms_per_call(F&& f, int iters = 1) {
        cudaStream_t s = cu::Context::get().stream();
        COEFFNET_CUDA_CHECK(cudaEventRecord(e0_, s));
        for (int i = 0; i < iters; ++i) f();
        COEFFNET_CUDA_CHECK(cudaEventRecord(e1_, s));
        COEFFNET_CUDA_CHECK(cudaEventSynchronize(e1_));
        float ms = 0;
        COEFFNET_CUDA_CHECK(cudaEventElapsedTime(&ms, e0_, e1_));
        return static_cast<double>(ms) / iters;
    }

private:
    cudaEvent_t e0_{}, e1_{};
};

// The middle of v once sorted (the upper of the two middles for an even count).
inline double middle(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// The middle of `reps` batch times, in milliseconds per call, each batch `iters` calls of f.
template <class F>
double median_ms(F&& f, int reps, int iters) {
    EventTimer ev;
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) t.push_back(ev.ms_per_call(f, iters));
    return middle(std::move(t));
}

// Calls per batch for a batch of about 2 ms, given one call's milliseconds (1 to 1000).
inline int iters_for_2ms(double one_ms) {
    return static_cast<int>(std::clamp(2.0 / std::max(one_ms, 1e-4), 1.0, 1000.0));
}

// ---- the JSON record ------------------------------------------------------------------------------

// Now in UTC, as 2026-11-29T12:00:00Z.
inline std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return date;
}

// The fields every bench's record has; a bench adds its own to it.
inline nlohmann::json record(const char* bench, const cu::Status& st, const Options& opt, bool ok,
                             const nlohmann::json& results) {
    return {{"bench", bench},
            {"date", utc_now()},
            {"device_name", st.name},
            {"compute_capability", std::to_string(st.cc_major) + "." + std::to_string(st.cc_minor)},
            {"quick", opt.quick},
            {"ok", ok},
            {"results", results}};
}

// Writes j to path.tmp, then renames it to path. False when either fails.
inline bool write_json(const std::string& path, const nlohmann::json& j) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        if (!f) return false;
        f << j.dump(2) << "\n";
        if (!f) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// The end of main: with --json, writes the record j and says so. Returns the exit status.
inline int finish(const char* prog, const Options& opt, bool ok, const nlohmann::json& j) {
    if (!opt.json.empty()) {
        if (!write_json(opt.json, j)) {
            std::fprintf(stderr, "%s: cannot write %s\n", prog, opt.json.c_str());
            return kExitFailed;
        }
        std::printf("wrote %s\n", opt.json.c_str());
    }
    return ok ? kExitOk : kExitFailed;
}

}  // namespace bench::cuda
