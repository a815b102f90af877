# Shared by scripts/bench.sh, its parts (scripts/bench/*.sh) and
# scripts/soak.sh: tools, processes (started in this shell, stopped on exit),
# RSS sampling, load runners and markdown output. Sourced, not run.
#
# Expects ROOT (the repository) and sets TARGET_DIR, OUT_DIR, TMP, and the
# binaries PROXY_BIN, MOCK_BIN, LOAD_BIN, OHA.

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_DIR="$ROOT/target/bench"
TICKS="$(getconf CLK_TCK)"

log() { printf '%s: %s\n' "${LOG_TAG:-bench}" "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# A whole number, or die naming the knob.
need_int() {
    local name="$1" value="$2"
    [[ "$value" =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '$value'"
}

# --- tools and binaries ------------------------------------------------------

# Builds the release proxy and the two examples (unless BENCH_SKIP_BUILD=1).
build_binaries() {
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        log "building release binaries (yallmp, examples mock_upstream and stream_load)"
        (cd "$ROOT" && cargo build --release --locked --bin yallmp \
            --example mock_upstream --example stream_load) \
            || die "cargo build failed"
    fi
    PROXY_BIN="$TARGET_DIR/release/yallmp"
    MOCK_BIN="$TARGET_DIR/release/examples/mock_upstream"
    LOAD_BIN="$TARGET_DIR/release/examples/stream_load"
    local b
    for b in "$PROXY_BIN" "$MOCK_BIN" "$LOAD_BIN"; do
        [[ -x "$b" ]] || die "$b is missing (build it, or drop BENCH_SKIP_BUILD=1)"
    done
}

# oha (the load generator for non-stream latency, throughput and fixed
# rates): on PATH, or installed from crates.io into the target dir once.
ensure_oha() {
    if command -v oha >/dev/null 2>&1; then
        OHA="$(command -v oha)"
        return
    fi
    OHA="$TARGET_DIR/bench-tools/bin/oha"
    [[ -x "$OHA" ]] && return
    log "oha not found: installing it from crates.io into $TARGET_DIR/bench-tools (cargo install oha --locked; a few minutes, once)"
    local build_dir="$TARGET_DIR/bench-tools/build"
    CARGO_TARGET_DIR="$build_dir" cargo install oha --locked --root "$TARGET_DIR/bench-tools" \
        || die "cargo install oha failed"
    rm -rf "$build_dir"
    [[ -x "$OHA" ]] || die "oha was not installed at $OHA"
}

need_tools() {
    local t
    for t in curl jq awk; do
        command -v "$t" >/dev/null 2>&1 || die "$t is required (apt-get install $t)"
    done
}

# Open files: 1,000 open streams take about 3,000 descriptors in all.
raise_fd_limit() {
    local hard
    hard="$(ulimit -Hn)"
    if [[ "$hard" == unlimited ]] || ((hard >= 65536)); then
        ulimit -n 65536 2>/dev/null || true
    else
        ulimit -n "$hard" 2>/dev/null || true
    fi
}

# --- processes -----------------------------------------------------------------
# Every process is a child of this shell: NAME's pid is in PID_NAME, its URL
# in URL_NAME. cleanup (on exit) stops whatever is still running.

TMP=""
STARTED=()

# On ext4 without a journal (this project's development machines), creating a
# file checks every free inode of its group for a recent deletion (ext4's
# recently_deleted(): 1 to 6 minutes), so for minutes after a run deleted
# 100,000 log files, each new file scans past them: perf showed 30% of a logging
# proxy's CPU there. A run that follows another within that window would
# measure the filesystem's memory of the last run, not the request log. The
# cleanup leaves a stamp; the next run waits out the window (BENCH_SETTLE_DELETES=0
# skips the wait).
DELETED_STAMP="${ROOT:-.}/target/bench/.deleted"
settle_deletes() {
    [[ "${BENCH_SETTLE_DELETES:-1}" == 0 || ! -f "$DELETED_STAMP" ]] && return 0
    local when count dev now wait
    read -r when count <"$DELETED_STAMP" || return 0
    now="$(date +%s)"
    wait=$((when + 360 - now))
    ((count >= 10000 && wait > 0)) || return 0
    dev="$(findmnt -no SOURCE,FSTYPE -T "${TMPDIR:-/tmp}" 2>/dev/null)"
    [[ "$dev" == *" ext4" ]] || return 0
    if command -v tune2fs >/dev/null 2>&1 \
        && tune2fs -l "${dev% ext4}" 2>/dev/null | grep -q has_journal; then
        return 0
    fi
    log "the last run deleted $count files $((now - when)) s ago on ext4 without a journal:"
    log "waiting ${wait} s so new files do not pay for scanning them (BENCH_SETTLE_DELETES=0 skips)"
    sleep "$wait"
}

make_tmp() {
    settle_deletes
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/yallmp-bench.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local name
    sampler_stop
    for name in "${STARTED[@]}"; do
        stop_proc "$name" 2>/dev/null || true
    done
    if [[ -n "$TMP" && "${BENCH_KEEP_TMP:-0}" != 1 ]]; then
        local files
        files="$(find "$TMP" -type f 2>/dev/null | wc -l)"
        rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }
        mkdir -p "$(dirname "$DELETED_STAMP")" && echo "$(date +%s) $files" >"$DELETED_STAMP"
    elif [[ -n "$TMP" ]]; then
        log "kept $TMP"
    fi
}

# stop_proc NAME: SIGTERM, then wait for it to exit (a logging proxy writes
# its queue first: at most 60 s).
stop_proc() {
    local name="$1" var="PID_$1" pid
    pid="${!var:-}"
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    printf -v "$var" '%s' ""
}

# Waits for "listening on http://127.0.0.1:PORT" in a log; prints the URL.
wait_listen() {
    local file="$1" pid="$2" url=""
    for _ in $(seq 1 600); do
        url="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$file" 2>/dev/null | head -n1 | sed 's/^listening on //')" || true
        [[ -n "$url" ]] && { echo "$url"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    log "no listen line in $file"
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
    log "$url/healthz never answered"
    return 1
}

# start_mock NAME [mock_upstream args...]
start_mock() {
    local name="$1"
    shift
    local out="$TMP/mock-$name.log"
    "$MOCK_BIN" --port 0 "$@" >"$out" 2>"$out.err" &
    printf -v "PID_$name" '%s' "$!"
    STARTED+=("$name")
    local url
    url="$(wait_listen "$out" "$!")" || die "mock $name did not start"
    wait_healthy "$url" || die "mock $name is not healthy"
    printf -v "URL_$name" '%s' "$url"
}

# write_config DIR UPSTREAM LOG PARSERS(true|false): a proxy config with one
# model, `bench`, at UPSTREAM; the request log in DIR. LOG: true (files +
# SQLite), false (off), files or database (that sink alone).
write_config() {
    local dir="$1" upstream="$2" log="$3" parsers="$4" files_on db_on
    case "$log" in
        true | false) files_on="$log" db_on="$log" ;;
        files) files_on=true db_on=false ;;
        database) files_on=false db_on=true ;;
        *) die "write_config: LOG must be true, false, files or database, got '$log'" ;;
    esac
    mkdir -p "$dir"
    cat >"$dir/config.yaml" <<EOF
