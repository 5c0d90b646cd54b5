#!/usr/bin/env bash
# The one test command (README quick start, .ci/run): installs what the suites need, builds the
# bundle and the one-file executable, type-checks, lints, then runs every suite with node's
# test runner. A run that executes no test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-system-deps.sh
node scripts/build.mjs
node scripts/build-exe.mjs
npx tsc --noEmit -p .
npx eslint .

mapfile -t files < <(find test src -name '*.test.ts' -not -path '*/node_modules/*' | sort)
if [ "${#files[@]}" -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
pass=$(grep -E '^ℹ pass [0-9]+' "$log" | tail -1 | awk '{print $3}')
if [ "${pass:-0}" -eq 0 ]; then echo "no test passed: failing the run" >&2; exit 1; fi
exit "$status"
