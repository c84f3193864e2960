# The CUDA backend: static library coeffnet_cuda (coeffnet::cuda) from src/cuda/*.cu.
# Included by the top-level CMakeLists.txt when COEFFNET_CUDA is ON (after check_language(CUDA)).
#
#   COEFFNET_CUDA_ARCHS         architectures for nvcc (default "80;90a": A100 and H100/H200 with
#                               the sm_90a features); entries the installed nvcc cannot build are
#                               dropped with a warning instead of failing the build.
#   COEFFNET_CUDA_FULL_MATRIX   instantiate every dtype x head-dim kernel variant (compile definition
#                               COEFFNET_CUDA_FULL_MATRIX=1 on coeffnet_cuda); by default only the
#                               variants the tests and benchmarks use are compiled.
#
# The .cu files see only include/ and the repository root (for kernels/*.cuh), not the CPU
# library's dependencies: a .cu that includes Eigen fails to compile, as it should.

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

if(CMAKE_CUDA_COMPILER_ID STREQUAL "NVIDIA" AND CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
  message(FATAL_ERROR "coeffnet: the CUDA backend needs nvcc 12.0 or newer (C++20); found ${CMAKE_CUDA_COMPILER_VERSION}. "
                      "Configure with -DCOEFFNET_CUDA=OFF to build without it.")
endif()

# ---- architectures: keep what this nvcc supports ------------------------------------------------
set(_coeffnet_archs "")
set(_coeffnet_supported "")
execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --list-gpu-arch OUTPUT_VARIABLE _coeffnet_list
                RESULT_VARIABLE _coeffnet_list_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_coeffnet_list_rc EQUAL 0)
  string(REGEX MATCHALL "compute_[0-9]+" _coeffnet_supported "${_coeffnet_list}")
  list(TRANSFORM _coeffnet_supported REPLACE "compute_" "")
endif()
foreach(_arch IN LISTS COEFFNET_CUDA_ARCHS)
  if(_arch MATCHES "^(native|all|all-major)$" OR NOT _coeffnet_supported)
    list(APPEND _coeffnet_archs "${_arch}")
    continue()
  endif()
  string(REGEX REPLACE "^([0-9]+).*$" "\\1" _num "${_arch}")  # 90a -> 90, 80-real -> 80
  if(_num IN_LIST _coeffnet_supported)
    list(APPEND _coeffnet_archs "${_arch}")
  else()
    message(WARNING "coeffnet: nvcc ${CMAKE_CUDA_COMPILER_VERSION} cannot build CUDA architecture ${_arch} "
                    "(it supports ${_coeffnet_supported}); leaving it out")
  endif()
endforeach()
if(NOT _coeffnet_archs)
  message(FATAL_ERROR "coeffnet: none of COEFFNET_CUDA_ARCHS='${COEFFNET_CUDA_ARCHS}' is supported by "
                      "${CMAKE_CUDA_COMPILER} (it supports ${_coeffnet_supported})")
endif()
set(COEFFNET_CUDA_ARCHS_USED "${_coeffnet_archs}" CACHE INTERNAL "CUDA architectures coeffnet_cuda is built for")
message(STATUS "coeffnet: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${_coeffnet_archs})")

# ---- the library --------------------------------------------------------------------------------
file(GLOB _coeffnet_cuda_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cu)
add_library(coeffnet_cuda STATIC ${_coeffnet_cuda_sources})
add_library(coeffnet::cuda ALIAS coeffnet_cuda)
set_target_properties(coeffnet_cuda PROPERTIES
  EXPORT_NAME cuda
  CUDA_ARCHITECTURES "${_coeffnet_archs}"
  CUDA_RUNTIME_LIBRARY Shared          # the same libcudart as CUDA::cudart, which users link
  CUDA_SEPARABLE_COMPILATION OFF
  POSITION_INDEPENDENT_CODE ON)
target_compile_features(coeffnet_cuda PUBLIC cxx_std_20)
# CMake 3.25 does not know how to ask nvcc 13 for C++20 (CUDA_STANDARD 20 fails), so the flag is given here.
target_include_directories(coeffnet_cuda
  PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
  PRIVATE ${PROJECT_SOURCE_DIR})
# Users of coeffnet::cuda get the CPU library too (tests compare against it); the .cu files do not.
target_link_libraries(coeffnet_cuda PUBLIC CUDA::cudart CUDA::cublas INTERFACE coeffnet::coeffnet)
string(REPLACE ";" "," _coeffnet_archs_commas "${_coeffnet_archs}")
target_compile_definitions(coeffnet_cuda PRIVATE "COEFFNET_CUDA_ARCHS_STRING=\"${_coeffnet_archs_commas}\"")
if(COEFFNET_CUDA_FULL_MATRIX)
  target_compile_definitions(coeffnet_cuda PRIVATE COEFFNET_CUDA_FULL_MATRIX=1)
endif()
# --expt-relaxed-constexpr: core/rng.hpp's Philox (std::array, constexpr) is called from device code.
target_compile_options(coeffnet_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall,-Wextra>)
if(COEFFNET_WERROR)
  target_compile_options(coeffnet_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
endif()
