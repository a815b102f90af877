#!/usr/bin/env bash
# The test command README.md gives: every unit and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
