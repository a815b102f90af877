#!/usr/bin/env bash
# End-to-end test with the official OpenAI Python SDK: chat (plain and
# streamed), embeddings, the model list and errors, through the yallmp binary,
# against LiteLLM's proxy as a real OpenAI-compatible upstream (answering from
# `mock_response`, offline) and against the built-in stub backend. And with
# the official Anthropic Python SDK (tests/sdk/test_anthropic_sdk.py):
# messages, streams, tools, count_tokens and errors, plus the OpenAI SDK's
# chat through an `api_type: anthropic` backend and its Responses API, native
# and translated.
#
# Two venvs under target/sdk-venv, each installed from a hash-locked file in
# tests/sdk and reused while that file is unchanged:
#   client/   openai + anthropic + pytest (the SDKs under test)
#   litellm/  litellm[proxy] (the upstream; it needs openai<3, hence apart)
# Re-lock with pip-tools: pip-compile --generate-hashes --strip-extras
#   --allow-unsafe --no-header tests/sdk/requirements-<name>.in
#
# YALLMP_BIN=path tests that binary instead of building one with
# `cargo build --locked` (after `cargo test`, target/debug/yallmp is already
# there, built with the dev-dependencies' features). Extra arguments go to
# pytest (e.g. -k stream, -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENVS=target/sdk-venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

# venv NAME: (re)creates $VENVS/NAME from tests/sdk/requirements-NAME.txt
# unless it was already installed from the same file by the same Python.
venv() {
    local dir="$VENVS/$1" lock="tests/sdk/requirements-$1.txt" want
    want="$(sha256sum "$lock" | cut -d' ' -f1) $("$PYTHON" -VV | tr -d '\n')"
    if [[ -x "$dir/bin/python" && "$(cat "$dir/.installed" 2>/dev/null)" == "$want" ]]; then
        echo "== venv $dir: up to date"
        return
    fi
    echo "== venv $dir: installing $lock"
    # Each step checked by hand, so the function is safe in any context.
    rm -rf "$dir" || return 1
    "$PYTHON" -m venv "$dir" || return 1
    "$dir/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$lock" || return 1
    "$dir/bin/python" -m pip check || return 1
    printf '%s' "$want" >"$dir/.installed"
}

start=$SECONDS
mkdir -p "$VENVS"
# The installs (mostly downloads) run side by side while cargo builds.
venv client >"$VENVS/client.log" 2>&1 &
client=$!
venv litellm >"$VENVS/litellm.log" 2>&1 &
litellm=$!
trap 'kill "$client" "$litellm" 2>/dev/null || true' EXIT
if [[ -n "${YALLMP_BIN:-}" ]]; then
    echo "== using YALLMP_BIN=$YALLMP_BIN (no cargo build)"
else
    echo "== cargo build"
    cargo build --locked
    YALLMP_BIN="$PWD/target/debug/yallmp"
fi
failed=0
wait "$client" || failed=1
wait "$litellm" || failed=1
trap - EXIT
cat "$VENVS/client.log" "$VENVS/litellm.log"
if ((failed)); then
    echo "error: installing the venvs under $VENVS failed" >&2
    exit 1
fi
echo "== setup took $((SECONDS - start))s; pytest tests/sdk"

export YALLMP_BIN
export YALLMP_SDK_LITELLM="$PWD/$VENVS/litellm/bin/litellm"
# No cache dir in the work tree; -rfE lists failures and errors at the end.
exec "$VENVS/client/bin/python" -m pytest tests/sdk -p no:cacheprovider -q -rfE "$@"
