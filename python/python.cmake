# The Python package python/fastlstm (included from the top-level CMakeLists.txt, in its scope so
# that it can set properties of the globbed test tests/test_python.sh).
#   FL_BUILD_PYTHON=ON: `cmake --install` puts the package in FL_PYTHON_INSTALL_DIR under the prefix
#   (default: Debian's dist-packages for that prefix, on /usr/bin/python3's path for /usr and
#   /usr/local) with _install.py recording where the library is relative to it; test_python runs.
include(GNUInstallDirs)
if(NOT DEFINED FL_PYTHON)
  set(FL_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with torch, for golden tests")
endif()
if(FL_BUILD_PYTHON)
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(fl_py_dir lib/python3/dist-packages)
  else()
    execute_process(COMMAND ${FL_PYTHON} -c "import sys; print('lib/python%d.%d/dist-packages' % sys.version_info[:2])"
                    OUTPUT_VARIABLE fl_py_dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE fl_py_rc)
    if(NOT fl_py_rc EQUAL 0)
      set(fl_py_dir lib/python3/dist-packages)
    endif()
  endif()
  set(FL_PYTHON_INSTALL_DIR ${fl_py_dir} CACHE STRING "Where the fastlstm Python package goes, relative to the prefix")
  file(GLOB fl_py_sources ${CMAKE_CURRENT_SOURCE_DIR}/python/fastlstm/*.py)
  list(FILTER fl_py_sources EXCLUDE REGEX "/_export_torch\\.py$") # a link to tools/export_torch.py
  install(FILES ${fl_py_sources} DESTINATION ${FL_PYTHON_INSTALL_DIR}/fastlstm COMPONENT python)
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/tools/export_torch.py DESTINATION ${FL_PYTHON_INSTALL_DIR}/fastlstm
          RENAME _export_torch.py COMPONENT python)
  # Where the library is, relative to the package, computed at install time (so --prefix and
  # DESTDIR are honoured).
  install(CODE "
    set(fl_pkg \"\${CMAKE_INSTALL_PREFIX}/${FL_PYTHON_INSTALL_DIR}/fastlstm\")
    file(RELATIVE_PATH fl_rel \"\${fl_pkg}\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}\")
    file(WRITE \"\$ENV{DESTDIR}\${fl_pkg}/_install.py\"
         \"\\\"\\\"\\\"Written by cmake --install: the library directory relative to this package.\\\"\\\"\\\"\\nLIBDIR_FROM_PACKAGE = \\\"\${fl_rel}\\\"\\n\")
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${fl_pkg}/_install.py\")
  " COMPONENT python)
endif()
if(FL_BUILD_TESTS AND TEST test_python)
  # 77: an ASan build whose runtime cannot be preloaded into the interpreter (see the script)
  set_tests_properties(test_python PROPERTIES LABELS python SKIP_RETURN_CODE 77 TIMEOUT 600)
  set_property(TEST test_python APPEND PROPERTY ENVIRONMENT "FASTLSTM_LIB=$<TARGET_FILE:fastlstm>")
  if(NOT FL_BUILD_PYTHON)
    set_tests_properties(test_python PROPERTIES DISABLED ON)
  endif()
endif()
