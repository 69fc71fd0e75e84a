#!/usr/bin/env bash
# Fails if libfastlstm exports a symbol without the fl_ prefix.
set -euo pipefail
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | grep -v '^fl_' | grep -v '^_' || true)
if [ -n "$bad" ]; then
  echo "exported symbols without the fl_ prefix in $lib:"; echo "$bad"; exit 1
fi
echo "symbols: all $(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/' | wc -l) exported symbols carry fl_"
