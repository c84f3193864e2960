// bench/bench_util.hpp: what every benchmark here shares: the clock, the median, the machine's
// description (CPU model, threads, load average), the CPU timing loop, and the JSON record kept
// on disk case by case (JsonLog; the CUDA benches in bench/cuda/ use it through bench_cuda.hpp,
// and tests/test_bench.cpp tests it on the CPU).
//
// Timing (time_calls): f() has already run once (the correctness check). One more call sizes a
// rep; a warm-up of about half a rep follows; then `reps` timed reps, each a batch of calls
// lasting at least `min_rep_s` seconds on std::chrono::steady_clock. Reported per call: the
// median over the reps, with the fastest and slowest rep beside it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// The CPU's model name from /proc/cpuinfo, or "unknown".
inline std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            const auto c = line.find(':');
            if (c != std::string::npos) return line.substr(line.find_first_not_of(" \t", c + 1));
        }
    return "unknown";
}

// The compiler that built the benchmark, with its version ("gcc 12.2.0", "clang 19.1.7 ...").
inline std::string compiler_name() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return "unknown";
#endif
}

// The 1-minute load average, or -1 where /proc/loadavg is absent.
inline double loadavg_1min() {
    std::ifstream f("/proc/loadavg");
    double v = -1;
    if (!(f >> v)) return -1;
    return v;
}

// A "Name:  123 kB" line of /proc/self/status in KiB (VmRSS, VmHWM: the peak resident set of this
// process since it started or since /proc/self/clear_refs was given 5), or -1 where absent.
inline long long proc_status_kib(const char* name) {
    std::ifstream st("/proc/self/status");
    std::string line;
    const size_t n = std::string(name).size();
    while (std::getline(st, line))
        if (line.compare(0, n, name) == 0) return std::stoll(line.substr(n + 1));
    return -1;
}

struct Timing {
    double median_s = 0, min_s = 0, max_s = 0;  // per call
    int64_t calls_per_rep = 0;
    int reps = 0;
};

struct TimingConfig {
    int reps = 5;
    double min_rep_s = 0.2;
};

inline Timing time_calls(const std::function<void()>& f, const TimingConfig& cfg) {
    auto t0 = Clock::now();
    f();
    const double one = std::max(seconds_since(t0), 1e-7);
    const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg.min_rep_s / one)));
    for (int64_t i = 0; i < std::max<int64_t>(1, n / 2); ++i) f();
    std::vector<double> per_call;
    for (int r = 0; r < cfg.reps; ++r) {
        t0 = Clock::now();
        for (int64_t i = 0; i < n; ++i) f();
        per_call.push_back(seconds_since(t0) / static_cast<double>(n));
    }
    Timing t;
    t.median_s = median(per_call);
    t.min_s = *std::min_element(per_call.begin(), per_call.end());
    t.max_s = *std::max_element(per_call.begin(), per_call.end());
    t.calls_per_rep = n;
    t.reps = cfg.reps;
    return t;
}

// ---- the JSON record, on disk after every case ------------------------------------------------

// Now in UTC, as 2026-11-29T12:00:00Z.
inline std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return date;
}

// Writes j to path.tmp, then renames that over path. rename() within a directory replaces path
// atomically, so whoever reads path (or finds it after the writer was killed at any moment)
// sees either the previous whole file or the new whole file, never a part of one; a kill during
// the write leaves a partial path.tmp beside it. False when either step fails.
template <class Json>
bool write_json_atomic(const std::string& path, const Json& j) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        if (!f) return false;
        f << j.dump(2) << "\n";
        f.close();
        if (!f) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// A benchmark's JSON record that is rewritten (write_json_atomic) after every case, so a run
// stopped at any point (a time limit on a borrowed GPU, a crash, a kill) leaves every case it
// finished on disk as one valid JSON object:
//   the head's fields (what the bench says about the run: name, device, date, flags, ...),
//   "complete"   false until finish(..., true): the run got through all its cases,
//   "ok"         no check has failed and no case has errored so far (at finish: in the whole run),
//   "cases_done" the number of entries in "results",
//   "updated"    when the file was last written (UTC),
//   "error"      (only after finish with one) why the run ended early,
//   "results"    one entry per finished case, in the order they ran.
// With an empty path nothing is written; the record is still kept (doc()).
class JsonLog {
public:
    JsonLog() = default;
    JsonLog(std::string path, nlohmann::json head) : path_(std::move(path)), doc_(std::move(head)) {
        doc_["complete"] = false;
        doc_["ok"] = true;
        doc_["cases_done"] = 0;
        doc_["results"] = nlohmann::json::array();
    }

    // Writes the record with no case in it yet: a path that cannot be written fails here,
    // before any case has run. False on a write failure.
    bool start() { return write(); }

    // Appends one finished case (ok: its checks passed and it did not error) and rewrites the file.
    bool add(nlohmann::json result, bool ok = true) {
        doc_["results"].push_back(std::move(result));
        doc_["cases_done"] = doc_["results"].size();
        if (!ok) doc_["ok"] = false;
        return write();
    }

    // The last write: complete says whether every case ran; error (non-empty) why not.
    bool finish(bool ok, bool complete, const std::string& error = "") {
        if (!ok) doc_["ok"] = false;
        doc_["complete"] = complete;
        if (!error.empty()) doc_["error"] = error;
        return write();
    }

    bool ok() const { return doc_["ok"].get<bool>(); }
    const std::string& path() const { return path_; }
    // True when any write so far has failed (the file on disk is then older than the record).
    bool write_failed() const { return write_failed_; }
    const nlohmann::json& doc() const { return doc_; }
    nlohmann::json& head() { return doc_; }  // to add fields before start()

private:
    bool write() {
        if (path_.empty()) return true;
        doc_["updated"] = utc_now();
        const bool w = write_json_atomic(path_, doc_);
        if (!w) write_failed_ = true;
        return w;
    }

    std::string path_;
    nlohmann::json doc_;
    bool write_failed_ = false;
};

}  // namespace bench
