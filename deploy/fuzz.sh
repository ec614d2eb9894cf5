#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 15) from the corpus kept in the
# repository (msgr/fuzz/corpus/<target>, seeded from real Ceph captures). New inputs go to a
# scratch directory; a crash fails the run and leaves its input under msgr/fuzz/artifacts.
#   deploy/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
ensure_rust
secs=${1:-15}
shift || true
[ "$secs" -gt 0 ] || { echo "fuzz: skipped (0 seconds)"; exit 0; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --quiet --locked cargo-fuzz
fi
# cargo-fuzz needs nightly flags: use a nightly toolchain when installed, else let the
# stable compiler accept them.
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

cd msgr
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  echo "fuzz: $t for ${secs}s (seeds: $(find "fuzz/corpus/$t" -type f | wc -l))"
  log="$scratch/$t.log"
  if ! cargo "${toolchain[@]}" fuzz run --release "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | tr '\n' ' '
  echo
done
