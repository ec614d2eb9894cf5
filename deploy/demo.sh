#!/usr/bin/env bash
# The main job (for now): start a real Ceph Pacific monitor on loopback with auth none and
# talk to it with msgr's v1 engine: handshake, MPing (health JSON), MAuth + MMonMap,
# MMonSubscribe, MMonGetVersion, KEEPALIVE2. Pass an address to use a running monitor:
#   deploy/demo.sh [v1:IP:PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
ensure_rust
# The messenger builds against DPDK (its userspace transport).
ensure_packages libdpdk-dev pkg-config libclang-dev || { echo "msgr: DPDK's headers are needed to build" >&2; exit 1; }
if [ $# -eq 0 ]; then
  ensure_packages ceph-mon || { echo "msgr: ceph-mon is needed to start a monitor (or pass v1:IP:PORT)" >&2; exit 1; }
fi
exec cargo run --quiet --release -p msgr --example mon_demo -- "$@"
