#!/usr/bin/env bash
# `systemd-analyze verify` on our units, in a scratch root that has the system's units and our
# binaries in their install paths, so nothing is installed on this machine. Fails on any output.
# Then each unit's sandbox, scored by `systemd-analyze security --offline=yes`: at most 2.0 for
# the control plane, 4.5 for the stage (it needs the GPU). The scores go to docs/security.md.
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

# The two users, made by systemd-sysusers in the scratch root: the control plane's user must be
# in the stage's group (that is how it reaches the stage's socket), the stage's in video/render.
printf 'video:x:44:\nrender:x:105:\n' > "$root/etc/group"
: > "$root/etc/passwd"
mkdir -p "$root/usr/lib/sysusers.d" && cp systemd/emcee.sysusers.conf "$root/usr/lib/sysusers.d/emcee.conf"
out=$(systemd-sysusers --root="$root" 2>&1) || { echo "$out"; exit 1; }
for want in '^emcee:' '^emcee-stage:' ; do grep -q "$want" "$root/etc/passwd" || { echo "sysusers: no $want user"; exit 1; }; done
for want in '^emcee-stage:x:[0-9]*:emcee$' '^video:x:44:emcee-stage$' '^render:x:105:emcee-stage$'; do
  grep -q "$want" "$root/etc/group" || { echo "sysusers: $want not in the groups"; cat "$root/etc/group"; exit 1; }
done
echo "sysusers: emcee and emcee-stage, emcee in the stage's group"

# Thresholds on systemd's 0–100 scale (the printed level times ten).
declare -A limit=([emceed.service]=20 [emcee-stage.service]=45)
for u in "${!limit[@]}"; do
  if ! out=$(systemd-analyze security --offline=yes --threshold="${limit[$u]}" "systemd/$u" 2>&1); then
    echo "$out" | grep -E '^✗|Overall'
    echo "$u: exposure above $((limit[$u] / 10)).$((limit[$u] % 10))"; exit 1
  fi
  echo "$u: $(echo "$out" | grep -o 'Overall exposure level.*')"
done
