#!/usr/bin/env bash
# Deletes the request log's files (the per-request `*.log` files, and their
# `*.parsed.log` siblings) and keeps the database. Only `*.log` files are
# removed, and only in the directory given.
#
#   bash scripts/clean-logs.sh [DIR]     # default: logs/requests
#
# DIR is proxy_settings.logging.files.dir of your config; a relative DIR is
# taken from the repository root (where `cargo run` runs the proxy). To empty the database instead, use its retention settings
# or delete the SQLite file yourself (docs/database.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-logs/requests}"
if [[ ! -d "$dir" ]]; then
    echo "no log directory at $dir: nothing to clean"
    exit 0
fi
count=$(find "$dir" -type f -name '*.log' | wc -l)
find "$dir" -type f -name '*.log' -delete
echo "removed $count log file(s) from $dir (the database is kept)"
