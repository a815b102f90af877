#!/usr/bin/env bash
# Throughput and latency of the proxy against a mock upstream, side by side
# with the same load sent straight to the mock, so the table shows what the
# proxy adds. Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/bench.sh                  # 10 s per run
#   BENCH_DURATION=30 bash scripts/bench.sh
#
# Knobs (environment):
#   BENCH_DURATION     seconds per run (default 10; "10s" also accepted)
#   BENCH_WARMUP       seconds of warm-up load per target (default 1; 0 = none)
#   BENCH_CHUNKS       content chunks per streamed answer (default 20)
#   BENCH_LATENCY_MS   mock's delay before answering (default 0)
#   BENCH_CHUNK_DELAY_MS  mock's gap between streamed chunks (default 0)
#   BENCH_REQUEST_LOG  off (default): the main proxy's request log (files and
#                      database) is disabled, to measure the relay itself;
#                      on: both sinks on, in the temp dir, as shipped.
#                      A second proxy always runs with both sinks on, so
#                      "logged req/s" and "logged/proxy" show the log's cost
#                      in the same run; "logged written" is the share of that
#                      run's requests whose record was written (the rest
#                      were dropped: queue full, which flatters logged req/s).
#                      Each logged run waits for the writer to finish first
#                      and after, so no backlog runs into the next run.
#   BENCH_PARSERS      on (default): also compare streams through a proxy with
#                      the response parsers on vs one with them off (request log
#                      off in both), against a mock that streams `<think>` markup;
#                      off: skip that table.
#   BENCH_SKIP_BUILD=1 use the binaries already built
#
# CPU columns: "proxy CPU us/req" and "logged CPU us/req" are the user+system
# CPU time (all threads, from /proc/PID/stat) each proxy spent per request in
# its run; the logged figure is read after the writer has drained, so it holds
# the whole cost of writing the records. Steadier than req/s on a busy box.
#
# Output: one table on stdout, the same as markdown in target/bench/results.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10}"
DURATION="${DURATION%s}"
WARMUP="${BENCH_WARMUP:-1}"
WARMUP="${WARMUP%s}"
CHUNKS="${BENCH_CHUNKS:-20}"
LATENCY_MS="${BENCH_LATENCY_MS:-0}"
CHUNK_DELAY_MS="${BENCH_CHUNK_DELAY_MS:-0}"
REQUEST_LOG="${BENCH_REQUEST_LOG:-off}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="$ROOT/target/bench"

for v in DURATION WARMUP CHUNKS LATENCY_MS CHUNK_DELAY_MS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "bench: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((DURATION > 0)) || { echo "bench: BENCH_DURATION must be > 0" >&2; exit 2; }
case "$REQUEST_LOG" in
    on) LOG_ON=true ;;
    off) LOG_ON=false ;;
    *) echo "bench: BENCH_REQUEST_LOG must be on or off, got '$REQUEST_LOG'" >&2; exit 2 ;;
esac

