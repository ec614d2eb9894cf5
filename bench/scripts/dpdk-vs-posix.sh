#!/bin/bash
# The dpdk transport against posix on the same machine, interleaved, with msgr load.
#
#   bench/scripts/dpdk-vs-posix.sh [ROUNDS]      (root; builds msgr in release mode)
#
# Each round runs every workload first on the dpdk path — msgr serve on net_vhost (client
# mode) and msgr load on net_virtio_user (server mode), one busy-polling worker each, the
# server on CPU 0 and the client on CPU 1 — then on posix over loopback (server pinned to
# CPU 0, client to CPU 1). A server runs only during its own workloads. The table shows
# medians over the rounds of each phase's ops/s, MB/s, and latency p50/p99, and the dpdk /
# posix ratio of ops/s. Stopgap until `bench` (issue 6) runs the dpdk transport itself.
set -euo pipefail

ROUNDS=${1:-3}
case $ROUNDS in '' | *[!0-9]*) echo "usage: $0 [ROUNDS]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (DPDK runtime directory)" >&2; exit 1; }
command -v python3 > /dev/null || { echo "$0: needs python3 for the table" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release -q -p msgr --bin msgr --manifest-path "$ROOT/Cargo.toml"
B=$ROOT/target/release/msgr
WORK=$(mktemp -d /tmp/msgr-dvp.XXXXXX)
PREFIX=msgr-dvp$$
cleanup() {
    for s in "$WORK"/*.asok; do
        if [ -S "$s" ]; then "$B" admin "$s" shutdown > /dev/null 2>&1 || true; fi
    done
    wait || true
    rm -rf "$WORK" /var/run/dpdk/"$PREFIX"-*
}
trap cleanup EXIT

WORKLOADS=(
    "q1:--ops 30000 --size 0 -q 1"
    "q16:--ops 200000 --size 0 -q 16"
    "q128:--ops 300000 --size 0 -q 128"
    "4k-q16:--ops 100000 --size 4096 -q 16"
    "4m-q4:--ops 300 --size 4194304 -q 4 --objects 16"
)
EAL="--no-huge -m 1024 --no-pci --no-telemetry"

wait_line() { # FILE: waits up to 20 s for the server's first line
    for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.1; done
    echo "$0: the server did not start; see ${1%.out}.err" >&2; return 1
}

n=0
for round in $(seq "$ROUNDS"); do
    rm -f "$WORK/vh.sock" "$WORK/d.out"
    "$B" --transport dpdk --idle busy --eal "$EAL --file-prefix $PREFIX-s --lcores 0@0 --vdev=net_vhost0,iface=$WORK/vh.sock,client=1,queues=1" \
        --ip 10.78.0.1/24 serve --bind v1:10.78.0.1:6800 --admin-socket "$WORK/d.asok" --run-for 3600 \
        > "$WORK/d.out" 2> "$WORK/d.err" &
    wait_line "$WORK/d.out"
    addr=$(awk '{print $3}' "$WORK/d.out")
    for w in "${WORKLOADS[@]}"; do
        n=$((n + 1))
        echo "round $round: ${w%%:*} on dpdk" >&2
        # shellcheck disable=SC2086 # the workload's options are words
        echo "$round ${w%%:*} dpdk $("$B" --transport dpdk --idle busy --eal "$EAL --file-prefix $PREFIX-c$n --lcores 0@1 --vdev=net_virtio_user0,path=$WORK/vh.sock,server=1,queues=1" \
            --ip 10.78.0.2/24 load "$addr" --json ${w#*:})" >> "$WORK/results"
        rm -rf /var/run/dpdk/"$PREFIX-c$n"
    done
    "$B" admin "$WORK/d.asok" shutdown > /dev/null; wait
    rm -f "$WORK/p.out"
    taskset -c 0 "$B" serve --bind v1:127.0.0.1:0 --admin-socket "$WORK/p.asok" --workers 1 --run-for 3600 \
        > "$WORK/p.out" 2> "$WORK/p.err" &
    wait_line "$WORK/p.out"
    addr=$(awk '{print $3}' "$WORK/p.out")
    for w in "${WORKLOADS[@]}"; do
        echo "round $round: ${w%%:*} on posix" >&2
        # shellcheck disable=SC2086
        echo "$round ${w%%:*} posix $(taskset -c 1 "$B" load "$addr" --json ${w#*:})" >> "$WORK/results"
    done
    "$B" admin "$WORK/p.asok" shutdown > /dev/null; wait
done

python3 - "$WORK/results" <<'PY'
import collections, json, statistics, sys
rows = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    _, name, path, js = line.split(" ", 3)
    rows[(name, path)].append(json.loads(js))
    if name not in order:
        order.append(name)
print("| workload | phase | dpdk ops/s | posix ops/s | ratio | dpdk MB/s | posix MB/s | dpdk p50/p99 us | posix p50/p99 us |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for name in order:
    for ph in ("write", "read"):
        med = lambda path, f: statistics.median(f(v[ph]) for v in rows[(name, path)])
        d, p = (med(x, lambda q: q["ops_per_sec"]) for x in ("dpdk", "posix"))
        lat = lambda x: "%.1f / %.1f" % (med(x, lambda q: q["lat_us"]["p50"]), med(x, lambda q: q["lat_us"]["p99"]))
        print("| %s | %s | %.0f | %.0f | %.2fx | %.1f | %.1f | %s | %s |" % (
            name, ph, d, p, d / p, med("dpdk", lambda q: q["mb_per_sec"]), med("posix", lambda q: q["mb_per_sec"]), lat("dpdk"), lat("posix")))
print("\n(medians of %d interleaved rounds)" % len(rows[(order[0], "dpdk")]))
PY
