# Finds BLIS (https://github.com/flame/blis), the GEMM behind coeffnet::blis, and defines the
# imported target CoeffnetBLIS::blis (its header and library). Sets CoeffnetBLIS_FOUND.
# Used by the project's CMakeLists.txt and by the installed coeffnetConfig.cmake alike.
# Looked for first as Debian's OpenMP build (package libblis-openmp-dev: blis-openmp/ below the
# multiarch include and library folders; its threads are OpenMP's, as coeffnet's own loops), then
# as a plain install (blis.h and libblis). COEFFNET_BLIS_INCLUDE_DIR and COEFFNET_BLIS_LIBRARY,
# set in the cache, point elsewhere.
find_path(COEFFNET_BLIS_INCLUDE_DIR blis.h PATH_SUFFIXES blis-openmp blis)
find_library(COEFFNET_BLIS_LIBRARY NAMES blis blis-mt PATH_SUFFIXES blis-openmp)
if(COEFFNET_BLIS_INCLUDE_DIR AND COEFFNET_BLIS_LIBRARY)
  set(CoeffnetBLIS_FOUND TRUE)
  if(NOT TARGET CoeffnetBLIS::blis)
    add_library(CoeffnetBLIS::blis UNKNOWN IMPORTED)
    set_target_properties(CoeffnetBLIS::blis PROPERTIES
      IMPORTED_LOCATION "${COEFFNET_BLIS_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${COEFFNET_BLIS_INCLUDE_DIR}")
  endif()
else()
  set(CoeffnetBLIS_FOUND FALSE)
endif()
