# Parts "streams", "hold" and "memory" of scripts/bench.sh (the Rust load
# client examples/stream_load.rs; request log off).
#
# streams: BENCH_STREAMS (25) streams one after another from a mock sending
#   BENCH_STREAM_CHUNKS (200) chunks BENCH_STREAM_GAP_MS (1) ms apart: time to
#   first chunk and the gaps between chunks, direct and through the proxy;
#   then 32 streams at a time with no gap (streams/s).
# hold: BENCH_HOLD_STREAMS (1000) streams opened at once, from a mock sending
#   200 chunks BENCH_HOLD_GAP_MS (50) ms apart (10 s a stream): how many were
#   held open together, whether all completed, and the proxy's RSS.
# memory: the proxy's RSS idle, under BENCH_DURATION s of mixed load (32
#   connections, half streams), its peak, and after the load stops.

bench_streams() {
    part_begin streams "Streams"
    start_mock st --chunks "$STREAM_CHUNKS" --chunk-delay-ms "$STREAM_GAP_MS"
    proxy pst "$URL_st" false false
    check_target "$URL_st"
    check_target "$URL_pst"
    local d="$TMP/streams-direct.json" p="$TMP/streams-proxy.json" f errs
    load_run "$TMP/warm.json" "$URL_st" --requests 2 --concurrency 1
    load_run "$TMP/warm.json" "$URL_pst" --requests 2 --concurrency 1
    log "streams: $STREAMS streams at c=1, direct"
    load_run "$d" "$URL_st" --requests "$STREAMS" --concurrency 1
    log "streams: $STREAMS streams at c=1, through the proxy"
    load_run "$p" "$URL_pst" --requests "$STREAMS" --concurrency 1
    stop_proc pst
    stop_proc st
    errs=$(($(jget "$d" .failed) + $(jget "$p" .failed)))
    ((errs == 0)) || { log "streams: $errs failed"; SUITE_ERRORS=1; }
    local rows=() name key dv pv
    for f in "time to first chunk p50|.ttfc_us.p50" "time to first chunk p99|.ttfc_us.p99" \
        "inter-chunk gap p50|.gap_us.p50" "inter-chunk gap p99|.gap_us.p99" \
        "inter-chunk gap p99.9|.gap_us.p999" "whole stream p50|.latency_us.p50"; do
        name="${f%%|*}" key="${f#*|}"
        dv="$(jget "$d" "$key")" pv="$(jget "$p" "$key")"
        rows+=("| $name (µs) | $dv | $pv | $(signed $((pv - dv))) |")
    done

    # Throughput: 32 streams at a time, no gap between chunks.
    start_mock stt --chunks "$STREAM_CHUNKS"
    proxy pstt "$URL_stt" false false
    check_target "$URL_pstt"
    load_run "$TMP/warm.json" "$URL_stt" --duration-secs "$WARMUP" --concurrency 32 --threads 2
    load_run "$TMP/warm.json" "$URL_pstt" --duration-secs "$WARMUP" --concurrency 32 --threads 2
    local td="$TMP/streams-thr-direct.json" tp="$TMP/streams-thr-proxy.json"
    log "streams: c=32 for ${DURATION}s, direct"
    load_run "$td" "$URL_stt" --duration-secs "$DURATION" --concurrency 32 --threads 2
    log "streams: c=32 for ${DURATION}s, through the proxy"
    local cpu0 cpu1
    cpu0="$(cpu_us "$PID_pstt")"
    load_run "$tp" "$URL_pstt" --duration-secs "$DURATION" --concurrency 32 --threads 2
    cpu1="$(cpu_us "$PID_pstt")"
    stop_proc pstt
    stop_proc stt
    errs=$(($(jget "$td" .failed) + $(jget "$tp" .failed)))
    ((errs == 0)) || { log "streams c=32: $errs failed"; SUITE_ERRORS=1; }
    local drs prs
    drs="$(jget "$td" .rps)" prs="$(jget "$tp" .rps)"
    md "examples/stream_load, request log off. Rows 1–6: $STREAMS streams one at a time, each $STREAM_CHUNKS chunks ${STREAM_GAP_MS} ms apart (the mock's timer makes a 1 ms gap about 2 ms); an event is timed when the read that completes it returns." "" \
        "| figure | direct | proxy | added |" \
        "| --- | ---: | ---: | ---: |" \
        "${rows[@]}" \
        "| streams/s at 32 at a time ($STREAM_CHUNKS chunks, no gap) | $(f0 "$drs") | $(f0 "$prs") | proxy/direct $(ratio "$prs" "$drs") |" \
        "| time to first chunk p99 at 32 at a time (µs) | $(jget "$td" .ttfc_us.p99) | $(jget "$tp" .ttfc_us.p99) | $(signed $(($(jget "$tp" .ttfc_us.p99) - $(jget "$td" .ttfc_us.p99)))) |" \
        "| proxy CPU per stream at 32 at a time (µs) | | $(f0 "$(calc '(b - a) / n' a="$cpu0" b="$cpu1" n="$(jget "$tp" .answered)")") | |"
}