model_list:
  - model_name: bench
    model_params:
      api_base: $upstream/v1
      request_timeout: 300
proxy_settings:
  parsers:
    enabled: $parsers
    response: [parse_tags]
  server:
    host: 127.0.0.1
    port: 0
    workers: $WORKERS
  logging:
    files:
      enabled: $files_on
      dir: $dir/logs/requests
    database:
      enabled: $db_on
router_settings:
  num_retries: 0
database:
  backend: sqlite
  connection:
    sqlite:
      path: $dir/yallmp.db
EOF
}

# start_proxy NAME CONFIG: the release proxy on CONFIG, run from the
# config's directory (nothing relative lands in the repository).
start_proxy() {
    local name="$1" config="$2" dir
    dir="$(dirname "$config")"
    (cd "$dir" && exec "$PROXY_BIN" --config "$config" serve) \
        >"$dir/proxy.log" 2>"$dir/proxy.log.err" &
    printf -v "PID_$name" '%s' "$!"
    STARTED+=("$name")
    local url
    url="$(wait_listen "$dir/proxy.log" "$!")" || die "proxy $name did not start"
    wait_healthy "$url" || die "proxy $name is not healthy"
    printf -v "URL_$name" '%s' "$url"
}

# start_forwarder NAME KIND UPSTREAM: `yallmp forward KIND` (tcp or http) on
# a free port in front of UPSTREAM (http://host:port); sets URL_NAME.
start_forwarder() {
    local name="$1" kind="$2" upstream="$3" dir="$TMP/$1" addr=""
    local hostport="${upstream#http://}"
    write_config "$dir" "$upstream" false false
    cat >>"$dir/config.yaml" <<EOF
forwarder_settings:
  listen: { host: 127.0.0.1, port: 0 }
  target: { host: ${hostport%:*}, port: ${hostport##*:} }
http_forwarder_settings:
  listen: { host: 127.0.0.1, port: 0 }
  target: { scheme: http, host: ${hostport%:*}, port: ${hostport##*:} }
EOF
    (cd "$dir" && exec "$PROXY_BIN" --config "$dir/config.yaml" forward "$kind") \
        >"$dir/proxy.log" 2>"$dir/proxy.log.err" &
    printf -v "PID_$name" '%s' "$!"
    STARTED+=("$name")
    for _ in $(seq 1 200); do
        addr="$(grep -o 'forwarder listening on 127\.0\.0\.1:[0-9]*' "$dir/proxy.log" 2>/dev/null | head -n1 | sed 's/.* on //')" || true
        [[ -n "$addr" ]] && break
        sleep 0.05
    done
    [[ -n "$addr" ]] || { cat "$dir/proxy.log" "$dir/proxy.log.err" >&2; die "forwarder $name did not start"; }
    printf -v "URL_$name" 'http://%s' "$addr"
}

# proxy NAME UPSTREAM LOG PARSERS: write_config + start_proxy in $TMP/NAME.
proxy() {
    write_config "$TMP/$1" "$2" "$3" "$4"
    start_proxy "$1" "$TMP/$1/config.yaml"
}

# --- bodies --------------------------------------------------------------------

MESSAGES='[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello and describe a benchmark in one sentence."}]'
BODY_PLAIN="{\"model\":\"bench\",\"messages\":$MESSAGES,\"temperature\":0.2,\"max_tokens\":64}"
BODY_STREAM="{\"model\":\"bench\",\"messages\":$MESSAGES,\"temperature\":0.2,\"max_tokens\":64,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"

write_bodies() {
    printf '%s' "$BODY_PLAIN" >"$TMP/plain.json"
    printf '%s' "$BODY_STREAM" >"$TMP/stream.json"
}

# check_target URL: one answer of each kind before measuring.
check_target() {
    local url="$1"
    curl -fsS --max-time 10 -H 'content-type: application/json' -d "$BODY_PLAIN" \
        "$url/v1/chat/completions" | grep -q '"chat.completion"' \
        || die "$url gave no chat.completion"
    curl -fsS --max-time 60 -N -H 'content-type: application/json' -d "$BODY_STREAM" \
        "$url/v1/chat/completions" | grep -q '^data: \[DONE\]' \
        || die "$url gave no complete stream"
}

# --- measuring -----------------------------------------------------------------

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Peak RSS (VmHWM) back to the current RSS, so the next peak is a phase's own.
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
# CPU time (user + system, all threads) a process has used, in microseconds.
cpu_us() { awk -v t="$TICKS" '{ printf "%d", ($14 + $15) * 1000000 / t }' "/proc/$1/stat"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# sampler_start PID FILE [SECONDS]: VmRSS (kB) every SECONDS (default 0.25)
# into FILE, one "unix_ms rss_kb" line each, until sampler_stop.
sampler_start() {
    local pid="$1" file="$2" every="${3:-0.25}"
    : >"$file"
    (
        while kill -0 "$pid" 2>/dev/null; do
            printf '%s %s\n' "$(date +%s%3N)" "$(rss_kb "$pid")" >>"$file"
            sleep "$every"
        done
    ) &
    SAMPLER_PID=$!
}
sampler_stop() {
    [[ -n "${SAMPLER_PID:-}" ]] || return 0
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
}
# Median RSS (kB) of the second half of a sampler's file: the steady state.
steady_kb() {
    awk '{ v[NR] = $2 } END {
        if (NR == 0) { print 0; exit }
        from = int(NR / 2) + 1; n = 0
        for (i = from; i <= NR; i++) s[++n] = v[i]
        # insertion sort: a few hundred samples
        for (i = 2; i <= n; i++) { x = s[i]; j = i - 1; while (j > 0 && s[j] > x) { s[j + 1] = s[j]; j-- } s[j + 1] = x }
        print s[int((n + 1) / 2)]
    }' "$1"
}

# RSS once it has settled after load: samples every 0.5 s for up to SECONDS
# (default BENCH_SETTLE, 5) and returns the last one, stopping early once
# four samples in a row agree within 1%.
settled_rss_kb() {
    local pid="$1" secs="${2:-${BENCH_SETTLE:-5}}" prev now same=0 i
    prev="$(rss_kb "$pid")"
    for ((i = 0; i < secs * 2; i++)); do
        sleep 0.5
        now="$(rss_kb "$pid")"
        if awk -v a="$prev" -v b="$now" 'BEGIN { exit !(a > 0 && (a - b) / a < 0.01 && (b - a) / a < 0.01) }'; then
            same=$((same + 1))
            ((same >= 4 && i >= 3)) && break
        else
            same=0
        fi
        prev="$now"
    done
    echo "$now"
}

# oha_run OUT URL BODYFILE [oha args...]: a POST run, JSON into OUT.
oha_run() {
    local out="$1" url="$2" body="$3"
    shift 3
    # -w: a run's last requests finish instead of being cut off (and counted
    # as errors) at -z's deadline.
    "$OHA" --no-tui --output-format json -w -m POST -T application/json -D "$body" \
        "$@" "$url/v1/chat/completions" >"$out" 2>"$out.err" \
        || { cat "$out.err" >&2; die "oha failed against $url"; }
}
# Fields of an oha JSON: rps, p50/p99/p999 (µs), errors (bad statuses and
# failed requests, not the ones cut off by -z's deadline), requests.
oha_rps() { jq -r '.summary.requestsPerSec // 0' "$1"; }
oha_us() {
    local key="$2"
    jq -r --arg k "$key" '((.latencyPercentiles[$k] // 0) * 1e6) | floor' "$1"
}
oha_errors() {
    jq -r '([(.statusCodeDistribution // {}) | to_entries[] | select(.key != "200") | .value] | add // 0)
        + ([(.errorDistribution // {}) | to_entries[] | select(.key | test("deadline") | not) | .value] | add // 0)' "$1"
}
oha_requests() { jq -r '[(.statusCodeDistribution // {}) | to_entries[] | .value] | add // 0' "$1"; }

# load_run OUT URL [stream_load args...]: the Rust load client, JSON into OUT.
load_run() {
    local out="$1" url="$2"
    shift 2
    "$LOAD_BIN" --url "$url" "$@" >"$out" 2>"$out.err" \
        || { cat "$out.err" >&2; die "stream_load failed against $url"; }
}
# jget FILE FILTER: a jq value (null → 0).
jget() { jq -r "($2) // 0" "$1"; }

# Log files (records) in DIR.
dir_count() { find "$1" -name '*.log' ! -name '*.parsed.log' 2>/dev/null | wc -l; }

# settle COUNTER ARG: what `COUNTER ARG` prints once it has stopped moving
# (read every 0.5 s, for up to 2 minutes); prints it.
settle() {
    local before now
    before="$("$1" "$2")"
    for _ in $(seq 1 240); do
        sleep 0.5
        now="$("$1" "$2")"
        [[ "$now" == "$before" ]] && break
        before="$now"
    done
    echo "$now"
}

# Files (records) in DIR once the count has stopped moving; prints it.
settle_dir_count() { settle dir_count "$1"; }

# log_records DIR: records the request log of the proxy whose config is in
# DIR holds: its files, else its SQLite rows; -1 when neither can be counted.
log_records() {
    if [[ -d "$1/logs/requests" ]]; then
        dir_count "$1/logs/requests"
    else
        local n
        n="$(sqlite_rows "$1/yallmp.db")"
        echo "${n:--1}"
    fi
}

# Rows in a request log database (sqlite3 if installed, else empty).
sqlite_rows() {
    command -v sqlite3 >/dev/null 2>&1 || return 0
    sqlite3 "$1" 'SELECT count(*) FROM requests' 2>/dev/null || true
}

# --- output --------------------------------------------------------------------

# Arithmetic in awk: calc 'a - b' a=1 b=2 (variables as name=value).
calc() {
    local expr="$1"
    shift
    local args=() kv
    for kv in "$@"; do args+=(-v "$kv"); done
    awk "${args[@]}" "BEGIN { print $expr }"
}
# f0/f1/f2: a number with 0/1/2 decimals; signed: with a sign.
f0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
signed() { awk -v x="$1" 'BEGIN { printf "%+.0f", x }'; }
# ratio A B: A/B with two decimals, n/a when B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
# met VALUE OP LIMIT: "met" or "**missed**".
met() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
    ok = (op == "<=") ? v <= l : (op == ">=") ? v >= l : (op == "<") ? v < l : v > l
    printf "%s", ok ? "met" : "**missed**" }'; }

# md SECTION_TEXT: appends to this part's markdown (and prints it).
md() {
    printf '%s\n' "$@" >>"$PART_MD"
    printf '%s\n' "$@"
}

# part_begin NAME TITLE: a part's markdown goes to $OUT_DIR/NAME.md.
part_begin() {
    PART_NAME="$1"
    PART_MD="$OUT_DIR/$1.md"
    : >"$PART_MD"
    echo
    md "### $2" ""
}

# The machine and the build, one line.
context_line() {
    local cpu kernel commit load
    cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
    kernel="$(uname -r)"
    commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit+dirty"
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit $commit; $(nproc) cores, ${cpu:-unknown CPU}; Linux $kernel; load average at start $load; $(date -u '+%Y-%m-%d %H:%M UTC')"
}
