#!/usr/bin/env bash
# tests/mutations.sh: mutation testing of the suite. Each mutant is one literal text substitution
# in a copy of the tree (the code under test broken on purpose); the script builds a small test
# binary from tests/main.cpp and the test sources said to catch that mutant, runs their doctest
# filter, and prints a table: "caught" when the tests fail, "SURVIVED" when they pass. Not part of
# CI (tens of minutes on 2 cores); tests/README.md holds the last table.
#
#   bash tests/mutations.sh                 # every mutant
#   bash tests/mutations.sh --list          # names, files and catching tests
#   bash tests/mutations.sh softmax-backward causal-off-by-one
#   bash tests/mutations.sh --sources tests/test_vit.cpp --filter '*Coeff-Tuning ViT*' layernorm-backward
#                                           # the same mutant against other tests
#   bash tests/mutations.sh --barriers      # only the barrier sweep (below)
#
# The barrier sweep (run with every mutant unless mutants are named, or alone with --barriers):
# mutants of the CUDA kernels without rebuilds. The block emulator (src/emulator/) can skip one
# __syncthreads by its call site (COEFFNET_EMU_SKIP_BARRIER=file:line). The sweep runs each
# emulated test case once to learn which barrier sites it reaches (COEFFNET_EMU_BARRIER_LOG),
# then, for every site in kernels/ and src/cuda/, runs the cases that reach it with that barrier
# skipped: "caught" when one fails (the first failing case is named), "SURVIVED" when all pass,
# "not skipped" when the emulator reports it never skipped the site. It needs the emulated test
# binary already built (EMULATED_TESTS, default build/tests/coeffnet_emulated_tests).
#
# Before any mutant, the unmutated sources are built and every selected filter must pass (so a
# failure means the mutant, not the tree); --no-baseline skips that. A pattern that does not
# occur exactly once (the code moved) stops the script with exit status 2 before anything is
# built: re-point the entry. Exit status: 0 when every mutant is caught, 1 when one survived,
# 2 on a usage error, a stale pattern, or a build or baseline failure.
# Environment: CXX (default g++), JOBS (parallel compiles, default 2), MUTANT_TIMEOUT (seconds a
# test run may take, default 900; running past it counts as caught and says so). ccache is used
# when installed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

# ---- the mutants ------------------------------------------------------------------------------
# One entry each: mutant NAME FILE OLD NEW SOURCES FILTER
#   FILE     the file to mutate, relative to the repository root
#   OLD/NEW  literal text; OLD must occur in FILE exactly once ($'...' for several lines)
#   SOURCES  the test files that catch the mutant (space-separated, relative to the root); they are
#            built with tests/main.cpp into one binary
#   FILTER   doctest's --test-case filter selecting the catching tests (comma-separated wildcards)
NAMES=() FILES=() OLDS=() NEWS=() SOURCES=() FILTERS=()
mutant() {
  NAMES+=("$1") FILES+=("$2") OLDS+=("$3") NEWS+=("$4") SOURCES+=("$5") FILTERS+=("$6")
}

mutant matmul-backward include/coeffnet/ops/matmul.hpp \
  'if (needs[0]) r[0] = detail::sum_to(detail::matmul_raw(g, sb.mT(), "matmul backward"), sa.shape());' \
  'if (needs[0]) r[0] = detail::sum_to(detail::matmul_raw(g, sb.mT(), "matmul backward"), sa.shape()) * 1.05;' \
  tests/test_backend_ops.cpp 'backend/*'
mutant softmax-backward include/coeffnet/ops/softmax.hpp \
  'return std::vector<Tensor<T>>{softmax_backward(sy, g)};' \
  'return std::vector<Tensor<T>>{softmax_backward(sy, g) * 1.05};' \
  tests/test_backend_ops.cpp 'backend/*'
mutant softmax-backward-vit include/coeffnet/ops/softmax.hpp \
  'return std::vector<Tensor<T>>{softmax_backward(sy, g)};' \
  'return std::vector<Tensor<T>>{softmax_backward(sy, g) * 1.05};' \
  tests/test_vit.cpp '*Coeff-Tuning ViT*'
