#!/usr/bin/env bash
# Fails if a file under CLI_DIR includes a private header: the CLI is a client of the public API.
# Allowed: "cli.h" and the CLI's own headers (a quoted path that exists inside CLI_DIR, relative to
# the including file, and is not named like a library header), "fastlstm/<name>.h" that exists under
# INCLUDE_DIR/fastlstm, and <system> headers that are not one of the library's own files under SRC_DIR.
# Subdirectories of CLI_DIR (cli/serve/) are checked too.
# usage: check_cli_headers.sh CLI_DIR INCLUDE_DIR SRC_DIR
set -euo pipefail
cli=$1 inc=$2 src=$3
bad=0
# Every header file of the library's sources, by relative path and by name.
private=$(cd "$src" && find . -name '*.h' | sed 's|^\./||'; cd "$src" && find . -name '*.h' -exec basename {} \;)
for f in "$cli"/*.c "$cli"/*.h "$cli"/*/*.c "$cli"/*/*.h; do
  [ -e "$f" ] || continue
  while IFS= read -r line; do
    n=${line%%:*}
    h=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/' <<<"${line#*:}")
    case "${line#*:}" in
      *'"'*)
        if [ "$h" = cli.h ]; then continue; fi
        # The CLI's own headers (cli/<name>.h, themselves checked by this loop), unless the name is
        # also one of the library's private headers.
        if [[ "$h" != */* && -f "$cli/$h" ]] && ! grep -qxF -- "$h" <<<"$private"; then continue; fi
        if [[ "$h" == fastlstm/*.h && "$h" != *..* && -f "$inc/$h" ]]; then continue; fi
        # ... and those of a subdirectory, relative to the including file (cli/serve/serve.h).
        if [[ "$h" != *..* && -f "$(dirname "$f")/$h" ]] && ! grep -qxF -- "${h##*/}" <<<"$private"; then continue; fi
        echo "$f:$n: includes \"$h\", which is not a public header (include/fastlstm/*.h)"; bad=1 ;;
      *)
        if grep -qxF -- "$h" <<<"$private" || grep -qxF -- "${h##*/}" <<<"$private"; then
          echo "$f:$n: includes <$h>, a private header of the library"; bad=1
        fi ;;
    esac
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$f" || true)
done
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "cli headers: every include under $cli is public or a system header"
