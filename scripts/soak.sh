#!/usr/bin/env bash
# A bounded soak: SOAK_REQUESTS (default 1,000,000) mixed requests through the
# release proxy, with the request log on (files + SQLite), against the
# repository's mock upstream. Everything runs on 127.0.0.1 and stops by itself.
#
#   bash scripts/soak.sh                       # 1,000,000 requests
#   SOAK_REQUESTS=50000 bash scripts/soak.sh   # a short one
#
# The mix (examples/stream_load, seeded): SOAK_STREAM_SHARE of the requests
# stream; SOAK_FAILOVER_SHARE go to model `flaky`, whose first backend answers
# 503 so each one fails over to the second (routing_strategy ordered; the
# failing backend is never cooled down, so every such request fails over);
# SOAK_ERROR_SHARE go to model `down`, whose only backend answers 503 (the
# client gets the error; the request is still logged).
#
# While it runs, the proxy's RSS (VmRSS, kB) and open descriptors
# (/proc/PID/fd) are sampled every SOAK_SAMPLE_SECS into a CSV. At the end:
#   - records: rows in SQLite = files on disk = requests sent (none lost);
#   - RSS: the mean of the last 20% of the samples is within SOAK_RSS_GROWTH
#     percent (default 10) of the mean of the 20%-40% window (the first 20%
#     is warm-up);
#   - descriptors: no growth between the same two windows beyond 4, and
#     after the load back to the baseline plus at most 4 once the idle
#     upstream connections are closed (pool_idle_timeout, 90 s; waited for
#     up to SOAK_FD_WAIT seconds, default 200);
#   - no request failed other than the `down` ones (which must fail).
# Exits non-zero if any check fails.
#
# Knobs: SOAK_REQUESTS (1000000), SOAK_CONCURRENCY (8), SOAK_STREAM_SHARE
# (0.5), SOAK_FAILOVER_SHARE (0.1), SOAK_ERROR_SHARE (0.01), SOAK_CHUNKS
# (chunks per stream, 20), SOAK_RATE (req/s, default 1500; 0 = as fast as the concurrency
# allows), SOAK_SAMPLE_SECS (5), SOAK_RSS_GROWTH (10), SOAK_FD_WAIT (200), BENCH_SKIP_BUILD=1,
# SOAK_KEEP=1 (keep the temp dir: logs, database, CSV).
#
# Disk: each record is a file plus a row (about 2 x 3-8 KB), so 1,000,000
# requests need several GB in $TMPDIR (/tmp); the script checks first.
# Output: target/bench/soak.md (the table, ready to paste) and
# target/bench/soak-samples.csv.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
LOG_TAG=soak
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

REQUESTS="${SOAK_REQUESTS:-1000000}"
CONCURRENCY="${SOAK_CONCURRENCY:-8}"
STREAM_SHARE="${SOAK_STREAM_SHARE:-0.5}"
FAILOVER_SHARE="${SOAK_FAILOVER_SHARE:-0.1}"
ERROR_SHARE="${SOAK_ERROR_SHARE:-0.01}"
CHUNKS="${SOAK_CHUNKS:-20}"
RATE="${SOAK_RATE:-1500}"
SAMPLE_SECS="${SOAK_SAMPLE_SECS:-5}"
GROWTH="${SOAK_RSS_GROWTH:-10}"
FD_WAIT="${SOAK_FD_WAIT:-200}"
for v in REQUESTS CONCURRENCY CHUNKS SAMPLE_SECS GROWTH; do need_int "SOAK_$v" "${!v}"; done
((REQUESTS > 0 && CONCURRENCY > 0 && SAMPLE_SECS > 0)) || die "SOAK_REQUESTS, SOAK_CONCURRENCY and SOAK_SAMPLE_SECS must be > 0"

need_tools
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 is required to count rows (apt-get install sqlite3)"
build_binaries
raise_fd_limit
make_tmp
mkdir -p "$OUT_DIR"

# About 16 KB per request (file + row + WAL), with room to spare.
need_kb=$((REQUESTS * 16))
free_kb="$(df -Pk "$TMP" | awk 'NR == 2 { print $4 }')"
((free_kb > need_kb)) || die "$TMP has $((free_kb / 1024)) MB free; $REQUESTS requests need about $((need_kb / 1024)) MB (set TMPDIR or SOAK_REQUESTS)"

