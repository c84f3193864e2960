#!/usr/bin/env bash
# gpu_check.sh: everything this repository can check on a lent GPU (an H200), in one run.
#
#   OUT=/some/dir bash bench/gpu_check.sh        # from the repository root
#
# Stages, each timed, each with its log under $OUT; a failing stage is recorded and the later
# stages still run; a stage whose program is absent is "missing", not an error:
#   nvidia_smi   nvidia-smi and nvidia-smi -q                     -> nvidia-smi.txt
#   configure    cmake -B build-gpu -DCOEFFNET_CUDA_ARCHS=90a (Release, tests and benches)
#   build        coeffnet_cuda_tests and every bench/cuda/*.cpp (make -k: one broken target does
#                not stop the others)
#   ctest        the cuda/ tests, with COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 (a skip is a failure)
#                -> ctest.log, ctest_junit.xml
#   memcheck     compute-sanitizer --tool memcheck on coeffnet_cuda_tests
#   racecheck    compute-sanitizer --tool racecheck on tests/cuda/test_attention_cuda.cpp's cases
#   bench_<name> build-gpu/bench/cuda/<name> --json $OUT/<name>.json $BENCH_ARGS
#   torch_reference  python3 bench/torch_reference.py --json $OUT/torch_reference.json (if torch imports)
# Summary: $OUT/gpu_check.json ({"stages": [{"name", "status", "seconds", "rc", "log"}], ...}) and a
# table on stdout. status is one of ok, failed, timeout, missing, skipped.
#
# The whole run is budgeted to BUDGET_S seconds (default 450, under the 8 minutes a lent machine
# gives one command); each stage gets at most its own limit and what is left of the budget.
# Environment: OUT (default ./gpu_check_out), BUILD_DIR (build-gpu), JOBS (nproc), BUDGET_S,
# BENCH_ARGS (extra arguments for every bench, e.g. --quick), SKIP_BUILD=1 (use binaries already in
# BUILD_DIR, e.g. built elsewhere with -DCOEFFNET_CUDA_ARCHS=90a when the GPU machine has no nvcc).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT=${OUT:-$PWD/gpu_check_out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
JOBS=${JOBS:-$(nproc)}
BUDGET_S=${BUDGET_S:-450}
BENCH_ARGS=${BENCH_ARGS:-}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

T0=$(date +%s)
STAGES=()  # JSON objects, one per stage

json_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\n\t' '  '; }

record() {  # name status seconds rc log note
  local note
  note=$(json_escape "${6:-}")
  STAGES+=("{\"name\": \"$1\", \"status\": \"$2\", \"seconds\": $3, \"rc\": $4, \"log\": \"$5\", \"note\": \"$note\"}")
  printf '%-24s %-8s %6ss  rc=%-4s %s\n' "$1" "$2" "$3" "$4" "${6:-}"
}

# run_stage NAME LIMIT_S COMMAND...: runs COMMAND with its output in $OUT/NAME.log, at most
# min(LIMIT_S, what is left of the budget) seconds.
run_stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - T0)))
  if ((left < 15)); then
    record "$name" skipped 0 -1 "" "out of time budget"
    return 0
  fi
  ((limit > left)) && limit=$left
  local log="$OUT/$name.log" start end rc status
  start=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  end=$(date +%s%N)
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  record "$name" "$status" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$rc" "$name.log" \
    "$([ $status = timeout ] && echo "limit ${limit}s")"
  return 0
}

missing() { record "$1" missing 0 -1 "" "$2"; }

echo "gpu_check: OUT=$OUT BUILD_DIR=$BUILD_DIR JOBS=$JOBS BUDGET_S=$BUDGET_S ($(date -u +%FT%TZ))"
git rev-parse HEAD >"$OUT/git_commit.txt" 2>/dev/null
git status --short >"$OUT/git_status.txt" 2>/dev/null

# ---- the machine -----------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  run_stage nvidia_smi 30 bash -c 'nvidia-smi; echo; nvidia-smi -q'
  cp "$OUT/nvidia_smi.log" "$OUT/nvidia-smi.txt"
else
  missing nvidia_smi "nvidia-smi not found"
fi
{ command -v nvcc && nvcc --version; command -v cmake && cmake --version; command -v compute-sanitizer; } \
  >"$OUT/tools.txt" 2>&1