mutant layernorm-backward include/coeffnet/backend/cpu_norm.hpp \
  'pd[i * C + j] = pr[i] * (d - a - ph[i * C + j] * b);' \
  'pd[i * C + j] = T(1.05) * pr[i] * (d - a - ph[i * C + j] * b);' \
  tests/test_backend_ops.cpp 'backend/*'
mutant layernorm-affine-bias-dropped include/coeffnet/backend/cpu_norm.hpp \
  'for (int64_t j = 0; j < C; ++j) yr[j] = hr[j] * pw[j] + pb[j];' \
  'for (int64_t j = 0; j < C; ++j) yr[j] = hr[j] * pw[j];' \
  tests/test_backend_ops.cpp 'backend/*'
mutant blis-gemm-accumulate-dropped include/coeffnet/backend/cpu_gemm.hpp \
  'T one(1), beta(accumulate ? 1 : 0);' \
  'T one(1), beta(accumulate && M < 0 ? 1 : 0);' \
  tests/test_ops_forward.cpp '*detail::gemm*'
mutant cache-release-no-merge include/coeffnet/core/caching_allocator.hpp \
  'if (next != blocks_.end() && !next->second.in_use && next->second.segment == it->second.segment) {' \
  'if (next != blocks_.end() && !next->second.in_use && next->second.segment == nullptr) {' \
  tests/test_caching_allocator.cpp '*caching allocator*'
mutant cache-split-overlaps include/coeffnet/core/caching_allocator.hpp \
  'blocks_.emplace(ptr + size, tail);' \
  'blocks_.emplace(ptr + size - min_split_small, tail);' \
  tests/test_caching_allocator.cpp '*caching allocator*'
mutant host-cache-bypassed include/coeffnet/core/host_allocator.hpp \
  'if (nbytes > CachingAllocator::small_request && host_caching_enabled())' \
  'if (nbytes > (CachingAllocator::small_request << 12) && host_caching_enabled())' \
  tests/test_caching_allocator.cpp 'host memory*'
mutant coeff-attention-backward include/coeffnet/backend/cpu_attention_tiled.hpp \
  'for (int64_t i = 0; i < H * H; ++i) dalpha[i] += s.dalpha[static_cast<size_t>(i)];' \
  'for (int64_t i = 0; i < H * H; ++i) dalpha[i] += T(1.05) * s.dalpha[static_cast<size_t>(i)];' \
  tests/test_attention_tiled.cpp 'tiled*'
mutant alpha-dropout-mask-ignored include/coeffnet/ops/coeff_spec.hpp \
  'const T m = d.multiplier(static_cast<uint64_t>(h * H + i));' \
  'const T m = d.keep;' \
  tests/test_attention.cpp '*alpha dropout*,*coeff_spec*'
mutant causal-off-by-one include/coeffnet/ops/coeff_spec.hpp \
  'return n + (M - N) + 1; }' \
  'return n + (M - N) + 2; }' \
  tests/test_attention.cpp '*causal*'
mutant tiled-tail-row-dropped include/coeffnet/backend/cpu_attention_tiled.hpp \
  'int64_t blocks() const { return (N + block_q - 1) / block_q; }' \
  'int64_t blocks() const { return N / block_q; }' \
  tests/test_attention_tiled.cpp 'tiled*'
mutant vmath-erfc-coefficient include/coeffnet/core/vmath.hpp \
  'q = q * t + 2.152124196e-01f;' \
  'q = q * t + 2.152524196e-01f;' \
  tests/test_core.cpp 'vmath*'
mutant vmath-exp-no-reduction-lo include/coeffnet/core/vmath.hpp \
  'const float r = (x - n * kLn2Hi) - n * kLn2Lo;' \
  'const float r = x - n * kLn2Hi;' \
  tests/test_core.cpp 'vmath*'
