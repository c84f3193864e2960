// The float instantiations of coeffnet::compiled (see compiled.hpp).
#define COEFFNET_COMPILED_TYPE float
#define COEFFNET_COMPILED_UNTYPED  // and the untyped templates, once
#include "compiled.hpp"
