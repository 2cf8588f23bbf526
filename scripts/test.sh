#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit tests, the e2e show against nginx-rtmp,
# a short coverage-guided fuzz of every parser, the systemd unit check, and the units booted
# under systemd (in a container).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/emcee-xdg-$(id -u)}

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# Release profile: the e2e show must run in real time on a 2-core machine.
cargo test --release --workspace
# Coverage-guided fuzzing (AFL++), 15 s per parser: a crash or hang fails the run.
bash scripts/fuzz.sh 15
bash scripts/verify-units.sh
bash scripts/boot-units.sh
