#!/usr/bin/env bash
# `systemd-analyze verify` on our units, in a scratch root that has the system's units and our
# binaries in their install paths, so nothing is installed on this machine. Fails on any output.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/libexec/emcee" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
ln -s usr/lib "$root/lib"
for b in emceed emcee-stage emcee; do install -m 755 "target/release/$b" "$root/usr/bin/$b"; done
install -m 755 target/release/emcee-espeak "$root/usr/libexec/emcee/emcee-espeak"
cp systemd/*.service "$root/etc/systemd/system/"
units=()
for u in systemd/*.service; do units+=("/etc/systemd/system/$(basename "$u")"); done
out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify printed:"; echo "$out"; exit 1
fi
echo "systemd units: ${#units[@]} verified, 0 failed"
