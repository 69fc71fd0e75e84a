# Install rules: `cmake --install build --prefix P` gives
#   P/lib/libfastlstm.so.X.Y.Z (+ links), P/lib/libfastlstm.a, P/include/fastlstm/*.h, P/bin/fastlstm,
#   P/lib/pkgconfig/fastlstm.pc, P/lib/cmake/fastlstm/ (find_package(fastlstm): fastlstm::fastlstm,
#   fastlstm::fastlstm_static), and with MPI libfastlstm_dist (fastlstm-dist.pc, fastlstm::fastlstm_dist).
include(CMakePackageConfigHelpers)

set(FL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/fastlstm)
set_target_properties(fastlstm PROPERTIES EXPORT_NAME fastlstm)
set_target_properties(fastlstm_static PROPERTIES EXPORT_NAME fastlstm_static)

install(TARGETS fastlstm fastlstm_static EXPORT fastlstmTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Public headers; dist.h only where its library is built.
file(GLOB FL_PUBLIC_HEADERS ${CMAKE_CURRENT_SOURCE_DIR}/include/fastlstm/*.h)
if(NOT FL_HAVE_DIST)
  list(FILTER FL_PUBLIC_HEADERS EXCLUDE REGEX ".*/dist\\.h$")
endif()
install(FILES ${FL_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fastlstm)
if(TARGET fastlstm_cli)
  install(TARGETS fastlstm_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# pkg-config files are relocatable: the prefix is found from the .pc file's own place (the prefix
# given to `cmake --install --prefix` is not known at configure time).
file(RELATIVE_PATH FL_PC_UP "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" FL_PC_UP "${FL_PC_UP}")
set(FL_PC_PREFIX "\${pcfiledir}/${FL_PC_UP}")
# pkg-config. Libs.private / Requires.private carry what libfastlstm.a needs (pkg-config --static).
set(FL_PC_LIBS_PRIVATE "-llapacke -llapack -lopenblas -lpthread -lm")
if(Z_LIB)
  string(APPEND FL_PC_LIBS_PRIVATE " -lz")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/fastlstm.pc.in ${CMAKE_CURRENT_BINARY_DIR}/fastlstm.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fastlstm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(FL_HAVE_DIST)
  set_target_properties(fastlstm_dist PROPERTIES EXPORT_NAME fastlstm_dist)
  set_target_properties(fastlstm_dist_static PROPERTIES EXPORT_NAME fastlstm_dist_static)
  install(TARGETS fastlstm_dist fastlstm_dist_static EXPORT fastlstmTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  # dist.h does not include mpi.h: users need no MPI flags, only the library for a static link.
  set(FL_PC_MPI_LIBS "-lmpi")
  configure_file(${CMAKE_CURRENT_LIST_DIR}/fastlstm-dist.pc.in ${CMAKE_CURRENT_BINARY_DIR}/fastlstm-dist.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fastlstm-dist.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()

install(EXPORT fastlstmTargets NAMESPACE fastlstm:: DESTINATION ${FL_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/fastlstmConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfig.cmake INSTALL_DESTINATION ${FL_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfigVersion.cmake
        DESTINATION ${FL_CMAKE_DIR})
