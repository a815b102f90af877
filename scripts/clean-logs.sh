#!/usr/bin/env bash
# Deletes the request log's files and keeps the database: the per-request
# `*.log` files (and their `*.parsed.log` siblings), and with
# `files.layout: segments` the segment files `segments/<day>/<HH>-<NNN>.jsonl`
# (then the day directories left empty). Only those files are removed, and
# only in the directory given.
#
#   bash scripts/clean-logs.sh [DIR] [--older-than-days N]
#
# DIR is proxy_settings.logging.files.dir of your config (default:
# logs/requests); a relative DIR is taken from the repository root (where
# `cargo run` runs the proxy). With --older-than-days N, only files last
# written more than N days ago go (a segment is written until it rolls, at
# most an hour). To empty the database instead, use its retention settings
# or delete the SQLite file yourself (docs/database.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=""
age=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --older-than-days)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "--older-than-days needs a whole number of days" >&2; exit 2; }
            age=(-mtime "+$(( $2 - 1 ))")
            [[ "$2" -eq 0 ]] && age=()
            shift 2
            ;;
        -*)
            echo "unknown option $1" >&2
            exit 2
            ;;
        *)
            dir="$1"
            shift
            ;;
    esac
done
dir="${dir:-logs/requests}"
if [[ ! -d "$dir" ]]; then
    echo "no log directory at $dir: nothing to clean"
    exit 0
fi
count=$(find "$dir" -type f -name '*.log' "${age[@]}" | wc -l)
find "$dir" -type f -name '*.log' "${age[@]}" -delete
segments=0
if [[ -d "$dir/segments" ]]; then
    segments=$(find "$dir/segments" -mindepth 2 -maxdepth 2 -type f -name '*.jsonl' "${age[@]}" | wc -l)
    find "$dir/segments" -mindepth 2 -maxdepth 2 -type f -name '*.jsonl' "${age[@]}" -delete
    find "$dir/segments" -mindepth 1 -maxdepth 1 -type d -empty -delete
fi
echo "removed $count log file(s) and $segments segment(s) from $dir (the database is kept)"
