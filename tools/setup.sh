#!/usr/bin/env bash
# Installs every Debian 12 package tokenrail needs. Idempotent: packages already
# present are skipped, so a second run does nothing and needs no network.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-rules-java bazel-platforms g++ clang-format git
  # control plane
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  # transports
  libucx-dev ucx-utils libibverbs-dev rdma-core ibverbs-providers
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libopenmpi-dev openmpi-bin
  # network-namespace clusters
  iproute2 procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup.sh: all ${#PACKAGES[@]} packages present"
