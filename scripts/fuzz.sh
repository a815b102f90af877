#!/usr/bin/env bash
# Fuzzing (docs/benchmarks.md, "Fuzzing").
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]          coverage-guided: cargo fuzz (libFuzzer)
#   scripts/fuzz.sh --smoke [TARGET|all] [SECONDS]  the short run CI does (no instrumented build)
#   scripts/fuzz.sh --replay TARGET FILE|DIR        run saved inputs through a harness
#
# Targets: sse_decoder parse_tags_stream config_loader anthropic responses.
# SECONDS is per target (default 600 for cargo fuzz, 10 for --smoke); "all"
# runs the targets one after the other, on one core.
#
# cargo fuzz runs on stable Rust here with `-s none` (no sanitizer: that
# needs nightly); it instruments the build for coverage and keeps debug
# assertions and overflow checks on. Inputs it finds go to a work corpus
# under the target dir (the repo's fuzz/corpus/<target>/ is read as seeds,
# not written); a crash goes to fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(sse_decoder parse_tags_stream config_loader anthropic responses)

mode=fuzz
case "${1:-}" in
  --smoke) mode=smoke; shift ;;
  --replay) mode=replay; shift ;;
esac
target="${1:-all}"
if [[ "$mode" == replay ]]; then
  [[ $# -eq 2 ]] || { echo "usage: $0 --replay TARGET FILE|DIR" >&2; exit 2; }
  exec cargo run --locked -q -p yallmp-fuzz --features same-as-tests --bin fuzz_smoke -- "$target" 0 "$2"
fi
if [[ "$mode" == smoke ]]; then
  exec cargo run --locked -q -p yallmp-fuzz --features same-as-tests --bin fuzz_smoke -- "$target" "${2:-10}"
fi

secs="${2:-600}"
if [[ "$target" == all ]]; then
  selected=("${TARGETS[@]}")
else
  selected=("$target")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
work="${CARGO_TARGET_DIR:-$PWD/target}/fuzz-work"
# The release profile's thin LTO only makes the instrumented build slower.
export CARGO_PROFILE_RELEASE_LTO=false
flags=(--fuzz-dir fuzz -s none --features libfuzzer)
for t in "${selected[@]}"; do
  mkdir -p "$work/corpus/$t" fuzz/artifacts/"$t"
  log="$work/$t.log"
  echo "== fuzz $t for ${secs}s (log: $log)"
  set +e
  cargo fuzz run "${flags[@]}" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -dict="fuzz/dict/$t.dict" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
  if [[ $rc -ne 0 ]]; then
    grep -E 'panicked|ERROR|Test unit written|SUMMARY' "$log" | head -20
    echo "== $t: FAILED (exit $rc); the input is in fuzz/artifacts/$t/" >&2
    exit "$rc"
  fi
done
