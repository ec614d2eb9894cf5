#!/usr/bin/env bash
# Runs every test: formatting, lints, unit/simulation/interop tests (a real ceph-mon and
# tshark are started by the tests themselves), and a short fuzzing pass over each target.
# As root it installs what it needs; otherwise tests that need a missing program report
# "SKIPPED <name>" and the apt-get line is printed.
#   deploy/test.sh            everything
#   FUZZ_SECONDS=0 deploy/test.sh   skip the fuzzing pass
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
ensure_rust

if ensure_packages ceph-mon ceph-common tshark libdpdk-dev pkg-config libclang-dev libfontconfig-dev \
    dpdk-dev sockperf iperf3 valgrind systemd ethtool; then
  # Everything external is present: a missing dependency is now a failure, not a skip.
  export MSGR_REQUIRE_INTEROP=1
fi

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check
step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "tests"
cargo test --workspace
step "fuzz smoke"
deploy/fuzz.sh "${FUZZ_SECONDS:-15}"
step "all tests passed"
