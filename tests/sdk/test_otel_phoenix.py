"""OpenTelemetry traces into a real OTLP receiver: Arize Phoenix.

`phoenix serve` (its own venv, target/sdk-venv/phoenix, from the hash-locked
tests/sdk/requirements-phoenix.txt) takes OTLP HTTP/protobuf on its HTTP port
at /v1/traces. The yallmp binary runs with OTEL_EXPORTER_OTLP_ENDPOINT pointing
at it (the variable alone turns the telemetry on), the OpenAI SDK sends a
chat, a stream, a chat in the client's own trace (`traceparent`) and one whose
backend is down and falls back, and the spans are read back from Phoenix's
REST API (GET /v1/projects/default/spans): names, parentage, the client's
trace continued, the GenAI attributes, content events.

Run by scripts/sdk-test.sh (YALLMP_SDK_PHOENIX: the `phoenix` executable).
Without it the test skips, except where the services are expected
(YALLMP_TEST_REQUIRE_SERVICES=1, as in CI): there a Phoenix that is missing
or does not start fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from test_openai_sdk import (
    ROOT,
    free_port,
    report_log,
    running_yallmp,
    stop,
    wait_ready,
)

PHOENIX_BIN = Path(
    os.environ.get("YALLMP_SDK_PHOENIX", ROOT / "target/sdk-venv/phoenix/bin/phoenix")
)
REQUIRED = os.environ.get("YALLMP_TEST_REQUIRE_SERVICES") == "1"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def phoenix(request, tmp_path_factory) -> str:
    """Phoenix on free ports, its data in a temporary directory; its URL."""
    if not os.access(PHOENIX_BIN, os.X_OK):
        message = f"{PHOENIX_BIN} not found: run scripts/sdk-test.sh (or set YALLMP_SDK_PHOENIX)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(free_port()),
        PHOENIX_WORKING_DIR=str(work),
        PHOENIX_TELEMETRY_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    log = work / "phoenix.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PHOENIX_BIN), "serve"],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log, "Phoenix")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        report_log(request, "Phoenix", log)


@pytest.fixture(scope="module")
def traced(request, tmp_path_factory, phoenix) -> str:
    """yallmp exporting to Phoenix (turned on by the variable alone)."""
    config = {
        "model_list": [
            {"model_name": "stub-chat", "model_params": {"api_type": "stub"}},
            {
                # Down (nothing listens on port 1): two attempts, then the fallback.
                "model_name": "down",
                "model_params": {"api_base": "http://127.0.0.1:1/v1", "fallbacks": ["stub-chat"]},
            },
        ],
        "router_settings": {"num_retries": 1, "retry_backoff_ms": 1},
        "proxy_settings": {
            "telemetry": {"capture_content": True, "schedule_delay": 0.2},
        },
    }
    work = tmp_path_factory.mktemp("yallmp-otel")
    yield from running_yallmp(
        request,
        work,
        config,
        extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix, "OTEL_SERVICE_NAME": "yallmp-sdk-test"},
    )


def phoenix_spans(phoenix: str) -> list[dict]:
    url = f"{phoenix}/v1/projects/default/spans?limit=1000"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)["data"]


def by_request(spans: list[dict], rid: str):
    """The request span whose client sent this x-request-id, and its
    attempts' spans (by attempt index)."""
    roots = [s for s in spans if s["attributes"].get("yallmp.client_request_id") == rid]
    if not roots:
        return None, []
    root = roots[0]
    kids = [
        s
        for s in spans
        if s["parent_id"] == root["context"]["span_id"]
        and s["context"]["trace_id"] == root["context"]["trace_id"]
    ]
    kids.sort(key=lambda s: s["attributes"].get("yallmp.attempt_index", 0))
    return root, kids


def test_spans_reach_phoenix(traced, phoenix):
    with openai.OpenAI(
        base_url=f"{traced}/v1", api_key="sk-none", max_retries=0, timeout=60
    ) as client:
        chat = client.chat.completions.create(
            model="stub-chat",
            messages=[{"role": "user", "content": "hello phoenix"}],
            extra_headers={"x-request-id": "phx-chat"},
        )
        assert chat.choices[0].message.content == "hello phoenix"
        stream = client.chat.completions.create(
            model="stub-chat",
            messages=[{"role": "user", "content": "a streamed answer"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": "phx-stream"},
        )
        text = "".join(
            c.choices[0].delta.content or "" for c in stream if c.choices
        )
        assert text.strip() == "a streamed answer"
        client.chat.completions.create(
            model="stub-chat",
            messages=[{"role": "user", "content": "in your trace"}],
            extra_headers={
                "x-request-id": "phx-parent",
                "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
            },
        )
        fallback = client.chat.completions.create(
            model="down",
            messages=[{"role": "user", "content": "fall back"}],
            extra_headers={"x-request-id": "phx-fallback"},
        )
        assert fallback.choices[0].message.content == "fall back"

    wanted = ["phx-chat", "phx-stream", "phx-parent", "phx-fallback"]
    deadline = time.monotonic() + 60
    while True:
        spans = phoenix_spans(phoenix)
        if all(by_request(spans, rid)[1] for rid in wanted):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"Phoenix did not get every request's spans: {json.dumps(spans)[:4000]}")
        time.sleep(0.5)

    root, kids = by_request(spans, "phx-chat")
    a = root["attributes"]
    assert root["name"] == "chat stub-chat"
    assert root["status_code"] == "OK"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "yallmp.stub"
    assert a["gen_ai.request.model"] == "stub-chat"
    assert a["gen_ai.response.model"] == "stub-chat"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert a["yallmp.request_id"] and a["yallmp.backend"] == "stub-chat#1"
    events = {e["name"]: e["attributes"] for e in root["events"]}
    assert "hello phoenix" in events["gen_ai.content.prompt"]["gen_ai.prompt"]
    assert "hello phoenix" in events["gen_ai.content.completion"]["gen_ai.completion"]
    assert len(kids) == 1
    assert kids[0]["name"] == "chat stub-chat"
    assert kids[0]["attributes"]["yallmp.attempt"] == 1

    root, kids = by_request(spans, "phx-stream")
    a = root["attributes"]
    assert a["yallmp.stream"] is True
    assert a["gen_ai.usage.output_tokens"] > 0
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert "a streamed answer" in {e["name"]: e for e in root["events"]}[
        "gen_ai.content.completion"]["attributes"]["gen_ai.completion"]
    assert len(kids) == 1 and "yallmp.time_to_first_byte_ms" in kids[0]["attributes"]

    # The client's trace continued: its span is the request span's parent.
    root, kids = by_request(spans, "phx-parent")
    assert root["context"]["trace_id"] == CLIENT_TRACE
    assert root["parent_id"] == CLIENT_SPAN
    assert kids and kids[0]["context"]["trace_id"] == CLIENT_TRACE

    # The fallback: two failed attempts at the down backend, then the stub.
    root, kids = by_request(spans, "phx-fallback")
    assert root["name"] == "chat down"
    assert [k["attributes"]["yallmp.backend"] for k in kids] == ["down#1", "down#1", "stub-chat#1"]
    assert [k["attributes"]["yallmp.fallback_index"] for k in kids] == [0, 0, 1]
    assert kids[0]["status_code"] == "ERROR" and kids[0]["attributes"]["error.type"] == "network"
    assert kids[2]["status_code"] == "UNSET"
    assert root["attributes"]["yallmp.backend"] == "stub-chat#1"
