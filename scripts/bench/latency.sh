# Parts "latency" and "throughput" of scripts/bench.sh (oha, non-stream).
#
# latency: concurrency 1, BENCH_DURATION seconds per target; p50, p99 and
#   p99.9 straight to the mock and through the proxy (request log off), and
#   the difference (what the proxy adds). Against the mock with no latency,
#   then with BENCH_FIXED_LATENCY_MS (default 10; 0 skips it).
# throughput: concurrency 32 and 128, the same two mocks: req/s, p99, the
#   proxy's CPU per request.

# Mocks for both parts: "zero" and, unless BENCH_FIXED_LATENCY_MS=0, "fixed".
mock_latencies() {
    echo 0
    ((FIXED_LATENCY_MS > 0)) && echo "$FIXED_LATENCY_MS"
    return 0
}

# mock_and_proxy MOCK PROXY LATENCY_MS CONNECTIONS: a mock with that latency
# and a proxy (request log off) in front of it, both checked, then warmed up
# at CONNECTIONS for BENCH_WARMUP seconds; sets URL_MOCK and URL_PROXY.
mock_and_proxy() {
    local mock="URL_$1" px="URL_$2"
    start_mock "$1" --latency-ms "$3"
    proxy "$2" "${!mock}" false false
    check_target "${!mock}"
    check_target "${!px}"
    if ((WARMUP > 0)); then
        oha_run "$TMP/warm.json" "${!mock}" "$TMP/plain.json" -z "${WARMUP}s" -c "$4"
        oha_run "$TMP/warm.json" "${!px}" "$TMP/plain.json" -z "${WARMUP}s" -c "$4"
    fi
}

# c1_run OUT URL: BENCH_DURATION seconds of oha at concurrency 1, one worker.
c1_run() {
    oha_run "$1" "$2" "$TMP/plain.json" -z "${DURATION}s" -c 1 --worker-threads 1
}

bench_latency() {
    part_begin latency "Added latency at concurrency 1 (non-stream)"
    local rows=() floor=() lat d p f kind dp50 dp99 dp999 pp50 pp99 pp999 errs verdict=""
    for lat in $(mock_latencies); do
        mock_and_proxy lat plat "$lat" 1
        d="$TMP/lat-direct-$lat.json"
        p="$TMP/lat-proxy-$lat.json"
        log "latency (mock ${lat} ms): direct"
        c1_run "$d" "$URL_lat"
        log "latency (mock ${lat} ms): through the proxy"
        c1_run "$p" "$URL_plat"
        errs=$(($(oha_errors "$d") + $(oha_errors "$p")))
        ((errs == 0)) || { log "latency: $errs errors"; SUITE_ERRORS=1; }
        dp50="$(oha_us "$d" p50)" dp99="$(oha_us "$d" p99)" dp999="$(oha_us "$d" p99.9)"
        pp50="$(oha_us "$p" p50)" pp99="$(oha_us "$p" p99)" pp999="$(oha_us "$p" p99.9)"
        rows+=("| $lat ms | $(f0 "$(oha_rps "$p")") | $dp50 | $pp50 | $(signed $((pp50 - dp50))) | $dp99 | $pp99 | $(signed $((pp99 - dp99))) | $dp999 | $pp999 | $(signed $((pp999 - dp999))) |")
        if ((lat == 0)); then
            verdict="Targets (mock latency 0): added p50 $((pp50 - dp50)) µs ≤ 50 µs: $(met $((pp50 - dp50)) '<=' 50); added p99 $((pp99 - dp99)) µs ≤ 500 µs: $(met $((pp99 - dp99)) '<=' 500)."
            # The floor: what a hop costs that only relays, on the same
            # machine and mock: bytes (forward tcp) and HTTP without the
            # proxy's work (forward http: hyper server + hyper client pool).
            floor+=("| the proxy (\`serve\`, request log off) | $pp50 | $(signed $((pp50 - dp50))) | $pp99 | $(signed $((pp99 - dp99))) | $pp999 | $(signed $((pp999 - dp999))) |")
            for kind in tcp http; do
                start_forwarder "fwd$kind" "$kind" "$URL_lat"
                f="URL_fwd$kind"
                check_target "${!f}"
                ((WARMUP > 0)) && oha_run "$TMP/warm.json" "${!f}" "$TMP/plain.json" -z "${WARMUP}s" -c 1
                log "latency (mock 0 ms): through yallmp forward $kind"
                c1_run "$TMP/lat-fwd-$kind.json" "${!f}"
                f="$TMP/lat-fwd-$kind.json"
                errs="$(oha_errors "$f")"
                ((errs == 0)) || { log "latency: forward $kind: $errs errors"; SUITE_ERRORS=1; }
                pp50="$(oha_us "$f" p50)" pp99="$(oha_us "$f" p99)" pp999="$(oha_us "$f" p99.9)"
                floor+=("| a $kind relay (\`yallmp forward $kind\`) | $pp50 | $(signed $((pp50 - dp50))) | $pp99 | $(signed $((pp99 - dp99))) | $pp999 | $(signed $((pp999 - dp999))) |")
                stop_proc "fwd$kind"
            done
        fi
        stop_proc plat
        stop_proc lat
    done
    md "oha, 1 connection, ${DURATION} s per target, request log off; latencies in µs (oha's time to the whole answer); \"added\" = proxy − direct." "" \
        "| mock latency | proxy req/s | direct p50 | proxy p50 | added p50 | direct p99 | proxy p99 | added p99 | direct p99.9 | proxy p99.9 | added p99.9 |" \
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" \
        "${rows[@]}" "" "$verdict" "" \
        "The floor, mock latency 0: one more hop that only relays, measured the same way right after (direct p50 / p99 / p99.9 as above). A byte relay costs the two extra loopback trips; an HTTP relay adds an HTTP server and client (hyper on both sides, a keep-alive pool) and nothing else the proxy does." "" \
        "| through | p50 µs | added p50 | p99 µs | added p99 | p99.9 µs | added p99.9 |" \
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" \
        "${floor[@]}"
}

