// bench/cuda/bench_cuda.hpp: what every CUDA benchmark here (bench/cuda/*.cpp) shares: the
// command line, the no-GPU exit, cudaEvent timing, the JSON record kept on disk case by case, and
// inputs filled on the device from a small host draw.
//
// Command line: --help/-h, --quick, --json PATH, --reps N and --filter STR are parsed here; a
// bench's own flags go to the `extra` callback of parse_args. A flag that needs a value and has
// none, an unknown flag, or a bad value exits with status 64 and a line on stderr.
// Exit status of every bench: 0 ok, 1 a check failed or a CUDA error (or the JSON could not be
// written), 2 no usable GPU (nothing run, no JSON written), 64 bad arguments.
//
// Timing: cudaEvents recorded on the context stream around `iters` back-to-back calls; the
// per-call time of a batch is its elapsed time / iters, and a result is the middle one of the
// sorted batch times (the upper middle for an even count).
//
// JSON (--json PATH): bench::JsonLog (bench/bench_util.hpp), written to PATH.tmp and renamed to
// PATH when the run starts (no case yet; a PATH that cannot be written stops the bench there with
// status 1) and again after every case, so a bench killed by a time limit keeps every case it
// finished. One object: {"bench", "date" (UTC, ISO 8601, the start), "device_name",
// "compute_capability", "quick", "argv", "complete" (false until every case ran), "ok",
// "cases_done", "updated", "error" (when an exception ended the run), "results"} plus what each
// bench adds. A case's timing is recorded even when its check fails (the check's result beside
// it); "ok" and the exit status then say a check failed.
//
// Inputs (filled_randn): a tensor whose element i is pattern[i % period], the pattern `period`
// N(mean, sd) draws on the host (Generator(seed)), rounded to the storage type, uploaded once and
// tiled on the device by doubling device-to-device copies; the host keeps the rounded pattern, so
// a check's fp64 reference reads any input element without copying the tensor back. The period,
// 65537, is prime, so for any row width below it the first 65537 rows start at different
// offsets of the pattern (rows repeat only 65537 rows apart).
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

#include <coeffnet/core/rng.hpp>
#include <coeffnet/cuda/check.hpp>
#include <coeffnet/cuda/runtime.hpp>
#include <coeffnet/cuda/tensor.hpp>

#include "../bench_util.hpp"

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

// Runs body; an exception is reported on stderr as "<prog>: <what>" (and its what() stored in
// *error where given). Returns false when one was thrown.
template <class F>
bool guarded(const char* prog, F&& body, std::string* error = nullptr) {
    try {
        body();
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", prog, e.what());
        if (error) *error = e.what();
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

// The record every bench writes (bench::JsonLog, bench/bench_util.hpp): the common head fields;
// a bench adds its own to log.head() before start().
inline bench::JsonLog open_log(const char* name, const cu::Status& st, const Options& opt, int argc, char** argv) {
    nlohmann::json args = nlohmann::json::array();
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    return bench::JsonLog(opt.json, {{"bench", name},
                                     {"date", bench::utc_now()},
                                     {"device_name", st.name},
                                     {"compute_capability", std::to_string(st.cc_major) + "." + std::to_string(st.cc_minor)},
                                     {"quick", opt.quick},
                                     {"argv", args}});
}

// Writes the record before any case. False (after a line on stderr) when PATH cannot be written.
inline bool start_log(const char* prog, bench::JsonLog& log) {
    if (log.start()) return true;
    std::fprintf(stderr, "%s: cannot write %s (nothing was run)\n", prog, log.path().c_str());
    return false;
}

// Adds one finished case to the record and rewrites it; a write failure is said on stderr.
inline void add_case(const char* prog, bench::JsonLog& log, nlohmann::json result, bool case_ok) {
    if (!log.add(std::move(result), case_ok))
        std::fprintf(stderr, "%s: cannot write %s\n", prog, log.path().c_str());
}

// The end of main: the last write (complete = every case ran, error = why not). Returns the
// exit status: 0 when every check passed, nothing errored and every write succeeded, else 1.
inline int finish(const char* prog, bench::JsonLog& log, bool ok, bool complete, const std::string& error = "") {
    const bool wrote = log.finish(ok, complete, error) && !log.write_failed();
    if (!log.path().empty()) {
        if (!wrote) std::fprintf(stderr, "%s: cannot write %s\n", prog, log.path().c_str());
        else std::printf("wrote %s\n", log.path().c_str());
    }
    return log.ok() && complete && wrote ? kExitOk : kExitFailed;
}

// ---- inputs filled on the device ------------------------------------------------------------------

constexpr int64_t kPatternPeriod = 65537;  // prime

// A device tensor and the host's copy of the pattern it repeats (see the header).
template <class T>
struct Filled {
    cu::DeviceTensor<T> dev;
    std::vector<float> pattern;  // the stored (rounded) values of elements 0 .. period - 1

    // The stored value of element i.
    double at(int64_t i) const { return pattern[static_cast<size_t>(i % static_cast<int64_t>(pattern.size()))]; }
};

// A [shape] tensor of T whose element i is pattern[i % period], pattern ~ N(mean, sd^2) drawn on the host.
template <class T>
Filled<T> filled_randn(const coeffnet::Shape& shape, uint64_t seed, double mean = 0.0, double sd = 1.0,
                       int64_t period = kPatternPeriod) {
    Filled<T> f;
    f.dev = cu::DeviceTensor<T>::empty(shape);
    const int64_t n = f.dev.numel(), p = std::min(n, period);
    if (n == 0) return f;
    coeffnet::Generator gen(seed);
    const auto small = cu::DeviceTensor<T>::from_host(coeffnet::Tensor<float>::randn({p}, gen, mean, sd));
    f.pattern = small.to_host_float().to_vector();
    char* dst = reinterpret_cast<char*>(f.dev.data());
    cu::copy_device_to_device(dst, small.data(), static_cast<size_t>(p) * sizeof(T));
    for (int64_t len = p; len < n; len *= 2)  // [0, len) holds whole periods: copy it after itself
        cu::copy_device_to_device(dst + len * static_cast<int64_t>(sizeof(T)), dst,
                                  static_cast<size_t>(std::min(len, n - len)) * sizeof(T));
    cu::Context::get().synchronize();
    return f;
}

// Elements first .. first + count - 1 of t (row-major order), as float on the host.
template <class T>
std::vector<float> fetch(const cu::DeviceTensor<T>& t, int64_t first, int64_t count) {
    coeffnet::check(first >= 0 && count >= 0 && first + count <= t.numel(), "bench fetch: elements ", first, " + ", count,
          " outside ", t.numel());
    std::vector<T> buf(static_cast<size_t>(count));
    cu::copy_device_to_host(buf.data(), t.data() + first, static_cast<size_t>(count) * sizeof(T));
    std::vector<float> out(buf.size());
    for (size_t i = 0; i < buf.size(); ++i) out[i] = static_cast<float>(buf[i]);
    return out;
}

}  // namespace bench::cuda
