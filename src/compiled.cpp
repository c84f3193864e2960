// src/compiled.cpp: the compiled companion library (CMake target coeffnet::compiled, option
// COEFFNET_COMPILED). It instantiates the templates listed in <coeffnet/instantiations.hpp> for float
// and double, once; a program that links coeffnet::compiled gets COEFFNET_COMPILED defined, which
// makes <coeffnet/coeffnet.hpp> declare the same list extern, so that program compiles none of them.
#include <coeffnet/coeffnet.hpp>
#include <coeffnet/instantiations.hpp>

#define COEFFNET_DEFINE_TEMPLATE_(...) template __VA_ARGS__;
namespace coeffnet {
COEFFNET_TEMPLATES(COEFFNET_DEFINE_TEMPLATE_, float)
COEFFNET_TEMPLATES(COEFFNET_DEFINE_TEMPLATE_, double)
}  // namespace coeffnet
