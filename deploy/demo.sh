#!/usr/bin/env bash
# The main job: (1) start a real Ceph Pacific monitor on loopback with auth none and talk to
# it with msgr's v1 engine: handshake, MPing (health JSON), MAuth + MMonMap, MMonSubscribe,
# MMonGetVersion, KEEPALIVE2; (2) `bench all --quick`: the OSD workload over the dpdk,
# posix and simple transports side by side, beside the kernel TCP floor (sockperf, iperf3)
# and the DPDK link's ceiling (testpmd), with the project's claims checked (about a minute;
# the report, CSV and plots land in target/bench-all/).
#   deploy/demo.sh                 both
#   deploy/demo.sh v1:IP:PORT      only (1), against a running monitor
#   BENCH=0 deploy/demo.sh         only (1)
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
ensure_rust
# The messenger builds against DPDK (its userspace transport).
ensure_packages libdpdk-dev pkg-config libclang-dev || { echo "msgr: DPDK's headers are needed to build" >&2; exit 1; }
if [ $# -eq 0 ]; then
  ensure_packages ceph-mon || { echo "msgr: ceph-mon is needed to start a monitor (or pass v1:IP:PORT)" >&2; exit 1; }
fi
cargo run --quiet --release -p msgr --example mon_demo -- "$@"
if [ $# -gt 0 ] || [ "${BENCH:-1}" = 0 ]; then
  exit 0
fi
# The benchmark's baselines and plots: testpmd (dpdk-dev), sockperf, iperf3, fontconfig.
ensure_packages dpdk-dev sockperf iperf3 libfontconfig-dev ethtool \
  || echo "msgr: without those, bench all reports the rows it cannot measure" >&2
cargo build --quiet --release -p msgr -p bench
echo
exec target/release/bench all --quick --out target/bench-all