start_mock soak --chunks "$CHUNKS"
mkdir -p "$TMP/proxy"
cat >"$TMP/proxy/config.yaml" <<EOF
model_list:
  - model_name: bench
    model_params: {api_base: $URL_soak/v1, request_timeout: 60}
  - model_name: flaky
    model_params: {api_base: $URL_soak/fail/v1, order: 1, request_timeout: 60}
  - model_name: flaky
    model_params: {api_base: $URL_soak/v1, order: 2, request_timeout: 60}
  - model_name: down
    model_params: {api_base: $URL_soak/fail/v1, request_timeout: 60}
proxy_settings:
  server: {host: 127.0.0.1, port: 0}
  logging:
    files: {enabled: true, dir: $TMP/proxy/logs/requests}
    database: {enabled: true}
router_settings:
  routing_strategy: ordered
  num_retries: 0
  # The failing backends are never taken out of rotation: every request to
  # flaky fails over, every request to down fails.
  allowed_fails: 1000000000
database:
  backend: sqlite
  connection:
    sqlite: {path: $TMP/proxy/yallmp.db}
EOF
start_proxy proxy "$TMP/proxy/config.yaml"
PID="$PID_proxy"
check_target "$URL_proxy"
SANITY=2
sleep 1
base_fds="$(fd_count "$PID")"
base_rss="$(rss_kb "$PID")"
log "proxy on $URL_proxy (pid $PID): $REQUESTS requests at concurrency $CONCURRENCY; baseline RSS $(mb "$base_rss") MB, $base_fds descriptors"

CSV="$TMP/samples.csv"
echo "elapsed_s,rss_kb,fds" >"$CSV"
(
    t0=$SECONDS
    while kill -0 "$PID" 2>/dev/null; do
        printf '%s,%s,%s\n' "$((SECONDS - t0))" "$(rss_kb "$PID")" "$(fd_count "$PID")" >>"$CSV"
        sleep "$SAMPLE_SECS"
    done
) &
SAMPLER_PID=$!

t0=$SECONDS
rate_args=()
awk -v r="$RATE" 'BEGIN { exit !(r > 0) }' && rate_args=(--rate "$RATE")
load_run "$TMP/load.json" "$URL_proxy" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
    --stream-share "$STREAM_SHARE" --failover-share "$FAILOVER_SHARE" --error-share "$ERROR_SHARE" \
    --threads 1 --timeout-secs 120 --progress-secs 30 "${rate_args[@]}"
LOAD_SECS=$((SECONDS - t0))
sampler_stop
log "load done in ${LOAD_SECS}s: $(jq -c '{requests, ok, expected_errors, failed, rps, kinds}' "$TMP/load.json")"

# The writer finishes its queue; descriptors settle (streams closed).
records_dir="$TMP/proxy/logs/requests"
files_before_stop="$(settle_dir_count "$records_dir")"
sleep 2
after_fds="$(fd_count "$PID")"
after_rss="$(rss_kb "$PID")"
# Idle upstream connections stay pooled (each serving thread has its own
# pool) until pool_idle_timeout (90 s) passes and the pool's reaper, which
# runs every 90 s, closes them: wait for the descriptors to come back to the
# baseline, up to SOAK_FD_WAIT seconds. What does not come back leaked.
log "descriptors: $after_fds right after the load; waiting for idle connections to close (up to ${FD_WAIT}s)"
idle_fds="$after_fds"
fd_wait=0
while ((idle_fds > base_fds + 4 && fd_wait < FD_WAIT)); do
    sleep 5
    fd_wait=$((fd_wait + 5))
    idle_fds="$(fd_count "$PID")"
done
stop_proc proxy
files="$(find "$records_dir" -name '*.log' ! -name '*.parsed.log' | wc -l)"
rows="$(sqlite3 "$TMP/proxy/yallmp.db" 'SELECT count(*) FROM requests')"
failovers="$(sqlite3 "$TMP/proxy/yallmp.db" "SELECT count(*) FROM requests WHERE model = 'flaky' AND attempts_count = 2 AND status = 200")"
sent="$(jget "$TMP/load.json" .requests)"
expected=$((sent + SANITY))

