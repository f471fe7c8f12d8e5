#!/usr/bin/env bash
# Compares tokenrail's UCX backend with UCX's own ucx_perftest, in the same run,
# between two network namespaces joined by a veth pair (an emulated two-node
# link). Both are restricted to TCP: processes in different namespaces still
# share memory, and UCX would otherwise pick shared-memory transports
# (UCX_TLS=tcp,self for perftest, params tls=tcp for tokenrail).
#
#   sudo tools/ucx_vs_perftest.sh [--bench=PATH] [--size=1M] [--iters=1000] [--window=N] [--rounds=3]
#   bazel run //tools:ucx_vs_perftest -- [flags]
#
# Runs --rounds interleaved rounds (ours, then each perftest test) and keeps
# each measurement's best round. Prints each bandwidth in GB/s (1 GB = 1e9 B;
# ucx_perftest's "MB/s" are MiB/s and are converted), the best perftest
# number and ours/best, then one
# machine-readable "RESULT ..." line. Namespaces and processes are removed on
# every exit path. Exit codes: 0 ok, 1 a run failed, 2 usage/environment.
set -euo pipefail

die() { echo "ucx_vs_perftest: $*" >&2; exit 2; }

SIZE=1M
ITERS=1000
WINDOW=""  # tokenrail-bench --window (default: its own)
ROUNDS=3
BENCH="${TOKENRAIL_BENCH:-}"
for arg in "$@"; do
  case "$arg" in
    --bench=*) BENCH="${arg#*=}" ;;
    --size=*) SIZE="${arg#*=}" ;;
    --iters=*) ITERS="${arg#*=}" ;;
    --window=*) WINDOW="${arg#*=}" ;;
    --rounds=*) ROUNDS="${arg#*=}" ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root: it creates network namespaces and a veth pair"
command -v ip >/dev/null || die "'ip' not found (package iproute2)"
command -v ucx_perftest >/dev/null || die "'ucx_perftest' not found (package ucx-utils)"
[[ "$ITERS" =~ ^[0-9]+$ && "$ITERS" -gt 0 ]] || die "--iters='$ITERS' is not a positive integer"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -gt 0 ]] || die "--rounds='$ROUNDS' is not a positive integer"

# Size in bytes for ucx_perftest (ours parses K/M/G itself, binary multiples).
case "$SIZE" in
  *[kK]) BYTES=$(( ${SIZE%?} << 10 )) ;;
  *M) BYTES=$(( ${SIZE%?} << 20 )) ;;
  *G) BYTES=$(( ${SIZE%?} << 30 )) ;;
  *[0-9]) BYTES=$SIZE ;;
  *) die "--size='$SIZE': use bytes or K/M/G" ;;
esac
[[ "$BYTES" =~ ^[0-9]+$ && "$BYTES" -gt 0 ]] || die "--size='$SIZE' is not a positive size"

# tokenrail-bench: --bench, $TOKENRAIL_BENCH, bazel runfiles, or bazel-bin.
if [[ -z "$BENCH" ]]; then
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  for c in "${RUNFILES_DIR:-/nonexistent}/tokenrail/tools/tokenrail-bench" \
           "${BASH_SOURCE[0]}.runfiles/tokenrail/tools/tokenrail-bench" \
           "$PWD/tools/tokenrail-bench" \
           "$here/../bazel-bin/tools/tokenrail-bench"; do
    if [[ -x "$c" ]]; then BENCH="$c"; break; fi
  done
fi
[[ -n "$BENCH" && -x "$BENCH" ]] || die "tokenrail-bench not found: build //tools:tokenrail-bench and pass --bench=PATH"
BENCH="$(readlink -f "$BENCH")"

# Unique per run: concurrent runs never collide. Interface names <= 15 chars.
NS_A="tr-bench-$$-a"
NS_B="tr-bench-$$-b"
VETH_A="trb$$a"
VETH_B="trb$$b"
ADDR_A=10.201.0.1
ADDR_B=10.201.0.2
PORT=$(( 20000 + $$ % 20000 ))
WORK="$(mktemp -d /tmp/ucx_vs_perftest.XXXXXX)"
PIDS=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      sleep 0.2
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true  # takes the veth pair with it
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "ucx_vs_perftest: $*" >&2; exit 1; }

