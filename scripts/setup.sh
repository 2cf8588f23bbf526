#!/usr/bin/env bash
# Installs what emcee needs on Debian 12 (idempotent) and builds it in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  nginx-light libnginx-mod-rtmp   # local RTMP ingest for the demo and the tests
  ffmpeg                          # ffprobe/ffmpeg: check what arrived, make the thumbnail
  espeak-ng espeak-ng-data libespeak-ng-dev   # TTS, run in a child process (GPL stays out)
  mesa-vulkan-drivers libvulkan1  # lavapipe: Vulkan on the CPU when there is no GPU
  nasm                            # openh264's assembly
  pkg-config g++                  # openh264 and fdk-aac are built from vendored C/C++
  iproute2                        # ss, used by the tests
  systemd                         # systemd-analyze verify for the units
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Headless Vulkan loaders want a runtime dir.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/emcee-xdg-$(id -u)}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

cargo build --release --bins
