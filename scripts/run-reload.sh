#!/usr/bin/env bash
# Runs the proxy and restarts it whenever the source, the migrations or the
# configs change: `cargo watch` if installed, else `watchexec`. Arguments go
# to `yallmp` (e.g. `--config configs/config.example.yaml`).
#
#   bash scripts/run-reload.sh [yallmp arguments...]
#
# Install one of them with `cargo install cargo-watch` or
# `cargo install watchexec-cli` (or your package manager's watchexec).
set -euo pipefail
cd "$(dirname "$0")/.."
watched=(src migrations configs static Cargo.toml build.rs)
existing=()
for p in "${watched[@]}"; do
    [[ -e "$p" ]] && existing+=("$p")
done
if command -v cargo-watch >/dev/null 2>&1; then
    args=()
    for p in "${existing[@]}"; do args+=(-w "$p"); done
    # The runtime overlay is written by the proxy itself: no restart for it.
    exec cargo watch "${args[@]}" -i '*.runtime.yaml' -i '*.runtime.yaml.tmp' \
        -x "run -- $*"
elif command -v watchexec >/dev/null 2>&1; then
    args=()
    for p in "${existing[@]}"; do args+=(-w "$p"); done
    exec watchexec --restart "${args[@]}" -i '*.runtime.yaml' -i '*.runtime.yaml.tmp' \
        -- cargo run -- "$@"
else
    echo "error: run:reload needs cargo-watch or watchexec, and neither is installed." >&2
    echo "  install one:  cargo install cargo-watch   (or: cargo install watchexec-cli)" >&2
    echo "  or run without reload:  cargo run -- $*" >&2
    exit 1
fi
