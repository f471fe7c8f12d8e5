#!/usr/bin/env bash
# The main job: builds tokenrail and runs its benchmarks on this machine, each
# with its baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bazel build //tools:tokenrail-bench //tools/launch:tokenrail-launch //runtime/daemon:tokenraild
bin=$(bazel info bazel-bin 2>/dev/null)
bench=$bin/tools/tokenrail-bench

echo "== transport backends on this host"
"$bench" info
echo
echo "== shm: put latency and bandwidth between two processes, vs memcpy (same run)"
"$bench" transport --backend=shm --sizes=8,4K,64K,1M,16M --tests=lat,bw --baseline=memcpy
echo
echo "== ucx (TCP only): put latency and bandwidth between two processes"
"$bench" transport --backend=ucx --params=tls=tcp --sizes=8,64K,1M --tests=lat,bw --iters=200
if [[ $(id -u) -eq 0 ]]; then
  echo
  echo "== ucx (TCP only) between two network namespaces vs ucx_perftest (same run)"
  tools/ucx_vs_perftest.sh --bench="$bench"
fi
echo
echo "== proxy puts through two daemons vs a direct transport put (launched 2-node cluster)"
"$bench" proxy --sizes=8,64K,1M
echo
echo "== coordinator barrier with 64 participants"
"$bench" barrier --participants=64
echo
echo "== expert-parallel dispatch/combine (1x4 and 2x2 clusters) vs MPI_Alltoallv and flat routing"
"$bench" ep
