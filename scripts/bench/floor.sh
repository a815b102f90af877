# Part "floor" of scripts/bench.sh (issue 26's table): the proxy against the
# floor of an HTTP hop, in one run on one mock (latency 0):
#   direct        straight to the mock
#   nginx         an nginx hop (keep-alive upstream, no buffering), when
#                 nginx is installed (Debian: nginx-light)
#   relay         `yallmp forward http` (hyper server + hyper client pool,
#                 no JSON, nothing else the proxy does)
#   proxy         `yallmp serve`, request log off
# Figures: added p50/p99 at c=1 (oha), req/s at c=32 non-stream (oha) with
# the CPU per request of the relay and the proxy, streams/s at c=32 (the
# mock's 8-chunk SSE answer, examples/stream_load); and the ratios the goals
# are written in (proxy ÷ relay, proxy ÷ nginx).

# start_nginx NAME UPSTREAM: nginx on a free port in front of UPSTREAM
# (http://host:port); sets URL_NAME. Returns 1 when nginx is not installed.
start_nginx() {
    local name="$1" upstream="$2" dir="$TMP/$1" port
    command -v nginx >/dev/null 2>&1 || return 1
    mkdir -p "$dir"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream mock { server ${upstream#http://}; keepalive 256; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
EOF
    nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out.log" 2>&1 &
    printf -v "PID_$name" '%s' "$!"
    STARTED+=("$name")
    printf -v "URL_$name" 'http://127.0.0.1:%s' "$port"
    local url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null --max-time 1 "$url/healthz" 2>/dev/null && return 0
        sleep 0.05
    done
    log "nginx did not answer at $url"
    return 1
}

bench_floor() {
    part_begin floor "The floor: the proxy against an HTTP relay and nginx (issue 26)"
    start_mock fl
    start_forwarder flrelay http "$URL_fl"
    proxy flproxy "$URL_fl" false false
    local targets=(direct relay proxy)
    if start_nginx flnginx "$URL_fl"; then
        targets=(direct nginx relay proxy)
    else
        log "floor: nginx is not installed: its rows are left out"
    fi
    local t url
    local -A p50 p99 rps cpu srps
    for t in "${targets[@]}"; do
        case "$t" in
            direct) url="$URL_fl" ;;
            nginx) url="$URL_flnginx" ;;
            relay) url="$URL_flrelay" ;;
            proxy) url="$URL_flproxy" ;;
        esac
        check_target "$url"
        ((WARMUP > 0)) && oha_run "$TMP/warm.json" "$url" "$TMP/plain.json" -z "${WARMUP}s" -c 32
        log "floor: $t, c=1"
        oha_run "$TMP/floor-$t-c1.json" "$url" "$TMP/plain.json" -z "${DURATION}s" -c 1
        p50[$t]="$(oha_us "$TMP/floor-$t-c1.json" p50)"
        p99[$t]="$(oha_us "$TMP/floor-$t-c1.json" p99)"
        log "floor: $t, c=32"
        local pid="" c0=0 c1=0
        case "$t" in
            relay) pid="$PID_flrelay" ;;
            proxy) pid="$PID_flproxy" ;;
        esac
        [[ -n "$pid" ]] && c0="$(cpu_us "$pid")"
        oha_run "$TMP/floor-$t-c32.json" "$url" "$TMP/plain.json" -z "${DURATION}s" -c 32
        [[ -n "$pid" ]] && c1="$(cpu_us "$pid")"
        rps[$t]="$(oha_rps "$TMP/floor-$t-c32.json")"
        if [[ -n "$pid" ]]; then
            cpu[$t]="$(f1 "$(calc '(b - a) / n' a="$c0" b="$c1" n="$(oha_requests "$TMP/floor-$t-c32.json")")")"
        else
            cpu[$t]="—"
        fi
        local errs=$(($(oha_errors "$TMP/floor-$t-c1.json") + $(oha_errors "$TMP/floor-$t-c32.json")))
        ((errs == 0)) || { log "floor: $t: $errs errors"; SUITE_ERRORS=1; }
        log "floor: $t, c=32 streams"
        load_run "$TMP/floor-$t-sse.json" "$url" --duration-secs "$DURATION" --concurrency 32 --threads 2
        srps[$t]="$(jget "$TMP/floor-$t-sse.json" .rps)"
        (($(jget "$TMP/floor-$t-sse.json" .failed) == 0)) || { log "floor: $t: failed streams"; SUITE_ERRORS=1; }
    done
    local rows=()
    for t in "${targets[@]}"; do
        local added50="—" added99="—"
        [[ "$t" != direct ]] && added50="$(signed $((p50[$t] - p50[direct])))" && added99="$(signed $((p99[$t] - p99[direct])))"
        rows+=("| $t | ${p50[$t]} | $added50 | ${p99[$t]} | $added99 | $(f0 "${rps[$t]}") | $(ratio "${rps[$t]}" "${rps[direct]}") | ${cpu[$t]} | $(f0 "${srps[$t]}") | $(ratio "${srps[$t]}" "${srps[direct]}") |")
    done
    local r_rps r_sse gap50 gap99 goals
    r_rps="$(ratio "${rps[proxy]}" "${rps[relay]}")"
    r_sse="$(ratio "${srps[proxy]}" "${srps[relay]}")"
    gap50=$((p50[proxy] - p50[relay]))
    gap99=$((p99[proxy] - p99[relay]))
    goals="Goals: c=32 req/s proxy ÷ relay $r_rps ≥ 0.90: $(met "$r_rps" '>=' 0.90); c=32 streams/s proxy ÷ relay $r_sse ≥ 0.80: $(met "$r_sse" '>=' 0.80); added p50 over the relay's $(signed "$gap50") µs ≤ +15: $(met "$gap50" '<=' 15); added p99 over the relay's $(signed "$gap99") µs ≤ +100: $(met "$gap99" '<=' 100); proxy CPU ${cpu[proxy]} µs/req ≤ 20: $(met "${cpu[proxy]}" '<=' 20)"
    if [[ -n "${rps[nginx]:-}" ]]; then
        local r_ngx
        r_ngx="$(ratio "${rps[proxy]}" "${rps[nginx]}")"
        goals+="; c=32 req/s proxy ÷ nginx $r_ngx ≥ 0.95: $(met "$r_ngx" '>=' 0.95)"
    fi
    md "One mock (latency 0), each target in turn: oha at c=1 and c=32 (non-stream, ${DURATION} s each), then examples/stream_load at c=32 (the mock's 8-chunk stream, ${DURATION} s); request log off. CPU: user + system time per request of the relay's or the proxy's process. The load generator, the mock and the target share the machine's cores." "" \
        "| through | p50 µs (c=1) | added p50 | p99 µs (c=1) | added p99 | req/s (c=32) | ÷ direct | CPU µs/req | streams/s (c=32) | ÷ direct |" \
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" \
        "${rows[@]}" "" "$goals."
    stop_proc flproxy
    stop_proc flrelay
    [[ -n "${PID_flnginx:-}" ]] && stop_proc flnginx
    stop_proc fl
}
