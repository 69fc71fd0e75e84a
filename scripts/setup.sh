#!/usr/bin/env bash
# Installs every dependency from Debian's packages and builds fastlstm (release) into build/.
#   bash scripts/setup.sh            deps + release build
#   bash scripts/setup.sh --deps     deps only
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev libcjson-dev libcmocka-dev
      libopenmpi-dev openmpi-bin zlib1g-dev python3-torch python3-numpy python3-pytest python3-setuptools dataset-fashion-mnist
      bible-kjv espeak-ng  # these two: application data of tools/apps_data.sh
      libprotobuf-c-dev protobuf-c-compiler python3-onnx libonnx-testdata
      libmicrohttpd-dev curl  # these two: fastlstm serve (HTTP library) and its test client
      iproute2  # ip and tc: the emulated cluster of bench/dist/cluster.sh (test_dist_cluster)
      python3-matplotlib)  # plots of bench/apps/run.sh
command -v npm >/dev/null 2>&1 || PKGS+=(npm)  # npm fetches sentiment@5.0.2 (keep a Node.js npm if present)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--deps" ] && exit 0

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
echo "setup: built build/fastlstm"