mutant layer-norm-eps-ignored include/coeffnet/models/vit.hpp \
  'layernorm_before(c.hidden_size, c.layer_norm_eps),' \
  'layernorm_before(c.hidden_size),' \
  tests/test_vit.cpp '*layer_norm_eps reaches*'
mutant safetensors-offset-check-removed include/coeffnet/io/safetensors_header.hpp \
  'if (t.begin != at) {' \
  'if (false) {' \
  tests/test_safetensors.cpp '*malformed*'
mutant resume-rng-not-restored include/coeffnet/train/finetune.hpp \
  'rng >> model_.dropout_generator().seed >> model_.dropout_generator().offset;' \
  'rng >> model_.dropout_generator().seed;' \
  tests/test_finetune.cpp '*resumed*'
mutant unregistered-member-unnoticed include/coeffnet/nn/module.hpp \
  'if (!m->registered_ && m->thread_ == thread_ && at > start && at - start < 65536) missed.push_back(m);' \
  'if (false) missed.push_back(m);' \
  tests/test_optim.cpp '*never registered*'
mutant optimiser-stops-following include/coeffnet/train/optim.hpp \
  $'    void refresh() {\n        if (!source_) return;' \
  $'    void refresh() {\n        if (source_) return;' \
  tests/test_optim.cpp '*module-following*'
mutant tiled-backend-unregistered include/coeffnet/ops/attention_tiled_impl.hpp \
  'tiled_attention_backend<T> = &coeff_attention_tiled<T>;' \
  '' \
  tests/test_attention_tiled.cpp '*automatic*'
mutant vit-tiled-backend-unregistered include/coeffnet/models/vit.hpp \
  '        register_tiled_backend<T>();' \
  '' \
  tests/test_vit.cpp '*registers the tiled attention backend*'
# The backend table and the device layer (backend/, tensor/): each caught by the op table's CPU
# column or by test_device.cpp.
mutant backend-broadcast-row include/coeffnet/backend/cpu.hpp \
  'for (int64_t j = 0; j < len; ++j) dr[j] = F::f(ar[j], br[j]);' \
  'for (int64_t j = 0; j < len; ++j) dr[j] = F::f(ar[j], br[0]);' \
  tests/test_backend_ops.cpp 'backend/*'
mutant backend-column-sum include/coeffnet/backend/cpu.hpp \
  'for (int64_t c = c0; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += static_cast<A>(src[c]);' \
  'for (int64_t c = c0 + 1; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += static_cast<A>(src[c]);' \
  tests/test_backend_ops.cpp 'backend/*'
mutant pointwise-gelu-tanh-derivative include/coeffnet/backend/pointwise.hpp \
  'T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * v * v);' \
  'T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(0.044715) * v * v);' \
  tests/test_backend_ops.cpp 'backend/*'
mutant to-device-ignores-offset include/coeffnet/tensor/views.hpp \
  'const size_t src_off = static_cast<size_t>(src.offset()) * sizeof(T);' \
  'const size_t src_off = 0;' \
  tests/test_device.cpp '*'
mutant data-on-device-allowed include/coeffnet/tensor/tensor.hpp \
  'if (!impl_->storage.device().is_cpu()) [[unlikely]]' \
  'if (false)' \
  tests/test_device.cpp '*'

# ---- options ----------------------------------------------------------------------------------
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
list=0 baseline=1 only=() override_sources="" override_filter="" barriers=auto
while [ $# -gt 0 ]; do
  case $1 in
    --list) list=1 ;;
    --no-baseline) baseline=0 ;;
    --barriers) barriers=only ;;
    --sources) override_sources=${2:?--sources needs a value}; shift ;;
    --filter) override_filter=${2:?--filter needs a value}; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "mutations.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) only+=("$1") ;;
  esac
  shift
done

