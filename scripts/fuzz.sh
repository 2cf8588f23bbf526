#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ through cargo-afl (stable Rust): every target of
# fuzz/src/lib.rs, each from its seeds (fuzz/seeds/TARGET), for SECONDS seconds (default 15) or,
# with FUZZ_EXECS=N, until N inputs have run. Prints a table (inputs run, speed, corpus, crashes,
# hangs) and fails if any target crashed or hung: the inputs are then in
# target/afl-out/TARGET/default/{crashes,hangs}/ — copy each into fuzz/regressions/TARGET/
# (tests/replay.rs replays them on every run) and fix the parser.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^    ("\([a-z_]*\)", [a-z_:]*),$/\1/p' fuzz/src/lib.rs)
fi

# cargo-afl, pinned; its AFL++ and runtime are built once per Rust toolchain (in ~/.local/share).
if ! cargo afl --version 2>/dev/null | grep -q "^cargo-afl 0.18.2"; then
  cargo install cargo-afl --locked --version 0.18.2
fi
cargo afl config --build >/dev/null 2>&1 || true
# Instrumented builds apart from the normal ones, so neither rebuilds the other, and outside
# the checkout, so a fresh clone on a machine that fuzzed before reuses the dependencies.
export CARGO_TARGET_DIR=${EMCEE_AFL_TARGET:-$HOME/.cache/emcee/afl-target}
cargo afl build --release -p emcee-fuzz --features afl
harness=$CARGO_TARGET_DIR/release/emcee-fuzz

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
failed=0
rows=()
mkdir -p target/afl-out
for t in "${targets[@]}"; do
  out=target/afl-out/$t
  rm -rf "$out"
  limit=(-V "$seconds")
  [ -n "${FUZZ_EXECS:-}" ] && limit=(-E "$FUZZ_EXECS")
  cargo afl fuzz "${limit[@]}" -i "fuzz/seeds/$t" -o "$out" -- "$harness" "$t" > "$out.log" 2>&1 || {
    echo "fuzz: $t: afl-fuzz failed"; tail -20 "$out.log"; failed=1; continue
  }
  stat() { sed -n "s/^$1 *: *//p" "$out/default/fuzzer_stats"; }
  rows+=("| $t | $(stat execs_done) | $(stat execs_per_sec) | $(stat corpus_count) | $(stat saved_crashes) | $(stat saved_hangs) |")
  if [ "$(stat saved_crashes)" != 0 ] || [ "$(stat saved_hangs)" != 0 ]; then
    echo "fuzz: $t found crashes or hangs: $out/default/{crashes,hangs}/"
    failed=1
  fi
done
echo "| target | inputs run | inputs/s | corpus | crashes | hangs |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