# ---- configure and build -----------------------------------------------------------------------
bench_names=()
for src in bench/cuda/*.cpp; do
  [ -e "$src" ] && bench_names+=("$(basename "$src" .cpp)")
done
if [ -n "${SKIP_BUILD:-}" ]; then
  missing configure "SKIP_BUILD is set: using the binaries already in $BUILD_DIR"
  missing build "SKIP_BUILD is set"
elif ! command -v cmake >/dev/null; then
  missing configure "cmake not found"
  missing build "cmake not found"
elif ! command -v nvcc >/dev/null; then
  missing configure "nvcc not found (PATH=$PATH)"
  missing build "nvcc not found"
else
  run_stage configure 120 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCOEFFNET_CUDA=ON \
    -DCOEFFNET_CUDA_ARCHS=90a -DCOEFFNET_BUILD_EXAMPLES=OFF -DCOEFFNET_BUILD_TOOLS=OFF
  targets=(coeffnet_cuda_tests)
  for b in "${bench_names[@]}"; do targets+=("cuda_$b"); done
  run_stage build 300 cmake --build "$BUILD_DIR" -j"$JOBS" --target "${targets[@]}" -- -k
fi

# ---- tests -----------------------------------------------------------------------------------
tests_bin="$BUILD_DIR/tests/coeffnet_cuda_tests"
if [ -x "$tests_bin" ]; then
  if [ -z "${SKIP_BUILD:-}" ] && command -v ctest >/dev/null; then
    run_stage ctest 180 env COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 ctest --test-dir "$BUILD_DIR" -R '^cuda/' \
      --output-on-failure --timeout 120 --output-junit "$OUT/ctest_junit.xml"
  else  # a build made elsewhere: its CTestTestfile paths may not exist here, so run the binary itself
    run_stage ctest 180 env COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 "$tests_bin" --reporters=junit \
      --out="$OUT/ctest_junit.xml"
    COEFFNET_CUDA_TESTS_REQUIRE_GPU=1 timeout 120 "$tests_bin" >>"$OUT/ctest.log" 2>&1
  fi
  if command -v compute-sanitizer >/dev/null; then
    run_stage memcheck 150 env COEFFNET_CUDA_SYNC=1 compute-sanitizer --tool memcheck --error-exitcode 86 \
      --print-limit 50 "$tests_bin"
    if [ -e tests/cuda/test_attention_cuda.cpp ]; then
      run_stage racecheck 90 env COEFFNET_CUDA_SYNC=1 compute-sanitizer --tool racecheck --error-exitcode 86 \
        --print-limit 50 "$tests_bin" --source-file='*test_attention_cuda*'
    else
      missing racecheck "tests/cuda/test_attention_cuda.cpp not present"
    fi
  else
    missing memcheck "compute-sanitizer not found"
    missing racecheck "compute-sanitizer not found"
  fi
else
  missing ctest "$tests_bin not built"
  missing memcheck "$tests_bin not built"
  missing racecheck "$tests_bin not built"
fi

# ---- benchmarks ------------------------------------------------------------------------------
for b in "${bench_names[@]}"; do
  bin="$BUILD_DIR/bench/cuda/$b"
  if [ -x "$bin" ]; then
    # shellcheck disable=SC2086
    run_stage "bench_$b" 120 "$bin" --json "$OUT/$b.json" $BENCH_ARGS
  else
    missing "bench_$b" "$bin not built"
  fi
done

if [ ! -e bench/torch_reference.py ]; then
  missing torch_reference "bench/torch_reference.py not present"
elif ! python3 -c 'import torch' >/dev/null 2>&1; then
  missing torch_reference "python3 cannot import torch"
else
  run_stage torch_reference 120 python3 bench/torch_reference.py --json "$OUT/torch_reference.json"
fi

# ---- summary ---------------------------------------------------------------------------------
total=$(($(date +%s) - T0))
{
  printf '{\n  "script": "bench/gpu_check.sh",\n  "date": "%s",\n  "git_commit": "%s",\n' \
    "$(date -u +%FT%TZ)" "$(cat "$OUT/git_commit.txt" 2>/dev/null)"
  printf '  "build_dir": "%s",\n  "jobs": %s,\n  "budget_s": %s,\n  "total_seconds": %s,\n  "stages": [\n' \
    "$(json_escape "$BUILD_DIR")" "$JOBS" "$BUDGET_S" "$total"
  for i in "${!STAGES[@]}"; do
    printf '    %s%s\n' "${STAGES[$i]}" "$([ "$i" -lt $((${#STAGES[@]} - 1)) ] && echo ,)"
  done
  printf '  ]\n}\n'
} >"$OUT/gpu_check.json.tmp" && mv "$OUT/gpu_check.json.tmp" "$OUT/gpu_check.json"
echo "gpu_check: done in ${total}s; summary in $OUT/gpu_check.json"
