#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan, in ./build-fuzz; the main build
# stays on g++) and runs each one for a bounded time:
#   1. every kept crasher in tests/fuzz/regressions/<target>/ is replayed and must pass;
#   2. FUZZ_SECONDS (default 30) of fuzzing from a scratch copy of tests/fuzz/corpus/<target>/
#      (the committed seeds stay untouched), with the target's dictionary.
# Exits non-zero when any target crashes, leaks, hits UB, times out or breaks an invariant; the
# input that did it is kept in the scratch dir, whose path is printed.
#   deploy/fuzz.sh                    every target
#   deploy/fuzz.sh http1_response_fuzz [...]   only these
# Environment: FUZZ_SECONDS (30), FUZZ_BUILD_DIR (build-fuzz), FUZZ_WORK_DIR (a new dir under
# /tmp), JOBS (2), PORTICO_FUZZ_KNOWN (default: the ids in tests/fuzz/known_issues.txt; set it
# to "" to trap on known issues too), FUZZ_ARGS (more libFuzzer flags, e.g. "-jobs=1").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
JOBS=${JOBS:-2}
export CCACHE_DIR=${CCACHE_DIR:-$PWD/.cache/ccache}
started=$(date +%s)

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DPORTICO_FUZZ=ON
fi
cmake --build "$BUILD_DIR" -j "$JOBS"
built=$(date +%s)
manifest=$BUILD_DIR/tests/fuzz/targets.txt

# Known issues (bugs found by the targets, owned elsewhere, not fixed yet): reported, not trapped.
if [ -z "${PORTICO_FUZZ_KNOWN+set}" ]; then
  PORTICO_FUZZ_KNOWN=$(sed -e 's/#.*//' tests/fuzz/known_issues.txt 2>/dev/null | tr -s ' \t\n' ',' | sed -e 's/^,//; s/,$//')
fi
export PORTICO_FUZZ_KNOWN
# Sanitizers: every report is fatal; leaks are checked (libFuzzer also checks per input).
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:report_error_type=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-}
if command -v llvm-symbolizer >/dev/null; then export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}; fi

WORK_DIR=${FUZZ_WORK_DIR:-$(mktemp -d /tmp/portico-fuzz.XXXXXX)}
mkdir -p "$WORK_DIR"
echo "fuzz: scratch dir $WORK_DIR, ${FUZZ_SECONDS}s per target, known issues: ${PORTICO_FUZZ_KNOWN:-none}"

failed=()
summary=()
while read -r name dict max_len; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  bin=$BUILD_DIR/tests/fuzz/$name
  opts=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ "$dict" = "-" ] || opts+=("-dict=tests/fuzz/dict/$dict")
  [ "$max_len" = "-" ] || opts+=("-max_len=$max_len")
  # shellcheck disable=SC2206
  opts+=(${FUZZ_ARGS:-})
  out=$WORK_DIR/$name
  mkdir -p "$out/corpus" "$out/artifacts"

  # 1. Kept crashers first: each must run clean now.
  regressions=()
  if [ -d "tests/fuzz/regressions/$name" ]; then
    while IFS= read -r -d '' f; do regressions+=("$f"); done < <(find "tests/fuzz/regressions/$name" -type f ! -name '*.md' ! -name '.*' -print0 | sort -z)
  fi
  if [ ${#regressions[@]} -gt 0 ]; then
    if ! "$bin" "${opts[@]}" "${regressions[@]}" >"$out/regressions.log" 2>&1; then
      echo "fuzz: $name: a kept crasher in tests/fuzz/regressions/$name fails again; log $out/regressions.log:"
      tail -n 40 "$out/regressions.log"
      failed+=("$name (regression)")
      summary+=("$name: FAILED on a kept crasher")
      continue
    fi
  fi

  # 2. Bounded fuzzing from a scratch copy of the seeds.
  if [ -d "tests/fuzz/corpus/$name" ]; then cp -R "tests/fuzz/corpus/$name/." "$out/corpus/"; fi
  if "$bin" "${opts[@]}" -max_total_time="$FUZZ_SECONDS" -artifact_prefix="$out/artifacts/" \
       "$out/corpus" >"$out/fuzz.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$name")
  fi
  last=$(grep -E '^#[0-9]+' "$out/fuzz.log" | tail -n 1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz.log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/fuzz.log" | tail -n 1)
  summary+=("$name: $status, ${runs:-?} runs, ${speed:-?} exec/s, regressions ${#regressions[@]}; $last")
  if [ "$status" != ok ]; then
    echo "fuzz: $name FAILED; log $out/fuzz.log, input(s) in $out/artifacts/:"
    ls -l "$out/artifacts/" || true
    grep -E 'INVARIANT VIOLATED|ERROR: (Address|Leak|libFuzzer)Sanitizer|runtime error|SUMMARY' "$out/fuzz.log" | head -n 5 || true
    tail -n 40 "$out/fuzz.log"
    echo "fuzz: to keep it: $bin -minimize_crash=1 -runs=200000 <crash file>, then copy the smallest into tests/fuzz/regressions/$name/"
  fi
done <"$manifest"

echo "fuzz: build $((built - started))s, total $(( $(date +%s) - started ))s"
for line in "${summary[@]}"; do echo "fuzz: $line"; done
ran=${#summary[@]}
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (scratch dir kept: $WORK_DIR)"
  echo "fuzz: $((ran - ${#failed[@]})) passed, ${#failed[@]} failed"
  exit 1
fi
if [ "$ran" -eq 0 ]; then
  echo "fuzz: no target ran (names: $(cut -d' ' -f1 "$manifest" | tr '\n' ' '))"
  exit 1
fi
[ -n "${FUZZ_WORK_DIR:-}" ] || rm -rf "$WORK_DIR"
echo "fuzz: $ran passed, 0 failed"
