#!/usr/bin/env bash
# fastlstm installs like any C library: `cmake --install` into a scratch prefix, then a small C
# program (tests/install/hello.c) is built against the installed copy only, with pkg-config (shared
# and static) and with find_package(fastlstm), and run. The inference library must not bring MPI.
set -u
src=${FL_SOURCE_DIR:?} bin=${FL_BINARY_DIR:?}
if grep -q '^FL_SANITIZE:BOOL=ON' "$bin/CMakeCache.txt"; then
  echo "SKIP: sanitizer build (ASan libraries would have to be on every consumer's link line)"; exit 77
fi
. "$src/tests/cli_lib.sh"
P=$T/prefix
cc=${CC:-cc}

expect 0 cmake --install "$bin" --prefix "$P" || { echo "install failed"; exit 1; }
libdir=$(ls -d "$P"/lib* | head -1)
for f in include/fastlstm/fastlstm.h include/fastlstm/io.h include/fastlstm/decompose.h bin/fastlstm; do
  [ -e "$P/$f" ] || fail "$f not installed"
done
[ -e "$P/include/fastlstm/internal.h" ] && fail "a private header was installed"
ls "$libdir"/libfastlstm.so.*.*.* >/dev/null 2>&1 || fail "no versioned libfastlstm.so"
[ -e "$libdir/libfastlstm.a" ] || fail "no libfastlstm.a"
[ -e "$libdir/pkgconfig/fastlstm.pc" ] || fail "no fastlstm.pc"
[ -e "$libdir/cmake/fastlstm/fastlstmConfig.cmake" ] || fail "no CMake package config"

export PKG_CONFIG_PATH=$libdir/pkgconfig
libs=$(pkg-config --libs fastlstm) || fail "pkg-config --libs fastlstm"
case "$libs $(pkg-config --static --libs fastlstm)" in *mpi*) fail "fastlstm.pc mentions MPI: $libs" ;; esac

# Shared: the program runs against the installed libfastlstm.so.
expect 0 "$cc" -std=c11 -Wall -Werror "$src/tests/install/hello.c" -o "$T/hello" $(pkg-config --cflags --libs fastlstm) ||
  fail "building hello against the shared library"
if LD_LIBRARY_PATH=$libdir expect 0 "$T/hello" "$T/y.npy"; then
  has out "parameters"
  cp "$T/out" "$T/shared.txt"
  [ -s "$T/y.npy" ] || fail "hello wrote no .npy"
  LD_LIBRARY_PATH=$libdir ldd "$T/hello" | grep -q "$libdir/libfastlstm.so" || fail "hello does not use the installed libfastlstm.so"
  LD_LIBRARY_PATH=$libdir ldd "$T/hello" | grep -qi mpi && fail "hello links MPI"
fi

# Static: libfastlstm.a plus its private dependencies (pkg-config --static); same output.
slibs=$(pkg-config --static --libs fastlstm | sed 's/-lfastlstm\b/-l:libfastlstm.a/')
if expect 0 "$cc" -std=c11 -Wall -Werror "$src/tests/install/hello.c" -o "$T/hello_static" \
     $(pkg-config --cflags fastlstm) $slibs; then
  ldd "$T/hello_static" | grep -q libfastlstm && fail "hello_static still needs libfastlstm.so"
  if expect 0 "$T/hello_static"; then cmp -s "$T/out" "$T/shared.txt" || fail "static and shared outputs differ"; fi
else
  fail "building hello against the static library"
fi

# The installed CLI finds its library (RPATH $ORIGIN/../lib).
expect 0 env -u LD_LIBRARY_PATH "$P/bin/fastlstm" --help || fail "installed CLI does not run"

# Distributed training is a separate component with its own pkg-config file.
if [ -e "$libdir/pkgconfig/fastlstm-dist.pc" ]; then
  case "$(pkg-config --libs fastlstm-dist)" in *-lfastlstm_dist*-lfastlstm*) ;; *) fail "fastlstm-dist.pc libs" ;; esac
  [ -e "$P/include/fastlstm/dist.h" ] || fail "dist.h not installed"
  printf '#include <fastlstm/dist.h>\nint main(void) { return fl_dist_size(0) == 12345; }\n' > "$T/dist.c"
  expect 0 "$cc" -std=c11 "$T/dist.c" -o "$T/dist" $(pkg-config --cflags --libs fastlstm-dist) ||
    fail "building against fastlstm-dist"
fi

# CMake: find_package(fastlstm) gives fastlstm::fastlstm and fastlstm::fastlstm_static.
if expect 0 cmake -S "$src/tests/install" -B "$T/cm" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_BUILD_TYPE=Release &&
   expect 0 cmake --build "$T/cm"; then
  if expect 0 "$T/cm/hello"; then cmp -s "$T/out" "$T/shared.txt" || fail "find_package build: output differs"; fi
  if expect 0 "$T/cm/hello_static"; then cmp -s "$T/out" "$T/shared.txt" || fail "find_package static build: output differs"; fi
else
  fail "find_package(fastlstm) project"
fi

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "ok"
