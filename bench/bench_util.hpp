// bench/bench_util.hpp: what every CPU benchmark here shares: the clock, the median, the
// machine's description (CPU model, threads, load average) and the timing loop.
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
#include <fstream>
#include <functional>
#include <string>
#include <vector>

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

// The 1-minute load average, or -1 where /proc/loadavg is absent.
inline double loadavg_1min() {
    std::ifstream f("/proc/loadavg");
    double v = -1;
    if (!(f >> v)) return -1;
    return v;
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

}  // namespace bench
