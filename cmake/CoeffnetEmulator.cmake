# The block emulator (src/emulator/emulator.hpp): the CUDA backend's kernels and launchers
# (src/cuda/*.cu, kernels/*.cuh) compiled by the host compiler against the CUDA stand-in headers
# in src/emulator/include/, so that every kernel runs, with real thread counts, barriers and
# shadow-checked shared memory, on a machine without a GPU or even without nvcc.
#
#   coeffnet_emulator_core   the scheduler, shadow memory, runtime and cuBLAS stand-ins
#                            (src/emulator/*.cpp), compiled without instrumentation;
#   coeffnet_emulated        src/cuda/*.cu as C++ (one generated .cpp that includes each), with
#                            GCC's -fsanitize=thread instrumentation at compile time only: every
#                            load and store calls the emulator's __tsan_* hooks. Under
#                            COEFFNET_SANITIZE=address the instrumentation is left out (it cannot
#                            be combined with ASan) and ASan checks the kernels' memory instead.
# Tests link coeffnet_emulated instead of coeffnet::cuda (tests/CMakeLists.txt: coeffnet_emulated_tests).

add_library(coeffnet_emulator_core STATIC
  ${PROJECT_SOURCE_DIR}/src/emulator/emulator.cpp
  ${PROJECT_SOURCE_DIR}/src/emulator/runtime.cpp)
target_include_directories(coeffnet_emulator_core
  PUBLIC ${PROJECT_SOURCE_DIR}/src/emulator/include ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
target_compile_features(coeffnet_emulator_core PUBLIC cxx_std_20)
target_compile_definitions(coeffnet_emulator_core PRIVATE COEFFNET_EMULATED=1)
target_link_libraries(coeffnet_emulator_core PRIVATE coeffnet_project_flags)
target_link_libraries(coeffnet_emulator_core PUBLIC ${CMAKE_DL_LIBS})
# Under ASan, for the emulator and everything that links it (the kernels, the emulated tests): no
# detection of stack use after return. Clang turns it on by default (since 15), and it gives every
# frame a fake stack from mmap, which on fibers cost 29x: one emulated test took 94 s instead of
# 3.3 s with clang 19 (2026-12-07). The fibers' stacks keep ASan's ordinary redzones.
if(COEFFNET_SANITIZE MATCHES "address")
  target_compile_options(coeffnet_emulator_core PUBLIC -fsanitize-address-use-after-return=never)
endif()

file(GLOB _coeffnet_emu_cu CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cu)
set(_coeffnet_emu_sources "")
foreach(_cu IN LISTS _coeffnet_emu_cu)
  get_filename_component(_name "${_cu}" NAME_WE)
  set(_wrapper "${CMAKE_CURRENT_BINARY_DIR}/emulated/${_name}.cpp")
  file(CONFIGURE OUTPUT "${_wrapper}" CONTENT "// generated: ${_cu} compiled for the block emulator\n#include \"${_cu}\"\n")
  list(APPEND _coeffnet_emu_sources "${_wrapper}")
endforeach()
add_library(coeffnet_emulated STATIC ${_coeffnet_emu_sources})
target_include_directories(coeffnet_emulated BEFORE PUBLIC ${PROJECT_SOURCE_DIR}/src/emulator/include)
target_include_directories(coeffnet_emulated PRIVATE ${PROJECT_SOURCE_DIR} PUBLIC ${PROJECT_SOURCE_DIR}/include)
target_compile_features(coeffnet_emulated PUBLIC cxx_std_20)
target_compile_definitions(coeffnet_emulated PRIVATE COEFFNET_EMULATED=1 "COEFFNET_CUDA_ARCHS_STRING=\"emulated\"")
target_link_libraries(coeffnet_emulated PUBLIC coeffnet_emulator_core INTERFACE coeffnet::coeffnet)
target_link_libraries(coeffnet_emulated PRIVATE coeffnet_project_flags)
# -g1: line tables, so that a fault names file:line of the access (addr2line)
target_compile_options(coeffnet_emulated PRIVATE -g1 -Wno-unknown-pragmas
                       $<$<CXX_COMPILER_ID:GNU>:-Wno-tsan -Wno-subobject-linkage -Wno-maybe-uninitialized>)
if(NOT COEFFNET_SANITIZE MATCHES "address|thread")
  # Instrumentation only: the link does not get -fsanitize=thread, so no ThreadSanitizer run time.
  target_compile_options(coeffnet_emulated PRIVATE -fsanitize=thread)
endif()
# Line coverage of kernels/*.cuh and src/cuda/*.cu under the emulated tests (tests/emulator_coverage.sh;
# not in CI). -O1 rather than -O0: -O0 instruments every stack access, which makes the emulated
# run several times slower. -fprofile-update=atomic: the counter updates become atomics, which the
# emulator's __tsan_atomic* entry points perform without shadow checks (plain counter stores in
# .bss would look like static __shared__ traffic to the shadow checks).
option(COEFFNET_EMULATOR_COVERAGE "Compile coeffnet_emulated with --coverage (tests/emulator_coverage.sh)" OFF)
if(COEFFNET_EMULATOR_COVERAGE)
  target_compile_options(coeffnet_emulated PRIVATE --coverage -O1 -fprofile-update=atomic)
  target_link_options(coeffnet_emulated INTERFACE --coverage)
endif()
