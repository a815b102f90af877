# Parts "features" and "large" of scripts/bench.sh.
#
# features: the same proxy with nothing on, the request log (files +
#   SQLite) on, the response parsers (parse_tags) on, and both; against a
#   mock that streams raw <think> markup (the parsers have work to do). Each:
#   added latency at c=1 (BENCH_DURATION/2 s), req/s at c=32 (non-stream,
#   oha) and streams/s at c=32 (stream_load), the proxy's CPU per request,
#   its RSS (idle, steady, peak, after), and for the log the share of
#   requests whose record was written (files and rows).
# large: a BENCH_LARGE_KB (1024) KiB prompt, one request at a time: non-stream
#   (oha) and stream (stream_load), direct and through the proxy (log off).

bench_features() {
    part_begin features "Feature cost: request log, response parsers, both"
    start_mock feat --think
    local half=$(((DURATION + 1) / 2)) d1="$TMP/feat-direct-c1.json" d32="$TMP/feat-direct-c32.json"
    local ds="$TMP/feat-direct-s32.json"
    check_target "$URL_feat"
    ((WARMUP > 0)) && oha_run "$TMP/warm.json" "$URL_feat" "$TMP/plain.json" -z "${WARMUP}s" -c 32
    log "features: direct"
    oha_run "$d1" "$URL_feat" "$TMP/plain.json" -z "${half}s" -c 1 --worker-threads 1
    oha_run "$d32" "$URL_feat" "$TMP/plain.json" -z "${DURATION}s" -c 32
    load_run "$ds" "$URL_feat" --duration-secs "$DURATION" --concurrency 32 --threads 2
    local dp50 dp99 drps dsps
    dp50="$(oha_us "$d1" p50)" dp99="$(oha_us "$d1" p99)" drps="$(oha_rps "$d32")" dsps="$(jget "$ds" .rps)"
    local rows=("| direct to the mock | $dp50 / $dp99 | | $(f0 "$drps") | | $(f0 "$dsps") | | | | |")
    local cfg name logon parsers p1 p32 ps cpu0 cpu1 n idle steady peak after sent files rows_db written
    local base_rps="" base_sps=""
    for cfg in "nothing on|false|false" "request log|true|false" "parsers|false|true" "log + parsers|true|true"; do
        IFS='|' read -r name logon parsers <<<"$cfg"
        proxy pfeat "$URL_feat" "$logon" "$parsers"
        check_target "$URL_pfeat"
        sleep 1
        idle="$(settled_rss_kb "$PID_pfeat" 3)"
        p1="$TMP/feat-$logon-$parsers-c1.json"
        p32="$TMP/feat-$logon-$parsers-c32.json"
        ps="$TMP/feat-$logon-$parsers-s32.json"
        ((WARMUP > 0)) && oha_run "$TMP/warm-f.json" "$URL_pfeat" "$TMP/plain.json" -z "${WARMUP}s" -c 32
        log "features: $name"
        oha_run "$p1" "$URL_pfeat" "$TMP/plain.json" -z "${half}s" -c 1 --worker-threads 1
        reset_hwm "$PID_pfeat"
        sampler_start "$PID_pfeat" "$TMP/feat-rss.txt"
        cpu0="$(cpu_us "$PID_pfeat")"
        oha_run "$p32" "$URL_pfeat" "$TMP/plain.json" -z "${DURATION}s" -c 32
        load_run "$ps" "$URL_pfeat" --duration-secs "$DURATION" --concurrency 32 --threads 2
        sampler_stop
        peak="$(hwm_kb "$PID_pfeat")"
        steady="$(steady_kb "$TMP/feat-rss.txt")"
        # The log's writer finishes its queue before the CPU is read, so the
        # per-request figure holds writing the records.
        written="—"
        if [[ "$logon" == true ]]; then
            settle_dir_count "$TMP/pfeat/logs/requests" >/dev/null
        fi
        cpu1="$(cpu_us "$PID_pfeat")"
        after="$(settled_rss_kb "$PID_pfeat")"
        n=$(($(oha_requests "$p32") + $(jget "$ps" .answered)))
        if [[ "$logon" == true ]]; then
            # Every request this proxy answered: sanity (2), warm-up, c=1, c=32, streams.
            sent=$((2 + $(oha_requests "$p1") + n))
            ((WARMUP > 0)) && sent=$((sent + $(oha_requests "$TMP/warm-f.json")))
            files="$(settle_dir_count "$TMP/pfeat/logs/requests")"
            stop_proc pfeat
            rows_db="$(sqlite_rows "$TMP/pfeat/yallmp.db")"
            written="$(awk -v f="$files" -v r="$rows_db" -v s="$sent" 'BEGIN {
                printf "files %.1f%%, rows %s", 100 * f / s, (r == "" ? "n/a" : sprintf("%.1f%%", 100 * r / s)) }')"
        else
            stop_proc pfeat
        fi
        errs=$(($(oha_errors "$p1") + $(oha_errors "$p32") + $(jget "$ps" .failed)))
        ((errs == 0)) || { log "features ($name): $errs errors"; SUITE_ERRORS=1; }
        local prps psps
        prps="$(oha_rps "$p32")" psps="$(jget "$ps" .rps)"
        [[ -n "$base_rps" ]] || { base_rps="$prps"; base_sps="$psps"; }
        rows+=("| $name | $(oha_us "$p1" p50) / $(oha_us "$p1" p99) | $(signed $(($(oha_us "$p1" p50) - dp50))) / $(signed $(($(oha_us "$p1" p99) - dp99))) | $(f0 "$prps") | $(ratio "$prps" "$base_rps") | $(f0 "$psps") | $(ratio "$psps" "$base_sps") | $(f1 "$(calc '(b - a) / n' a="$cpu0" b="$cpu1" n="$n")") | $(mb "$idle") / $(mb "$steady") / $(mb "$peak") / $(mb "$after") | $written |")
        # Kept (renamed) until the run ends: deleting its tens of thousands of
        # log files now would make every file the next logging proxy creates
        # scan past them on ext4 without a journal (lib.sh, settle_deletes),
        # and measure that instead of the log.
        mv "$TMP/pfeat" "$TMP/pfeat-done-${#rows[@]}"
    done
    stop_proc feat
    md "One proxy per row, started fresh, against a mock whose streams carry raw \`<think>\` markup in half of their 20 chunks. c=1: oha, ${half} s, non-stream; c=32 req/s: oha, ${DURATION} s, non-stream; c=32 streams/s: stream_load, ${DURATION} s. \"vs off\": over the \"nothing on\" row. CPU: the proxy's user + system time per request of the two c=32 runs, read after the log's writer finished. RSS: idle, steady (median over the c=32 runs), peak (VmHWM), after (settled). Written: records on disk / rows in SQLite over the requests the proxy answered." "" \
        "| proxy | c=1 p50 / p99 µs | added p50 / p99 µs | c=32 req/s | vs off | c=32 streams/s | vs off | CPU µs/req | RSS idle / steady / peak / after MB | written |" \
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |" \
        "${rows[@]}"
}

