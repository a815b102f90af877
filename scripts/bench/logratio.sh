# Part "logratio" of scripts/bench.sh (issue 3's table): the request log's
# cost, with wrk. A proxy with the log per BENCH_REQUEST_LOG (off by default)
# and a second one that always logs (files + SQLite) run side by side against
# the same mock, so "logged req/s" and "logged/proxy" show the log's cost in
# the same run; "logged written" is the share of that run's requests whose
# record was written (with `on_full: wait`, the default, all of them: the
# proxy slows to its writer's pace; with `drop` the rest were dropped, which
# flatters logged req/s). Each logged run waits for the writer to finish first and after, so
# no backlog runs into the next run. With BENCH_PARSERS=on (default) a second
# table compares streams through a proxy with the response parsers on vs off.
#
# CPU columns: "proxy CPU us/req" and "logged CPU us/req" are the user+system
# CPU time (all threads, from /proc/PID/stat) each proxy spent per request in
# its run; the logged figure is read after the writer has drained, so it holds
# the whole cost of writing the records. Steadier than req/s on a busy box.
#
# With BENCH_SINKS=on (default) a table runs the target's load (non-stream,
# c=32) through the log off, files only, SQLite only and both, to show where
# the log's cost goes.
#
# With BENCH_LAYOUTS=on (default) a table runs the same load (non-stream,
# c=32) through the log off and files + SQLite in each files.layout
# (per_request, segments; on_full: wait, the default, so every record lands
# and the proxy goes at the writer's pace): logged ÷ log-off per layout.
#
# Knobs: BENCH_CHUNKS (20), BENCH_LATENCY_MS (0), BENCH_CHUNK_DELAY_MS (0),
# BENCH_REQUEST_LOG (off|on), BENCH_PARSERS (on|off), BENCH_SINKS (on|off),
# BENCH_LAYOUTS (on|off); BENCH_DURATION and
# BENCH_WARMUP as for the whole suite. Writes $OUT_DIR/logratio.md (and the
# same as $OUT_DIR/results.md, the file this table always had).
#
# Part "logfull" (bench_logfull, below) is in this file too: the highest
# sustained fixed rate at which every record lands, per layout.

# log_proxy NAME UPSTREAM LAYOUT ON_FULL: a proxy logging to files + SQLite,
# its files in LAYOUT (per_request, segments), ON_FULL (wait, drop).
log_proxy() {
    write_config "$TMP/$1" "$2" true false
    sed -i "s|^    files:\$|    on_full: $4\n    files:\n      layout: $3|" "$TMP/$1/config.yaml"
    grep -q "layout: $3" "$TMP/$1/config.yaml" || die "log_proxy: could not set the layout"
    start_proxy "$1" "$TMP/$1/config.yaml"
}

# layout_records DIR LAYOUT: records in the files of the proxy in DIR (a
# file each, or a line each in the segments).
layout_records() {
    if [[ "$2" == segments ]]; then
        find "$1/logs/requests/segments" -name '*.jsonl' -exec cat {} + 2>/dev/null | wc -l
    else
        dir_count "$1/logs/requests"
    fi
}
# landed DIR LAYOUT: records both sinks hold (the fewer of files and rows;
# the files alone without sqlite3).
landed() {
    local f r
    f="$(layout_records "$1" "$2")"
    r="$(sqlite_rows "$1/yallmp.db")"
    if [[ -z "$r" ]]; then echo "$f"; elif ((r < f)); then echo "$r"; else echo "$f"; fi
}
settle_landed_per_request() { landed "$1" per_request; }
settle_landed_segments() { landed "$1" segments; }

bench_logratio() {
local CHUNKS="${BENCH_CHUNKS:-20}" LATENCY_MS="${BENCH_LATENCY_MS:-0}"
local CHUNK_DELAY_MS="${BENCH_CHUNK_DELAY_MS:-0}" REQUEST_LOG="${BENCH_REQUEST_LOG:-off}"
local LOG_ON v
for v in CHUNKS LATENCY_MS CHUNK_DELAY_MS; do need_int "BENCH_$v" "${!v}"; done
case "$REQUEST_LOG" in
    on) LOG_ON=true ;;
    off) LOG_ON=false ;;
    *) die "BENCH_REQUEST_LOG must be on or off, got '$REQUEST_LOG'" ;;
esac
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (Debian package)"
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq wrk >/dev/null
fi
part_begin logratio "Request log cost (issue 3): wrk, log off vs files + SQLite"

