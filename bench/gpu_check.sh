#!/usr/bin/env bash
# gpu_check.sh: what this repository can check on a lent GPU (an H100 or H200), built here and run
# there in well under one command's 10 minutes, so that a rerun fits in a 15-minute lease.
#
#   bash bench/gpu_check.sh build               # HERE: builds build-gpu/ for sm_90a, checks what to carry
#   bash bench/gpu_check.sh run                 # THERE: runs the carried binaries, archives into $OUT
#   bash bench/gpu_check.sh run --expect-no-gpu # CI's dry run: every GPU stage must say no_gpu/missing
#   bash bench/gpu_check.sh selftest-archive    # proves the archive limits on dummy outputs
#
# The device command and what it must carry (`build` prints both again, with their sizes):
#
#   command: bash bench/gpu_check.sh run
#   carry:   ["build-gpu/tests/coeffnet_cuda_tests", "build-gpu/bench/cuda", "build-gpu/gpu_check"]
#
# build (here; nothing is compiled on the GPU machine, which may lack Eigen, nlohmann and doctest):
#   configures BUILD_DIR (default build-gpu) Release with -DCOEFFNET_CUDA_ARCHS=90a
#   -DCOEFFNET_NATIVE=OFF (a -march=native binary from this machine may not run on that CPU), examples
#   and tools off, and builds only coeffnet_cuda_tests and the cuda_<name> benches (one per
#   bench/cuda/*.cpp). cuBLAS and the CUDA runtime are linked as shared libraries (cuBLAS is far too
#   big to carry); `ldd` must show nothing beyond libcudart/libcublas/libcublasLt .so.13, libc, libm,
#   libdl, libpthread, librt, libgcc_s, libstdc++ and libgomp. libgomp.so.1 is copied into
#   BUILD_DIR/gpu_check/ as a fallback that `run` uses only where the GPU machine lacks it (it has g++
#   for nvcc, and g++ brings libgomp, so it should not be needed), beside a manifest of the binaries'
#   sha256 sums. Fails when the carried files plus the tree that travels exceed 64 MiB. Environment:
#   BUILD_DIR, JOBS (default nproc); ccache is used where CMAKE_CXX_COMPILER_LAUNCHER /
#   CMAKE_CUDA_COMPILER_LAUNCHER are set in the environment.
#
# run (there; nothing is configured or compiled): stages in this order, each with its own limit, all
# within BUDGET_S (default 300 s: the limits, their kill grace and the archive add up to 294 s):
#   nvidia_smi    10 s  nvidia-smi; nvidia-smi -q
#   libs           -    ldd of every binary; a missing library is looked for in the CUDA and PyTorch
#                       folders (and the carried libgomp) and added to LD_LIBRARY_PATH
#   gpu_probe     15 s  one small GPU test case without COEFFNET_CUDA_TESTS_REQUIRE_GPU: a "SKIPPED:"
#                       line means no usable GPU, and every later GPU stage is then no_gpu, not failed
#   tests         70 s  coeffnet_cuda_tests once, COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 (a skip is a failure)
#   bench_<name>        every bench/cuda/<name> with --quick --json: attention_bench 40 s,
#                       kernels_bench 35 s, gemm_bench 25 s (others 25 s); exit 2 (no usable GPU) is no_gpu
#   memcheck      30 s  compute-sanitizer memcheck on "cuda kernels: softmax with a broadcast mask*"
#   racecheck     30 s  compute-sanitizer racecheck on "cuda coeff_attention fp16 within the CPU*"
#   archive       15 s  (reserved) everything into at most 8 files under $OUT, verified
# A stage gets min(its limit, what is left of the budget); one with under 5 s left is "skipped".
# Statuses: ok, failed, timeout, missing (program or binary absent), no_gpu, refused (compute-sanitizer
# would not instrument this device, as on some machines: recorded, the run goes on), skipped.
# What comes back in $OUT (which must be empty or absent at the start): gpu_check.json (the summary:
# stages, GPU, test counts, the archive's file list and its verification), each bench's JSON
# (<name>.json, when at most 4 MiB), and gpu_check_logs.tar.gz (every log and anything else, each log
# over its cap cut in the middle with a note), at most 8 files, each <= 16 MiB, <= 64 MiB in all,
# verified after writing. Exit status: 0 when no stage failed or timed out and the archive is within
# the limits; 1 otherwise; 2 for bad usage or input. Environment: BUILD_DIR (default build-gpu),
# OUT (default out/gpu_check), BUDGET_S (300), BENCH_ARGS (default --quick).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# ---- limits of a lent GPU machine ---------------------------------------------------------------
readonly MAX_FILES=8 MAX_FILE_BYTES=$((16 << 20)) MAX_TOTAL_BYTES=$((64 << 20))
readonly MAX_TREE_BYTES=$((64 << 20)) MAX_COMMAND_CHARS=2000
readonly NAME_RE='^[A-Za-z0-9._-]+$'
# The archive: bench JSONs up to JSON_TOP_MAX come back as files of their own (at most 6, beside
# gpu_check.json and the tarball); the logs share LOG_BUDGET raw bytes (so the tarball stays under
# 16 MiB even for incompressible logs), each at most LOG_CAP.
readonly JSON_TOP_MAX=$((4 << 20)) LOG_BUDGET=$((14 << 20)) LOG_CAP=$((4 << 20)) TARBALL=gpu_check_logs.tar.gz
# Stage limits (seconds) for `run`; KILL_S is the grace after a limit before SIGKILL.
readonly KILL_S=3 ARCHIVE_RESERVE_S=15 MIN_STAGE_S=5
readonly PROBE_CASE='cuda DeviceTensor: host <-> device round trips for every dtype'
readonly MEMCHECK_CASE='cuda kernels: softmax with a broadcast mask*'
readonly RACECHECK_CASE='cuda coeff_attention fp16 within the CPU*'

die() {
  echo "gpu_check: error: $*" >&2
  exit 2
}

