"""End to end with the official OpenAI Python SDK (`pip install openai`).

The SDK talks to the yallmp binary, which forwards to a real
OpenAI-compatible server: LiteLLM's proxy (`litellm[proxy]`), answering every
call from its `mock_response` setting, so it runs offline and without keys.
The same calls also go to the built-in `api_type: stub` backend.

Run it with `bash scripts/sdk-test.sh`: it installs both locked venvs under
target/sdk-venv, builds the proxy and runs this file. Environment overrides:
YALLMP_BIN (the proxy binary), YALLMP_SDK_LITELLM (the `litellm` executable).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("YALLMP_BIN", ROOT / "target/debug/yallmp"))
LITELLM_BIN = Path(
    os.environ.get("YALLMP_SDK_LITELLM", ROOT / "target/sdk-venv/litellm/bin/litellm")
)

# LiteLLM's master key: only the proxy's config has it, the SDK sends another
# key, so every call that reaches LiteLLM proves the proxy swapped the key.
UPSTREAM_KEY = "sk-yallmp-sdk-upstream"
CLIENT_KEY = "sk-client-key-never-forwarded"
LITELLM_REPLY = "Hello from the LiteLLM upstream, streamed in pieces."
LITELLM_VECTOR = [0.25, -0.5, 0.125, 1.0]

# The proxy's models in front of LiteLLM: name -> the LiteLLM model it asks for.
PROXY_MODELS = {
    "litellm-chat": "mock-chat",
    "litellm-embed": "mock-embed",
    # A name LiteLLM does not serve: its 400 must reach the SDK as such.
    "litellm-missing": "no-such-upstream-model",
}
STUB_MODEL = "stub-chat"
CONFIGURED = [*PROXY_MODELS, STUB_MODEL]

START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen) -> None:
    """Stops a process started here, with its children (own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def report_log(request, what: str, log: Path) -> None:
    """After failures, shows the server's log tail in pytest's report."""
    if request.session.testsfailed:
        terminal = request.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_line(f"\n--- {what} log ({log}), last lines ---\n{tail(log, 60)}")


def wait_ready(
    proc: subprocess.Popen, url: str, log: Path, what: str, context: ssl.SSLContext | None = None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before it was ready:\n{tail(log)}")
        if http_ok(url, context):
            return
        time.sleep(0.2)
    stop(proc)
    pytest.fail(f"{what} not ready at {url} after {START_TIMEOUT}s:\n{tail(log)}")


@pytest.fixture(scope="session")
def litellm_base(request, tmp_path_factory) -> str:
    """LiteLLM's proxy on a free port; its OpenAI base URL (ends in /v1)."""
    if not os.access(LITELLM_BIN, os.X_OK):
        pytest.fail(
            f"{LITELLM_BIN} not found: run scripts/sdk-test.sh (or set YALLMP_SDK_LITELLM)"
        )
    work = tmp_path_factory.mktemp("litellm")
    config = {
        "model_list": [
            {
                "model_name": "mock-chat",
                "litellm_params": {
                    "model": "openai/mock-chat",
                    "api_key": "sk-never-used",
                    "mock_response": LITELLM_REPLY,
                },
            },
            {
                "model_name": "mock-embed",
                "litellm_params": {
                    "model": "openai/text-embedding-3-small",
                    "api_key": "sk-never-used",
                    "mock_response": LITELLM_VECTOR,
                },
            },
        ],
        "general_settings": {"master_key": UPSTREAM_KEY},
    }
    (work / "config.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = free_port()
    log = work / "litellm.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LITELLM_", "DATABASE_URL"))
    }
    # Offline: the bundled cost map, not the one on the network.
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", NO_COLOR="1", PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(LITELLM_BIN), "--config", str(work / "config.yaml"),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health/liveliness", log, "LiteLLM")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)
        report_log(request, "LiteLLM", log)


