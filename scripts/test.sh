#!/usr/bin/env bash
# The test command README.md gives: every unit and integration test, then the
# end-to-end test with the official OpenAI Python SDK (skip it with
# YALLMP_SKIP_SDK=1, e.g. offline without a pip cache).
#
# PostgreSQL and Redis tests run when DATABASE_URL_POSTGRES / REDIS_URL are set
# (and fail, not skip, if that server is unreachable); .ci/run sets both to the
# local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
if [[ "${YALLMP_SKIP_SDK:-0}" != 1 ]]; then
    echo "== OpenAI SDK end-to-end"
    # The binary cargo test just built; no second build.
    YALLMP_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/yallmp" bash scripts/sdk-test.sh
fi
