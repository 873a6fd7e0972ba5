#!/bin/bash
# Runs the test suite and the benchmark suites in one call on a GPU machine prepared as
# ../shared/gpu/README.md describes (bash ../shared/gpu/prepare.sh, then the npm cache in
# .gpu/deno_dir: DENO_DIR=$PWD/.gpu/deno_dir deno cache --no-lock mod.ts bench/*.ts, which is all
# the tests need too; the explorer test's browser driver would not fit the 64 MiB carry), e.g. with
# the device tool: command "bash bench/gpu.sh", carry [".gpu"]. Logs and JSON go to $OUT
# (or bench/results). The default timeouts (tests 150 s, each bench suite 170 s, profile 90 s)
# keep one call under the device tool's 600 s limit; SKIP_TESTS=1 leaves the tests out, TESTS
# names the test files to run (default: all but the explorer's).
# The explorer test is left out: it drives a browser, which a GPU machine has not.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out" bench/results
export DENO_DIR="$PWD/.gpu/deno_dir" HOOKLENS_BENCH=full DENO_NO_UPDATE_CHECK=1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${TEST_TIMEOUT:-150}" bash .gpu/run.sh deno test --no-lock --allow-read --allow-write --allow-env --allow-run --allow-net=127.0.0.1 --no-prompt --ignore=tests/explorer_test.ts ${TESTS:-} > "$out/test.log" 2>&1
  echo "tests: exit $? ($(sed 's/\x1b\[[0-9;]*m//g' "$out/test.log" | grep -aE '^(ok|FAILED) \|' | tail -1))"
fi
# The model suite first: it holds the model targets, so a kernel suite cut short costs less.
: > "$out/bench.log"
for suite in model kernels; do
  timeout "${BENCH_TIMEOUT:-170}" bash .gpu/run.sh deno bench --no-lock --allow-read --allow-env --allow-write --no-prompt "bench/${suite}_bench.ts" >> "$out/bench.log" 2>&1
  echo "bench $suite: exit $?"
done
# Where the time goes, kernel by kernel (per-dispatch timestamps), for the end-to-end cases.
timeout "${PROFILE_TIMEOUT:-90}" bash .gpu/run.sh deno run --no-lock --allow-read --allow-env --allow-write --no-prompt bench/profile.ts > "$out/profile.log" 2>&1
echo "profile: exit $?"
cp bench/results/*.json "$out/" 2>/dev/null
grep -ah "GPU warm-up" "$out/bench.log" "$out/profile.log"
grep -a -A200 "hooklens benchmarks on" "$out/bench.log" | grep -av "^\s*$" | head -80
grep -a -A12 "dispatches," "$out/profile.log" | head -90
# The kernel choices this run compares (bench/compare.ts), each against the defaults.
bash .gpu/run.sh deno run --no-lock --allow-read --no-prompt bench/compare.ts "$out" 2>&1 | tee "$out/compare.txt" | head -60