# Runs a command in the background and waits for it: `wait` returns at once
# when a trapped signal arrives (a foreground command would delay the trap
# until it finished), and cleanup knows its pid.
run() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add "$VETH_A" netns "$NS_A" type veth peer name "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev "$VETH_A"
ip -n "$NS_B" addr add "$ADDR_B/24" dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do
  ip -n "$ns" link set lo up
done
ip -n "$NS_A" link set "$VETH_A" up
ip -n "$NS_B" link set "$VETH_B" up

# The veth pair needs a moment to report carrier; UCX ignores interfaces
# that are not running yet, so wait until both ends are up.
link_up() { ip -n "$1" link show dev "$2" | grep -q 'state UP'; }
for _ in $(seq 1 200); do
  if link_up "$NS_A" "$VETH_A" && link_up "$NS_B" "$VETH_B"; then break; fi
  sleep 0.05
done
link_up "$NS_A" "$VETH_A" && link_up "$NS_B" "$VETH_B" || fail "veth pair $VETH_A/$VETH_B did not come up"

# Waits until something in namespace B listens on TCP port $1 (or its
# process $2 died).
wait_listen() {
  local port=$1 pid=$2
  for _ in $(seq 1 200); do
    if ip netns exec "$NS_B" ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Waits for server pid $1; fails with its log $2 if it failed.
reap() {
  local pid=$1 log=$2 rc=0
  wait "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    sed 's/^/  server: /' "$log" >&2
    fail "server in $NS_B exited with code $rc"
  fi
}

to_gbytes() { awk -v v="$1" -v m="$2" 'BEGIN { printf "%.3f", v * m / 1e9 }'; }

max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

# One run of tokenrail-bench; sets OURS_BW, OURS_BIBW, OURS_LAT of that run.
run_ours() {
  local port=$1 server ours_rc=0
  ip netns exec "$NS_B" "$BENCH" transport --listen="$ADDR_B:$port" --timeout=120s \
    >"$WORK/ours_server.log" 2>&1 &
  PIDS+=($!)
  server=$!
  run ip netns exec "$NS_A" "$BENCH" transport --connect="$ADDR_B:$port" --backend=ucx \
    --params=tls=tcp --sizes="$SIZE" --tests=lat,bw,bibw --iters="$ITERS" --timeout=120s \
    ${WINDOW:+--window="$WINDOW"} \
    --json >"$WORK/ours.json" 2>"$WORK/ours_client.log" || ours_rc=$?
  if [[ $ours_rc -ne 0 ]]; then
    sed 's/^/  client: /' "$WORK/ours_client.log" >&2
    sed 's/^/  server: /' "$WORK/ours_server.log" >&2
    fail "tokenrail-bench (ucx, tls=tcp) failed with code $ours_rc"
  fi
  reap "$server" "$WORK/ours_server.log"
  grep -q '"verified":false' "$WORK/ours.json" && fail "tokenrail-bench reported unverified data"
  OURS_BW=$(field bw gbytes_per_s)
  OURS_BIBW=$(field bibw gbytes_per_s)
  OURS_LAT=$(field lat p50_us)
  [[ -n "$OURS_BW" && -n "$OURS_BIBW" && -n "$OURS_LAT" ]] ||
    fail "cannot parse tokenrail-bench output: $(cat "$WORK/ours.json")"
}

field() {  # field MODE KEY: a number from our JSON line of that mode
  sed -n "s/.*\"mode\":\"$1\".*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$WORK/ours.json" | head -1
}

# One ucx_perftest test; sets GBS to its bandwidth in GB/s.
run_perftest() {
  local test=$1 port=$2 server rc=0 mbs
  ip netns exec "$NS_B" env UCX_TLS=tcp,self ucx_perftest -p "$port" \
    >"$WORK/$test.server" 2>&1 &
  PIDS+=($!)
  server=$!
  wait_listen "$port" "$server" || { cat "$WORK/$test.server" >&2; fail "ucx_perftest server did not start"; }
  run ip netns exec "$NS_A" env UCX_TLS=tcp,self ucx_perftest "$ADDR_B" -p "$port" -t "$test" \
    -s "$BYTES" -n "$ITERS" >"$WORK/$test.out" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || { cat "$WORK/$test.out" >&2; fail "ucx_perftest -t $test failed with code $rc"; }
  reap "$server" "$WORK/$test.server"
  # The summary line: "Final: iters p50 avg overall bw_avg bw_overall rate_avg rate_overall",
  # bandwidth in MB/s = MiB/s (the header says "bandwidth (MB/s)").
  grep -q 'bandwidth (MB/s)' "$WORK/$test.out" ||
    fail "unexpected ucx_perftest output format (no 'bandwidth (MB/s)' header): $(cat "$WORK/$test.out")"
  mbs=$(awk '$1 == "Final:" && NF == 9 && $7 ~ /^[0-9.]+$/ { print $7 }' "$WORK/$test.out")
  [[ -n "$mbs" ]] || fail "cannot parse ucx_perftest $test 'Final:' line: $(cat "$WORK/$test.out")"
  GBS=$(to_gbytes "$mbs" 1048576)
}

# Rounds interleave every measurement; each keeps its best round (this
# machine's run-to-run spread is larger than the differences measured).
BEST_BW=0 BEST_BIBW=0 BEST_LAT=""
declare -A PERF=([ucp_am_bw]=0 [tag_bw]=0 [ucp_put_bw]=0)
port=$PORT
for round in $(seq 1 "$ROUNDS"); do
  run_ours "$port"
  port=$(( port + 1 ))
  BEST_BW=$(max "$OURS_BW" "$BEST_BW")
  BEST_BIBW=$(max "$OURS_BIBW" "$BEST_BIBW")
  if [[ -z "$BEST_LAT" ]] || awk -v a="$OURS_LAT" -v b="$BEST_LAT" 'BEGIN { exit !(a < b) }'; then
    BEST_LAT=$OURS_LAT
  fi
  for test in ucp_am_bw tag_bw ucp_put_bw; do
    run_perftest "$test" "$port"
    port=$(( port + 1 ))
    PERF[$test]=$(max "$GBS" "${PERF[$test]}")
  done
done
OURS_BW=$BEST_BW OURS_BIBW=$BEST_BIBW OURS_LAT=$BEST_LAT

best_test=""
best=0
for test in ucp_am_bw tag_bw ucp_put_bw; do
  if awk -v a="${PERF[$test]}" -v b="$best" 'BEGIN { exit !(a > b) }'; then
    best=${PERF[$test]}
    best_test=$test
  fi
done
ratio=$(awk -v a="$OURS_BW" -v b="$best" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

printf 'UCX over TCP between network namespaces %s <-> %s (veth), %s messages, %s iterations, best of %s rounds\n' \
  "$NS_A" "$NS_B" "$SIZE" "$ITERS" "$ROUNDS"
printf '  %-44s %8.3f GB/s\n' "tokenrail-bench ucx tls=tcp bw" "$OURS_BW"
printf '  %-44s %8.3f GB/s (both directions)\n' "tokenrail-bench ucx tls=tcp bibw" "$OURS_BIBW"
printf '  %-44s %8.3f us one-way p50\n' "tokenrail-bench ucx tls=tcp lat" "$OURS_LAT"
for test in ucp_am_bw tag_bw ucp_put_bw; do
  printf '  %-44s %8.3f GB/s\n' "ucx_perftest $test (UCX_TLS=tcp,self)" "${PERF[$test]}"
done
printf '  best perftest: %s %.3f GB/s; ours/best = %s\n' "$best_test" "$best" "$ratio"
printf 'RESULT size=%s ours_bw_gbytes_per_s=%s ours_bibw_gbytes_per_s=%s ours_lat_p50_us=%s ' \
  "$BYTES" "$OURS_BW" "$OURS_BIBW" "$OURS_LAT"
printf 'ucp_am_bw=%s tag_bw=%s ucp_put_bw=%s best=%s ratio=%s\n' \
  "${PERF[ucp_am_bw]}" "${PERF[tag_bw]}" "${PERF[ucp_put_bw]}" "$best_test" "$ratio"
