#!/usr/bin/env bash
# yallmp's benchmark suite: the release proxy against the repository's mock
# upstream (examples/mock_upstream.rs), every figure next to the same load
# sent straight to the mock in the same run. Everything runs on 127.0.0.1 and
# stops by itself. Tables: docs/benchmarks.md explains each one.
#
#   bash scripts/bench.sh                              # the whole suite
#   BENCH_SUITE=latency,memory bash scripts/bench.sh   # some parts
#   BENCH_SUITE=logratio BENCH_DURATION=8 bash scripts/bench.sh   # issue 3's table
#   BENCH_DURATION=2 BENCH_RATE_STEP=1 bash scripts/bench.sh      # a quick try-out
#
# Parts (BENCH_SUITE, comma-separated; default: all, in this order):
#   latency     added p50/p99/p99.9 at concurrency 1 (oha)
#   throughput  req/s at concurrency 32 and 128 (oha)
#   rates       highest fixed rate with p99 under 1, 5, 10 ms (oha -q)
#   streams     time to first chunk and inter-chunk gaps (200 chunks), streams/s
#   hold        1,000 streams open at once: held, completed, proxy RSS
#   memory      proxy RSS idle, under load, peak, after
#   features    the request log, the parsers, both: latency, req/s, CPU, RSS
#   large       a 1 MB prompt, non-stream and stream
#   floor       issue 26's table: the proxy against `yallmp forward http`
#               and an nginx hop (when installed) in one run: added p50/p99
#               at c=1, req/s and CPU at c=32, streams/s at c=32, the ratios
#   logratio    the request log's cost with wrk (issue 3's table; its knobs
#               are in scripts/bench/logratio.sh), per files.layout too
#   logfull     highest sustained rate with every record landed (files +
#               SQLite, on_full: wait), per files.layout (oha -q)
#
# Knobs (environment):
#   BENCH_DURATION          seconds per measured run (default 10)
#   BENCH_WARMUP            seconds of warm-up per target (default 1; 0 = none)
#   BENCH_FIXED_LATENCY_MS  the mock's latency for the "fixed latency" rows of
#                           latency and throughput (default 10; 0 = skip them)
#   BENCH_RATE_START / BENCH_RATE_FACTOR / BENCH_RATE_STEP / BENCH_RATE_MAX
#                           the rates ladder: first rate (1000 req/s), growth
#                           per step (1.25), seconds per step (4), last rate
#                           (200000)
#   BENCH_STREAMS           streams timed one by one (default 25)
#   BENCH_STREAM_CHUNKS     chunks per stream (default 200)
#   BENCH_STREAM_GAP_MS     gap between chunks for the timed streams (default 1)
#   BENCH_HOLD_STREAMS      streams held open at once (default 1000)
#   BENCH_HOLD_GAP_MS       their gap between chunks (default 50: 10 s a stream)
#   BENCH_LARGE_KB          the large prompt's size in KiB (default 1024)
#   BENCH_SETTLE            seconds to let RSS settle after load (default 5)
#   BENCH_WORKERS           the proxy's server.workers (default auto: one
#                           serving thread a core; `shared` for one
#                           work-stealing runtime; docs/configuration.md)
#   BENCH_SKIP_BUILD=1      use the binaries already built
#   BENCH_KEEP_TMP=1        keep the temp dir (configs, logs, raw JSON)
#
# Tools: oha (crates.io) is installed into $CARGO_TARGET_DIR/bench-tools by
# `cargo install oha --locked` when it is not on PATH; wrk (Debian) for the
# logratio part; curl, jq, awk; sqlite3 if present (row counts).
#
# Output: each table on stdout as it is made, each part's markdown in
# target/bench/PART.md, and all of it with the machine and commit in
# target/bench/suite.md, ready to paste into docs/benchmarks.md.
# Exits non-zero if any run saw errors (targets missed do not fail it).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
for part in latency streams features logratio floor; do
    # shellcheck source=/dev/null
    source "$ROOT/scripts/bench/$part.sh"
