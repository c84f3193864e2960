// The double instantiations of coeffnet::compiled (see compiled.hpp).
#define COEFFNET_COMPILED_TYPE double
#include "compiled.hpp"
