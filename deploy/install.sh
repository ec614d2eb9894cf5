#!/usr/bin/env bash
# Installs msgr and msgr-host, the systemd unit msgr@.service and an example config.
#   deploy/install.sh [--prefix DIR] [--dry-run]
# Then: cp /etc/msgr/msgr.example.toml /etc/msgr/osd.0.toml (edit it),
#       msgr serve --config /etc/msgr/osd.0.toml --check,
#       msgr-host doctor, systemctl enable --now msgr@osd.0
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
dry=0
usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo "  --prefix DIR   where bin/ and share/doc/ go (default /usr/local)"
  echo "  --dry-run      print what would be installed; change nothing"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

do_() {
  if [ "$dry" = 1 ]; then echo "would: $*"; else echo "+ $*"; "$@"; fi
}

if [ "$dry" = 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: needs root (or --dry-run)" >&2
  exit 1
fi
# shellcheck source=deploy/lib.sh
. deploy/lib.sh
ensure_rust
do_ cargo build --quiet --release -p msgr -p host
do_ install -D -m 755 target/release/msgr "$prefix/bin/msgr"
do_ install -D -m 755 target/release/msgr-host "$prefix/bin/msgr-host"
unit=/etc/systemd/system/msgr@.service
if [ "$dry" = 1 ]; then
  echo "would: write $unit (msgr in $prefix/bin)"
else
  echo "+ write $unit (msgr in $prefix/bin)"
  sed "s|/usr/local/bin/msgr|$prefix/bin/msgr|g; s|/usr/local/share/doc|$prefix/share/doc|g" \
    deploy/systemd/msgr@.service > "$unit"
fi
do_ install -D -m 644 deploy/msgr.example.toml /etc/msgr/msgr.example.toml
do_ install -D -m 644 README.md "$prefix/share/doc/msgr/README.md"
if [ -d /run/systemd/system ]; then
  do_ systemctl daemon-reload
fi
if [ "$dry" = 1 ]; then echo "dry run: nothing changed"; else echo "installed; next: msgr-host doctor"; fi
