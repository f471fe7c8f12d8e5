#!/usr/bin/env bash
# Runs tools/ucx_vs_perftest.sh for real (two network namespaces, a short
# run) and checks its RESULT line: every bandwidth parsed and positive, the
# ratio consistent with them. Needs root and ucx_perftest; skips otherwise.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then echo "SKIPPED: needs root (network namespaces)"; exit 0; fi
if ! command -v ucx_perftest >/dev/null; then echo "SKIPPED: no ucx_perftest"; exit 0; fi
script="$1"
bench="$2"

out=$("$script" --bench="$bench" --size=256K --iters=200 --rounds=1)
echo "$out"
result=$(grep '^RESULT ' <<<"$out") || { echo "FAIL: no RESULT line"; exit 1; }
value() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$result"; }
for key in ours_bw_gbytes_per_s ours_bibw_gbytes_per_s ours_lat_p50_us ucp_am_bw tag_bw ucp_put_bw ratio; do
  v=$(value "$key")
  awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' || { echo "FAIL: $key='$v' is not a positive number"; exit 1; }
done
[[ $(value size) == 262144 ]] || { echo "FAIL: size=$(value size), expected 262144"; exit 1; }
best=$(value "$(value best)")
want=$(awk -v a="$(value ours_bw_gbytes_per_s)" -v b="$best" 'BEGIN { printf "%.2f", a / b }')
[[ $(value ratio) == "$want" ]] || { echo "FAIL: ratio=$(value ratio), ours/best=$want"; exit 1; }
# Nothing left behind.
if ip netns list | grep -q '^tr-bench-'; then echo "FAIL: namespaces left: $(ip netns list)"; exit 1; fi
echo "PASS"
