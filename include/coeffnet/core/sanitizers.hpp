// coeffnet/core/sanitizers.hpp: COEFFNET_ASAN is 1 in a translation unit compiled with
// AddressSanitizer, by GCC (which defines __SANITIZE_ADDRESS__) or Clang (which answers
// __has_feature(address_sanitizer) instead), else 0. Used where code must know it: the block
// emulator's fiber switches and the tests that measure memory.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define COEFFNET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COEFFNET_ASAN 1
#endif
#endif
#ifndef COEFFNET_ASAN
#define COEFFNET_ASAN 0
#endif
