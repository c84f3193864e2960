// coeffnet/core/parallel.hpp: the one place loops are split across threads (OpenMP).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "error.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

// COEFFNET_SIMD_REDUCE(op, vars...) before a loop lets the compiler vectorise that loop's reduction
// of the variables with `op` (+ or max): `#pragma omp simd reduction(op : var)`, which allows it to reorder
// the reduction (lanes, then the lanes combined) where it would otherwise keep the strict
// left-to-right order and run one element at a time. Results then differ from the sequential
// order by rounding only. Honoured with OpenMP under GCC; elsewhere nothing (the loop runs in
// order): Clang below -O2 does not vectorise and reports each such loop as a failed transformation
// (-Wpass-failed), which -Werror turns into an error in the programs that include this header.
#if defined(_OPENMP) && !defined(__clang__)
#define COEFFNET_PRAGMA_(x) _Pragma(#x)
#define COEFFNET_SIMD_REDUCE(op, ...) COEFFNET_PRAGMA_(omp simd reduction(op : __VA_ARGS__))
#else
#define COEFFNET_SIMD_REDUCE(op, ...)
#endif

namespace coeffnet {

// The COEFFNET_NUM_THREADS environment variable: the thread count it asks for, or 0 when it is
// unset or empty. Anything but a whole number from 1 to 4096 throws naming the variable.
inline int env_num_threads() {
    const char* s = std::getenv("COEFFNET_NUM_THREADS");
    if (s == nullptr || *s == '\0') return 0;
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    check(*end == '\0' && v >= 1 && v <= 4096, "COEFFNET_NUM_THREADS: expected a whole number from 1 to 4096, got '",
          s, "'");
    return static_cast<int>(v);
}

// Sets how many threads coeffnet's loops and Eigen's GEMM use from now on (on this thread's
// OpenMP team; 1 runs everything on the calling thread). Without OpenMP it does nothing.
inline void set_num_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(std::max(1, n));
#else
    (void)n;
#endif
}

// The threads a loop may use: 1 inside a parallel region or without OpenMP; else OpenMP's
// count, which is every core it sees (or OMP_NUM_THREADS) unless COEFFNET_NUM_THREADS (read at
// the first call) or set_num_threads said otherwise.
inline int num_threads() {
#ifdef _OPENMP
    static const bool from_env = [] {
        const int n = env_num_threads();
        if (n > 0) set_num_threads(n);
        return n > 0;
    }();
    (void)from_env;
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

// Runs f(begin, end) over [0, n) in contiguous chunks. `cost` is the work of one item in
// rough scalar operations; below about 32k operations in all the loop stays on one thread,
// since waking the team costs more than it saves.
template <class F>
void parallel_for(int64_t n, int64_t cost, F&& f) {
    if (n <= 0) return;
    const int threads = num_threads();
    if (threads <= 1 || n < 2 || n * std::max<int64_t>(cost, 1) < 32768) {
        f(int64_t{0}, n);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
        if (begin < end) f(begin, end);
    }
#else
    f(int64_t{0}, n);
#endif
}

}  // namespace coeffnet