# RSS and descriptors: windows 20%-40% and the last 20% of the samples.
read -r n w_rss l_rss w_fd l_fd min_rss max_rss < <(awk -F, 'NR > 1 { r[++n] = $2; f[n] = $3 } END {
    a = int(n * 0.2); b = int(n * 0.4); c = n - int(n * 0.2)
    if (a < 1) a = 1; if (b <= a) b = a + 1; if (c < b) c = b
    for (i = a + 1; i <= b && i <= n; i++) { wr += r[i]; wf += f[i]; wn++ }
    for (i = c + 1; i <= n; i++) { lr += r[i]; lf += f[i]; ln++ }
    if (ln == 0) { lr = r[n]; lf = f[n]; ln = 1 }
    if (wn == 0) { wr = r[1]; wf = f[1]; wn = 1 }
    mn = r[1]; mx = r[1]; for (i = 1; i <= n; i++) { if (r[i] < mn) mn = r[i]; if (r[i] > mx) mx = r[i] }
    printf "%d %.0f %.0f %.1f %.1f %d %d\n", n, wr / wn, lr / ln, wf / wn, lf / ln, mn, mx }' "$CSV")
growth="$(calc '100 * (l - w) / w' l="$l_rss" w="$w_rss")"

FAIL=0
check() { # check NAME OK(0/1) DETAIL
    local verdict=pass
    if [[ "$2" != 1 ]]; then verdict="**FAIL**"; FAIL=1; fi
    CHECKS+=("| $1 | $3 | $verdict |")
    log "$1: $3: $verdict"
}
CHECKS=()
check "records: SQLite rows" "$([[ "$rows" == "$expected" ]] && echo 1)" "$rows rows for $expected requests ($sent + $SANITY sanity)"
check "records: files" "$([[ "$files" == "$expected" ]] && echo 1)" "$files files ($files_before_stop before the proxy stopped)"
check "requests answered as expected" "$([[ "$(jget "$TMP/load.json" .failed)" == 0 ]] && echo 1)" "ok $(jget "$TMP/load.json" .ok), expected 5xx (down) $(jget "$TMP/load.json" .expected_errors), failed $(jget "$TMP/load.json" .failed)"
check "failovers" "$([[ "$failovers" == "$(jget "$TMP/load.json" .kinds.failover)" ]] && echo 1)" "$failovers flaky records with 2 attempts and status 200, of $(jget "$TMP/load.json" .kinds.failover) sent"
check "RSS trend" "$(awk -v g="$growth" -v l="$GROWTH" 'BEGIN { print (g <= l) ? 1 : 0 }')" "mean $(mb "$w_rss") MB (20-40%) → $(mb "$l_rss") MB (last 20%), $(awk -v g="$growth" 'BEGIN { printf "%+.1f", g }')% (limit +$GROWTH%); min $(mb "$min_rss"), max $(mb "$max_rss") MB over $n samples"
check "descriptors during the run" "$(awk -v a="$w_fd" -v b="$l_fd" 'BEGIN { print (b - a <= 4) ? 1 : 0 }')" "mean $w_fd (20-40%) → $l_fd (last 20%)"
check "descriptors after the run" "$( ((idle_fds <= base_fds + 4)) && echo 1 || echo 0)" "$base_fds before; $after_fds right after the load (idle upstream connections pooled), $idle_fds ${fd_wait} s later (allowed: the baseline + 4)"

cp "$CSV" "$OUT_DIR/soak-samples.csv"
{
    echo "## Soak"
    echo
    echo "Machine and build: $(context_line)."
    echo
    echo "Command: \`$(for v in ${!SOAK_*}; do printf '%s=%q ' "$v" "${!v}"; done)bash scripts/soak.sh\`: $sent requests in ${LOAD_SECS} s ($(f0 "$(jget "$TMP/load.json" .rps)") req/s), concurrency $CONCURRENCY, $(jget "$TMP/load.json" .kinds.stream) streams ($CHUNKS chunks each), $(jget "$TMP/load.json" .kinds.failover) failovers, $(jget "$TMP/load.json" .kinds.error) to a model that is down; request log on (files + SQLite). RSS after the run $(mb "$after_rss") MB (baseline $(mb "$base_rss") MB); samples every ${SAMPLE_SECS} s in target/bench/soak-samples.csv."
    echo
    echo "| check | measured | result |"
    echo "| --- | --- | --- |"
    printf '%s\n' "${CHECKS[@]}"
} >"$OUT_DIR/soak.md"
cat "$OUT_DIR/soak.md"
if [[ "${SOAK_KEEP:-0}" == 1 ]]; then
    BENCH_KEEP_TMP=1
fi
exit "$FAIL"