@pytest.fixture(scope="session")
def proxy_url(request, tmp_path_factory, litellm_base) -> str:
    """The yallmp binary on port 0 in front of LiteLLM and the stub."""
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail(f"{PROXY_BIN} not found: run `cargo build` (or set YALLMP_BIN)")
    work = tmp_path_factory.mktemp("yallmp")
    models = [
        {
            "model_name": name,
            "model_params": {
                "api_base": litellm_base,
                "api_key": UPSTREAM_KEY,
                "target_model": target,
                "request_timeout": 30,
            },
        }
        for name, target in PROXY_MODELS.items()
    ]
    models.append({"model_name": STUB_MODEL, "model_params": {"api_type": "stub"}})
    yield from running_yallmp(
        request,
        work,
        {"model_list": models, "proxy_settings": {"enable_responses_endpoint": True}},
    )


def running_yallmp(
    request,
    work: Path,
    config_dict: dict,
    context: ssl.SSLContext | None = None,
    extra_env: dict | None = None,
):
    """Starts the yallmp binary on port 0 with this config (in `work`) and
    these extra environment variables, yields its base URL, and stops it
    (its log goes into the report). `context`: the TLS context that trusts
    its certificate, when it serves https."""
    config = work / "config.yaml"
    config.write_text(json.dumps(config_dict, indent=2))
    log = work / "yallmp.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("YALLMP_", "OTEL_"))
    }
    env.setdefault("RUST_LOG", "info")
    env.update(extra_env or {})
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(PROXY_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", "0"],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=err, start_new_session=True,
        )
    # Read stdout for the listen line, then keep draining it.
    found: list[str] = []
    ready = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            m = re.search(r"listening on (https?://\S+)", line)
            if m and not found:
                found.append(m.group(1).rstrip("/"))
                ready.set()
        ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT) or not found:
            pytest.fail(f"yallmp printed no listen line (exit {proc.poll()}):\n{tail(log)}")
        wait_ready(proc, f"{found[0]}/healthz", log, "yallmp", context)
        yield found[0]
    finally:
        stop(proc)
        report_log(request, "yallmp", log)


@pytest.fixture(scope="session")
def client(proxy_url) -> openai.OpenAI:
    # No SDK retries: a failure shows as it happened.
    with openai.OpenAI(
        base_url=f"{proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60
    ) as c:
        yield c


# Each chat case: the proxy's model name, the message, the expected answer.
CHAT_CASES = [
    pytest.param("litellm-chat", "Say hello.", LITELLM_REPLY, id="litellm"),
    # The stub echoes the last user message.
    pytest.param(STUB_MODEL, "echo these five words back", "echo these five words back", id="stub"),
]


@pytest.mark.parametrize(("model", "prompt", "expected"), CHAT_CASES)
def test_chat_completion(client, model, prompt, expected):
    completion = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": prompt},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


@pytest.mark.parametrize(("model", "prompt", "expected"), CHAT_CASES)
def test_chat_stream_with_usage(client, model, prompt, expected):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finishes: list[str] = []
    usage = []
    with stream:
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
            if chunk.usage is not None:
                usage.append(chunk.usage)
    assert "".join(pieces) == expected
    assert len(pieces) > 1, "the answer should arrive in several chunks"
    assert finishes == ["stop"]
    assert len(usage) == 1, "include_usage asks for exactly one usage chunk"
    assert usage[0].total_tokens > 0
    assert usage[0].completion_tokens > 0


@pytest.mark.parametrize(("model", "prompt", "expected"), CHAT_CASES)
def test_chat_stream_helper(client, model, prompt, expected):
    """The SDK's accumulating stream helper rebuilds the whole completion."""
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == expected
    assert final.choices[0].message.content == expected
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize(("model", "prompt", "expected"), CHAT_CASES)
def test_async_client_stream(proxy_url, model, prompt, expected):
    async def run() -> str:
        async with openai.AsyncOpenAI(
            base_url=f"{proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60
        ) as c:
            stream = await c.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True
            )
            text = []
            async for chunk in stream:
                text.extend(ch.delta.content or "" for ch in chunk.choices)
            return "".join(text)

    assert asyncio.run(run()) == expected


