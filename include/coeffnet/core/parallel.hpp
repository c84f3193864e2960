// coeffnet/core/parallel.hpp: the one place loops are split across threads (OpenMP).
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace coeffnet {

inline int num_threads() {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

inline void set_num_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(std::max(1, n));
#else
    (void)n;
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
