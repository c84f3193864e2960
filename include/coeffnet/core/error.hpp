// coeffnet/core/error.hpp: the one exception type of the library.
//
// Every failure a caller can cause (a bad shape, a bad file, a bad argument) throws
// coeffnet::Error with a message naming the place (the op, file or tensor) and the values
// that disagree. The library never calls exit() or assert(): checks stay in release builds.
#pragma once

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace coeffnet {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

inline void append(std::ostringstream&) {}
template <class A, class... R>
void append(std::ostringstream& os, const A& a, const R&... rest) {
    os << a;
    append(os, rest...);
}

}  // namespace detail

// Builds a message from any streamable pieces: fail("matmul: ", a, " vs ", b).
template <class... A>
[[noreturn]] void fail(const A&... parts) {
    std::ostringstream os;
    detail::append(os, parts...);
    throw Error(os.str());
}

template <class... A>
void check(bool ok, const A&... parts) {
    if (!ok) fail(parts...);
}

// Throws naming `op` unless p is a probability (finite, in [0, 1]): every dropout's rule.
inline void check_probability(double p, const char* op) {
    check(std::isfinite(p) && p >= 0.0 && p <= 1.0, op, ": probability must be in [0, 1], got ", p);
}

}  // namespace coeffnet