@pytest.mark.parametrize("encoding_format", [None, "float"], ids=["sdk-default", "float"])
def test_embeddings_litellm(client, encoding_format):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    extra = {} if encoding_format is None else {"encoding_format": encoding_format}
    result = client.embeddings.create(model="litellm-embed", input="embed me", **extra)
    assert result.object == "list"
    assert len(result.data) == 1
    assert result.data[0].index == 0
    assert result.data[0].embedding == pytest.approx(LITELLM_VECTOR)
    assert result.usage.prompt_tokens > 0


@pytest.mark.parametrize("encoding_format", [None, "float"], ids=["sdk-default", "float"])
def test_embeddings_stub(client, encoding_format):
    extra = {} if encoding_format is None else {"encoding_format": encoding_format}
    one = client.embeddings.create(model=STUB_MODEL, input="hello", **extra)
    many = client.embeddings.create(model=STUB_MODEL, input=["hello", "world"], **extra)
    assert len(one.data) == 1
    vec = one.data[0].embedding
    assert len(vec) > 0 and all(isinstance(x, float) for x in vec)
    assert sum(x * x for x in vec) == pytest.approx(1.0, abs=1e-3)
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding != many.data[1].embedding
    # Deterministic: the same text gives the same vector.
    again = client.embeddings.create(model=STUB_MODEL, input="hello", **extra)
    assert again.data[0].embedding == vec


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models]
    assert ids == CONFIGURED
    assert all(m.object == "model" for m in models.data)


def test_models_retrieve(client):
    for name in CONFIGURED:
        assert client.models.retrieve(name).id == name
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    err = caught.value
    assert err.status_code == 404
    assert err.code == "model_not_found"
    assert "no-such-model" in err.message
    assert "litellm-chat" in err.message, "the error lists the configured models"
    # Streaming and embeddings fail the same way, before any stream starts.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")


def test_upstream_rejects_the_client_key(litellm_base):
    """LiteLLM refuses the SDK's own key, so the passing calls above went through
    with the key from the proxy's config. (LiteLLM 1.90.7 answers a bad key
    with a 500 rather than a 401, hence any status error.)"""
    with openai.OpenAI(base_url=litellm_base, api_key=CLIENT_KEY, max_retries=0) as direct:
        with pytest.raises(openai.APIStatusError):
            direct.chat.completions.create(
                model="mock-chat", messages=[{"role": "user", "content": "hi"}]
            )


