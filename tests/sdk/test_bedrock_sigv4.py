"""SigV4 checked independently: the real yallmp binary signs Bedrock
requests, and a mock Bedrock (tests/sdk/bedrock_mock.py, in the `bedrock`
venv) re-signs each with botocore's `SigV4Auth` and compares. Chat through
the OpenAI SDK, plain and streamed (the stream framed by the mock itself),
with and without a session token; every body is also checked against
botocore's Converse input shape (a tool turn with an image and thinking
included); a wrong secret is refused by the mock and the client hears a 403.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import openai
import pytest

from test_openai_sdk import PROXY_BIN, ROOT, free_port, report_log, stop, wait_ready

BEDROCK_PY = Path(
    os.environ.get("YALLMP_SDK_BEDROCK_PY", ROOT / "target/sdk-venv/bedrock/bin/python")
)
ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDEXAMPLETOKEN+/="
REGION = "eu-west-1"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def start_mock(token: str | None) -> tuple[subprocess.Popen, str]:
    args = [str(BEDROCK_PY), str(Path(__file__).with_name("bedrock_mock.py")),
            ACCESS, SECRET, REGION] + ([token] if token else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module", params=["keys", "session-token"])
def setup(request, tmp_path_factory):
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail(f"{PROXY_BIN} not found: run `cargo build` (or set YALLMP_BIN)")
    if not os.access(BEDROCK_PY, os.X_OK):
        pytest.fail(f"{BEDROCK_PY} not found: run scripts/sdk-test.sh")
    token = TOKEN if request.param == "session-token" else None
    mock, mock_url = start_mock(token)
    work = tmp_path_factory.mktemp("yallmp-bedrock")
    params = {"api_type": "bedrock", "api_base": mock_url, "model": MODEL,
              "aws_access_key_id": ACCESS, "aws_secret_access_key": SECRET,
              "aws_region_name": REGION}
    if token:
        params["aws_session_token"] = token
    wrong = dict(params, aws_secret_access_key="not-the-secret-key-000")
    config = work / "config.yaml"
    config.write_text(json.dumps({"model_list": [
        {"model_name": "claude", "model_params": params},
        {"model_name": "wrong-secret", "model_params": wrong},
    ]}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / "yallmp.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YALLMP_", "AWS_"))}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(PROXY_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, start_new_session=True,
        )
    try:
        wait_ready(proc, f"{base}/healthz", log, "yallmp")
        yield base, mock_url, token
    finally:
        stop(proc)
        stop(mock)
        report_log(request, "yallmp (bedrock)", log)


def results(mock_url: str) -> list[dict]:
    with urllib.request.urlopen(f"{mock_url}/results") as r:
        return json.load(r)


def test_signed_requests_are_accepted(setup):
    base, mock_url, token = setup
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hello"}], max_tokens=20)
    assert r.choices[0].message.content == "signed hello"
    assert r.usage.total_tokens == 5
    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "again"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "signed again"
    seen = [x for x in results(mock_url) if x["ok"]]
    assert len(seen) >= 2, results(mock_url)
    assert all(x["token"] == (token is not None) for x in seen)
    paths = {x["path"] for x in seen}
    encoded = MODEL.replace(":", "%3A")
    assert paths == {f"/model/{encoded}/converse", f"/model/{encoded}/converse-stream"}


def test_a_tool_turn_fits_botocores_converse_shape(setup):
    base, mock_url, _ = setup
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    pixel = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42"
             "mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    r = client.chat.completions.create(
        model="claude", max_tokens=2000, temperature=0.3, stop=["END"],
        reasoning_effort="low",
        tools=[{"type": "function", "function": {
            "name": "weather", "description": "The weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        tool_choice="required",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": pixel}}]},
            {"role": "assistant", "content": "Checking.",
             "tool_calls": [{"id": "tooluse_1", "type": "function",
                             "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"},
        ])
    assert r.choices[0].message.content == "signed look"
    last = results(mock_url)[-1]
    assert last["ok"] and last["shape"] == "", last


def test_a_wrong_secret_is_refused(setup):
    base, mock_url, _ = setup
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    before = len(results(mock_url))
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="wrong-secret", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 403
    after = results(mock_url)[before:]
    assert after and not any(x["ok"] for x in after)
    assert all("signature mismatch" in x["why"] for x in after)