done

ALL_PARTS="floor,latency,throughput,rates,streams,hold,memory,features,large,logratio,logfull"
SUITE="${BENCH_SUITE:-$ALL_PARTS}"
DURATION="${BENCH_DURATION:-10}"
DURATION="${DURATION%s}"
WARMUP="${BENCH_WARMUP:-1}"
WARMUP="${WARMUP%s}"
FIXED_LATENCY_MS="${BENCH_FIXED_LATENCY_MS:-10}"
RATE_START="${BENCH_RATE_START:-1000}"
RATE_FACTOR="${BENCH_RATE_FACTOR:-1.25}"
RATE_STEP="${BENCH_RATE_STEP:-4}"
RATE_MAX="${BENCH_RATE_MAX:-200000}"
STREAMS="${BENCH_STREAMS:-25}"
STREAM_CHUNKS="${BENCH_STREAM_CHUNKS:-200}"
STREAM_GAP_MS="${BENCH_STREAM_GAP_MS:-1}"
HOLD_STREAMS="${BENCH_HOLD_STREAMS:-1000}"
HOLD_GAP_MS="${BENCH_HOLD_GAP_MS:-50}"
LARGE_KB="${BENCH_LARGE_KB:-1024}"
SETTLE="${BENCH_SETTLE:-5}"
WORKERS="${BENCH_WORKERS:-auto}"
for v in DURATION WARMUP FIXED_LATENCY_MS RATE_START RATE_STEP RATE_MAX STREAMS \
    STREAM_CHUNKS STREAM_GAP_MS HOLD_STREAMS HOLD_GAP_MS LARGE_KB SETTLE; do
    need_int "BENCH_$v" "${!v}"
done
((DURATION > 0)) || die "BENCH_DURATION must be > 0"
((RATE_START > 0 && RATE_STEP > 0)) || die "BENCH_RATE_START and BENCH_RATE_STEP must be > 0"
awk -v f="$RATE_FACTOR" 'BEGIN { exit !(f > 1.01) }' || die "BENCH_RATE_FACTOR must be > 1.01"
PARTS=()
IFS=',' read -r -a wanted <<<"$SUITE"
for p in "${wanted[@]}"; do
    p="${p// /}"
    [[ -z "$p" ]] && continue
    [[ ",$ALL_PARTS," == *",$p,"* ]] || die "unknown part '$p' in BENCH_SUITE (parts: $ALL_PARTS)"
    PARTS+=("$p")
done
((${#PARTS[@]} > 0)) || die "BENCH_SUITE names no part"

need_tools
ensure_oha
build_binaries
raise_fd_limit
make_tmp
mkdir -p "$OUT_DIR"
write_bodies
SUITE_ERRORS=0
CONTEXT="$(context_line)"
STARTED_AT=$SECONDS
log "parts: ${PARTS[*]}; ${DURATION}s per run; $CONTEXT"

for p in "${PARTS[@]}"; do
    t0=$SECONDS
    "bench_$p"
    log "part $p took $((SECONDS - t0)) s"
done

{
    echo "## Benchmark suite"
    echo
    echo "Machine and build: $CONTEXT; $("$OHA" --version 2>/dev/null | head -n1)."
    echo
    echo "Command: \`$(for v in ${!BENCH_*}; do printf '%s=%q ' "$v" "${!v}"; done)bash scripts/bench.sh\` ($((SECONDS - STARTED_AT)) s)."
    for p in "${PARTS[@]}"; do
        echo
        cat "$OUT_DIR/$p.md"
    done
} >"$OUT_DIR/suite.md"
echo
log "wrote $OUT_DIR/suite.md ($((SECONDS - STARTED_AT)) s)"
((SUITE_ERRORS == 0)) || log "some runs had errors (see above)"
exit "$SUITE_ERRORS"
