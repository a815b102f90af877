#!/usr/bin/env bash
# The test command README.md gives: every unit and integration test, then the
# end-to-end tests with the Python SDKs and the Node clients (skip them with
# YALLMP_SKIP_SDK=1, e.g. offline without a pip cache; YALLMP_SKIP_NODE_SDK=1
# skips only the Node ones).
#
# PostgreSQL and Redis tests run when DATABASE_URL_POSTGRES / REDIS_URL are set
# (and fail, not skip, if that server is unreachable); unset, they are skipped
# with a note, unless YALLMP_TEST_REQUIRE_SERVICES=1 or CI=true, where they
# fail. .ci/run sets both URLs to the local servers, and the switch.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
if [[ "${YALLMP_SKIP_SDK:-0}" != 1 ]]; then
    echo "== SDK end-to-end (Python, Node)"
    # The binary cargo test just built; no second build.
    YALLMP_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/yallmp" bash scripts/sdk-test.sh
fi
