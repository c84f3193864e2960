// coeffnet/cuda/testing.hpp: COEFFNET_REQUIRE_GPU() for doctest TEST_CASEs that need a GPU.
//
//   TEST_CASE("cuda gemm matches the CPU") {
//       COEFFNET_REQUIRE_GPU();
//       ...
//   }
//
// Where coeffnet::cuda::status().usable is false, the macro prints one line
// "SKIPPED: <test name>: <reason>" and returns from the test case. ctest reports such tests as
// skipped (tests/CMakeLists.txt sets SKIP_REGULAR_EXPRESSION "SKIPPED: " on coeffnet_cuda_tests).
// Set COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 to make a missing GPU a failure instead (for GPU CI).
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime.hpp"

namespace coeffnet::cuda::testing {

// True when the test may go on; otherwise prints the SKIPPED line (or fails when a GPU is demanded).
inline bool gpu_or_skip() {
    const Status& s = status();
    if (s.usable) return true;
    const doctest::ContextOptions* opts = doctest::getContextOptions();
    const char* name = opts && opts->currentTest ? opts->currentTest->m_name : "?";
    const char* demand = std::getenv("COEFFNET_CUDA_TESTS_REQUIRE_GPU");
    if (demand != nullptr && demand[0] != '\0' && !(demand[0] == '0' && demand[1] == '\0')) {
        CHECK_MESSAGE(s.usable, "no usable CUDA device and COEFFNET_CUDA_TESTS_REQUIRE_GPU is set: " << s.reason);
        return false;
    }
    std::printf("SKIPPED: %s: %s\n", name, s.reason.c_str());
    std::fflush(stdout);
    return false;
}

}  // namespace coeffnet::cuda::testing

#define COEFFNET_REQUIRE_GPU()                                     \
    do {                                                           \
        if (!::coeffnet::cuda::testing::gpu_or_skip()) return;    \
    } while (0)
