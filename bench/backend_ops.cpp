// backend_ops: the op table's time column. Every row of tests/op_table.hpp (the table whose value
// and gradient tests/test_backend_ops.cpp checks, one ctest per op and device), on every device
// with a compute table in this program (the CPU here; the CUDA and emulated tables add theirs),
// in float: the forward alone (under NoGrad) and forward + backward (sum(out * R), as the test).
//
// The table's shapes are small (a few to a few hundred elements), so these times are what an op
// costs beyond its arithmetic: checks, allocation, dispatch through the backend table, recording
// and the backward's bookkeeping. That is the cost a refactor of the layers above the kernels
// changes; the kernels' own speed is measured by gemm_bench, attention_cpu_bench and
// bench/cuda/ on real shapes.
//
// Method: bench_util.hpp's time_calls (a call sizes a rep, a warm-up of half a rep, the median
// of --reps reps of at least --min-time seconds each). Each row is run and its output checked
// finite before it is timed (exit 1 otherwise).
//
// Usage: backend_ops [--json] [--reps N] [--min-time S] [--filter STR] [--help]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <coeffnet/coeffnet.hpp>

#include "bench_util.hpp"
#include "op_table.hpp"

using namespace coeffnet;
using namespace coeffnet::optable;

namespace {

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: backend_ops [--json] [--reps N] [--min-time S] [--filter STR] [--help]\n"
                 "  the op table (tests/op_table.hpp) timed per row and device, float32:\n"
                 "  forward under NoGrad, and forward + backward; microseconds per call\n"
                 "  --json          one JSON object on stdout instead of the table\n"
                 "  --reps N        timed reps per case (default 5)\n"
                 "  --min-time S    seconds per rep at least (default 0.05)\n"
                 "  --filter STR    rows whose name contains STR\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool json = false;
    bench::TimingConfig cfg{5, 0.05};
    std::string filter;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "backend_ops: %s needs a value\n", flag);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--json") json = true;
        else if (a == "--reps") cfg.reps = std::max(1, std::atoi(value("--reps")));
        else if (a == "--min-time") cfg.min_rep_s = std::atof(value("--min-time"));
        else if (a == "--filter") filter = value("--filter");
        else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "backend_ops: unknown argument '%s'\n", a.c_str());
            usage(stderr);
            return 2;
        }
    }

    nlohmann::json results = nlohmann::json::array();
    if (!json) std::printf("%-40s %-6s %12s %12s\n", "op", "device", "fwd us", "fwd+bwd us");
    for (const Device dev : computing_devices()) {
        for (const OpRow& r : op_table()) {
            if (!filter.empty() && r.name.find(filter) == std::string::npos) continue;
            const auto base = draw_inputs(r, 1234);
            std::vector<Tensor<float>> in, grad_in;
            for (size_t i = 0; i < base.size(); ++i) {
                in.push_back(base[i].cast<float>().to(dev));
                grad_in.push_back(in.back().detach().set_requires_grad(r.diff.empty() || r.diff[i]));
            }
            Tensor<float> out;
            {
                NoGrad ng;
                out = r.f32(in);
            }
            for (const float v : out.to_vector())
                if (!std::isfinite(v)) {
                    std::fprintf(stderr, "backend_ops: row %s on %s: a non-finite output\n", r.name.c_str(),
                                 dev.str().c_str());
                    return 1;
                }
            Generator rg(99);
            const Tensor<float> weights = Tensor<float>::randn(out.shape(), rg, 0.0, 1.0, dev);
            const bench::Timing fwd = bench::time_calls(
                [&] {
                    NoGrad ng;
                    (void)r.f32(in);
                },
                cfg);
            const bench::Timing both = bench::time_calls(
                [&] {
                    for (auto& t : grad_in) t.zero_grad();
                    sum(mul(r.f32(grad_in), weights)).backward();
                },
                cfg);
            if (json) {
                results.push_back({{"op", r.name},
                                   {"device", dev.str()},
                                   {"fwd_us", fwd.median_s * 1e6},
                                   {"fwd_bwd_us", both.median_s * 1e6},
                                   {"fwd_us_min", fwd.min_s * 1e6},
                                   {"fwd_bwd_us_min", both.min_s * 1e6}});
            } else {
                std::printf("%-40s %-6s %12.2f %12.2f\n", r.name.c_str(), dev.str().c_str(), fwd.median_s * 1e6,
                            both.median_s * 1e6);
            }
        }
    }
    if (json) {
        const nlohmann::json doc = {{"machine", {{"cpu", bench::cpu_model()}, {"threads", bench::max_threads()}}},
                                    {"reps", cfg.reps},
                                    {"min_time_s", cfg.min_rep_s},
                                    {"dtype", "float32"},
                                    {"results", results}};
        std::cout << doc.dump(2) << "\n";
    }
    return 0;
}