log() { printf 'bench: %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (Debian package)"
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null 2>&1 || { echo "bench: curl is required" >&2; exit 1; }

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries"
    cargo build --release --examples --bins
fi
PROXY_BIN="$TARGET_DIR/release/yallmp"
MOCK_BIN="$TARGET_DIR/release/examples/mock_upstream"
[[ -x "$PROXY_BIN" && -x "$MOCK_BIN" ]] || { echo "bench: binaries missing in $TARGET_DIR/release" >&2; exit 1; }

# --- processes, cleaned up whatever happens ----------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/yallmp-bench.XXXXXX")"
PIDS=()
cleanup() {
    local pid f
    # The proxies (started in a subshell; their pids are in files).
    for f in "$TMP"/*/pid; do
        [[ -f "$f" ]] && PIDS+=("$(cat "$f")")
    done
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
        # Not a child of this shell (the proxies): wait for it to exit (a
        # logging proxy writes its queue first), at most 30 s.
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    # A proxy may still be flushing its request log as it exits.
    rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits for "listening on http://127.0.0.1:PORT" in a log; prints the URL.
wait_listen() {
    local file="$1" pid="$2" url=""
    for _ in $(seq 1 600); do
        url="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$file" 2>/dev/null | head -n1 | sed 's/^listening on //')" || true
        [[ -n "$url" ]] && { echo "$url"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: no listen line in $file" >&2
    cat "$file" "$file.err" >&2 2>/dev/null || true
    return 1
}

# Polls GET /healthz until it answers 200.
wait_healthy() {
    local url="$1"
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null --max-time 1 "$url/healthz" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: $url/healthz never answered" >&2
    return 1
}

"$MOCK_BIN" --port 0 --chunks "$CHUNKS" --latency-ms "$LATENCY_MS" \
    --chunk-delay-ms "$CHUNK_DELAY_MS" >"$TMP/mock.log" 2>"$TMP/mock.log.err" &
PIDS+=($!)
MOCK_URL="$(wait_listen "$TMP/mock.log" "${PIDS[-1]}")"
wait_healthy "$MOCK_URL"

# start_proxy NAME LOG_ON: a proxy whose request log (files + SQLite, in the
# temp dir) is on or off; prints its URL.
start_proxy() {
    local name="$1" on="$2" dir="$TMP/$1" upstream="${3:-$MOCK_URL}" parsers="${4:-false}"
    mkdir -p "$dir"
    cat >"$dir/config.yaml" <<EOF
model_list:
  - model_name: bench
    model_params:
      api_base: $upstream/v1
      request_timeout: 30
proxy_settings:
  parsers:
    enabled: $parsers
    response: [parse_tags]
  server:
    host: 127.0.0.1
    port: 0
  logging:
    files:
      enabled: $on
      dir: $dir/logs/requests
    database:
      enabled: $on
router_settings:
  num_retries: 0
database:
  backend: sqlite
  connection:
    sqlite:
      path: $dir/yallmp.db
EOF
    # Run from the temp dir so nothing relative lands in the repository.
    (cd "$dir" && exec "$PROXY_BIN" --config "$dir/config.yaml" serve) \
        >"$dir/proxy.log" 2>"$dir/proxy.log.err" &
    # This runs in $(...): the pid goes to a file, for cleanup to stop it.
    echo $! >"$dir/pid"
    local url
    url="$(wait_listen "$dir/proxy.log" "$(cat "$dir/pid")")"
    wait_healthy "$url"
    echo "$url"
}
# The main proxy follows BENCH_REQUEST_LOG; a second one always logs, so
# the log's cost shows in the same run.
PROXY_URL="$(start_proxy proxy "$LOG_ON")"
LOGGED_URL="$(start_proxy logged true)"
log "mock on $MOCK_URL, proxy on $PROXY_URL, logging proxy on $LOGGED_URL; ${DURATION}s per run"
PROXY_PID="$(cat "$TMP/proxy/pid")"
LOGGED_PID="$(cat "$TMP/logged/pid")"

# CPU time (user + system, all threads) a process has used, in microseconds:
# divided by the requests of a run it gives the proxy's own cost per
# request, a figure that other load on the machine hardly moves (unlike
# req/s). The logging proxy is read after its writer has settled, so its
# figure includes writing the run's records.
TICKS="$(getconf CLK_TCK)"
cpu_us() { awk -v t="$TICKS" '{ printf "%d", ($14 + $15) * 1000000 / t }' "/proc/$1/stat"; }

# --- request bodies and the wrk script ---------------------------------------
MESSAGES='[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello and describe a benchmark in one sentence."}]'
BODY_PLAIN="{\"model\":\"bench\",\"messages\":$MESSAGES,\"temperature\":0.2,\"max_tokens\":64}"
BODY_STREAM="{\"model\":\"bench\",\"messages\":$MESSAGES,\"temperature\":0.2,\"max_tokens\":64,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"

# One Lua script per body; `done` prints one machine-readable line.
make_lua() {
    local file="$1" body="$2"
    local esc="${body//\\/\\\\}"
    esc="${esc//\"/\\\"}"
    cat >"$file" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "$esc"
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT %.2f %.1f %.1f %d %d %d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
}
make_lua "$TMP/plain.lua" "$BODY_PLAIN"
make_lua "$TMP/stream.lua" "$BODY_STREAM"

# Sanity: both targets answer both kinds before measuring.
for url in "$MOCK_URL" "$PROXY_URL" "$LOGGED_URL"; do
    curl -fsS --max-time 5 -H 'content-type: application/json' -d "$BODY_PLAIN" \
        "$url/v1/chat/completions" | grep -q '"chat.completion"' \
        || { echo "bench: $url gave no chat.completion" >&2; cat "$TMP"/*.err >&2; exit 1; }
    curl -fsS --max-time 5 -N -H 'content-type: application/json' -d "$BODY_STREAM" \
        "$url/v1/chat/completions" | grep -q '^data: \[DONE\]' \
        || { echo "bench: $url gave no complete stream" >&2; cat "$TMP"/*.err >&2; exit 1; }
done

# run_wrk URL LUA CONNECTIONS THREADS SECONDS -> "rps p50us p99us requests status_errs sock_errs"
run_wrk() {
    local url="$1" lua="$2" conns="$3" threads="$4" secs="$5" out
    out="$(wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 10s -s "$lua" \
        "$url/v1/chat/completions" 2>&1)" || { echo "$out" >&2; return 1; }
    grep '^RESULT ' <<<"$out" | tail -n1 | cut -d' ' -f2- \
        || { echo "$out" >&2; return 1; }
}

# Requests the logging proxy answered (the sanity checks: 2), to compare
# with the records it wrote: a writer that cannot keep up drops records
# (queue full), which would flatter its throughput.
LOGGED_SENT=2
if ((WARMUP > 0)); then
    log "warming up (${WARMUP}s per target)"
    for url in "$MOCK_URL" "$PROXY_URL" "$LOGGED_URL"; do
        for kind in plain stream; do
            w="$(run_wrk "$url" "$TMP/$kind.lua" 32 2 "$WARMUP")"
            [[ "$url" == "$LOGGED_URL" ]] && LOGGED_SENT=$((LOGGED_SENT + $(cut -d' ' -f4 <<<"$w")))
        done
    done
fi

# Records the logging proxy has written (its files), and a wait until its
# writer is idle: each logged run then pays for its own records, and a
# backlog never steals CPU from the next run.
count_records() { find "$TMP/logged/logs/requests" -name '*.log' ! -name '*.parsed.log' 2>/dev/null | wc -l; }
settle_records() {
    local before now
    before="$(count_records)"
    for _ in $(seq 1 120); do
        sleep 0.5
        now="$(count_records)"
        [[ "$now" == "$before" ]] && break
        before="$now"
    done
    echo "$now"
}

# --- measure -----------------------------------------------------------------
SCENARIOS=(
    "non-stream c=1|plain|1|1"
    "non-stream c=32|plain|32|2"
    "stream c=1|stream|1|1"
    "stream c=32|stream|32|2"
)
ROWS=()
ERRORS=0
for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r name kind conns threads <<<"$s"
    log "$name: direct"
    direct="$(run_wrk "$MOCK_URL" "$TMP/$kind.lua" "$conns" "$threads" "$DURATION")"
    log "$name: through proxy"
    pcpu0="$(cpu_us "$PROXY_PID")"
    proxy="$(run_wrk "$PROXY_URL" "$TMP/$kind.lua" "$conns" "$threads" "$DURATION")"
    pcpu1="$(cpu_us "$PROXY_PID")"
    log "$name: through the logging proxy"
    before="$(settle_records)"
    lcpu0="$(cpu_us "$LOGGED_PID")"
    logged="$(run_wrk "$LOGGED_URL" "$TMP/$kind.lua" "$conns" "$threads" "$DURATION")"
    after="$(settle_records)"
    lcpu1="$(cpu_us "$LOGGED_PID")"
    read -r _ _ _ _ dse dke <<<"$direct"
    read -r _ _ _ _ pse pke <<<"$proxy"
    read -r _ _ _ lreq lse lke <<<"$logged"
    LOGGED_SENT=$((LOGGED_SENT + lreq))
    # Records of this run written (the rest dropped: queue full).
    logged="$logged $((after - before)) $((lcpu1 - lcpu0))"
    proxy="$proxy $((pcpu1 - pcpu0))"
    if ((dse + dke + pse + pke + lse + lke > 0)); then
        log "$name: errors (direct: $dse bad status, $dke socket; proxy: $pse, $pke; logging proxy: $lse, $lke)"
        ERRORS=1
    fi
    ROWS+=("$name|$direct|$proxy|$logged")
done

written="$(settle_records)"
# wrk does not count the requests still in flight when a run's time is up,
# but the proxy finishes (and logs) them: up to c records per run more than
# "sent", so a negative difference means none dropped.
dropped=$((LOGGED_SENT - written))
((dropped < 0)) && dropped=0
RECORDS="logging proxy wrote $written records for $LOGGED_SENT requests counted by wrk ($dropped dropped: queue full)"
log "$RECORDS"

# --- report ------------------------------------------------------------------
mkdir -p "$OUT_DIR"
REPORT="$(printf '%s\n' "${ROWS[@]}" | awk -F'|' '
function ms(us) { return sprintf("%.3f", us / 1000) }
{
    split($2, d, " "); split($3, p, " "); split($4, l, " ")
    name[NR] = $1
    drps[NR] = sprintf("%.0f", d[1]); prps[NR] = sprintf("%.0f", p[1])
    ratio[NR] = d[1] > 0 ? sprintf("%.2f", p[1] / d[1]) : "n/a"
    dlat[NR] = ms(d[2]) " / " ms(d[3])
    plat[NR] = ms(p[2]) " / " ms(p[3])
    added[NR] = sprintf("%+.3f", (p[2] - d[2]) / 1000)
    lrps[NR] = sprintf("%.0f", l[1])
    lratio[NR] = p[1] > 0 ? sprintf("%.2f", l[1] / p[1]) : "n/a"
    lwritten[NR] = l[4] > 0 ? sprintf("%.0f%%", 100 * l[7] / l[4]) : "n/a"
    pcpu[NR] = p[4] > 0 ? sprintf("%.1f", p[7] / p[4]) : "n/a"
    lcpu[NR] = l[4] > 0 ? sprintf("%.1f", l[8] / l[4]) : "n/a"
    n = NR
}
END {
    h[1] = "scenario"; h[2] = "direct req/s"; h[3] = "proxy req/s"; h[4] = "proxy/direct"
    h[5] = "direct p50/p99 ms"; h[6] = "proxy p50/p99 ms"; h[7] = "added p50 ms"
    h[8] = "logged req/s"; h[9] = "logged/proxy"; h[10] = "logged written"
    h[11] = "proxy CPU us/req"; h[12] = "logged CPU us/req"
    for (i = 1; i <= n; i++) {
        c[i,1] = name[i]; c[i,2] = drps[i]; c[i,3] = prps[i]; c[i,4] = ratio[i]
        c[i,5] = dlat[i]; c[i,6] = plat[i]; c[i,7] = added[i]; c[i,8] = lrps[i]; c[i,9] = lratio[i]; c[i,10] = lwritten[i]; c[i,11] = pcpu[i]; c[i,12] = lcpu[i]
    }
    for (j = 1; j <= 12; j++) {
        w[j] = length(h[j])
        for (i = 1; i <= n; i++) if (length(c[i,j]) > w[j]) w[j] = length(c[i,j])
    }
    # Plain table, then a marker, then markdown.
    line = ""
    for (j = 1; j <= 12; j++) line = line sprintf(j == 1 ? "%-*s" : "  %*s", w[j], h[j])
    print line
    line = ""
    for (j = 1; j <= 12; j++) { dash = sprintf("%*s", w[j], ""); gsub(/ /, "-", dash); line = line (j == 1 ? "" : "  ") dash }
    print line
    for (i = 1; i <= n; i++) {
        line = ""
        for (j = 1; j <= 12; j++) line = line sprintf(j == 1 ? "%-*s" : "  %*s", w[j], c[i,j])
        print line
    }
    print "@@MARKDOWN@@"
    line = "|"; for (j = 1; j <= 12; j++) line = line " " h[j] " |"; print line
    line = "|"; for (j = 1; j <= 12; j++) line = line (j == 1 ? " --- |" : " ---: |"); print line
    for (i = 1; i <= n; i++) {
        line = "|"; for (j = 1; j <= 12; j++) line = line " " c[i,j] " |"; print line
    }
}')"

TABLE="${REPORT%%@@MARKDOWN@@*}"
MARKDOWN="${REPORT#*@@MARKDOWN@@$'\n'}"
CONTEXT="request log ${REQUEST_LOG} (logged: files + SQLite on); mock: ${CHUNKS} chunks/stream, latency ${LATENCY_MS} ms, chunk gap ${CHUNK_DELAY_MS} ms; ${DURATION} s per run; wrk threads 1 (c=1) / 2 (c=32); $(nproc) cores; $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty-src')"

echo
printf '%s' "$TABLE"
echo "($CONTEXT)"
echo "($RECORDS)"
{
    echo "# yallmp benchmark: direct to mock vs through the proxy"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'); $CONTEXT."
    echo "Latency is wrk's time to the whole response (for streams, to the last byte)."
    echo "The $RECORDS."
    echo
    echo "$MARKDOWN"
} >"$OUT_DIR/results.md"
log "wrote $OUT_DIR/results.md"

# --- response parsers: streams with parse_tags on vs off ---------------------
# Both proxies (request log off) relay the same mock, whose streams carry raw
# `<think>...</think>` in `content` for the first half of the chunks: with the
# parsers on, those frames become reasoning_content deltas.
if [[ "${BENCH_PARSERS:-on}" == on ]]; then
    "$MOCK_BIN" --port 0 --chunks "$CHUNKS" --think --latency-ms "$LATENCY_MS" \
        --chunk-delay-ms "$CHUNK_DELAY_MS" >"$TMP/mock-think.log" 2>"$TMP/mock-think.log.err" &
    PIDS+=($!)
    THINK_URL="$(wait_listen "$TMP/mock-think.log" "${PIDS[-1]}")"
    wait_healthy "$THINK_URL"
    RAW_URL="$(start_proxy parsers-off false "$THINK_URL" false)"
    PARSED_URL="$(start_proxy parsers-on false "$THINK_URL" true)"
    sample="$(curl -fsS --max-time 5 -N -H 'content-type: application/json' -d "$BODY_STREAM" \
        "$PARSED_URL/v1/chat/completions")"
    grep -q '"reasoning_content"' <<<"$sample" \
        || { echo "bench: the parsing proxy gave no reasoning_content" >&2; exit 1; }
    if ((WARMUP > 0)); then
        for url in "$RAW_URL" "$PARSED_URL"; do
            run_wrk "$url" "$TMP/stream.lua" 32 2 "$WARMUP" >/dev/null
        done
    fi
    PROWS=()
    for s in "stream c=1|1|1" "stream c=32|32|2"; do
        IFS='|' read -r name conns threads <<<"$s"
        log "$name: parsers off"
        off="$(run_wrk "$RAW_URL" "$TMP/stream.lua" "$conns" "$threads" "$DURATION")"
        log "$name: parsers on"
        on="$(run_wrk "$PARSED_URL" "$TMP/stream.lua" "$conns" "$threads" "$DURATION")"
        read -r orps op50 _ _ ose oke <<<"$off"
        read -r nrps np50 _ _ nse nke <<<"$on"
        if ((ose + oke + nse + nke > 0)); then
            log "$name (parsers): errors (off: $ose bad status, $oke socket; on: $nse, $nke)"
            ERRORS=1
        fi
        PROWS+=("$(awk -v n="$name" -v a="$orps" -v b="$nrps" -v pa="$op50" -v pb="$np50" 'BEGIN {
            printf "| %s | %.0f | %.0f | %.2f | %.3f | %.3f |", n, a, b, (a > 0 ? b / a : 0), pa / 1000, pb / 1000 }')")
    done
    PTABLE="$(printf '%s\n' \
        "| scenario | parsers off req/s | parsers on req/s | on/off | off p50 ms | on p50 ms |" \
        "| --- | ---: | ---: | ---: | ---: | ---: |" "${PROWS[@]}")"
    echo
    echo "Response parsers (parse_tags, <think> in half of each stream's chunks):"
    echo "$PTABLE"
    {
        echo
        echo "## Response parsers: streams with parse_tags on vs off"
        echo
        echo "Same mock for both, streaming raw \`<think>\` markup in the first half of its ${CHUNKS} chunks; request log off."
        echo
        echo "$PTABLE"
    } >>"$OUT_DIR/results.md"
fi
exit "$ERRORS"