def test_upstream_error_is_relayed(client):
    """LiteLLM's 400 for a model it does not serve reaches the SDK as a 400."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="litellm-missing", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 400
    assert "no-such-upstream-model" in caught.value.message


def test_request_id_header(client):
    raw = client.chat.completions.with_raw_response.create(
        model=STUB_MODEL,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "sdk-test-request-1"},
    )
    assert raw.headers.get("x-request-id") == "sdk-test-request-1"
    assert raw.parse().choices[0].message.content == "hi"


def test_stub_embedding_same_text_in_a_list(client):
    alone = client.embeddings.create(model=STUB_MODEL, input="hello", encoding_format="float")
    listed = client.embeddings.create(model=STUB_MODEL, input=["hello"], encoding_format="float")
    assert listed.data[0].embedding == alone.data[0].embedding


# The Responses API: LiteLLM answers it from mock_response too, but only
# without streaming (its mock stream fails inside LiteLLM with a 500).
@pytest.mark.parametrize(("model", "prompt", "expected"), CHAT_CASES)
def test_responses(client, model, prompt, expected):
    response = client.responses.create(model=model, input=prompt)
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == expected
    assert response.usage is not None and response.usage.total_tokens > 0


def test_responses_stream_events_stub(client):
    prompt = "stream me through the responses api"
    stream = client.responses.create(model=STUB_MODEL, input=prompt, stream=True)
    types: list[str] = []
    deltas: list[str] = []
    final = None
    with stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "".join(deltas) == prompt
    assert final is not None and final.output_text == prompt


def test_responses_stream_helper_stub(client):
    prompt = "stream me through the responses api"
    with client.responses.stream(model=STUB_MODEL, input=prompt) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == prompt


# Virtual keys (docs/keys-and-spend.md): what the SDK raises for a model the
# key may not use, and for a spent budget.
VK = "yk-sdk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_proxy_url(request, tmp_path_factory) -> str:
    """yallmp with a declared virtual key: the stub only, a tiny budget."""
    work = tmp_path_factory.mktemp("yallmp-keys")
    config = {
        "model_list": [
            # 1 USD a token: the first answer spends the budget.
            {"model_name": STUB_MODEL, "model_params": {"api_type": "stub",
                "pricing": {"input": 1000000, "output": 1000000}}},
            {"model_name": "other", "model_params": {"api_type": "stub"}},
        ],
        "proxy_settings": {
            "logging": {"database": {"enabled": False}},
            "auth": {"keys": [{"name": "sdk", "key": VK, "models": [STUB_MODEL],
                               "max_budget": 0.5}]},
        },
    }
    yield from running_yallmp(request, work, config)


def test_a_forbidden_model_is_permission_denied_and_a_spent_budget_rate_limited(keyed_proxy_url):
    with openai.OpenAI(base_url=f"{keyed_proxy_url}/v1", api_key=VK, max_retries=0, timeout=60) as c:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
        assert denied.value.code == "model_not_allowed"
        raw = c.chat.completions.with_raw_response.create(
            model=STUB_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        assert float(raw.headers["x-yallmp-cost"]) > 0.5
        with pytest.raises(openai.RateLimitError) as spent:
            c.chat.completions.create(model=STUB_MODEL, messages=[{"role": "user", "content": "hi"}])
        assert spent.value.code == "budget_exceeded"
        assert spent.value.type == "insufficient_quota"
        assert [m.id for m in c.models.list()] == [STUB_MODEL]
    with openai.OpenAI(base_url=f"{keyed_proxy_url}/v1", api_key="yk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.models.list()


# TLS on the listener (proxy_settings.server.tls): the SDK against https://,
# trusting a CA made here with the openssl command (the proxy itself uses
# rustls; the client side is Python's ssl module, OpenSSL).
def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_proxy(request, tmp_path_factory):
    """yallmp serving https with a certificate from a test CA: yields the
    base URL and the CA's file."""
    work = tmp_path_factory.mktemp("yallmp-tls")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=yallmp SDK test CA",
            cwd=work)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost", cwd=work)
    (work / "leaf.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "cert.pem", cwd=work)
    ca = work / "ca.pem"
    config = {
        "model_list": [{"model_name": STUB_MODEL, "model_params": {"api_type": "stub"}}],
        "proxy_settings": {
            "logging": {"database": {"enabled": False}},
            # Relative paths: the config file's directory.
            "server": {"tls": {"cert": "cert.pem", "key": "key.pem"}},
        },
    }
    context = ssl.create_default_context(cafile=str(ca))
    for url in running_yallmp(request, work, config, context):
        yield url, ca


def test_https_chat_stream_and_models(tls_proxy):
    url, ca = tls_proxy
    assert url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(ca))
    http_client = openai.DefaultHttpxClient(verify=context)
    with openai.OpenAI(
        base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60,
        http_client=http_client,
    ) as c:
        done = c.chat.completions.create(
            model=STUB_MODEL, messages=[{"role": "user", "content": "over tls"}]
        )
        assert done.choices[0].message.content == "over tls"
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in c.chat.completions.create(
                model=STUB_MODEL, messages=[{"role": "user", "content": "streamed over tls"}],
                stream=True,
            )
            if chunk.choices
        ]
        assert "".join(pieces) == "streamed over tls"
        assert [m.id for m in c.models.list()] == [STUB_MODEL]
    # Without the CA the certificate is refused.
    with openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10) as c:
        with pytest.raises(openai.APIConnectionError):
            c.models.list()
