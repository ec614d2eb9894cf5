#!/usr/bin/env bash
# Splits the v1 captures into per-direction TCP byte streams, the golden vectors the tests
# read (`<capture>-<stream>-c2s.bin` from the client, `-s2c.bin` from the server).
# Needs tshark. Usage: extract-streams.sh [DIR]   (default: this script's directory)
set -euo pipefail
dir=${1:-$(dirname "$0")}
for pcap in "$dir"/v1-*.pcap; do
  base=${pcap%.pcap}
  for stream in $(tshark -r "$pcap" -T fields -e tcp.stream 2>/dev/null | sort -un); do
    out=$(tshark -r "$pcap" -q -z "follow,tcp,raw,$stream" 2>/dev/null)
    # Lines of hex: client-to-server flush left, server-to-client indented by a tab.
    printf '%s\n' "$out" | awk '/^[0-9a-f]+$/' | xxd -r -p > "$base-$stream-c2s.bin"
    printf '%s\n' "$out" | awk '/^\t[0-9a-f]+$/ {sub(/^\t/, ""); print}' | xxd -r -p > "$base-$stream-s2c.bin"
  done
done
ls -l "$dir"/*.bin
