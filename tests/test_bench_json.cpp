// The benchmarks' JSON record (bench::JsonLog, bench/bench_util.hpp), on the CPU: the CUDA benches
// cannot run here (no GPU), so what "a run killed by a time limit keeps every finished case" rests
// on is tested with the same class: a child process writes two cases and is killed with SIGKILL,
// and the parent reads back one valid JSON object with both cases and "complete": false.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "../bench/bench_util.hpp"

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
