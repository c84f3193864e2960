// The float instantiations of coeffnet::compiled (see compiled.hpp).
#define COEFFNET_COMPILED_TYPE float
#include "compiled.hpp"
