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
#include <type_traits>

namespace coeffnet {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

// A message piece as fail() stores it: string literals decay to const char*, so the messages
// of all lengths share one instantiation per sequence of piece kinds.
template <class A>
using message_part_t = std::conditional_t<std::is_array_v<A>, const std::remove_extent_t<A>*, A>;

template <class... A>
[[noreturn, gnu::cold, gnu::noinline]] void throw_error(const A&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw Error(os.str());
}

}  // namespace detail

// Builds a message from any streamable pieces: fail("matmul: ", a, " vs ", b).
template <class... A>
[[noreturn]] inline void fail(const A&... parts) {
    detail::throw_error<detail::message_part_t<A>...>(parts...);
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
