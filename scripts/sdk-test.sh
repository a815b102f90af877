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
# And tests/sdk/test_bedrock_sigv4.py: the binary's SigV4 signatures for an
# `api_type: bedrock` backend checked by botocore in a mock Bedrock.
#
# Then the Node clients (tests/sdk/node, run with `node --test`): the openai
# Node SDK and the Vercel AI SDK (`ai` + `@ai-sdk/openai`), chat and Responses,
# generate and stream, tool round trips and cut streams, and the Codex CLI
# (`codex exec`, HTTP and WebSocket mode), against a small
# node:http chat upstream. Their packages come from tests/sdk/node's
# package-lock.json with `npm ci` into target/sdk-node (reused while the
# lockfile and the node version are unchanged). Skip them with
# YALLMP_SKIP_NODE_SDK=1; without node/npm the script installs the distro's
# (as root, with apt-get), as .ci/run does for chromium.
# Re-lock: edit tests/sdk/node/package.json (exact versions), then
#   cd tests/sdk/node && npm install --package-lock-only
#
# Three venvs under target/sdk-venv, each installed from a hash-locked file in
# tests/sdk and reused while that file is unchanged:
#   client/   openai + anthropic + pytest (the SDKs under test)
#   litellm/  litellm[proxy] (the upstream; it needs openai<3, hence apart)
#   phoenix/  arize-phoenix: the real OTLP receiver of the OpenTelemetry test
#             (tests/sdk/test_otel_phoenix.py; `phoenix serve` on free ports)
#   bedrock/  botocore: the mock Bedrock of tests/sdk/test_bedrock_sigv4.py
#             re-signs each request with botocore's SigV4Auth
# Re-lock with pip-tools: pip-compile --generate-hashes --strip-extras
#   --allow-unsafe --no-header tests/sdk/requirements-<name>.in
#
# YALLMP_BIN=path tests that binary instead of building one with
# `cargo build --locked` (after `cargo test`, target/debug/yallmp is already
# there, built with the dev-dependencies' features). Extra arguments go to
# pytest (e.g. -k stream, -x), not to the Node tests. The script fails when
# either suite fails.
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

NODE_DIR=target/sdk-node
NODE_SRC=tests/sdk/node

# node_install: (re)installs $NODE_DIR/node_modules from $NODE_SRC's lockfile
# unless it was already installed from the same files by the same node.
node_install() {
    local want
    want="$(cat "$NODE_SRC/package.json" "$NODE_SRC/package-lock.json" | sha256sum | cut -d' ' -f1) $(node --version)"
    if [[ -d "$NODE_DIR/node_modules" && "$(cat "$NODE_DIR/.installed" 2>/dev/null)" == "$want" ]]; then
        echo "== $NODE_DIR: up to date"
        return
    fi
    echo "== $NODE_DIR: npm ci from $NODE_SRC/package-lock.json"
    rm -rf "$NODE_DIR" || return 1
    mkdir -p "$NODE_DIR" || return 1
    cp "$NODE_SRC/package.json" "$NODE_SRC/package-lock.json" "$NODE_DIR/" || return 1
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) || return 1
    printf '%s' "$want" >"$NODE_DIR/.installed"
}

node_sdk=0
if [[ "${YALLMP_SKIP_NODE_SDK:-0}" != 1 ]]; then
    node_sdk=1
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "== installing nodejs and npm"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
fi

start=$SECONDS
mkdir -p "$VENVS"
# The installs (mostly downloads) run side by side while cargo builds.
venv client >"$VENVS/client.log" 2>&1 &
client=$!
venv litellm >"$VENVS/litellm.log" 2>&1 &
litellm=$!
venv phoenix >"$VENVS/phoenix.log" 2>&1 &
phoenix=$!
venv bedrock >"$VENVS/bedrock.log" 2>&1 &
bedrock=$!
node_pid=
if ((node_sdk)); then
    mkdir -p target
    node_install >target/sdk-node.log 2>&1 &
    node_pid=$!
fi
trap 'kill "$client" "$litellm" "$phoenix" "$bedrock" $node_pid 2>/dev/null || true' EXIT
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
wait "$phoenix" || failed=1
wait "$bedrock" || failed=1
if [[ -n "$node_pid" ]]; then
    wait "$node_pid" || failed=1
fi
trap - EXIT
cat "$VENVS/client.log" "$VENVS/litellm.log" "$VENVS/phoenix.log" "$VENVS/bedrock.log"
if ((node_sdk)); then cat target/sdk-node.log; fi
if ((failed)); then
    echo "error: installing the venvs under $VENVS or the node packages under $NODE_DIR failed" >&2
    exit 1
fi
echo "== setup took $((SECONDS - start))s; pytest tests/sdk"

export YALLMP_BIN
export YALLMP_SDK_LITELLM="$PWD/$VENVS/litellm/bin/litellm"
export YALLMP_SDK_PHOENIX="$PWD/$VENVS/phoenix/bin/phoenix"
export YALLMP_SDK_BEDROCK_PY="$PWD/$VENVS/bedrock/bin/python"
# No cache dir in the work tree; -rfE lists failures and errors at the end.
status=0
"$VENVS/client/bin/python" -m pytest tests/sdk -p no:cacheprovider -q -rfE "$@" || status=1

if ((node_sdk)); then
    echo "== node --test $NODE_SRC (openai Node SDK, Vercel AI SDK, Codex CLI)"
    # The tests run from a copy beside node_modules, where their imports
    # resolve; the work tree gets no node_modules.
    rm -rf "$NODE_DIR/tests"
    mkdir -p "$NODE_DIR/tests"
    cp "$NODE_SRC"/*.mjs "$NODE_DIR/tests/"
    node --test --test-reporter=spec "$NODE_DIR"/tests/*.test.mjs || status=1
fi
if ((status)); then
    echo "error: SDK tests failed" >&2
fi
exit "$status"
