#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind: a count that is the
# same run after run for the same binary and inputs, whatever else the
# machine is doing (unlike req/s and µs). One table row per case:
#
#   plain     a non-stream chat completion, request log off
#   stream    the same as a stream (the mock's 8-chunk SSE answer)
#   log       plain, request log on (files + SQLite): the writer's work too
#   parsers   plain, the response parsers on (parse_tags)
#   otel      plain, OpenTelemetry on (spans built and queued for a
#             collector that is not there: the exports fail and are counted)
#   relay     plain through `yallmp forward http` (the floor: hyper both
#             sides, no JSON)
#
# Each case starts the release binary under callgrind (one serving thread),
# warms it with BENCH_CG_WARM requests, zeroes the counters, sends
# BENCH_CG_REQUESTS more over one keep-alive connection (curl), dumps, and
# divides the process's total (every thread: the serving thread, the log's
# writer, the runtime) by the requests. The biggest inclusive costs of the
# plain case (functions of yallmp, hyper, reqwest, axum, serde_json, tokio,
# the allocator) go to target/bench/callgrind-top.md.
#
#   bash scripts/bench/callgrind.sh            # all cases
#   BENCH_CG_CASES=plain,relay bash scripts/bench/callgrind.sh
#
# Output: target/bench/callgrind.md (the table), target/bench/callgrind-*.out
# (callgrind's files, for callgrind_annotate or kcachegrind).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
LOG_TAG=callgrind

CASES="${BENCH_CG_CASES:-plain,stream,log,parsers,otel,relay}"
WARM="${BENCH_CG_WARM:-200}"
REQUESTS="${BENCH_CG_REQUESTS:-1000}"
need_int BENCH_CG_WARM "$WARM"
need_int BENCH_CG_REQUESTS "$REQUESTS"
WORKERS=1
command -v valgrind >/dev/null || die "valgrind is not installed (Debian: apt-get install valgrind)"
command -v callgrind_control >/dev/null || die "callgrind_control is missing (it comes with valgrind)"

build_binaries
make_tmp
mkdir -p "$OUT_DIR"
write_bodies
STARTED=()

start_mock mock

# send URL BODYFILE N: N POSTs over one connection (curl reuses it for
# every URL of one invocation).
send() {
    local url="$1" body="$2" n="$3" args=() i
    for ((i = 0; i < n; i++)); do args+=("$url/v1/chat/completions"); done
    curl -fsS -H "content-type: application/json" --data-binary "@$body" "${args[@]}" >/dev/null
}

# run_case NAME KIND(serve|relay) LOG PARSERS BODY
run_case() {
    local name="$1" kind="$2" logon="$3" parsers="$4" body="$5" dir="$TMP/$1"
    local out="$OUT_DIR/callgrind-$name.out" pid url addr=""
    rm -f "$out" "$out".*
    write_config "$dir" "$URL_mock" "$logon" "$parsers"
    if [[ "$kind" == otel ]]; then
        # Port 9 (discard) is closed here: every export fails, counted.
        sed -i 's/^proxy_settings:$/proxy_settings:\n  telemetry:\n    enabled: true\n    endpoint: http:\/\/127.0.0.1:9/' "$dir/config.yaml"
        kind=serve
    fi
    if [[ "$kind" == relay ]]; then
        local hostport="${URL_mock#http://}"
        cat >>"$dir/config.yaml" <<EOF
http_forwarder_settings:
  listen: { host: 127.0.0.1, port: 0 }
  target: { scheme: http, host: ${hostport%:*}, port: ${hostport##*:} }
EOF
    fi
    local cmd=(serve)
    [[ "$kind" == relay ]] && cmd=(forward http)
    (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        --dump-instr=no --collect-jumps=no "$PROXY_BIN" --config "$dir/config.yaml" "${cmd[@]}") \
        >"$dir/proxy.log" 2>"$dir/proxy.log.err" &
    pid=$!
    printf -v "PID_cg_$name" '%s' "$pid"
    STARTED+=("cg_$name")
    if [[ "$kind" == relay ]]; then
        for _ in $(seq 1 1200); do
            addr="$(grep -o 'forwarder listening on 127\.0\.0\.1:[0-9]*' "$dir/proxy.log" 2>/dev/null | head -n1 | sed 's/.* on //')" || true
            [[ -n "$addr" ]] && break
            sleep 0.05
        done
        [[ -n "$addr" ]] || die "the forwarder did not start under valgrind"
        url="http://$addr"
    else
        url="$(wait_listen "$dir/proxy.log" "$pid")" || die "proxy $name did not start under valgrind"
        wait_healthy "$url" || die "proxy $name is not healthy"
    fi
    send "$url" "$body" "$WARM"
    # Let the log's writer finish the warm-up's records before zeroing.
    sleep 2
    callgrind_control -z "$pid" >/dev/null
    send "$url" "$body" "$REQUESTS"
    [[ "$logon" == true ]] && sleep 3
    callgrind_control -d "$pid" >/dev/null
    stop_proc "cg_$name"
    # The dump after zeroing is the file with the highest part number.
    local dump
    dump="$(ls -1 "$out".* 2>/dev/null | sort -t. -k3 -n | tail -n1)"
    [[ -n "$dump" ]] || die "no callgrind dump for $name"
    local total
    total="$(awk '/^summary:/ { print $2 } /^totals:/ { t = $2 } END { if (t) print t }' "$dump" | head -n1)"
    [[ -n "$total" ]] || die "no total in $dump"
    local per=$((total / REQUESTS))
    printf '| %s | %s | %s |\n' "$name" "$REQUESTS" "$per" >>"$TMP/rows.md"
    log "$name: $per instructions per request"
    if [[ "$name" == plain ]]; then
        callgrind_annotate --inclusive=yes --threshold=99 "$dump" 2>/dev/null \
            | grep -E '^ *[0-9,]+ \(' | head -n 60 >"$OUT_DIR/callgrind-top.txt" || true
    fi
    cp "$dump" "$OUT_DIR/callgrind-$name.last"
}

IFS=, read -r -a wanted <<<"$CASES"
for c in "${wanted[@]}"; do
    case "$c" in
        plain) run_case plain serve false false "$TMP/plain.json" ;;
        stream) run_case stream serve false false "$TMP/stream.json" ;;
        log) run_case log serve true false "$TMP/plain.json" ;;
        parsers) run_case parsers serve false true "$TMP/plain.json" ;;
        otel) run_case otel otel false false "$TMP/plain.json" ;;
        relay) run_case relay relay false false "$TMP/plain.json" ;;
        *) die "unknown case '$c' (plain, stream, log, parsers, otel, relay)" ;;
    esac
done

{
    echo "Instructions per request under callgrind (valgrind $(valgrind --version | sed 's/valgrind-//')), commit $(git -C "$ROOT" rev-parse --short HEAD), one serving thread, $REQUESTS requests after $WARM warm-up, every thread of the process counted:"
    echo
    echo "| case | requests | instructions / request |"
    echo "| --- | ---: | ---: |"
    cat "$TMP/rows.md"
} | tee "$OUT_DIR/callgrind.md"
