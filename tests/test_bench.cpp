// The benchmarks' host-side pieces, tested on the CPU because the CUDA benches cannot run here
// (no GPU):
// - their JSON record (bench::JsonLog, bench/bench_util.hpp): what "a run killed by a time limit
//   keeps every finished case" rests on is tested with the same class: a child process writes two
//   cases and is killed with SIGKILL, and the parent reads back one valid JSON object with both
//   cases and "complete": false;
// - attention_bench's fp64 sampled-row reference (bench/cuda/attention_reference.hpp) against the
//   CPU coeff_attention's autograd in double: out and dq at the sampled rows with a dense dout,
//   and dk, dv, dalpha with a dout zero but for those rows.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <coeffnet/coeffnet.hpp>

#include "../bench/bench_util.hpp"
#include "../bench/cuda/attention_reference.hpp"

namespace {

// A fresh, empty directory under the temp directory, removed with the object.
struct BenchJsonDir {
    std::filesystem::path dir;
    BenchJsonDir() {
        dir = std::filesystem::temp_directory_path() / ("coeffnet_bench_json_" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    ~BenchJsonDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

nlohmann::json bench_json_read_back(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return nlohmann::json::parse(ss.str());  // throws on a partial or invalid file
}

}  // namespace

TEST_CASE("bench JsonLog: a run killed after two cases leaves both on disk, complete false") {
    BenchJsonDir tmp;
    const std::filesystem::path path = tmp.dir / "killed.json";
    std::fflush(nullptr);  // nothing buffered is written twice by the child
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        bench::JsonLog log(path.string(), {{"bench", "test"}, {"quick", true}});
        bool w = log.start();
        w = log.add({{"name", "case0"}, {"ms", 1.5}}) && w;
        w = log.add({{"name", "case1"}, {"ms", 2.5}, {"check_ok", false}}, false) && w;
        if (!w) ::_exit(3);
        std::raise(SIGKILL);  // the time limit: no destructor, no finish()
        ::_exit(4);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);

    const nlohmann::json j = bench_json_read_back(path);
    CHECK(j["bench"] == "test");
    CHECK(j["complete"] == false);
    CHECK(j["ok"] == false);  // case1's check failed
    CHECK(j["cases_done"] == 2);
    REQUIRE(j["results"].size() == 2u);
    CHECK(j["results"][0]["name"] == "case0");
    CHECK(j["results"][1]["name"] == "case1");
    CHECK(j["results"][1]["ms"] == 2.5);  // the timing is kept beside the failed check
    CHECK(j.contains("updated"));
    CHECK(!j.contains("error"));
}

TEST_CASE("bench JsonLog: the file after each step, a stale .tmp, finish, and an unwritable path") {
    BenchJsonDir tmp;
    const std::filesystem::path path = tmp.dir / "run.json";
    bench::JsonLog log(path.string(), {{"bench", "test"}});
    REQUIRE(log.start());
    nlohmann::json j = bench_json_read_back(path);
    CHECK(j["cases_done"] == 0);
    CHECK(j["results"].empty());
    CHECK(j["complete"] == false);
    CHECK(j["ok"] == true);

    REQUIRE(log.add({{"name", "a"}}));
    // A writer killed during its write leaves a partial PATH.tmp; the next write replaces it.
    { std::ofstream(path.string() + ".tmp") << "{\"results\": [ {\"na"; }
    CHECK(bench_json_read_back(path)["cases_done"] == 1);
    REQUIRE(log.add({{"name", "b"}}));
    CHECK(!std::filesystem::exists(path.string() + ".tmp"));
    j = bench_json_read_back(path);
    CHECK(j["cases_done"] == 2);
    CHECK(j["ok"] == true);

    SUBCASE("every case ran") {
        REQUIRE(log.finish(true, true));
        j = bench_json_read_back(path);
        CHECK(j["complete"] == true);
        CHECK(j["ok"] == true);
        CHECK(j["results"].size() == 2u);
        CHECK(!log.write_failed());
    }
    SUBCASE("an exception ended the run") {
        REQUIRE(log.finish(false, false, "out of memory"));
        j = bench_json_read_back(path);
        CHECK(j["complete"] == false);
        CHECK(j["ok"] == false);
        CHECK(j["error"] == "out of memory");
    }

    bench::JsonLog bad((tmp.dir / "no_such_dir" / "x.json").string(), {{"bench", "test"}});
    CHECK(!bad.start());
    CHECK(bad.write_failed());
    bench::JsonLog none("", {{"bench", "test"}});  // no --json: nothing written, the record kept
    CHECK(none.start());
    CHECK(none.add({{"name", "a"}}, false));
    CHECK(none.doc()["cases_done"] == 1);
    CHECK(!none.ok());
}

TEST_CASE("bench attention reference: sampled rows and the sparse-dout gradients match the CPU autograd") {
    using namespace coeffnet;
    const int64_t B = 2, H = 3, N = 11, d = 4, per = H * N * d;
    Generator g(7);
    auto q = Tensor<double>::randn({B, H, N, d}, g).set_requires_grad(true);
    auto k = Tensor<double>::randn({B, H, N, d}, g).set_requires_grad(true);
    auto v = Tensor<double>::randn({B, H, N, d}, g).set_requires_grad(true);
    auto alpha = Tensor<double>::randn({H, H}, g, 0.0, 0.3).set_requires_grad(true);
    const auto dout = Tensor<double>::randn({B, H, N, d}, g);
    const std::vector<int64_t> rows = bench::attention_ref::sampled_rows(N);
    REQUIRE(rows.size() == 8u);
    // The reference reads floats (the device's stored values): round the inputs to float first.
    auto rounded = [](const Tensor<double>& t) {
        std::vector<double> vals = t.to_vector();
        for (double& x : vals) x = static_cast<float>(x);
        return Tensor<double>::from(vals, t.shape());
    };
    auto leaf = [&](const Tensor<double>& t) { return rounded(t).set_requires_grad(true); };
    q = leaf(q), k = leaf(k), v = leaf(v), alpha = leaf(alpha);
    auto item0 = [&](const Tensor<double>& t) {
        const std::vector<double> all = t.to_vector();
        return std::vector<float>(all.begin(), all.begin() + per);
    };
    std::vector<float> al;
    for (double x : alpha.to_vector()) al.push_back(static_cast<float>(x));
    const auto ref = bench::attention_ref::reference(item0(q), item0(k), item0(v), item0(rounded(dout)), al, H, N, d, rows);

    std::vector<double> sparse(static_cast<size_t>(B * per), 0.0);  // dout zero but at item 0's sampled rows
    const std::vector<double> dense = rounded(dout).to_vector();
    for (int64_t n : rows)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t x = 0; x < d; ++x) sparse[static_cast<size_t>((h * N + n) * d + x)] = dense[static_cast<size_t>((h * N + n) * d + x)];
    AttentionOptions o;
    o.backend = AttentionBackend::materialised;
    const auto out = coeff_attention(q, k, v, alpha, o).out;
    sum(mul(out, Tensor<double>::from(sparse, {B, H, N, d}))).backward();
    const auto ov = out.to_vector(), gk = k.grad().to_vector(), gv = v.grad().to_vector(), ga = alpha.grad().to_vector();
    double e_out = 0, e_dk = 0, e_dv = 0, e_zero = 0, e_da = 0;
    for (size_t ri = 0; ri < rows.size(); ++ri)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t x = 0; x < d; ++x)
                e_out = std::max(e_out, std::abs(ov[static_cast<size_t>((h * N + rows[ri]) * d + x)] -
                                                 ref.out[ri * static_cast<size_t>(H * d) + static_cast<size_t>(h * d + x)]));
    for (size_t i = 0; i < gk.size(); ++i) {
        if (i < ref.dk.size()) {
            e_dk = std::max(e_dk, std::abs(gk[i] - ref.dk[i]));
            e_dv = std::max(e_dv, std::abs(gv[i] - ref.dv[i]));
        } else {
            e_zero = std::max({e_zero, std::abs(gk[i]), std::abs(gv[i])});
        }
    }
    for (size_t i = 0; i < ga.size(); ++i) e_da = std::max(e_da, std::abs(ga[i] - ref.dalpha[i]));
    CHECK(e_out < 1e-12);
    CHECK(e_dk < 1e-12);
    CHECK(e_dv < 1e-12);
    CHECK(e_da < 1e-12);
    CHECK(e_zero == 0.0);
    CHECK(*std::max_element(ga.begin(), ga.end()) > 1e-3);  // dalpha is not trivially zero

    // dq at the sampled rows depends on dout only at those rows: the dense dout gives the same.
    auto q2 = leaf(q);
    sum(mul(coeff_attention(q2, k, v, alpha, o).out, rounded(dout))).backward();
    const auto gq = q2.grad().to_vector();
    double e_dq = 0;
    for (size_t ri = 0; ri < rows.size(); ++ri)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t x = 0; x < d; ++x)
                e_dq = std::max(e_dq, std::abs(gq[static_cast<size_t>((h * N + rows[ri]) * d + x)] -
                                               ref.dq[ri * static_cast<size_t>(H * d) + static_cast<size_t>(h * d + x)]));
    CHECK(e_dq < 1e-12);
}
