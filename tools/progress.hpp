// tools/progress.hpp: the tools' terminal progress bar, with rate and ETA. The library itself
// draws nothing: its long work reports through callbacks, and the tools draw them with this.
//
//   epoch 3/10 [########............]  42%  1680/4000 img  loss 0.512  acc 81.2%  950 img/s  ETA 0:03
//
// On a terminal it redraws one line in place (at most 10 times a second); otherwise (a log
// file, CI) it prints nothing until finish(), which prints the final line once. Writes to
// stderr so stdout stays clean for --json.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace coeffnet::cli {

class ProgressBar {
public:
    // `total` units of work (images, steps); `unit` names them; `label` prefixes the line.
    ProgressBar(int64_t total, std::string unit, std::string label = "", bool enabled = true)
        : total_(total), unit_(std::move(unit)), label_(std::move(label)), enabled_(enabled),
          tty_(enabled && ::isatty(STDERR_FILENO) == 1), start_(Clock::now()), last_(start_ - std::chrono::seconds(1)) {}

    // Advances to `done` units; `metrics` is appended as is (e.g. "loss 0.512  acc 81.2%").
    void update(int64_t done, const std::string& metrics = "") {
        done_ = done;
        metrics_ = metrics;
        if (!tty_) return;
        const auto now = Clock::now();
        if (now - last_ < std::chrono::milliseconds(100) && done_ < total_) return;
        last_ = now;
        std::fprintf(stderr, "\r%s\033[K", line().c_str());
        std::fflush(stderr);
    }
    void finish(const std::string& metrics = "") {
        if (!metrics.empty()) metrics_ = metrics;
        done_ = total_;
        if (!enabled_) return;
        std::fprintf(stderr, tty_ ? "\r%s\033[K\n" : "%s\n", line().c_str());
        std::fflush(stderr);
    }
    double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

    // The line as drawn (exposed for tests).
    std::string line() const {
        const double t = seconds();
        const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
        const int width = 20, filled = static_cast<int>(frac * width + 1e-9);
        std::string bar(static_cast<size_t>(filled), '#');
        bar.resize(static_cast<size_t>(width), '.');
        const double rate = t > 0 ? static_cast<double>(done_) / t : 0.0;
        const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s%s[%s] %3d%%  %lld/%lld %s", label_.c_str(), label_.empty() ? "" : " ",
                      bar.c_str(), static_cast<int>(frac * 100 + 1e-9), static_cast<long long>(done_),
                      static_cast<long long>(total_), unit_.c_str());
        std::string out = buf;
        if (!metrics_.empty()) out += "  " + metrics_;
        std::snprintf(buf, sizeof buf, "  %.0f %s/s  %s %s", rate, unit_.c_str(), done_ < total_ ? "ETA" : "in",
                      clock_str(done_ < total_ ? eta : t).c_str());
        return out + buf;
    }

    static std::string clock_str(double s) {
        const long long v = static_cast<long long>(s + 0.5);
        char buf[32];
        if (v >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", v / 3600, v / 60 % 60, v % 60);
        else std::snprintf(buf, sizeof buf, "%lld:%02lld", v / 60, v % 60);
        return buf;
    }

private:
    using Clock = std::chrono::steady_clock;
    int64_t total_, done_ = 0;
    std::string unit_, label_, metrics_;
    bool enabled_, tty_;
    Clock::time_point start_, last_;
};

}  // namespace coeffnet::cli
