#!/usr/bin/env bash
# The CLI includes only public headers (scripts/check_cli_headers.sh), and the check does fail on a
# CLI that reaches into src/ (checked on a copy with a private include added).
set -u
src=${FL_SOURCE_DIR:?}
. "$src/tests/cli_lib.sh"
check="$src/scripts/check_cli_headers.sh"

expect 0 bash "$check" "$src/cli" "$src/include" "$src/src" || true

for inc in '#include "internal.h" /* fl_fail */' '#include "npy.h"' '#include "decomp/decomp.h"' \
           '#include "../src/core/internal.h"' '#include <internal.h>' '#include "fastlstm/nonexistent.h"'; do
  rm -rf "$T/cli" && cp -r "$src/cli" "$T/cli"
  printf '%s\n' "$inc" >> "$T/cli/cmd_run.c"
  if expect 1 bash "$check" "$T/cli" "$src/include" "$src/src"; then has out "cmd_run.c"; fi
done

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "ok"
