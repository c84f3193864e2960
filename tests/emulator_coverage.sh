#!/usr/bin/env bash
# tests/emulator_coverage.sh: gcov line coverage of the CUDA kernels (kernels/*.cuh) and launchers
# (src/cuda/*.cu) under the emulated tests (coeffnet_emulated_tests, the block emulator). Not part
# of CI (a build plus a run of the emulated suite at -O1: about ten minutes on 2 cores);
# tests/README.md ("Emulated CUDA kernels: line coverage") holds the last table.
#
#   bash tests/emulator_coverage.sh                       # build-coverage/ next to the sources
#   BUILD=/tmp/cov bash tests/emulator_coverage.sh        # another build directory
#   bash tests/emulator_coverage.sh -tc='*softmax*'       # arguments go to the test binary
#   NO_RUN=1 bash tests/emulator_coverage.sh              # only the report, from the last run
#
# It configures a separate build with -DCOEFFNET_EMULATOR_COVERAGE=ON (cmake/CoeffnetEmulator.cmake:
# coeffnet_emulated gets --coverage -O1 -fprofile-update=atomic), builds coeffnet_emulated_tests,
# deletes old counters, runs the tests, runs gcov (JSON) on the objects of the generated wrapper
# .cpp files (one per src/cuda/*.cu) and of the emulated tests (which call the inline host
# functions of kernels/*.cuh too, e.g. plan_coeff_attention), and prints, per source file under
# kernels/ and src/cuda/: executable lines, lines reached, the percentage and the unreached line
# numbers (ranges). A line counts as reached when any object (any template instantiation, any
# inline copy) executed it; as executable when any object has code for it.
# Header lines no object instantiates (a template nobody uses) are not executable to gcov and so
# are not in the table. Environment: JOBS (parallel compiles, default 1), GCOV (default gcov).
# Exit status: that of the test run (the report is printed either way).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-coverage}
JOBS=${JOBS:-1}
GCOV=${GCOV:-gcov}

rc=0
if [[ -z "${NO_RUN:-}" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCOEFFNET_CUDA=OFF -DCOEFFNET_BUILD_TOOLS=OFF \
    -DCOEFFNET_BUILD_BENCH=OFF -DCOEFFNET_BUILD_EXAMPLES=OFF -DCOEFFNET_EMULATOR=ON \
    -DCOEFFNET_EMULATOR_COVERAGE=ON >/dev/null
  cmake --build "$BUILD" --target coeffnet_emulated_tests -j"$JOBS"
  find "$BUILD" -name '*.gcda' -delete
  start=$(date +%s)
  "$BUILD/tests/coeffnet_emulated_tests" "$@" || rc=$?
  echo "emulated tests: exit status $rc, $(( $(date +%s) - start )) s"
fi

# The wrapper objects (src/cuda/*.cu) and the test objects: an inline host function of kernels/*.cuh
# that both call runs in whichever copy the linker kept.
mapfile -t gcdas < <(find "$BUILD/CMakeFiles/coeffnet_emulated.dir" "$BUILD/tests/CMakeFiles/coeffnet_emulated_tests.dir" \
                       -name '*.gcda' 2>/dev/null | sort)
if (( ${#gcdas[@]} == 0 )); then
  echo "no coverage data under $BUILD (was it built with COEFFNET_EMULATOR_COVERAGE=ON and run?)" >&2
  exit 2
fi
JSON=$(mktemp -d)
trap 'rm -rf "$JSON"' EXIT
i=0
for g in "${gcdas[@]}"; do
  i=$((i + 1))
  (cd "$(dirname "$g")" && "$GCOV" --json-format --stdout "$g") >"$JSON/$i.json" 2>/dev/null
done

python3 - "$ROOT" "$JSON" <<'PY'
import json, os, sys, glob
root, jdir = sys.argv[1], sys.argv[2]
lines = {}  # file -> {line: max count}
for path in sorted(glob.glob(os.path.join(jdir, "*.json"))):
    with open(path) as f:
        for chunk in f.read().splitlines():  # --stdout: one JSON document per line
            if not chunk.strip():
                continue
            doc = json.loads(chunk)
            for fl in doc.get("files", []):
                name = os.path.realpath(os.path.join(doc.get("current_working_directory", ""), fl["file"]))
                rel = os.path.relpath(name, root)
                if not (rel.startswith("kernels/") or rel.startswith("src/cuda/")):
                    continue
                d = lines.setdefault(rel, {})
                for ln in fl["lines"]:
                    n = ln["line_number"]
                    d[n] = max(d.get(n, 0), ln["count"])

def ranges(ns):
    out, ns = [], sorted(ns)
    i = 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        out.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ", ".join(out)

expected = sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "kernels", "*.cuh")) +
                  glob.glob(os.path.join(root, "src", "cuda", "*.cu")))
te = tr = 0
print(f"{'file':34} {'lines':>6} {'reached':>8} {'%':>6}  unreached")
for rel in expected:
    d = lines.get(rel, {})
    ex, re_ = len(d), sum(1 for c in d.values() if c > 0)
    te += ex; tr += re_
    pct = f"{100.0 * re_ / ex:.1f}" if ex else "-"
    print(f"{rel:34} {ex:6} {re_:8} {pct:>6}  {ranges(n for n, c in d.items() if c == 0)}")
print(f"{'total':34} {te:6} {tr:8} {100.0 * tr / max(te, 1):6.1f}")
PY
exit $rc
