// src/compiled.hpp: the body of the compiled companion library (CMake target coeffnet::compiled,
// option COEFFNET_COMPILED), included once per element type by src/compiled_float.cpp and
// src/compiled_double.cpp with COEFFNET_COMPILED_TYPE defined. It instantiates the templates listed in
// <coeffnet/instantiations.hpp> for that type. A program that links coeffnet::compiled gets
// COEFFNET_COMPILED defined, which makes <coeffnet/coeffnet.hpp> declare the same list extern, so
// that program compiles none of them. One file per type: each instantiation is compiled once, the
// two files build in parallel, and a program that uses float alone links the float object alone.
#pragma once
#ifndef COEFFNET_COMPILED_TYPE
#error "define COEFFNET_COMPILED_TYPE (float or double) before including src/compiled.hpp"
#endif
#include <coeffnet/coeffnet.hpp>
#include <coeffnet/instantiations.hpp>

#define COEFFNET_DEFINE_TEMPLATE_(...) template __VA_ARGS__;
namespace coeffnet {
COEFFNET_TEMPLATES(COEFFNET_DEFINE_TEMPLATE_, COEFFNET_COMPILED_TYPE)
#ifdef COEFFNET_COMPILED_UNTYPED
COEFFNET_UNTYPED_TEMPLATES(COEFFNET_DEFINE_TEMPLATE_)
#endif
}  // namespace coeffnet
