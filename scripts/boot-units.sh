#!/usr/bin/env bash
# Boots the shipped units under a real systemd and checks they run the show: a container
# (systemd-nspawn, its own network) whose root is this machine's, seen through a throw-away
# overlay with our binaries, units, users and a configuration installed as the package will.
# Inside: a local nginx-rtmp ingest, then emceed + emcee-stage as systemd starts them —
# sandboxed, each as its own user. Checked: both active as their users, the show on air,
# a stage stopped with SIGSTOP replaced by systemd's watchdog and streaming again, no stream
# key in the journal, a playable recording at the ingest. Needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "boot-units: needs root (systemd-nspawn)"; exit 1; }
key=sk-boot-5e4d3c2b1a

work=$(mktemp -d /tmp/emcee-boot.XXXXXX)
nspawn=""
cleanup() {
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    kill "$nspawn" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$nspawn" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && cp -a "$work/console.log" /tmp/emcee-boot-console.log 2>/dev/null
  # The container's last processes may hold the overlay for a moment after it stops.
  for m in "$work/root" "$work"; do
    for _ in $(seq 10); do mountpoint -q "$m" || break; umount "$m" 2>/dev/null || sleep 1; done
    mountpoint -q "$m" && umount -l "$m"
  done
  rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT
# The overlay's upper layer must not be on the root file system it covers.
mount -t tmpfs -o size=1G tmpfs "$work"
mkdir -p "$work/upper" "$work/scratch" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/scratch" "$work/root"
r=$work/root

# What the package installs.
install -m 755 target/release/emceed target/release/emcee-stage target/release/emcee "$r/usr/bin/"
install -D -m 755 target/release/emcee-espeak "$r/usr/libexec/emcee/emcee-espeak"
install -m 644 systemd/emceed.service systemd/emcee-stage.service "$r/etc/systemd/system/"
install -D -m 644 systemd/emcee.sysusers.conf "$r/usr/lib/sysusers.d/emcee.conf"
install -D -m 755 scripts/nginx-rtmp.sh "$r/usr/local/lib/emcee-boot/nginx-rtmp.sh"
mkdir -p "$r/etc/emcee/secrets" && chmod 700 "$r/etc/emcee/secrets"
(umask 077 && echo "$key" > "$r/etc/emcee/secrets/boot")
echo "Welcome to the show, booted by systemd." > "$r/etc/emcee/script.txt"
cat > "$r/etc/emcee/emcee.toml" <<TOML
[show]
script = "script.txt"
when_done = "loop"

[video]
width = 320
height = 180
fps = 30
bitrate_kbps = 600

[avatar]
voice = "en-us"

[[output]]
url = "rtmp://127.0.0.1:1935/live"
stream_key = "boot"
TOML
# The key reaches the control plane as a systemd credential (root-owned file, as shipped).
mkdir -p "$r/etc/systemd/system/emceed.service.d"
printf '[Service]\nLoadCredential=boot:/etc/emcee/secrets/boot\n' > "$r/etc/systemd/system/emceed.service.d/boot.conf"
cat > "$r/etc/systemd/system/emcee-boot-ingest.service" <<UNIT
[Unit]
Description=the test's RTMP ingest
Before=emceed.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash /usr/local/lib/emcee-boot/nginx-rtmp.sh start /var/lib/emcee-boot-ingest 1935
UNIT
wants="$r/etc/systemd/system/multi-user.target.wants"
mkdir -p "$wants"
for u in emcee-boot-ingest emceed emcee-stage; do ln -sf "../$u.service" "$wants/$u.service"; done
# What this machine runs that a show does not need.
for u in nginx postgresql postgresql@15-main ssh cron; do ln -sf /dev/null "$r/etc/systemd/system/$u.service"; done

systemd-nspawn -D "$r" --boot --register=no --keep-unit --private-network --link-journal=no \
  -M emcee-boot > "$work/console.log" 2>&1 &
nspawn=$!
# The container's init: nspawn's child once it has become systemd. Its first child is a
# short-lived helper that forks init and exits, so "the first child" alone is a race (CI lost it).
leader=""
for _ in $(seq 150); do
  for pid in $(pgrep -P "$nspawn"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid && break
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn" 2>/dev/null || break
  sleep 0.2
done
[ -n "$leader" ] || { echo "boot-units: the container did not start"; cat "$work/console.log"; exit 1; }
inside() { nsenter -t "$leader" -a "$@"; }

fail() {
  echo "boot-units: $*"
  if kill -0 "$leader" 2>/dev/null; then
    inside journalctl -u emceed -u emcee-stage --no-pager | tail -40 || true
  else
    echo "boot-units: the container has stopped; its console:"; tail -60 "$work/console.log"
  fi
  exit 1
}
# Polls until the show is on air (stage connected, the output publishing).
on_air() {
  for _ in $(seq "$1"); do
    status=$(inside emcee status --config /etc/emcee/emcee.toml 2>/dev/null || true)
    if echo "$status" | grep -q '"stage_connected": true' && echo "$status" | grep -q '"state": "publishing"'; then
      return 0
    fi
    sleep 1
  done
  return 1
}
on_air 90 || fail "the show did not go on air under systemd"
echo "boot-units: on air under systemd"

user_of() { inside ps -o user= -p "$(inside systemctl show -p MainPID --value "$1")"; }
[ "$(user_of emceed.service)" = emcee ] || fail "emceed runs as $(user_of emceed.service)"
[ "$(user_of emcee-stage.service)" = emcee-stage ] || fail "the stage runs as $(user_of emcee-stage.service)"
inside sh -c 'ss -Htlnp | grep -q emcee-stage' && fail "the stage listens on TCP"
echo "boot-units: emceed as emcee, emcee-stage as emcee-stage, no TCP listener on the stage"
# The content thread yields to the stage inside the sandbox too (setpriority is let through).
nice=$(inside sh -c 'for t in /proc/$(systemctl show -p MainPID --value emceed)/task/*; do
  [ "$(cat "$t/comm")" = content ] && cut -d" " -f19 "$t/stat"; done')
[ "$nice" = 10 ] || fail "emceed's content thread runs at nice '$nice', not 10"

# A wedged GPU driver: systemd's watchdog (WatchdogSec=10) replaces the stage.
hung=$(inside systemctl show -p MainPID --value emcee-stage.service)
inside kill -STOP "$hung"
stopped=$(date +%s)
for _ in $(seq 60); do
  now=$(inside systemctl show -p MainPID --value emcee-stage.service)
  [ "$now" != "$hung" ] && [ "$now" != 0 ] && break
  sleep 1
done
[ "$now" != "$hung" ] || fail "systemd did not replace the hung stage"
on_air 60 || fail "the replaced stage did not stream again"
echo "boot-units: a hung stage replaced by systemd and streaming again in $(( $(date +%s) - stopped )) s"

inside journalctl --no-pager | grep -q -- "$key" && fail "the stream key is in the journal"
inside systemctl --no-pager status emceed emcee-stage > "$work/units.txt" 2>&1 || true
inside systemctl poweroff || true
for _ in $(seq 30); do kill -0 "$nspawn" 2>/dev/null || break; sleep 1; done
recording="$work/upper/var/lib/emcee-boot-ingest/rec/$key.flv"
[ -s "$recording" ] || fail "nothing was recorded at the ingest"
streams=$(ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$recording" | sort | tr '\n' ' ')
[ "$streams" = "aac h264 " ] || fail "the recording has streams: $streams"
echo "boot-units: the units ran the show under systemd (recording: $streams)"