start_mock lr --chunks "$CHUNKS" --latency-ms "$LATENCY_MS" --chunk-delay-ms "$CHUNK_DELAY_MS"
local MOCK_URL="$URL_lr"
proxy lrproxy "$MOCK_URL" "$LOG_ON" false
proxy logged "$MOCK_URL" true false
local PROXY_URL="$URL_lrproxy" LOGGED_URL="$URL_logged"
local PROXY_PID="$PID_lrproxy" LOGGED_PID="$PID_logged"
log "logratio: mock on $MOCK_URL, proxy on $PROXY_URL, logging proxy on $LOGGED_URL; ${DURATION}s per run"

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
    check_target "$url"
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

# --- measure -----------------------------------------------------------------
# Each logged run waits for the logging proxy's records to stop growing
# (`settle log_records`, lib.sh) before and after: it then pays for its own
# records, and a backlog never steals CPU from the next run.
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
    before="$(settle log_records "$TMP/logged")"
    lcpu0="$(cpu_us "$LOGGED_PID")"
    logged="$(run_wrk "$LOGGED_URL" "$TMP/$kind.lua" "$conns" "$threads" "$DURATION")"
    after="$(settle log_records "$TMP/logged")"
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

written="$(settle log_records "$TMP/logged")"
# wrk does not count the requests still in flight when a run's time is up,
# but the proxy finishes (and logs) them: up to c records per run more than
# "sent", so a negative difference means none dropped.
dropped=$((LOGGED_SENT - written))
((dropped < 0)) && dropped=0
RECORDS="logging proxy wrote $written records for $LOGGED_SENT requests counted by wrk ($dropped dropped: queue full)"
log "$RECORDS"

# --- report ------------------------------------------------------------------
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
LR_CONTEXT="request log ${REQUEST_LOG} (logged: files + SQLite on); mock: ${CHUNKS} chunks/stream, latency ${LATENCY_MS} ms, chunk gap ${CHUNK_DELAY_MS} ms; ${DURATION} s per run; wrk threads 1 (c=1) / 2 (c=32)"

printf '%s' "$TABLE" >&2
md "$LR_CONTEXT." "Latency is wrk's time to the whole response (for streams, to the last byte)." \
    "The $RECORDS." "" "$MARKDOWN"

# --- each sink alone: where the log's cost goes ------------------------------
# Four proxies against the same mock, measured one after the other at the
# target's load (non-stream, c=32): log off, files only, SQLite only, both.
# Each logging run waits for its writer before and after, and its CPU is read
# after the writer has drained, so each row pays for its own records.
if [[ "${BENCH_SINKS:-on}" == on && "$LOG_ON" == false ]]; then
    proxy lrfiles "$MOCK_URL" files false
    proxy lrdb "$MOCK_URL" database false
    if ((WARMUP > 0)); then
        for name in lrfiles lrdb; do
            url="URL_$name"
            run_wrk "${!url}" "$TMP/plain.lua" 32 2 "$WARMUP" >/dev/null
        done
    fi
    SROWS=()
    OFF_RPS=""
    for sink in "off|lrproxy" "files only|lrfiles" "SQLite only|lrdb" "files + SQLite|logged"; do
        IFS='|' read -r label name <<<"$sink"
        url="URL_$name"
        pid="PID_$name"
        log "non-stream c=32, log $label"
        [[ "$name" == lrproxy ]] || before="$(settle log_records "$TMP/$name")"
        c0="$(cpu_us "${!pid}")"
        out="$(run_wrk "${!url}" "$TMP/plain.lua" 32 2 "$DURATION")"
        [[ "$name" == lrproxy ]] || after="$(settle log_records "$TMP/$name")"
        c1="$(cpu_us "${!pid}")"
        read -r rps p50 _ req se ke <<<"$out"
        if ((se + ke > 0)); then
            log "log $label: errors ($se bad status, $ke socket)"
            ERRORS=1
        fi
        [[ -z "$OFF_RPS" ]] && OFF_RPS="$rps"
        if [[ "$name" == lrproxy ]]; then
            written="n/a"
        elif ((before < 0 || after < 0)); then
            written="n/a (no sqlite3)"
        else
            written="$(awk -v w="$((after - before))" -v r="$req" 'BEGIN { printf "%.0f%%", (r > 0 ? 100 * w / r : 0) }')"
        fi
        SROWS+=("$(awk -v l="$label" -v a="$rps" -v off="$OFF_RPS" -v p="$p50" -v c="$((c1 - c0))" -v r="$req" -v w="$written" 'BEGIN {
            printf "| %s | %.0f | %.2f | %.3f | %.1f | %s |", l, a, (off > 0 ? a / off : 0), p / 1000, (r > 0 ? c / r : 0), w }')")
    done
    md "" "Where the cost goes: the same non-stream load at c=32 through proxies that differ only in the log's sinks, one after the other. \"vs off\": req/s over the first row. CPU: the proxy's user + system time per request, read after its writer drained. Written: records of the run on disk (or in SQLite) over the requests wrk counted." "" \
        "| request log | req/s | vs off | p50 ms | proxy CPU µs/req | written |" \
        "| --- | ---: | ---: | ---: | ---: | ---: |" "${SROWS[@]}"
    stop_proc lrfiles
    stop_proc lrdb
