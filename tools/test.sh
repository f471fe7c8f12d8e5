#!/usr/bin/env bash
# The whole test suite: format check, then `bazel test //...`. Ends with one
# summary line. Tests that need a GPU, an RDMA device or root skip with a reason.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
log=$(mktemp)

format_rc=0
tools/check_format.sh || format_rc=$?

bazel test //... --test_summary=short "$@" 2>&1 | tee "$log"
bazel_rc=${PIPESTATUS[0]}

passed=$(grep -cE '^//.* PASSED' "$log" || true)
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|FLAKY|NO STATUS)' "$log" || true)
rm -f "$log"
# Test cases that skipped themselves (GTEST_SKIP: no GPU, no RDMA device, not root) and why.
testlogs=$(bazel info bazel-testlogs 2>/dev/null)
skipped=0
if [[ -d $testlogs ]]; then
  skipped=$(find "$testlogs" -name test.log -exec grep -hE '^\[  SKIPPED \] [A-Za-z]' {} + | wc -l)
  reasons=$(find "$testlogs" -name test.log -exec grep -h -A1 ': Skipped$' {} + |
            grep -vE ': Skipped$|^--$' | sort | uniq -c | sort -rn | head -5)
  [[ -n $reasons ]] && echo "skip reasons:" && echo "$reasons"
fi
elapsed=$(( $(date +%s) - start ))
verdict=PASS
(( format_rc != 0 || bazel_rc != 0 )) && verdict=FAIL
echo "SUMMARY: ${verdict}: ${passed} test targets passed, ${failed} failed; ${skipped} test cases skipped;" \
     "format $([[ $format_rc == 0 ]] && echo clean || echo DIRTY); ${elapsed}s"
[[ $verdict == PASS ]]
