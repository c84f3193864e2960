#!/usr/bin/env bash
# The README's first command: installs what is missing (Debian/Ubuntu packages), configures
# and builds everything (library checks, tests, examples, benchmarks), then runs the main job.
#   BUILD_DIR   build folder (default: build)
#   JOBS        parallel compile jobs (default: all cores)
#   CMAKE_ARGS  more configure arguments (CI: -DCOEFFNET_CUDA_ARCHS=80, one architecture)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

# libblis-openmp-dev: the CPU GEMM (coeffnet::blis; without it the build falls back to Eigen's)
packages=(cmake make ninja-build g++ libeigen3-dev libblis-openmp-dev nlohmann-json3-dev doctest-dev libstb-dev)
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

# shellcheck disable=SC2086  # CMAKE_ARGS is a list of words
# Ninja, as CI's sanitizer build (where it schedules every target's files together; there make,
# given two targets, had built them one after the other). This cold build took 4.8 min on 2 cores
# with either (2026-12-07). A build directory configured earlier keeps its generator.
generator=()
[ -f "$BUILD_DIR/CMakeCache.txt" ] || generator=(-G Ninja)
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j"$JOBS"

# The main job: Coeff-Tuning against linear probing, LoRA, alpha + LoRA and full fine-tuning
# on three procedural few-shot tasks, 3 seeds (1.5 to 3.5 minutes on 2 cores, by machine: README.md).
"$BUILD_DIR"/tools/coeffnet tune --out "$BUILD_DIR"/tune