fi

# --- each layout: logged ÷ log off at c=32 ----------------------------------
# The log off, then files + SQLite with a file per request, then with
# segments (on_full: wait for both: every record lands, and the proxy goes
# at its writer's pace). Each logging run waits for its writer before and
# after; "landed" is the run's records in both sinks over the requests wrk
# counted (wrk leaves out those in flight at the end: a little over 100%).
if [[ "${BENCH_LAYOUTS:-on}" == on && "$LOG_ON" == false ]]; then
    log_proxy lrper "$MOCK_URL" per_request wait
    log_proxy lrseg "$MOCK_URL" segments wait
    if ((WARMUP > 0)); then
        for name in lrper lrseg; do
            url="URL_$name"
            run_wrk "${!url}" "$TMP/plain.lua" 32 2 "$WARMUP" >/dev/null
        done
    fi
    YROWS=()
    OFF_RPS=""
    for row in "off|lrproxy|" "per_request|lrper|per_request" "segments|lrseg|segments"; do
        IFS='|' read -r label name layout <<<"$row"
        url="URL_$name"
        pid="PID_$name"
        log "non-stream c=32, log $label"
        [[ -z "$layout" ]] || before="$(settle "settle_landed_$layout" "$TMP/$name")"
        c0="$(cpu_us "${!pid}")"
        out="$(run_wrk "${!url}" "$TMP/plain.lua" 32 2 "$DURATION")"
        [[ -z "$layout" ]] || after="$(settle "settle_landed_$layout" "$TMP/$name")"
        c1="$(cpu_us "${!pid}")"
        read -r rps p50 p99 req se ke <<<"$out"
        if ((se + ke > 0)); then
            log "log $label: errors ($se bad status, $ke socket)"
            ERRORS=1
        fi
        [[ -z "$OFF_RPS" ]] && OFF_RPS="$rps"
        if [[ -z "$layout" ]]; then
            written="n/a"
        else
            written="$(awk -v w="$((after - before))" -v r="$req" 'BEGIN { printf "%.0f%%", (r > 0 ? 100 * w / r : 0) }')"
        fi
        YROWS+=("$(awk -v l="$label" -v a="$rps" -v off="$OFF_RPS" -v p="$p50" -v q="$p99" -v c="$((c1 - c0))" -v r="$req" -v w="$written" 'BEGIN {
            printf "| %s | %.0f | %.2f | %.3f / %.3f | %.1f | %s |", l, a, (off > 0 ? a / off : 0), p / 1000, q / 1000, (r > 0 ? c / r : 0), w }')")
    done
    md "" "Per layout: the same non-stream load at c=32 through the log off, then files + SQLite with \`files.layout: per_request\` and with \`segments\` (\`on_full: wait\`: no record is dropped, the proxy slows to its writer's pace). \"÷ log off\": req/s over the first row. Landed: the run's records in both sinks over the requests wrk counted." "" \
        "| files.layout | req/s | ÷ log off | p50 / p99 ms | proxy CPU µs/req | landed |" \
        "| --- | ---: | ---: | ---: | ---: | ---: |" "${YROWS[@]}"
    stop_proc lrper
    stop_proc lrseg
fi

# --- response parsers: streams with parse_tags on vs off ---------------------
# Both proxies (request log off) relay the same mock, whose streams carry raw
# `<think>...</think>` in `content` for the first half of the chunks: with the
# parsers on, those frames become reasoning_content deltas.
if [[ "${BENCH_PARSERS:-on}" == on ]]; then
    start_mock lrthink --chunks "$CHUNKS" --think --latency-ms "$LATENCY_MS" \
        --chunk-delay-ms "$CHUNK_DELAY_MS"
    THINK_URL="$URL_lrthink"
    proxy lroff "$THINK_URL" false false
    proxy lron "$THINK_URL" false true
    RAW_URL="$URL_lroff"
    PARSED_URL="$URL_lron"
    sample="$(curl -fsS --max-time 5 -N -H 'content-type: application/json' -d "$BODY_STREAM" \
        "$PARSED_URL/v1/chat/completions")"
    grep -q '"reasoning_content"' <<<"$sample" \
        || die "the parsing proxy gave no reasoning_content"
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
    md "" "Response parsers: streams with parse_tags on vs off. Same mock for both, streaming raw \`<think>\` markup in the first half of its ${CHUNKS} chunks; request log off." "" \
        "| scenario | parsers off req/s | parsers on req/s | on/off | off p50 ms | on p50 ms |" \
        "| --- | ---: | ---: | ---: | ---: | ---: |" "${PROWS[@]}"
    stop_proc lroff
    stop_proc lron
    stop_proc lrthink
