// tests/test_util.hpp: helpers shared by the test files of both test binaries (tests/*.cpp and
// tests/cuda/*.cpp): the message of a call expected to throw, temporary directories, the largest
// absolute value and difference, bf16 rounding, and reporting a test as skipped. Everything is in
// namespace coeffnet::test.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <coeffnet/core/error.hpp>
#include <coeffnet/tensor/tensor.hpp>

namespace coeffnet::test {

// The message of the coeffnet::Error that f throws; `none` ("" unless given) when it throws nothing.
// Other exceptions propagate.
template <class F>
std::string error_of(F&& f, std::string none = {}) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return none;
}

// Reports the running test case as skipped: prints one line "SKIPPED: <test name>: <reason>", which
// ctest turns into a skip (tests/CMakeLists.txt sets SKIP_REGULAR_EXPRESSION "SKIPPED: " on both
// test binaries). Use as `return skip("why");` before the test has checked anything.
inline void skip(const std::string& reason) {
    const doctest::ContextOptions* opts = doctest::getContextOptions();
    const char* name = opts && opts->currentTest ? opts->currentTest->m_name : "?";
    std::printf("SKIPPED: %s: %s\n", name, reason.c_str());
    std::fflush(stdout);
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A fresh directory <temp>/coeffnet-<tag>-<pid>-<n>, removed with everything in it at the end of the scope.
struct TempDir {
    std::filesystem::path path;

    explicit TempDir(std::string_view tag) {
        static int n = 0;
        path = std::filesystem::temp_directory_path() /
               ("coeffnet-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }

    // The names of the entries directly in the directory, sorted.
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
};

// Max |v| over the elements, in double.
template <class T>
double max_abs(const std::vector<T>& v) {
    double m = 0;
    for (const T& e : v) m = std::max(m, std::abs(static_cast<double>(e)));
    return m;
}
template <class T>
double max_abs(const Tensor<T>& t) {
    return max_abs(t.to_vector());
}

// Max |a - b| over two same-sized vectors (same-shaped tensors), in double.
template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    return m;
}
template <class A, class B>
double max_abs_diff(const Tensor<A>& a, const Tensor<B>& b) {
    REQUIRE(a.shape() == b.shape());
    return max_abs_diff(a.to_vector(), b.to_vector());
}

// Every element rounded to bf16 and back (what a bf16 kernel sees of it).
inline Tensor<float> round_bf16(const Tensor<float>& t) { return t.cast<bfloat16_t>().cast<float>(); }

}  // namespace coeffnet::test
