#!/usr/bin/env bash
# tests/fuzz/run.sh [seconds]: fuzzes the safetensors reader and writer for a bounded time.
#
# Builds tests/fuzz/fuzz_safetensors.cpp with clang++ and libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer, seeds it with the corpus from tests/fuzz/make_corpus.cpp (valid
# files, the odd files the reference accepts, the malformed-file catalogue) and runs it for
# $1 seconds (default 60). Exits non-zero on any finding (crash, sanitizer report, uncaught
# exception, broken round trip, timeout, out of memory) and leaves the reproducer in the work
# directory it names; removes that directory when nothing was found, unless COEFFNET_FUZZ_KEEP
# is set (to keep the grown corpus).
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
cxx=${CXX_FUZZ:-clang++}

# A fuzzer that builds and links proves both clang++ and its fuzzer runtime are present.
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
have_fuzzer() {
  command -v "$cxx" >/dev/null 2>&1 || return 1
  printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
    > "$probe_dir/probe.cpp"
  "$cxx" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" >/dev/null 2>&1
}
if ! have_fuzzer; then
  echo "fuzz: installing clang and its fuzzer runtime" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
  [ "$cxx" = clang++ ] && ! command -v clang++ >/dev/null 2>&1 && command -v clang++-14 >/dev/null 2>&1 && cxx=clang++-14
  have_fuzzer || { echo "fuzz: $cxx cannot build a libFuzzer target" >&2; exit 1; }
fi

# Eigen and nlohmann/json: from pkg-config when it knows them, else the Debian paths.
incs=$(pkg-config --cflags eigen3 nlohmann_json 2>/dev/null | sed "s/-I/-isystem /g" || true)
[ -n "$incs" ] || incs="-isystem /usr/include/eigen3"

work=$(mktemp -d "${TMPDIR:-/tmp}/coeffnet-fuzz.XXXXXX")
echo "fuzz: building in $work" >&2
flags=(-std=c++20 -g -O1 -Wall -Wextra -Wpedantic -Werror -Wno-unknown-pragmas -I"$root/include" $incs)
"$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
  "$root/tests/fuzz/fuzz_safetensors.cpp" -o "$work/fuzz_safetensors"
"$cxx" "${flags[@]}" -O0 "$root/tests/fuzz/make_corpus.cpp" -o "$work/make_corpus"
"$work/make_corpus" "$work/corpus" >/dev/null
fixture="$root/tests/data/torch_save_file.safetensors"
[ -f "$fixture" ] && cp "$fixture" "$work/corpus/torch-fixture"
echo "fuzz: $(ls "$work/corpus" | wc -l) seeds; running for ${secs}s" >&2

status=0
(cd "$work" && ./fuzz_safetensors -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -dict="$root/tests/fuzz/safetensors.dict" -artifact_prefix="$work/" -print_final_stats=1 corpus) \
  > "$work/fuzz.log" 2>&1 || status=$?
tail -n 30 "$work/fuzz.log"
findings=$(find "$work" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \
  -o -name 'slow-unit-*' \) | wc -l)
if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
  echo "fuzz: FINDING (exit status $status, $findings artifact(s)); log and reproducers in $work" >&2
  exit 1
fi
echo "fuzz: no findings; corpus grew to $(ls "$work/corpus" | wc -l) inputs" >&2
if [ -n "${COEFFNET_FUZZ_KEEP:-}" ]; then echo "fuzz: kept $work" >&2; else rm -rf "$work"; fi