fi
stop_proc lrproxy
stop_proc logged
stop_proc lr
((ERRORS == 0)) || SUITE_ERRORS=1
# The file this table always had, for scripts and notes that read it.
{
    echo "# yallmp benchmark: the request log's cost (scripts/bench.sh, part logratio)"
    echo
    cat "$PART_MD"
} >"$OUT_DIR/results.md"
}

# Part "logfull" of scripts/bench.sh: the highest sustained rate at which
# the request log (files + SQLite, on_full: wait) keeps every record, per
# files.layout. A fixed-rate ladder like the `rates` part (oha -q, 64
# connections, BENCH_RATE_STEP seconds a step, from BENCH_LOGFULL_START
# (500) up by BENCH_RATE_FACTOR): a step passes when oha achieved at least
# 98% of the rate with no errors, and the records that landed in both sinks
# (after the writer settled) equal the requests oha sent. The table gives
# the highest step passed, and the ladder.
bench_logfull() {
    part_begin logfull "Highest sustained rate with every record landed (files + SQLite, on_full: wait)"
    local start="${BENCH_LOGFULL_START:-500}" layout name rate out sent got before after achieved p99 errs ok
    need_int BENCH_LOGFULL_START "$start"
    start_mock lf
    check_target "$URL_lf"
    local -A best ladder
    local rates=()
    for layout in per_request segments; do
        name="lf_$layout"
        log_proxy "$name" "$URL_lf" "$layout" wait
        local url="URL_$name"
        check_target "${!url}"
        ((WARMUP > 0)) && oha_run "$TMP/lfwarm.json" "${!url}" "$TMP/plain.json" -z "${WARMUP}s" -c 32
        best[$layout]="< $start"
        rate="$start"
        while ((rate <= RATE_MAX)); do
            out="$TMP/logfull-$layout-$rate.json"
            before="$(settle "settle_landed_$layout" "$TMP/$name")"
            log "logfull: $layout at $rate req/s"
            oha_run "$out" "${!url}" "$TMP/plain.json" -z "${RATE_STEP}s" -c 64 -q "$rate" --latency-correction
            after="$(settle "settle_landed_$layout" "$TMP/$name")"
            sent="$(oha_requests "$out")"
            errs="$(oha_errors "$out")"
            got=$((after - before))
            achieved="$(f0 "$(oha_rps "$out")")"
            p99="$(oha_us "$out" p99)"
            ok=0
            if ((errs == 0 && got == sent)) && awk -v a="$achieved" -v r="$rate" 'BEGIN { exit !(a >= 0.98 * r) }'; then
                ok=1
                best[$layout]="$rate"
            fi
            [[ " ${rates[*]} " == *" $rate "* ]] || rates+=("$rate")
            ladder[$layout,$rate]="$achieved | $p99 | $got / $sent"
            ((ok)) || break
            rate="$(awk -v r="$rate" -v f="$RATE_FACTOR" 'BEGIN { printf "%d", r * f + 0.5 }')"
        done
        stop_proc "$name"
    done
    stop_proc lf
    local lines=()
    for rate in "${rates[@]}"; do
        lines+=("| $rate | ${ladder[per_request,$rate]:-— | — | —} | ${ladder[segments,$rate]:-— | — | —} |")
    done
    md "oha -q RATE --latency-correction, 64 connections, ${RATE_STEP} s per step, rates from $start up ×$RATE_FACTOR; mock latency 0; request log files + SQLite, \`on_full: wait\`. A step passes when oha achieved ≥ 98% of the rate without errors and every request's record landed in both sinks." "" \
        "| files.layout | highest sustained rate with every record landed (req/s) |" \
        "| --- | ---: |" \
        "| per_request | ${best[per_request]} |" \
        "| segments | ${best[segments]} |" \
        "" "The ladder (achieved req/s | p99 µs | records landed / requests sent; — = not run):" "" \
        "| rate | per_request req/s | p99 µs | landed | segments req/s | p99 µs | landed |" \
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |" "${lines[@]}"
}