bench_names() {  # one name per bench/cuda/*.cpp
  local src
  for src in bench/cuda/*.cpp; do
    [ -e "$src" ] && basename "$src" .cpp
  done
}

stage_limit() {
  case $1 in
    nvidia_smi) echo 10 ;;
    gpu_probe) echo 15 ;;
    tests) echo 70 ;;
    bench_attention_bench) echo 40 ;;
    bench_kernels_bench) echo 35 ;;
    memcheck | racecheck) echo 30 ;;
    *) echo 25 ;;
  esac
}

json_escape() { printf '%s' "$1" | tr -d '\000-\010\013\014\016-\037' | tr '\n\t\r' '   ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }

file_bytes() { stat -c %s "$1" 2>/dev/null || echo 0; }

device_carry() {  # the carry list for BUILD_DIR, as JSON
  printf '["%s/tests/coeffnet_cuda_tests", "%s/bench/cuda", "%s/gpu_check"]' "$1" "$1" "$1"
}

device_command() {
  if [ "$1" = build-gpu ]; then
    echo "bash bench/gpu_check.sh run"
  else
    echo "BUILD_DIR=$1 bash bench/gpu_check.sh run"
  fi
}

use_cuda_path() {
  local d
  for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
    [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
  done
  export PATH
}

# ==== build ========================================================================================

# The sonames a carried binary may need: what the GPU machine has (CUDA 13's runtime libraries, the C
# and C++ runtimes, libgomp).
readonly ALLOWED_LIBS_RE='^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libgomp\.so\.1|libcudart\.so\.13|libcublas\.so\.13|libcublasLt\.so\.13)$'

cmd_build() {
  [ $# -eq 0 ] || die "build takes no arguments (got: $*); set BUILD_DIR or JOBS in the environment"
  local build_dir=${BUILD_DIR:-build-gpu} jobs=${JOBS:-$(nproc)} t0 name b p
  [[ $build_dir =~ ^[A-Za-z0-9._/-]+$ && $build_dir != /* ]] ||
    die "BUILD_DIR='$build_dir' must be a relative path inside the repository (letters, digits, . _ - /)"
  use_cuda_path
  command -v cmake >/dev/null || die "cmake not found"
  command -v nvcc >/dev/null || die "nvcc not found (PATH=$PATH): the build for sm_90a happens here"
  local names=()
  mapfile -t names < <(bench_names)
  [ ${#names[@]} -gt 0 ] || die "no bench/cuda/*.cpp found"
  local targets=(coeffnet_cuda_tests)
  for name in "${names[@]}"; do targets+=("cuda_$name"); done

  t0=$(date +%s)
  echo "gpu_check build: $build_dir, targets ${targets[*]}, -j$jobs ($(date -u +%FT%TZ))"
  mkdir -p "$build_dir" || die "cannot create $build_dir"
  local configure_log=$build_dir/gpu_check_configure.log
  if ! cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCOEFFNET_CUDA=ON -DCOEFFNET_CUDA_ARCHS=90a \
    -DCOEFFNET_NATIVE=OFF -DCOEFFNET_BUILD_TESTS=ON -DCOEFFNET_BUILD_BENCH=ON \
    -DCOEFFNET_BUILD_EXAMPLES=OFF -DCOEFFNET_BUILD_TOOLS=OFF >"$configure_log" 2>&1; then
    tail -n 30 "$configure_log" >&2
    die "configure failed (log: $configure_log)"
  fi
  grep -qx 'COEFFNET_CUDA_ARCHS_USED:INTERNAL=90a' "$build_dir/CMakeCache.txt" ||
    die "$build_dir is not configured for exactly sm_90a: $(grep COEFFNET_CUDA_ARCHS_USED "$build_dir/CMakeCache.txt")"
  grep -qx 'COEFFNET_NATIVE:BOOL=OFF' "$build_dir/CMakeCache.txt" || die "COEFFNET_NATIVE is not OFF in $build_dir"
  cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}" || die "the build failed"
  local t_built=$(($(date +%s) - t0))

  local tests_bin=$build_dir/tests/coeffnet_cuda_tests bins=()
  bins=("$tests_bin")
  for name in "${names[@]}"; do bins+=("$build_dir/bench/cuda/$name"); done
  for b in "${bins[@]}"; do [ -x "$b" ] || die "$b was not built"; done
  local stray
  stray=$(find "$build_dir/bench/cuda" -mindepth 1 -maxdepth 1 | while read -r f; do
    printf '%s\n' "${names[@]}" | grep -qx "$(basename "$f")" || echo "$f"
  done)
  [ -z "$stray" ] || die "$build_dir/bench/cuda holds files that are no bench of bench/cuda (they would be carried): $stray"

  # What the binaries need: shared cuBLAS, nothing the GPU machine lacks.
  local bad="" lib
  for b in "${bins[@]}"; do
    readelf -d "$b" | grep -q 'NEEDED.*\[libcublas\.so\.13\]' ||
      bad+="$b does not link libcublas.so.13 dynamically; "
    while read -r lib; do
      [[ $lib =~ $ALLOWED_LIBS_RE ]] || bad+="$b needs $lib; "
    done < <(ldd "$b" | awk '{print $1}')
    if ldd "$b" | grep -q 'not found'; then bad+="$b: $(ldd "$b" | grep 'not found' | tr '\n\t' '  '); "; fi
  done
  [ -z "$bad" ] || die "the binaries need libraries beyond CUDA 13's runtime, libc, libstdc++ and libgomp: $bad"
  local glibc glibcxx
  glibc=$(for b in "${bins[@]}"; do objdump -T "$b"; done 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
  glibcxx=$(for b in "${bins[@]}"; do objdump -T "$b"; done 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -n 1)

  # The carried extras: libgomp (a fallback) and the manifest, each written to a temp name and renamed.
  local extra=$build_dir/gpu_check gomp
  mkdir -p "$extra" || die "cannot create $extra"
  gomp=$(ldd "$tests_bin" | awk '$1 == "libgomp.so.1" {print $3}')
  if [ -n "$gomp" ]; then
    if ! { cp -L "$gomp" "$extra/libgomp.so.1.tmp" && mv "$extra/libgomp.so.1.tmp" "$extra/libgomp.so.1"; }; then
      die "cannot copy $gomp into $extra"
    fi
  fi
  if ! {
    echo "# gpu_check build manifest: sha256 and path (relative to the repository root) of each carried binary"
    echo "# built $(date -u +%FT%TZ) from $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "# $(nvcc --version | tail -n 1), architectures 90a, COEFFNET_NATIVE=OFF, needs at most $glibc and $glibcxx"
    sha256sum "${bins[@]}"
  } >"$extra/manifest.txt.tmp" || ! mv "$extra/manifest.txt.tmp" "$extra/manifest.txt"; then
    die "cannot write $extra/manifest.txt"
  fi

  # Sizes: what is carried, and with the tree that travels beside it (tracked and untracked files
  # that git does not ignore).
  local carry_paths=("$tests_bin" "$build_dir/bench/cuda" "$extra") carry_bytes tree_bytes=0 total
  carry_bytes=$(du -cb "${carry_paths[@]}" | tail -n 1 | cut -f1)
  if git rev-parse --git-dir >/dev/null 2>&1; then
    tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null |
      awk '$2 == "total" {s += $1} END {print s + 0}')
  else
    echo "gpu_check build: warning: not a git checkout; the size of the tree that travels is not counted" >&2
  fi
  total=$((carry_bytes + tree_bytes))
  echo
  echo "built in ${t_built}s; carried binaries:"
  for p in "${bins[@]}" "$extra"/*; do printf '  %10s  %s\n' "$(file_bytes "$p")" "$p"; done
  printf 'carried: %s bytes (%.1f MiB); with the tree (%.1f MiB): %.1f MiB of the 64 MiB a call may send\n' \
    "$carry_bytes" "$(awk -v b="$carry_bytes" 'BEGIN {print b / 1048576}')" \
    "$(awk -v b="$tree_bytes" 'BEGIN {print b / 1048576}')" "$(awk -v b="$total" 'BEGIN {print b / 1048576}')"
  echo "needs at most $glibc and $glibcxx (here: $(ldd --version | head -n 1); run's environment.log shows the GPU machine's)"
  ((total <= MAX_TREE_BYTES)) ||
    die "the carried files ($carry_bytes bytes) and the tree ($tree_bytes bytes) are $total bytes, over the 64 MiB that may travel"
  local cmd
  cmd=$(device_command "$build_dir")
  ((${#cmd} <= MAX_COMMAND_CHARS)) || die "the device command is over $MAX_COMMAND_CHARS characters"
  echo
  echo "device command (${#cmd} characters): $cmd"
  echo "carry: $(device_carry "$build_dir")"
}

# ==== run ==========================================================================================

STAGES=()    # JSON objects, one per stage
RESULTS=()   # "name status" per stage, for the checks at the end
GPU=unknown  # usable, none or unknown
GPU_REASON=""

record() {  # name status seconds limit rc log note [extra JSON members]
  local note
  note=$(json_escape "${7:-}")
  STAGES+=("{\"name\": \"$1\", \"status\": \"$2\", \"seconds\": $3, \"limit_s\": $4, \"rc\": $5, \"log\": \"$6\", \"note\": \"$note\"${8:+, $8}}")
  RESULTS+=("$1 $2")
  printf '%-26s %-8s %6ss  rc=%-4s %s\n' "$1" "$2" "$3" "$5" "${7:-}"
}

# run_timed NAME LIMIT COMMAND...: runs COMMAND with its output in $LOGS/NAME.log for at most
# min(LIMIT, what is left of the budget) seconds; sets RC, SECS, LIMIT_USED, LOG. Returns 1 (and
# records the stage skipped) when too little of the budget is left.
run_timed() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - $(date +%s) - ARCHIVE_RESERVE_S - KILL_S))
  if ((left < MIN_STAGE_S)); then
    record "$name" skipped 0 "$limit" -1 "" "out of the ${BUDGET_S}s budget"
    return 1
  fi
  ((limit > left)) && limit=$left
  LIMIT_USED=$limit
  LOG=$name.log
  local start end
  start=$(date +%s%N)
  timeout --kill-after="$KILL_S" "$limit" "$@" >"$LOGS/$LOG" 2>&1
  RC=$?
  end=$(date +%s%N)
  SECS=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  return 0
}

rc_status() {
  case $1 in
    0) echo ok ;;
    124 | 137) echo timeout ;;
    *) echo failed ;;
  esac
}

# "cases passed failed skipped" from doctest's summary line in a log ("0 0 0 0" when there is none).
doctest_counts() {
  local line
  line=$(grep -E '^\[doctest\] test cases:' "$1" | tail -n 1)
  [ -n "$line" ] || { echo "0 0 0 0"; return; }
  echo "$line" | awk -F'|' '{
    n = split($0, p, "|"); c = p[1]; gsub(/[^0-9]/, "", c)
    pa = p[2]; gsub(/[^0-9]/, "", pa); f = p[3]; gsub(/[^0-9]/, "", f); s = (n >= 4) ? p[4] : "0"; gsub(/[^0-9]/, "", s)
    print c + 0, pa + 0, f + 0, s + 0 }'
}

doctest_json() {  # extra JSON members for a doctest log
  local c p f k
  read -r c p f _ < <(doctest_counts "$LOGS/$1")
  k=$(grep -c '^SKIPPED: ' "$LOGS/$1")
  echo "\"test_cases\": $c, \"passed\": $p, \"failed\": $f, \"skipped_lines\": $k"
}

stage_nvidia_smi() {
  if ! command -v nvidia-smi >/dev/null; then
    record nvidia_smi missing 0 "$(stage_limit nvidia_smi)" -1 "" "nvidia-smi not found"
    return
  fi
  run_timed nvidia_smi "$(stage_limit nvidia_smi)" bash -c 'nvidia-smi && echo && nvidia-smi -q' || return
  local st
  st=$(rc_status "$RC")
  if [ "$st" = failed ]; then  # no driver, or no device
    record nvidia_smi no_gpu "$SECS" "$LIMIT_USED" "$RC" "$LOG" "nvidia-smi failed: $(grep -m 1 . "$LOGS/$LOG")"
    SMI_FAILED=1
  else
    record nvidia_smi "$st" "$SECS" "$LIMIT_USED" "$RC" "$LOG" "$([ "$st" = timeout ] && echo "limit ${LIMIT_USED}s")"
  fi
}

# Where a library the binaries need may live on the GPU machine.
library_dirs() {
  local purelib d
  case $BUILD_DIR in
    /*) echo "$BUILD_DIR/gpu_check" ;;
    *) echo "$PWD/$BUILD_DIR/gpu_check" ;;
  esac
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do echo "$d"; done
  purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) || return 0
  for d in "$purelib"/nvidia/*/lib "$purelib"/nvidia/cu13/lib "$purelib"/torch/lib; do
    [ -d "$d" ] && echo "$d"
  done
}