selected=()
if [ ${#only[@]} -eq 0 ]; then
  selected=("${!NAMES[@]}")
else
  for want in "${only[@]}"; do
    found=""
    for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = "$want" ] && found=$i; done
    [ -n "$found" ] || { echo "mutations.sh: no mutant named '$want' (see --list)" >&2; exit 2; }
    selected+=("$found")
  done
fi
for i in "${selected[@]}"; do
  [ -n "$override_sources" ] && SOURCES[$i]=$override_sources
  [ -n "$override_filter" ] && FILTERS[$i]=$override_filter
done

if [ $list -eq 1 ]; then
  for i in "${selected[@]}"; do
    printf '%-34s %-40s %s  -tc=%s\n' "${NAMES[$i]}" "${FILES[$i]}" "${SOURCES[$i]}" "${FILTERS[$i]}"
  done
  exit 0
fi

# ---- the barrier sweep --------------------------------------------------------------------------
barrier_sweep() {
  local bin=${EMULATED_TESTS:-$ROOT/build/tests/coeffnet_emulated_tests}
  [ -x "$bin" ] || { echo "mutations.sh: no emulated test binary at $bin (cmake --build build --target coeffnet_emulated_tests, or set EMULATED_TESTS)" >&2; return 2; }
  python3 - "$bin" "${MUTANT_TIMEOUT:-900}" <<'PYEOF'
import os, subprocess, sys, tempfile, time

binary, timeout = sys.argv[1], int(sys.argv[2])
start = time.time()
listing = subprocess.run([binary, "--list-test-cases", "--no-version"], capture_output=True, text=True).stdout
cases = [l.strip() for l in listing.splitlines()
         if l.strip() and not l.startswith("[doctest]") and not l.startswith("====")]

def pattern(name):  # doctest's -tc splits on commas and treats * and ? as wildcards
    return name.replace(",", "?")

def run(name, env_extra):
    env = dict(os.environ, **env_extra)
    try:
        p = subprocess.run([binary, "--test-case=" + pattern(name), "--no-version"], env=env,
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return 124, "timed out"

# 1. Which barrier sites each case reaches (unmutated; every case must pass).
reach = {}
with tempfile.TemporaryDirectory() as tmp:
    for i, name in enumerate(cases):
        log = os.path.join(tmp, f"{i}.log")
        rc, out = run(name, {"COEFFNET_EMU_BARRIER_LOG": log})
        if rc != 0:
            print(f"mutations.sh: barrier sweep baseline: '{name}' fails unmutated:\n{out[-2000:]}", file=sys.stderr)
            sys.exit(2)
        sites = set(open(log).read().split()) if os.path.exists(log) else set()
        for s in sites:
            if s.startswith("kernels/") or s.startswith("src/cuda/"):
                reach.setdefault(s, []).append(name)
print(f"barrier sweep: {len(cases)} cases, {len(reach)} barrier sites in kernels/ and src/cuda/ "
      f"({time.time() - start:.0f} s)", file=sys.stderr)

# 2. Each site skipped in turn.
def key(site):
    f, line = site.rsplit(":", 1)
    return (f, int(line))
rows, survived = [], 0
for site in sorted(reach, key=key):
    t0 = time.time()
    result, by, skipped_any = "SURVIVED", "", False
    for name in reach[site]:
        rc, out = run(name, {"COEFFNET_EMU_SKIP_BARRIER": site})
        skipped_any |= f"barrier {site} skipped" in out and f"barrier {site} skipped 0 times" not in out
        if rc != 0:
            result, by = ("caught (timed out)" if rc == 124 else "caught"), name
            break
    if result == "SURVIVED" and not skipped_any:
        result = "not skipped"
    survived += not result.startswith("caught")
    print(f"barrier {site}: {result} ({time.time() - t0:.0f} s)", file=sys.stderr)
    rows.append(f"| `{site}` | {len(reach[site])} | {by or ', '.join(reach[site][:2])} | {result} | {time.time() - t0:.0f} |")
print()
print("| barrier skipped | cases reaching it | first failing case | result | s |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print()
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {len(rows)} barrier sites in {time.time() - start:.0f} s")
sys.exit(1 if survived else 0)
PYEOF
}

if [ "$barriers" = only ]; then
  barrier_sweep
  exit $?
fi

# Every selected pattern must occur exactly once before anything is built.
count_of() {  # count_of FILE TEXT: how often TEXT occurs in FILE
  python3 -c 'import sys; print(open(sys.argv[1], encoding="utf-8").read().count(sys.argv[2]))' "$1" "$2"
}
stale=0
for i in "${selected[@]}"; do
  f=$ROOT/${FILES[$i]}
  if [ ! -f "$f" ]; then
    echo "mutations.sh: mutant ${NAMES[$i]}: ${FILES[$i]} does not exist (the code moved: re-point the entry)" >&2
    stale=1
    continue
  fi
  n=$(count_of "$f" "${OLDS[$i]}")
  if [ "$n" != 1 ]; then
    echo "mutations.sh: mutant ${NAMES[$i]}: its pattern occurs $n times in ${FILES[$i]}, not once" \
         "(the code moved: re-point the entry): ${OLDS[$i]}" >&2
    stale=1
  fi
  for s in ${SOURCES[$i]}; do
    [ -f "$ROOT/$s" ] || { echo "mutations.sh: mutant ${NAMES[$i]}: no test source $s" >&2; stale=1; }
  done
done
[ $stale -eq 0 ] || exit 2

# ---- building ---------------------------------------------------------------------------------
# Every build gets its own copy of the tree and compiles from inside it with relative paths, so
# that ccache (CCACHE_BASEDIR) reuses an unmutated file's object across copies and runs.
start=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coeffnet-mutations.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CXX=${CXX:-g++}
JOBS=${JOBS:-2}
LAUNCHER=()
if command -v ccache >/dev/null; then
  LAUNCHER=(ccache)
  export CCACHE_BASEDIR=$WORK
fi
EIGEN=$(pkg-config --cflags-only-I eigen3 2>/dev/null || echo -I/usr/include/eigen3)
EIGEN=${EIGEN//-I/-isystem }
CXXFLAGS=(-std=gnu++20 -O1 -fopenmp -Iinclude -Iexamples $EIGEN "-DCOEFFNET_TEST_DATA=\"$ROOT/tests/data\"")
# The CPU GEMM as the project's build has it: on BLIS where Debian's libblis-openmp-dev is installed
# (cmake/CoeffnetFindBlis.cmake), so the mutants of its BLIS path are built with it.
LIBS=()
BLIS_INC=$(ls -d /usr/include/*/blis-openmp 2>/dev/null | head -n 1)
BLIS_LIB=$(ls /usr/lib/*/blis-openmp/libblis.so 2>/dev/null | head -n 1)
if [ -n "$BLIS_INC" ] && [ -n "$BLIS_LIB" ]; then
  CXXFLAGS+=(-DCOEFFNET_BLIS -isystem "$BLIS_INC")
  LIBS=("$BLIS_LIB")
fi

# copy_tree DIR: the sources of the repository's working tree (not tests/data, read in place) in DIR.
copy_tree() {
  mkdir -p "$1"
  (cd "$ROOT" && tar cf - --anchored --exclude=tests/data include examples src tools tests) | (cd "$1" && tar xf -)
}

# build DIR JOBS SOURCE...: compiles tests/main.cpp and the sources of the tree in DIR, JOBS at a
# time, into DIR/test; compiler messages go to DIR/build.log.
build() {
  local dir=$1 jobs=$2
  shift 2
  (
    cd "$dir"
    local objs=() pids=() s o ok=0 p
    for s in tests/main.cpp "$@"; do
      o=obj/$(echo "$s" | tr / _).o
      mkdir -p obj
      objs+=("$o")
      "${LAUNCHER[@]}" "$CXX" "${CXXFLAGS[@]}" -c "$s" -o "$o" 2>>build.log &
      pids+=($!)
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    done
    for p in "${pids[@]}"; do wait "$p" || ok=1; done
    [ $ok -eq 0 ] && "$CXX" -fopenmp "${objs[@]}" "${LIBS[@]}" -o test 2>>build.log
  )
}

# run_tests BINARY FILTER LOG: 0 pass, 1 fail, 124 timeout, 3 when the filter selected no test.
run_tests() {
  local rc=0
  timeout "${MUTANT_TIMEOUT:-900}" "$1" "--test-case=$2" --no-version >"$3" 2>&1 || rc=$?
  if [ $rc -eq 0 ] && ! grep -Eq 'test cases: +[1-9]' "$3"; then return 3; fi
  return $rc
}

if [ $baseline -eq 1 ]; then
  all_sources=$(for i in "${selected[@]}"; do echo ${SOURCES[$i]}; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
  echo "baseline: building the unmutated $all_sources" >&2
  copy_tree "$WORK/baseline"
  if ! build "$WORK/baseline" "$JOBS" $all_sources; then
    echo "mutations.sh: the unmutated tests do not build:" >&2
    cat "$WORK/baseline/build.log" >&2
    exit 2
  fi
  for i in "${selected[@]}"; do
    rc=0
    run_tests "$WORK/baseline/test" "${FILTERS[$i]}" "$WORK/baseline/${NAMES[$i]}.log" || rc=$?
    if [ $rc -ne 0 ]; then
      echo "mutations.sh: baseline for ${NAMES[$i]}: the unmutated tests -tc='${FILTERS[$i]}' do not pass (rc $rc):" >&2
      tail -40 "$WORK/baseline/${NAMES[$i]}.log" >&2
      exit 2
    fi
  done
  rm -rf "$WORK/baseline"
  echo "baseline: every filter passes unmutated ($(($(date +%s) - start)) s)" >&2
fi

# ---- the mutants: JOBS at a time, each in its own tree ----------------------------------------
# mutant_job I: applies mutant I to a fresh tree, builds, runs; writes "RESULT|SECONDS" to its
# directory's file `result`.
mutant_job() {
  local i=$1 name=${NAMES[$1]} dir=$WORK/m/${NAMES[$1]} t0 rc result
  t0=$(date +%s)
  copy_tree "$dir"
  python3 - "$dir/${FILES[$i]}" "${OLDS[$i]}" "${NEWS[$i]}" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
text = open(path, encoding="utf-8").read()
assert text.count(old) == 1, path
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
  echo "mutant $name: building ${SOURCES[$i]}" >&2
  if build "$dir" 1 ${SOURCES[$i]}; then
    rc=0
    run_tests "$dir/test" "${FILTERS[$i]}" "$dir/test.log" || rc=$?
    case $rc in
      0) result="SURVIVED" ;;
      3) result="no test selected" ;;
      124) result="caught (timed out)" ;;
      *) result="caught" ;;
    esac
  else
    result="does not compile"
    sed -n '1,30p' "$dir/build.log" >&2
  fi
  echo "mutant $name: $result ($(($(date +%s) - t0)) s)" >&2
  [ "$result" = "SURVIVED" ] && { echo "--- tests that let $name through:" >&2; tail -5 "$dir/test.log" >&2; }
  echo "$result|$(($(date +%s) - t0))" >"$dir/result"
}

for i in "${selected[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  mutant_job "$i" &
done
wait

rows=() survived=0 broken=0
for i in "${selected[@]}"; do
  r=$(cat "$WORK/m/${NAMES[$i]}/result" 2>/dev/null || echo "no result|0")
  result=${r%|*} secs=${r##*|}
  case $result in
    SURVIVED) survived=1 ;;
    caught*) ;;
    *) broken=1 ;;
  esac
  rows+=("| ${NAMES[$i]} | \`${FILES[$i]}\` | ${SOURCES[$i]} \`-tc='${FILTERS[$i]}'\` | $result | $secs |")
done

echo
echo "| mutant | file | caught by | result | s |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'): ${#selected[@]} mutants, $JOBS at a time, in $(($(date +%s) - start)) s"
sweep_rc=0
if [ ${#only[@]} -eq 0 ]; then
  echo
  barrier_sweep || sweep_rc=$?
fi
[ $broken -eq 0 ] && [ $sweep_rc -ne 2 ] || exit 2
[ $survived -eq 0 ] && [ $sweep_rc -eq 0 ] || exit 1
