#!/usr/bin/env bash
# The README's first command: installs what is missing (Debian/Ubuntu packages), configures
# and builds everything (library checks, tests, examples, benchmarks), then runs the main job.
#   BUILD_DIR   build folder (default: build)
#   JOBS        parallel compile jobs (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

packages=(cmake make g++ libeigen3-dev nlohmann-json3-dev doctest-dev libstb-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "quickstart: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j"$JOBS"

# The main job: the paper's toy experiment (Section 4.1, Figure 3).
"$BUILD_DIR"/examples/toy_graph --svg "$BUILD_DIR"/toy_graph.svg