bench_hold() {
    part_begin hold "Open streams held at once"
    start_mock hold --chunks 200 --chunk-delay-ms "$HOLD_GAP_MS"
    proxy phold "$URL_hold" false false
    check_target "$URL_phold"
    local d="$TMP/hold-direct.json" p="$TMP/hold-proxy.json" before peak after errs
    log "hold: $HOLD_STREAMS streams at once, direct"
    load_run "$d" "$URL_hold" --requests "$HOLD_STREAMS" --concurrency "$HOLD_STREAMS" --timeout-secs 120
    sleep 1
    before="$(settled_rss_kb "$PID_phold" 3)"
    reset_hwm "$PID_phold"
    log "hold: $HOLD_STREAMS streams at once, through the proxy"
    load_run "$p" "$URL_phold" --requests "$HOLD_STREAMS" --concurrency "$HOLD_STREAMS" --timeout-secs 120
    peak="$(hwm_kb "$PID_phold")"
    after="$(settled_rss_kb "$PID_phold")"
    stop_proc phold
    stop_proc hold
    errs=$(($(jget "$d" .failed) + $(jget "$p" .failed)))
    ((errs == 0)) || { log "hold: $errs failed: $(jget "$p" .first_error)"; SUITE_ERRORS=1; }
    md "$HOLD_STREAMS streams opened at once (one connection each), each 200 chunks ${HOLD_GAP_MS} ms apart; request log off. RSS: before (idle), the peak while they were open (VmHWM, reset before), after they ended." "" \
        "| figure | direct | proxy |" \
        "| --- | ---: | ---: |" \
        "| streams held open at once (peak) | $(jget "$d" .peak_open_streams) | $(jget "$p" .peak_open_streams) |" \
        "| completed / failed | $(jget "$d" .ok) / $(jget "$d" .failed) | $(jget "$p" .ok) / $(jget "$p" .failed) |" \
        "| time to first chunk p50 / p99 (ms) | $(f1 "$(calc 'x / 1000' x="$(jget "$d" .ttfc_us.p50)")") / $(f1 "$(calc 'x / 1000' x="$(jget "$d" .ttfc_us.p99)")") | $(f1 "$(calc 'x / 1000' x="$(jget "$p" .ttfc_us.p50)")") / $(f1 "$(calc 'x / 1000' x="$(jget "$p" .ttfc_us.p99)")") |" \
        "| inter-chunk gap p99 (ms) | $(f1 "$(calc 'x / 1000' x="$(jget "$d" .gap_us.p99)")") | $(f1 "$(calc 'x / 1000' x="$(jget "$p" .gap_us.p99)")") |" \
        "| proxy RSS before / peak / after (MB) | | $(mb "$before") / $(mb "$peak") / $(mb "$after") |" \
        "" "Target: proxy RSS ≤ 64 MB with $HOLD_STREAMS open streams: $(mb "$peak") MB, $(met "$(mb "$peak")" '<=' 64)."
}

bench_memory() {
    part_begin memory "Memory (RSS of the proxy)"
    start_mock mem
    proxy pmem "$URL_mem" false false
    local fresh before steady peak after samples="$TMP/memory-rss.txt" out="$TMP/memory-load.json"
    local warm=$((WARMUP > 2 ? WARMUP : 2))
    sleep 1
    fresh="$(rss_kb "$PID_pmem")"
    check_target "$URL_pmem"
    # A first load grows the allocator's working set once (pages kept for
    # reuse, the connection pool); "before" is taken after it.
    log "memory: warm-up load (c=32, half streams) for ${warm}s"
    load_run "$TMP/memory-warm.json" "$URL_pmem" --duration-secs "$warm" --concurrency 32 --stream-share 0.5 --threads 2
    before="$(settled_rss_kb "$PID_pmem")"
    reset_hwm "$PID_pmem"
    sampler_start "$PID_pmem" "$samples"
    log "memory: mixed load (c=32, half streams) for ${DURATION}s"
    load_run "$out" "$URL_pmem" --duration-secs "$DURATION" --concurrency 32 --stream-share 0.5 --threads 2
    sampler_stop
    peak="$(hwm_kb "$PID_pmem")"
    steady="$(steady_kb "$samples")"
    after="$(settled_rss_kb "$PID_pmem")"
    stop_proc pmem
    stop_proc mem
    (($(jget "$out" .failed) == 0)) || { log "memory: $(jget "$out" .failed) failed"; SUITE_ERRORS=1; }
    local change
    change="$(calc '100 * (a - b) / b' a="$after" b="$before")"
    md "The proxy with the request log off (the features table has the log and the parsers). Idle: just started. Before load: after ${warm} s of warm-up load, settled (a first load grows the allocator's working set once). Steady: the median of 0.25 s samples over the second half of ${DURATION} s of mixed load (32 connections, half of the requests streams, $(f0 "$(jget "$out" .rps)") req/s). Peak: VmHWM over that load. After: settled once the load stopped (up to ${SETTLE} s)." "" \
        "| phase | RSS (MB) |" \
        "| --- | ---: |" \
        "| idle (just started) | $(mb "$fresh") |" \
        "| before load (warmed) | $(mb "$before") |" \
        "| steady load | $(mb "$steady") |" \
        "| peak | $(mb "$peak") |" \
        "| after load | $(mb "$after") ($(awk -v x="$change" 'BEGIN { printf "%+.1f", x }')% vs before) |" \
        "" "Targets: idle ≤ 20 MB: $(mb "$fresh") MB, $(met "$(mb "$fresh")" '<=' 20); after load within 10% of before: $(met "$(awk -v x="$change" 'BEGIN { print (x < 0 ? -x : x) }')" '<=' 10)."
}