bench_throughput() {
    part_begin throughput "Sustained throughput (non-stream)"
    local rows=() lat c d p cpu0 cpu1 dr pr errs verdict=""
    for lat in $(mock_latencies); do
        mock_and_proxy thr pthr "$lat" 32
        for c in 32 128; do
            d="$TMP/thr-direct-$lat-$c.json"
            p="$TMP/thr-proxy-$lat-$c.json"
            log "throughput (mock ${lat} ms, c=$c): direct"
            oha_run "$d" "$URL_thr" "$TMP/plain.json" -z "${DURATION}s" -c "$c"
            log "throughput (mock ${lat} ms, c=$c): through the proxy"
            cpu0="$(cpu_us "$PID_pthr")"
            oha_run "$p" "$URL_pthr" "$TMP/plain.json" -z "${DURATION}s" -c "$c"
            cpu1="$(cpu_us "$PID_pthr")"
            errs=$(($(oha_errors "$d") + $(oha_errors "$p")))
            ((errs == 0)) || { log "throughput: $errs errors"; SUITE_ERRORS=1; }
            dr="$(oha_rps "$d")"
            pr="$(oha_rps "$p")"
            rows+=("| $lat ms | $c | $(f0 "$dr") | $(f0 "$pr") | $(ratio "$pr" "$dr") | $(f2 "$(calc 'x / 1000' x="$(oha_us "$d" p99)")") | $(f2 "$(calc 'x / 1000' x="$(oha_us "$p" p99)")") | $(f1 "$(calc '(b - a) / n' a="$cpu0" b="$cpu1" n="$(oha_requests "$p")")") |")
            if ((lat == 0 && c == 32)); then
                verdict="Target (mock latency 0, c=32): proxy/direct $(ratio "$pr" "$dr") ≥ 0.70: $(met "$(ratio "$pr" "$dr")" '>=' 0.70)."
            fi
        done
        stop_proc pthr
        stop_proc thr
    done
    md "oha, ${DURATION} s per run, request log off; the load generator, the mock and the proxy share the machine's cores. CPU: the proxy's user + system time per request." "" \
        "| mock latency | connections | direct req/s | proxy req/s | proxy/direct | direct p99 ms | proxy p99 ms | proxy CPU µs/req |" \
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" \
        "${rows[@]}" "" "$verdict"
}

