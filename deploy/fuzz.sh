#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 15) from the corpus kept in the
# repository (msgr/fuzz/corpus/<target>, seeded from real Ceph captures by
# msgr/fuzz/seed-corpus.py). New inputs go to a scratch directory; a crash, a timeout
# (10 s per input) or an out-of-memory (2 GiB) fails the run and leaves its input under
# msgr/fuzz/artifacts/<target>/.
#   deploy/fuzz.sh [SECONDS] [TARGET...]
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sanitizer coverage).
# A rustup nightly toolchain is used when installed; otherwise the default (stable)
# compiler is told to accept them with RUSTC_BOOTSTRAP=1. FUZZ_TOOLCHAIN=nightly|stable
# forces one path (e.g. to test the fallback on a machine that has nightly). On the stable
# path, if the AddressSanitizer build fails (a compiler shipped without the ASan runtime),
# the targets are rebuilt without a sanitizer (-s none): safe Rust needs none to catch
# panics, overflows and out-of-bounds accesses, which is what these targets look for.
#
# Targets are built with optimizations plus debug assertions and overflow checks
# (cargo-fuzz's default), once for all targets; each run then reuses that build.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
# Plain `shellcheck` does not follow sourced files; `shellcheck -x` checks lib.sh too.
# shellcheck source=deploy/lib.sh disable=SC1091
. deploy/lib.sh
ensure_rust
secs=${1:-15}
shift || true
case $secs in
  '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$secs'" >&2; exit 2 ;;
esac
[ "$secs" -gt 0 ] || { echo "fuzz: skipped (0 seconds)"; exit 0; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --quiet --locked cargo-fuzz
fi

toolchain=()
case ${FUZZ_TOOLCHAIN:-auto} in
  nightly) toolchain=(+nightly) ;;
  stable) ;;
  auto)
    if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
      toolchain=(+nightly)
    fi
    ;;
  *) echo "fuzz: FUZZ_TOOLCHAIN must be nightly, stable or auto" >&2; exit 2 ;;
esac
if [ ${#toolchain[@]} -eq 0 ]; then
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: using $(rustc --version) with RUSTC_BOOTSTRAP=1 (no nightly, or FUZZ_TOOLCHAIN=stable)" >&2
fi

cd msgr
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets found" >&2; exit 1; }

# One build for the requested targets (all of them in one cargo call when none are named);
# `fuzz run` with the same flags then finds nothing to rebuild.
build=()
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
build_all() {
  if [ $# -eq 0 ]; then
    cargo "${toolchain[@]}" fuzz build "${build[@]}" >"$scratch/build.log" 2>&1
  else
    local t
    for t in "$@"; do
      cargo "${toolchain[@]}" fuzz build "${build[@]}" "$t" >"$scratch/build.log" 2>&1 || return 1
    done
  fi
}
if ! build_all "$@"; then
  if [ ${#toolchain[@]} -eq 0 ] && grep -qi 'sanitizer\|asan' "$scratch/build.log"; then
    echo "fuzz: the AddressSanitizer build failed on this compiler; building without a sanitizer" >&2
    build=(-s none)
    build_all "$@" || { cat "$scratch/build.log" >&2; exit 1; }
  else
    cat "$scratch/build.log" >&2
    exit 1
  fi
fi

for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  echo "fuzz: $t for ${secs}s (seeds: $(find "fuzz/corpus/$t" -type f | wc -l))"
  log="$scratch/$t.log"
  if ! cargo "${toolchain[@]}" fuzz run "${build[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    # The panic message scrolls away under the stack trace; repeat it last.
    grep -m1 -A1 'panicked at' "$log" >&2 || true
    grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY): ' "$log" >&2 || true
    echo "fuzz: $t FAILED" >&2
    exit 1
  fi
  # "#N DONE cov: C ft: F corp: ... exec/s: E rss: R" and the final stats.
  awk '/DONE/ { for (i = 1; i < NF; i++) if ($i ~ /^(cov|ft|exec\/s):$/) printf "%s %s  ", $i, $(i + 1) }
       /^stat::number_of_executed_units:/ { printf "execs: %s  ", $2 }
       /^stat::peak_rss_mb:/ { printf "peak_rss_mb: %s  ", $2 }
       END { print "" }' "$log"
done
