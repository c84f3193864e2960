# cmake -DEXPECTED=<program> -DACTUAL=<program> -P same_output.cmake: runs both programs and fails
# unless both exit 0 and print the same (stdout and stderr). Used by compiled.readme_snippet.
foreach(_which EXPECTED ACTUAL)
  execute_process(COMMAND ${${_which}} OUTPUT_VARIABLE _out_${_which} ERROR_VARIABLE _err_${_which}
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${${_which}} exited with ${_rc}:\n${_out_${_which}}${_err_${_which}}")
  endif()
endforeach()
if(NOT _out_EXPECTED STREQUAL _out_ACTUAL OR NOT _err_EXPECTED STREQUAL _err_ACTUAL)
  message(FATAL_ERROR "different output\n--- ${EXPECTED}:\n${_out_EXPECTED}${_err_EXPECTED}"
                      "--- ${ACTUAL}:\n${_out_ACTUAL}${_err_ACTUAL}")
endif()
message(STATUS "same output:\n${_out_ACTUAL}")
