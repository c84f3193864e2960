// tests/cuda/testing.hpp: COEFFNET_REQUIRE_GPU() and COEFFNET_REQUIRE_NO_GPU() for the doctest
// TEST_CASEs of tests/cuda that need a GPU, or that are about machines without one.
//
//   TEST_CASE("cuda gemm matches the CPU") {
//       COEFFNET_REQUIRE_GPU();
//       ...
//   }
//
// Where the test cannot run, the macro reports it skipped (coeffnet::test::skip in
// tests/test_util.hpp: one line "SKIPPED: <test name>: <reason>", which ctest reports as a skip)
// and returns from the test case. Set COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 to make a missing GPU a
// failure instead (for GPU CI).
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include <coeffnet/cuda/runtime.hpp>

#include "../test_util.hpp"

namespace coeffnet::cuda::testing {

// True when the test may go on; otherwise reports the test skipped (or fails when a GPU is demanded).
inline bool gpu_or_skip() {
    const Status& s = status();
    if (s.usable) return true;
    const char* demand = std::getenv("COEFFNET_CUDA_TESTS_REQUIRE_GPU");
    if (demand != nullptr && demand[0] != '\0' && !(demand[0] == '0' && demand[1] == '\0')) {
        CHECK_MESSAGE(s.usable, "no usable CUDA device and COEFFNET_CUDA_TESTS_REQUIRE_GPU is set: " << s.reason);
        return false;
    }
    coeffnet::test::skip(s.reason);
    return false;
}

// True when no device is usable; otherwise reports the test skipped: it checks what happens without one.
inline bool no_gpu_or_skip() {
    if (!status().usable) return true;
    coeffnet::test::skip("a CUDA device is usable here, and this test is about machines without one");
    return false;
}

}  // namespace coeffnet::cuda::testing

#define COEFFNET_REQUIRE_GPU()                                     \
    do {                                                           \
        if (!::coeffnet::cuda::testing::gpu_or_skip()) return;    \
    } while (0)

// A GPU, not the block emulator: for device-scale cases that the emulator would take minutes over
// (their kernels are covered at emulator scale by other tests).
#if defined(COEFFNET_TEST_EMULATED)
#define COEFFNET_REQUIRE_REAL_GPU()                                                                         \
    do {                                                                                                   \
        ::coeffnet::test::skip("device-scale shapes: run on a GPU; the emulated tests cover these kernels " \
                               "at smaller shapes");                                                        \
        return;                                                                                             \
    } while (0)
#else
#define COEFFNET_REQUIRE_REAL_GPU() COEFFNET_REQUIRE_GPU()
#endif

#define COEFFNET_REQUIRE_NO_GPU()                                   \
    do {                                                            \
        if (!::coeffnet::cuda::testing::no_gpu_or_skip()) return;  \
    } while (0)