stage_libs() {
  local t0 b lib d missing=() added=() log=libs.log note=""
  t0=$(date +%s%N)
  if [ ${#BINS[@]} -eq 0 ]; then
    record libs missing 0 0 -1 "" "no binary in $BUILD_DIR (build them with: bash bench/gpu_check.sh build)"
    return
  fi
  {
    for b in "${BINS[@]}"; do echo "== ldd $b"; ldd "$b"; done
  } >"$LOGS/$log" 2>&1
  mapfile -t missing < <(grep 'not found' "$LOGS/$log" | awk '{print $1}' | sort -u)
  for lib in "${missing[@]}"; do
    while read -r d; do
      if [ -e "$d/$lib" ]; then
        case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
        added+=("$lib from $d")
        break
      fi
    done < <(library_dirs)
  done
  if [ ${#added[@]} -gt 0 ]; then
    note="LD_LIBRARY_PATH gets: ${added[*]}; "
    { echo "== with LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; for b in "${BINS[@]}"; do echo "== ldd $b"; ldd "$b"; done; } >>"$LOGS/$log" 2>&1
  fi
  local still status=ok
  still=$(for b in "${BINS[@]}"; do ldd "$b" 2>&1 | grep 'not found' | awk '{print $1}'; done | sort -u | tr '\n' ' ')
  if [ -n "$still" ]; then
    status=failed
    note+="not found anywhere: $still"
  fi
  if [ -e "$BUILD_DIR/gpu_check/manifest.txt" ]; then
    cp "$BUILD_DIR/gpu_check/manifest.txt" "$LOGS/build_manifest.txt"
    if ! grep -v '^#' "$BUILD_DIR/gpu_check/manifest.txt" | sha256sum --check --quiet >>"$LOGS/$log" 2>&1; then
      status=failed
      note+="the binaries differ from $BUILD_DIR/gpu_check/manifest.txt (carry all of one build); "
    fi
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  note=${note%; }
  record libs "$status" "$secs" 0 "$([ "$status" = ok ] && echo 0 || echo 1)" "$log" "${note:-every library found}"
}

stage_probe() {
  local limit
  limit=$(stage_limit gpu_probe)
  if [ ! -x "$TESTS_BIN" ]; then
    record gpu_probe missing 0 "$limit" -1 "" "$TESTS_BIN not built"
    if ! command -v nvidia-smi >/dev/null || [ -n "${SMI_FAILED:-}" ]; then
      GPU=none
      GPU_REASON="no test binary to probe with, and nvidia-smi is absent or failed"
    fi
    return
  fi
  run_timed gpu_probe "$limit" env -u COEFFNET_CUDA_TESTS_REQUIRE_GPU "$TESTS_BIN" --test-case="$PROBE_CASE" || return
  local c p f skip
  read -r c p f _ < <(doctest_counts "$LOGS/$LOG")
  skip=$(grep -m 1 '^SKIPPED: ' "$LOGS/$LOG")
  if [ -n "$skip" ]; then
    GPU=none
    GPU_REASON=${skip#SKIPPED: "$PROBE_CASE": }
    record gpu_probe no_gpu "$SECS" "$LIMIT_USED" "$RC" "$LOG" "$GPU_REASON"
  elif [ "$RC" -eq 0 ] && ((p >= 1 && f == 0)); then
    GPU=usable
    record gpu_probe ok "$SECS" "$LIMIT_USED" "$RC" "$LOG" "a GPU test case passed"
  elif [ "$RC" -eq 0 ]; then
    record gpu_probe failed "$SECS" "$LIMIT_USED" "$RC" "$LOG" "the probe's test case did not run: '$PROBE_CASE' matched $c cases"
  else
    local st
    st=$(rc_status "$RC")
    record gpu_probe "$st" "$SECS" "$LIMIT_USED" "$RC" "$LOG" "the GPU is in doubt; the later stages run anyway"
  fi
}

stage_tests() {
  local limit
  limit=$(stage_limit tests)
  if [ ! -x "$TESTS_BIN" ]; then
    record tests missing 0 "$limit" -1 "" "$TESTS_BIN not built"
    return
  elif [ "$GPU" = none ]; then
    record tests no_gpu 0 "$limit" -1 "" "not run: $GPU_REASON"
    return
  fi
  run_timed tests "$limit" env COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 "$TESTS_BIN" --duration=true || return
  local st c p f note=""
  st=$(rc_status "$RC")
  read -r c p f _ < <(doctest_counts "$LOGS/$LOG")
  if [ "$st" = ok ] && ((c == 0)); then
    st=failed
    note="no test case ran"
  elif [ "$st" = timeout ]; then
    note="limit ${LIMIT_USED}s; $c test cases reported"
  else
    note="$c test cases: $p passed, $f failed"
  fi
  record tests "$st" "$SECS" "$LIMIT_USED" "$RC" "$LOG" "$note" "$(doctest_json "$LOG")"
}

stage_bench() {
  local name=$1 stage=bench_$1 limit bin=$BUILD_DIR/bench/cuda/$1 json
  limit=$(stage_limit "$stage")
  if [ ! -x "$bin" ]; then
    record "$stage" missing 0 "$limit" -1 "" "$bin not built"
    return
  fi
  json=$JSONS/$name.json
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  run_timed "$stage" "$limit" "$bin" --json "$json" $BENCH_ARGS || return
  local st note=""
  case $RC in
    2) st=no_gpu note=$(grep -m 1 'no usable' "$LOGS/$LOG") ;;
    *) st=$(rc_status "$RC") ;;
  esac
  [ "$st" = timeout ] && note="limit ${LIMIT_USED}s"
  if [ -s "$json" ]; then
    note+="${note:+; }$name.json $(file_bytes "$json") bytes"
    grep -q '"ok": *false' "$json" && note+=", its JSON says ok: false"
  elif [ -e "$json.tmp" ]; then
    note+="${note:+; }only $name.json.tmp was written"
  fi
  record "$stage" "$st" "$SECS" "$LIMIT_USED" "$RC" "$LOG" "$note"
}

stage_sanitizer() {
  local tool=$1 case_filter=$2 limit
  limit=$(stage_limit "$tool")
  if [ ! -x "$TESTS_BIN" ]; then
    record "$tool" missing 0 "$limit" -1 "" "$TESTS_BIN not built"
    return
  elif ! command -v compute-sanitizer >/dev/null; then
    record "$tool" missing 0 "$limit" -1 "" "compute-sanitizer not found"
    return
  elif [ "$GPU" = none ]; then
    record "$tool" no_gpu 0 "$limit" -1 "" "not run: $GPU_REASON"
    return
  fi
  run_timed "$tool" "$limit" env COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 COEFFNET_CUDA_SYNC=1 compute-sanitizer \
    --tool "$tool" --error-exitcode 86 --print-limit 50 "$TESTS_BIN" --test-case="$case_filter" || return
  local st c note=""
  st=$(rc_status "$RC")
  read -r c _ _ _ < <(doctest_counts "$LOGS/$LOG")
  if grep -qiE 'device (is )?not supported|no supported devices|unsupported device' "$LOGS/$LOG"; then
    st=refused
    note="compute-sanitizer refused the device: $(grep -m 1 -iE 'not supported|unsupported' "$LOGS/$LOG")"
  elif [ "$RC" -eq 86 ]; then
    note="$tool reported errors: $(grep -m 1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/$LOG")"
  elif [ "$st" = ok ] && ((c == 0)); then
    st=failed
    note="no test case matched '$case_filter'"
  elif [ "$st" = timeout ]; then
    note="limit ${LIMIT_USED}s"
  else
    note="case '$case_filter': $(grep -m 1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/$LOG")"
  fi
  record "$tool" "$st" "$SECS" "$LIMIT_USED" "$RC" "$LOG" "$note" "$(doctest_json "$LOG")"
}

# ---- the archive ------------------------------------------------------------------------------------

ARCHIVE_NOTES=()

# cut_log SRC DEST CAP: DEST is SRC, or, when SRC is over CAP bytes, its first and last CAP/2 bytes
# with a note between them.
cut_log() {
  local src=$1 dest=$2 cap=$3 size half
  size=$(file_bytes "$src")
  if ((size <= cap)); then
    cp "$src" "$dest"
    return
  fi
  half=$((cap / 2))
  {
    head -c "$half" "$src"
    printf '\n\n[gpu_check: %d bytes cut from the middle of this log: it was %d bytes, over the cap of %d]\n\n' \
      "$((size - 2 * half))" "$size" "$cap"
    tail -c "$half" "$src"
  } >"$dest"
  ARCHIVE_NOTES+=("$(basename "$src") cut from $size to $cap bytes")
}

# archive SRC DEST: SRC/json/*.json (up to 6 of at most JSON_TOP_MAX bytes) are copied to DEST; everything
# else in SRC/json and SRC/logs goes into DEST/$TARBALL, each log cut to fit. Leaves one slot for
# gpu_check.json. Sets ARCHIVE_NOTES.
archive() {
  local src=$1 dest=$2 f name n=0 top=() rest=() cap
  ARCHIVE_NOTES=()
  for f in "$src"/json/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    if [[ $name =~ $NAME_RE && $name == *.json && $name != gpu_check.json && $name != "$TARBALL" ]] &&
      (($(file_bytes "$f") <= JSON_TOP_MAX && ${#top[@]} < MAX_FILES - 2)); then
      top+=("$f")
    else
      rest+=("$f")
      ARCHIVE_NOTES+=("$name ($(file_bytes "$f") bytes) went into $TARBALL")
    fi
  done
  for f in "$src"/logs/*; do [ -f "$f" ] && rest+=("$f"); done
  n=${#rest[@]}
  cap=$LOG_CAP
  ((n > 0 && LOG_BUDGET / n < cap)) && cap=$((LOG_BUDGET / n))
  local stage=$src/tar/gpu_check_logs tries=0
  while :; do
    rm -rf "$src/tar"
    mkdir -p "$stage"
    local notes_before=${#ARCHIVE_NOTES[@]}
    for f in "${rest[@]}"; do cut_log "$f" "$stage/$(basename "$f")" "$cap"; done
    tar -czf "$dest/$TARBALL.tmp" -C "$src/tar" gpu_check_logs || return 1
    (($(file_bytes "$dest/$TARBALL.tmp") <= MAX_FILE_BYTES)) && break
    tries=$((tries + 1))
    ((tries < 6)) || { rm -f "$dest/$TARBALL.tmp"; ARCHIVE_NOTES+=("$TARBALL stays over 16 MiB"); return 1; }
    ARCHIVE_NOTES=("${ARCHIVE_NOTES[@]:0:notes_before}")
    cap=$((cap / 2))
  done
  mv "$dest/$TARBALL.tmp" "$dest/$TARBALL"
  for f in "${top[@]}"; do
    cp "$f" "$dest/$(basename "$f").tmp" && mv "$dest/$(basename "$f").tmp" "$dest/$(basename "$f")" || return 1
  done
  ARCHIVE_CAP=$cap
}

# verify_out DIR [RESERVE_FILES RESERVE_BYTES]: whether what is under DIR (plus a reserve for files
# still to come) is within the limits. Sets VERIFY_PROBLEMS (one line each), VERIFY_FILES, VERIFY_BYTES.
verify_out() {
  local dir=$1 reserve_files=${2:-0} reserve_bytes=${3:-0} files=0 total=0 ok=0 p rel part size parts=()
  VERIFY_PROBLEMS=""
  problem() { VERIFY_PROBLEMS+="$1"$'\n'; }
  while IFS= read -r -d '' p; do
    rel=${p#"$dir"/}
    IFS=/ read -ra parts <<<"$rel"
    for part in "${parts[@]}"; do
      [[ $part =~ $NAME_RE ]] || { problem "bad name: $rel"; ok=1; }
    done
    if [ -L "$p" ] || { [ ! -f "$p" ] && [ ! -d "$p" ]; }; then
      problem "not a plain file or folder: $rel"
      ok=1
    elif [ -f "$p" ]; then
      files=$((files + 1))
      size=$(file_bytes "$p")
      total=$((total + size))
      ((size <= MAX_FILE_BYTES)) || { problem "over 16 MiB: $rel ($size bytes)"; ok=1; }
      [[ $rel == */*/*/* ]] && { problem "deeper than \$OUT/a/b/file: $rel"; ok=1; }
    fi
  done < <(find "$dir" -mindepth 1 -print0)
  ((files + reserve_files <= MAX_FILES)) || { problem "$files files (+$reserve_files to come), over $MAX_FILES"; ok=1; }
  ((total + reserve_bytes <= MAX_TOTAL_BYTES)) || { problem "$total bytes (+$reserve_bytes to come), over 64 MiB"; ok=1; }
  VERIFY_FILES=$files VERIFY_BYTES=$total
  return $ok
}

# write_summary FILE ARCHIVE_VERIFIED: gpu_check.json, written to a temp name and renamed.
write_summary() {
  local file=$1 verified=$2 total i f files=()
  total=$(($(date +%s) - T0))
  for f in "$(dirname "$file")"/*; do
    [ -f "$f" ] && [[ $f != *.tmp ]] && files+=("{\"name\": \"$(json_escape "$(basename "$f")")\", \"bytes\": $(file_bytes "$f")}")
  done
  files+=("{\"name\": \"gpu_check.json\"}")
  {
    printf '{\n  "script": "bench/gpu_check.sh",\n  "mode": "%s",\n  "date": "%s",\n  "git_commit": "%s",\n' \
      "$MODE" "$(date -u +%FT%TZ)" "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    printf '  "host": "%s",\n  "build_dir": "%s",\n  "budget_s": %s,\n  "total_seconds": %s,\n' \
      "$(json_escape "$(uname -n)")" "$(json_escape "$BUILD_DIR")" "$BUDGET_S" "$total"
    printf '  "gpu": {"state": "%s", "reason": "%s"},\n  "stages": [\n' "$GPU" "$(json_escape "$GPU_REASON")"
    for i in "${!STAGES[@]}"; do
      printf '    %s%s\n' "${STAGES[$i]}" "$([ "$i" -lt $((${#STAGES[@]} - 1)) ] && echo ,)"
    done
    printf '  ],\n  "archive": {"verified": %s, "limits": {"files": %d, "file_bytes": %d, "total_bytes": %d},\n' \
      "$verified" "$MAX_FILES" "$MAX_FILE_BYTES" "$MAX_TOTAL_BYTES"
    printf '    "log_cap_bytes": %s, "files": [%s],\n    "notes": [' "${ARCHIVE_CAP:-0}" "$(IFS=,; echo "${files[*]}")"
    for i in "${!ARCHIVE_NOTES[@]}"; do
      printf '%s"%s"' "$([ "$i" -gt 0 ] && echo ', ')" "$(json_escape "${ARCHIVE_NOTES[$i]}")"
    done
    printf ']}\n}\n'
  } >"$file.tmp" && mv "$file.tmp" "$file"
}

# finish_archive: archive WORK into OUT, write gpu_check.json, verify; sets ARCHIVE_OK (0 or 1).
finish_archive() {
  local t0 verified=true
  t0=$(date +%s%N)
  if ! archive "$WORK" "$OUT"; then
    ARCHIVE_NOTES+=("the archive step failed")
    verified=false
  fi
  if ! verify_out "$OUT" 1 $((1 << 20)); then
    verified=false
    ARCHIVE_NOTES+=("before gpu_check.json: $VERIFY_PROBLEMS")
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  record archive "$([ $verified = true ] && echo ok || echo failed)" "$secs" "$ARCHIVE_RESERVE_S" 0 "" \
    "$([ $verified = true ] && echo "verified: at most $MAX_FILES files, 16 MiB each, 64 MiB in all")"
  write_summary "$OUT/gpu_check.json" "$verified"
  if verify_out "$OUT" && [ $verified = true ]; then
    ARCHIVE_OK=0
    printf 'archive: %d files, %d bytes under %s: verified (<= %d files, each <= 16 MiB, <= 64 MiB in all, names and depth ok)\n' \
      "$VERIFY_FILES" "$VERIFY_BYTES" "$OUT" "$MAX_FILES"
  else
    ARCHIVE_OK=1
    echo "archive: NOT within the limits: $VERIFY_PROBLEMS ${ARCHIVE_NOTES[*]}" >&2
  fi
}

prepare_out() {
  OUT=${OUT:-$PWD/out/gpu_check}
  mkdir -p "$OUT" || die "cannot create OUT=$OUT"
  OUT=$(cd "$OUT" && pwd)
  [ -z "$(find "$OUT" -mindepth 1 -maxdepth 1 | head -n 1)" ] ||
    die "OUT=$OUT is not empty: the archive must be all that is there (empty it, or choose another OUT)"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || die "cannot make a temporary folder"
  trap 'rm -rf "$WORK"' EXIT
  LOGS=$WORK/logs JSONS=$WORK/json
  mkdir -p "$LOGS" "$JSONS"
}

cmd_run() {
  local expect_no_gpu=""
  while [ $# -gt 0 ]; do
    case $1 in
      --expect-no-gpu) expect_no_gpu=1 ;;
      *) die "run: unknown argument $1 (run takes only --expect-no-gpu)" ;;
    esac
    shift
  done
  MODE=run${expect_no_gpu:+ --expect-no-gpu}
  BUILD_DIR=${BUILD_DIR:-build-gpu}
  BUDGET_S=${BUDGET_S:-300}
  BENCH_ARGS=${BENCH_ARGS---quick}
  if ! [[ $BUDGET_S =~ ^[0-9]+$ ]] || ((BUDGET_S < 60)); then
    die "BUDGET_S='$BUDGET_S' must be a whole number of seconds, at least 60"
  fi
  [ -d "$BUILD_DIR" ] || die "BUILD_DIR=$BUILD_DIR does not exist (build it here with: bash bench/gpu_check.sh build, and carry it)"
  use_cuda_path
  prepare_out
  T0=$(date +%s)
  DEADLINE=$((T0 + BUDGET_S))
  echo "gpu_check run: BUILD_DIR=$BUILD_DIR OUT=$OUT BUDGET_S=$BUDGET_S ($(date -u +%FT%TZ))"

  TESTS_BIN=$BUILD_DIR/tests/coeffnet_cuda_tests
  local names=() name
  mapfile -t names < <(bench_names)
  BINS=()
  [ -x "$TESTS_BIN" ] && BINS+=("$TESTS_BIN")
  for name in "${names[@]}"; do [ -x "$BUILD_DIR/bench/cuda/$name" ] && BINS+=("$BUILD_DIR/bench/cuda/$name"); done
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -a)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "PATH=$PATH"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo "libc: $(ldd --version 2>&1 | head -n 1)"
    echo "cpu: $(grep -m 1 'model name' /proc/cpuinfo 2>/dev/null), $(nproc) cores"
    for t in nvidia-smi nvcc compute-sanitizer python3; do echo "$t: $(command -v "$t" || echo absent)"; done
    command -v compute-sanitizer >/dev/null && compute-sanitizer --version
    ls -l "${BINS[@]}" 2>&1
  } >"$LOGS/environment.log" 2>&1

  stage_nvidia_smi
  stage_libs
  stage_probe
  stage_tests
  for name in "${names[@]}"; do stage_bench "$name"; done
  stage_sanitizer memcheck "$MEMCHECK_CASE"
  stage_sanitizer racecheck "$RACECHECK_CASE"
  finish_archive
  echo "gpu_check: done in $(($(date +%s) - T0))s (GPU: $GPU${GPU_REASON:+: $GPU_REASON}); summary in $OUT/gpu_check.json"

  local r st bad=()
  for r in "${RESULTS[@]}"; do
    st=${r#* }
    case $st in failed | timeout) bad+=("$r") ;; esac
  done
  if [ -n "$expect_no_gpu" ]; then  # the dry run: every GPU stage must have said no_gpu or missing
    [ "$GPU" = none ] || bad+=("GPU state $GPU, expected none")
    [ ${#BINS[@]} -eq $((1 + ${#names[@]})) ] || bad+=("only ${#BINS[@]} of $((1 + ${#names[@]})) binaries in $BUILD_DIR")
    for r in "${RESULTS[@]}"; do
      case $r in
        *" failed" | *" timeout") ;;  # already listed
        "libs ok" | "archive ok" | "gpu_probe no_gpu" | "tests no_gpu" | bench_*" no_gpu") ;;
        "nvidia_smi missing" | "nvidia_smi no_gpu" | "memcheck missing" | "memcheck no_gpu" | "racecheck missing" | "racecheck no_gpu") ;;
        *) bad+=("$r (expected no_gpu)") ;;
      esac
    done
  fi
  ((ARCHIVE_OK == 0)) || bad+=("archive over the limits")
  if [ ${#bad[@]} -gt 0 ]; then
    printf 'gpu_check: FAILED: %s\n' "${bad[@]}" >&2
    return 1
  fi
  return 0
}

# ==== selftest-archive ===========================================================================
# Dummy outputs at and over the real sizes (more than 8 files, more than 64 MiB, logs and a JSON
# over 16 MiB, incompressible data), archived by the same code as `run`, then checked.

cmd_selftest_archive() {
  [ $# -eq 0 ] || die "selftest-archive takes no arguments"
  MODE=selftest-archive BUILD_DIR=none BUDGET_S=0 T0=$(date +%s)
  local tmp fail=0 f name
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_selftest.XXXXXX") || die "cannot make a temporary folder"
  SELFTEST_TMP=$tmp
  trap 'rm -rf "$SELFTEST_TMP"' EXIT
  WORK=$tmp/work OUT=$tmp/out LOGS=$tmp/work/logs JSONS=$tmp/work/json
  mkdir -p "$LOGS" "$JSONS" "$OUT"
  check() {  # check CONDITION-DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; fail=1; fi
  }
  # Logs: three incompressible ones over the caps (40, 9 and 5 MiB), one text log over the cap,
  # and eight small text logs; JSONs: one of 17 MiB (over 16 MiB), one of 5 MiB (over the 4 MiB for a
  # file of its own), and eight small ones (more than the slots left for JSONs).
  head -c $((40 << 20)) /dev/urandom >"$LOGS/huge_random.log"
  head -c $((9 << 20)) /dev/urandom >"$LOGS/big_random.log"
  head -c $((5 << 20)) /dev/urandom >"$LOGS/medium_random.log"
  yes 'a line of a long but ordinary test log, repeated' | head -c $((6 << 20)) >"$LOGS/long_text.log"
  for i in 1 2 3 4 5 6 7 8; do
    printf 'small log %d\nSKIPPED: nothing\n[doctest] test cases: 3 | 3 passed | 0 failed | 0 skipped\n' "$i" >"$LOGS/small_$i.log"
  done
  { printf '{"bench": "big", "results": ['; yes '{"name": "x", "ms": 1.0},' | head -c $((17 << 20)); printf '{}]}\n'; } >"$JSONS/big_bench.json"
  { printf '{"bench": "mid", "results": ['; yes '{"name": "y", "ms": 2.0},' | head -c $((5 << 20)); printf '{}]}\n'; } >"$JSONS/mid_bench.json"
  for i in 1 2 3 4 5 6 7 8; do printf '{"bench": "b%d", "ok": true, "results": []}\n' "$i" >"$JSONS/bench_$i.json"; done
  local in_files in_bytes
  in_files=$(find "$WORK" -type f | wc -l)
  in_bytes=$(du -cb "$WORK" | tail -n 1 | cut -f1)
  echo "selftest-archive: $in_files dummy outputs, $in_bytes bytes, archived into $OUT"
  check "the inputs exceed the limits (> $MAX_FILES files, > 64 MiB)" test "$in_files" -gt "$MAX_FILES" -a "$in_bytes" -gt "$MAX_TOTAL_BYTES"
  # A stage list as `run` would have it.
  record tests ok 1.0 70 0 tests.log "" >/dev/null
  record bench_big_bench ok 1.0 25 0 bench_big_bench.log "" >/dev/null
  local t0=$SECONDS
  finish_archive >"$tmp/finish.txt" 2>&1
  check "archive and verification pass (finish_archive: $(tr '\n' ' ' <"$tmp/finish.txt"))" test "$ARCHIVE_OK" -eq 0
  echo "  (archived in $((SECONDS - t0)) s)"

  local out_files=0 out_bytes=0 size bad_names="" too_deep="" too_big="" part parts=()
  while IFS= read -r -d '' f; do
    out_files=$((out_files + 1))
    size=$(file_bytes "$f")
    out_bytes=$((out_bytes + size))
    ((size <= MAX_FILE_BYTES)) || too_big+=" $f"
    name=${f#"$OUT"/}
    [[ $name == */*/*/* ]] && too_deep+=" $name"
    IFS=/ read -ra parts <<<"$name"
    for part in "${parts[@]}"; do [[ $part =~ $NAME_RE ]] || bad_names+=" $name"; done
  done < <(find "$OUT" -mindepth 1 -type f -print0)
  check "at most $MAX_FILES files come back ($out_files)" test "$out_files" -le "$MAX_FILES"
  check "no file over 16 MiB${too_big:+:$too_big}" test -z "$too_big"
  check "at most 64 MiB in all ($out_bytes bytes)" test "$out_bytes" -le "$MAX_TOTAL_BYTES"
  check "names are letters, digits, . _ -${bad_names:+:$bad_names}" test -z "$bad_names"
  check "nothing deeper than \$OUT/a/b/file${too_deep:+:$too_deep}" test -z "$too_deep"
  check "nothing but plain files and folders" test -z "$(find "$OUT" -mindepth 1 ! -type f ! -type d)"
  check "gpu_check.json is there and says verified: true" grep -q '"verified": true' "$OUT/gpu_check.json"
  if command -v python3 >/dev/null; then
    check "gpu_check.json is valid JSON" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$OUT/gpu_check.json"
  fi
  local listing missing_logs=""
  listing=$(tar -tzf "$OUT/$TARBALL")
  for f in "$LOGS"/* "$JSONS"/*; do
    name=$(basename "$f")
    [ -e "$OUT/$name" ] && continue
    grep -qx "gpu_check_logs/$name" <<<"$listing" || missing_logs+=" $name"
  done
  check "every log and every JSON not returned as a file is in $TARBALL${missing_logs:+ (missing:$missing_logs)}" test -z "$missing_logs"
  check "big_bench.json (17 MiB) and mid_bench.json (5 MiB) went into the tarball" \
    test ! -e "$OUT/big_bench.json" -a ! -e "$OUT/mid_bench.json"
  local x="$tmp/x"
  mkdir -p "$x"
  tar -xzf "$OUT/$TARBALL" -C "$x"
  check "huge_random.log was cut, with a note" grep -aq 'gpu_check: .* bytes cut from the middle of this log' "$x/gpu_check_logs/huge_random.log"
  check "the cut log is at most the cap (${ARCHIVE_CAP:-?} bytes) and its note" \
    test "$(file_bytes "$x/gpu_check_logs/huge_random.log")" -le $((${ARCHIVE_CAP:-0} + 200))
  check "the cut log keeps its first bytes" \
    cmp -s <(head -c 1000 "$LOGS/huge_random.log") <(head -c 1000 "$x/gpu_check_logs/huge_random.log")
  check "... and its last bytes" cmp -s <(tail -c 1000 "$LOGS/huge_random.log") <(tail -c 1000 "$x/gpu_check_logs/huge_random.log")
  check "small logs come back whole" cmp -s "$LOGS/small_3.log" "$x/gpu_check_logs/small_3.log"
  local same=0
  for f in "$OUT"/bench_*.json; do cmp -s "$f" "$JSONS/$(basename "$f")" && same=$((same + 1)); done
  check "the JSONs returned as files are whole ($same)" test "$same" -ge 1
  # Worst case for the tarball: every log incompressible and over its share (14 logs of 2 MiB).
  WORK=$tmp/work2 OUT=$tmp/out2 LOGS=$tmp/work2/logs JSONS=$tmp/work2/json
  mkdir -p "$LOGS" "$JSONS" "$OUT"
  for i in $(seq 1 14); do head -c $((2 << 20)) /dev/urandom >"$LOGS/random_$i.log"; done
  finish_archive >"$tmp/finish2.txt" 2>&1
  local tar_bytes
  tar_bytes=$(file_bytes "$OUT/$TARBALL")
  check "14 incompressible logs of 2 MiB: the tarball is $tar_bytes bytes, over 12 MiB and at most 16 MiB, verified" \
    test "$ARCHIVE_OK" -eq 0 -a "$tar_bytes" -le "$MAX_FILE_BYTES" -a "$tar_bytes" -gt $((12 << 20))
  check "... and lists all 14 logs" test "$(tar -tzf "$OUT/$TARBALL" | grep -c 'random_.*\.log$')" -eq 14
  # The verification itself catches each kind of breach.
  local badd=$tmp/bad
  mkdir -p "$badd/a/b/c"
  for i in 1 2 3 4 5 6 7 8 9; do echo "$i" >"$badd/f$i.txt"; done
  verify_out "$badd"
  check "verify_out refuses 9 files" grep -q 'over 8' <<<"$VERIFY_PROBLEMS"
  rm -f "$badd"/f*.txt
  echo x >"$badd/a/b/c/deep.txt"
  echo x >"$badd/a/b/bad name.txt"
  head -c $((16 << 20)) /dev/zero >"$badd/big.bin"
  echo x >>"$badd/big.bin"
  ln -s big.bin "$badd/link"
  verify_out "$badd"
  check "verify_out refuses a file 3 folders down" grep -q 'deeper than' <<<"$VERIFY_PROBLEMS"
  check "verify_out refuses a name with a space" grep -q 'bad name: a/b/bad name.txt' <<<"$VERIFY_PROBLEMS"
  check "verify_out refuses a file of 16 MiB + 2 bytes" grep -q 'over 16 MiB: big.bin' <<<"$VERIFY_PROBLEMS"
  check "verify_out refuses a symbolic link" grep -q 'not a plain file or folder: link' <<<"$VERIFY_PROBLEMS"
  rm -rf "$badd" && mkdir -p "$badd"
  for i in 1 2 3 4 5; do head -c $((13 << 20)) /dev/zero >"$badd/p$i.bin"; done
  verify_out "$badd"
  check "verify_out refuses 65 MiB in 5 files" grep -q 'over 64 MiB' <<<"$VERIFY_PROBLEMS"
  if ((fail)); then
    echo "selftest-archive: FAILED" >&2
    return 1
  fi
  echo "selftest-archive: ok: $in_files files, $in_bytes bytes -> $out_files files, $out_bytes bytes"
}

# ==== main ==========================================================================================

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  run) shift; cmd_run "$@" ;;
  selftest-archive) shift; cmd_selftest_archive "$@" ;;
  -h | --help | help) sed -n '2,/^set -uo pipefail/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  "") die "say what to do: build (here), run (on the GPU machine), or selftest-archive; see --help" ;;
  *) die "unknown mode '$1': build, run, or selftest-archive; see --help" ;;
esac
