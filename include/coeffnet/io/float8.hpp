// coeffnet/io/float8.hpp: the values of the 8-bit float dtypes safetensors files can hold
// (F8_E5M2, F8_E4M3, F8_E4M3FNUZ, F8_E5M2FNUZ, F8_E8M0; see io/dtype.hpp). Tensors do not hold
// them: SafeTensors::get_as converts them to float or double with f8_to_double.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "dtype.hpp"

namespace coeffnet::io {

// The value of one 8-bit float (F8_*) as a double; NaN for the NaN encodings.
inline double f8_to_double(DType d, uint8_t b) {
    const bool neg = (b & 0x80u) != 0;
    double v;
    switch (d) {
        case DType::F8_E5M2:  // IEEE-like binary8: the top byte of a binary16
            return static_cast<double>(half_t::to_float(static_cast<uint16_t>(b << 8)));
        case DType::F8_E4M3: {  // bias 7, no infinities, S.1111.111 is NaN
            const int e = (b >> 3) & 0xf, m = b & 0x7;
            if (e == 0xf && m == 0x7) return std::nan("");
            v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
            break;
        }
        case DType::F8_E4M3FNUZ: {  // bias 8, no infinities, no -0: 0x80 is NaN
            if (b == 0x80u) return std::nan("");
            const int e = (b >> 3) & 0xf, m = b & 0x7;
            v = e == 0 ? std::ldexp(m / 8.0, -7) : std::ldexp(1.0 + m / 8.0, e - 8);
            break;
        }
        case DType::F8_E5M2FNUZ: {  // bias 16, no infinities, no -0: 0x80 is NaN
            if (b == 0x80u) return std::nan("");
            const int e = (b >> 2) & 0x1f, m = b & 0x3;
            v = e == 0 ? std::ldexp(m / 4.0, -15) : std::ldexp(1.0 + m / 4.0, e - 16);
            break;
        }
        case DType::F8_E8M0:  // an exponent alone: 2^(b - 127), 0xff is NaN
            return b == 0xffu ? std::nan("") : std::ldexp(1.0, static_cast<int>(b) - 127);
        default:
            fail("safetensors: ", dtype_name(d), " is not an 8-bit float type");
    }
    return neg ? -v : v;
}

}  // namespace coeffnet::io