bench_large() {
    part_begin large "Large bodies: a $((LARGE_KB / 1024)) MB prompt"
    # A prompt of words (JSON-safe, no escapes), LARGE_KB KiB.
    awk -v n=$((LARGE_KB * 1024)) 'BEGIN {
        srand(7); s = ""; while (length(s) < n) s = s sprintf("word%d ", int(rand() * 100000));
        printf "%s", substr(s, 1, n) }' >"$TMP/large-prompt.txt"
    jq -n --rawfile p "$TMP/large-prompt.txt" \
        '{model:"bench",messages:[{role:"user",content:$p}],max_tokens:64}' >"$TMP/large-plain.json"
    start_mock large --max-body-mb 64
    proxy plarge "$URL_large" false false
    check_target "$URL_plarge"
    local d="$TMP/large-direct.json" p="$TMP/large-proxy.json" ds="$TMP/large-direct-s.json"
    local ps="$TMP/large-proxy-s.json" before peak
    oha_run "$TMP/warm.json" "$URL_plarge" "$TMP/large-plain.json" -n 20 -c 1
    before="$(settled_rss_kb "$PID_plarge" 3)"
    reset_hwm "$PID_plarge"
    log "large: non-stream, direct / proxy"
    oha_run "$d" "$URL_large" "$TMP/large-plain.json" -z "${DURATION}s" -c 1 --worker-threads 1
    oha_run "$p" "$URL_plarge" "$TMP/large-plain.json" -z "${DURATION}s" -c 1 --worker-threads 1
    log "large: stream, direct / proxy"
    load_run "$ds" "$URL_large" --duration-secs "$DURATION" --concurrency 1 --prompt-file "$TMP/large-prompt.txt"
    load_run "$ps" "$URL_plarge" --duration-secs "$DURATION" --concurrency 1 --prompt-file "$TMP/large-prompt.txt"
    peak="$(hwm_kb "$PID_plarge")"
    stop_proc plarge
    stop_proc large
    local errs=$(($(oha_errors "$d") + $(oha_errors "$p") + $(jget "$ds" .failed) + $(jget "$ps" .failed)))
    ((errs == 0)) || { log "large: $errs errors"; SUITE_ERRORS=1; }
    local ms='x / 1000'
    md "One request at a time, ${DURATION} s each, a $(wc -c <"$TMP/large-plain.json") byte body; request log off. Non-stream: oha; stream: stream_load (20 chunks)." "" \
        "| figure | direct | proxy | added |" \
        "| --- | ---: | ---: | ---: |" \
        "| non-stream p50 (ms) | $(f2 "$(calc "$ms" x="$(oha_us "$d" p50)")") | $(f2 "$(calc "$ms" x="$(oha_us "$p" p50)")") | $(f2 "$(calc '(b - a) / 1000' a="$(oha_us "$d" p50)" b="$(oha_us "$p" p50)")") |" \
        "| non-stream p99 (ms) | $(f2 "$(calc "$ms" x="$(oha_us "$d" p99)")") | $(f2 "$(calc "$ms" x="$(oha_us "$p" p99)")") | $(f2 "$(calc '(b - a) / 1000' a="$(oha_us "$d" p99)" b="$(oha_us "$p" p99)")") |" \
        "| non-stream req/s | $(f0 "$(oha_rps "$d")") | $(f0 "$(oha_rps "$p")") | proxy/direct $(ratio "$(oha_rps "$p")" "$(oha_rps "$d")") |" \
        "| stream: time to first chunk p50 (ms) | $(f2 "$(calc "$ms" x="$(jget "$ds" .ttfc_us.p50)")") | $(f2 "$(calc "$ms" x="$(jget "$ps" .ttfc_us.p50)")") | $(f2 "$(calc '(b - a) / 1000' a="$(jget "$ds" .ttfc_us.p50)" b="$(jget "$ps" .ttfc_us.p50)")") |" \
        "| stream: time to first chunk p99 (ms) | $(f2 "$(calc "$ms" x="$(jget "$ds" .ttfc_us.p99)")") | $(f2 "$(calc "$ms" x="$(jget "$ps" .ttfc_us.p99)")") | $(f2 "$(calc '(b - a) / 1000' a="$(jget "$ds" .ttfc_us.p99)" b="$(jget "$ps" .ttfc_us.p99)")") |" \
        "| stream: whole stream p50 (ms) | $(f2 "$(calc "$ms" x="$(jget "$ds" .latency_us.p50)")") | $(f2 "$(calc "$ms" x="$(jget "$ps" .latency_us.p50)")") | $(f2 "$(calc '(b - a) / 1000' a="$(jget "$ds" .latency_us.p50)" b="$(jget "$ps" .latency_us.p50)")") |" \
        "| proxy RSS before / peak (MB) | | $(mb "$before") / $(mb "$peak") | |"
}
