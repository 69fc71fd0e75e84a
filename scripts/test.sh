#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds a release and an ASan/UBSan build, and runs
# every CTest test in both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps
jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFL_SANITIZE=ON -DFL_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# detect_leaks: the library must not leak. The test runner's python child is not instrumented.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j"$jobs" -LE mpi)
# The MPI tests under ASan/UBSan too, without leak checking: Open MPI's own allocations are
# reported as leaks (none goes through fastlstm).
(cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -L mpi)