# Part "rates": a ladder of fixed request rates (oha -q, latency corrected:
# a request that starts late counts from when it should have started), from
# BENCH_RATE_START (1000/s) up by BENCH_RATE_FACTOR (1.25) until p99 passes
# 10 ms, BENCH_RATE_STEP seconds (4) per step, 64 connections; mock latency
# 0. The table gives, for p99 limits of 1, 5 and 10 ms, the highest rate of
# the ladder below the first step whose p99 reached the limit.
bench_rates() {
    part_begin rates "Highest fixed rate with p99 under 1 / 5 / 10 ms (non-stream)"
    start_mock rate
    proxy prate "$URL_rate" false false
    check_target "$URL_rate"
    check_target "$URL_prate"
    local target url rate out p99 achieved
    local -A best1 best5 best10 ladder_p99 ladder_rps
    for target in direct proxy; do
        [[ "$target" == direct ]] && url="$URL_rate" || url="$URL_prate"
        ((WARMUP > 0)) && oha_run "$TMP/warm.json" "$url" "$TMP/plain.json" -z "${WARMUP}s" -c 32
        rate="$RATE_START"
        local fail1=0 fail5=0 fail10=0
        best1[$target]="< $RATE_START" best5[$target]="< $RATE_START" best10[$target]="< $RATE_START"
        while ((rate <= RATE_MAX)); do
            out="$TMP/rate-$target-$rate.json"
            log "rates: $target at $rate req/s"
            oha_run "$out" "$url" "$TMP/plain.json" -z "${RATE_STEP}s" -c 64 -q "$rate" --latency-correction
            p99="$(oha_us "$out" p99)"
            achieved="$(f0 "$(oha_rps "$out")")"
            ladder_p99[$target,$rate]="$p99"
            ladder_rps[$target,$rate]="$achieved"
            ((p99 < 1000 && !fail1)) && best1[$target]="$rate" || fail1=1
            ((p99 < 5000 && !fail5)) && best5[$target]="$rate" || fail5=1
            ((p99 < 10000 && !fail10)) && best10[$target]="$rate" || fail10=1
            ((fail10)) && break
            rate="$(awk -v r="$rate" -v f="$RATE_FACTOR" 'BEGIN { printf "%d", r * f + 0.5 }')"
        done
    done
    stop_proc prate
    stop_proc rate
    md "oha -q RATE --latency-correction, 64 connections, ${RATE_STEP} s per step, rates from $RATE_START up ×$RATE_FACTOR; mock latency 0; request log off." "" \
        "| p99 under | direct: highest rate (req/s) | proxy: highest rate (req/s) |" \
        "| --- | ---: | ---: |" \
        "| 1 ms | ${best1[direct]} | ${best1[proxy]} |" \
        "| 5 ms | ${best5[direct]} | ${best5[proxy]} |" \
        "| 10 ms | ${best10[direct]} | ${best10[proxy]} |" \
        "" "The ladder (achieved req/s, p99 µs; — = not run: the target had already passed 10 ms):" "" \
        "| rate | direct req/s | direct p99 µs | proxy req/s | proxy p99 µs |" \
        "| ---: | ---: | ---: | ---: | ---: |"
    rate="$RATE_START"
    while ((rate <= RATE_MAX)); do
        [[ -n "${ladder_p99[direct,$rate]:-}${ladder_p99[proxy,$rate]:-}" ]] || break
        md "| $rate | ${ladder_rps[direct,$rate]:-—} | ${ladder_p99[direct,$rate]:-—} | ${ladder_rps[proxy,$rate]:-—} | ${ladder_p99[proxy,$rate]:-—} |"
        rate="$(awk -v r="$rate" -v f="$RATE_FACTOR" 'BEGIN { printf "%d", r * f + 0.5 }')"
    done
}
