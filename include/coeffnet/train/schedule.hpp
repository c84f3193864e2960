// coeffnet/train/schedule.hpp: learning-rate schedules, as multipliers of the base rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace coeffnet {

// transformers' get_cosine_schedule_with_warmup: a linear ramp from 0 over `warmup` steps,
// then half a cosine from 1 down to 0 at `total` steps. `step` counts from 0.
inline double cosine_with_warmup(int64_t step, int64_t total, int64_t warmup) {
    if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
    const double progress =
        static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
    return std::max(0.0, 0.5 * (1.0 + std::cos(3.14159265358979323846 * std::min(progress, 1.0))));
}

}  // namespace coeffnet
