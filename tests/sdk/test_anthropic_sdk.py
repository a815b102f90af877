"""End to end with the official Anthropic Python SDK (`pip install anthropic`)
and the OpenAI SDK's Responses API, through the yallmp binary.

A second yallmp instance (apart from test_openai_sdk.py's, whose model list
that file checks) serves:

- `stub-chat`: the built-in stub (speaks OpenAI; Messages reach it translated).
- `stub-chat-only`: the stub with `supports_responses: false`, so the
  Responses API reaches it translated to chat completions.
- `tools`: a small OpenAI-compatible upstream started here that answers with
  a tool call whenever the request has tools (plain and streamed).
- `cut` / `upstream-error`: the same upstream, whose stream is cut after its
  first event / carries an error event after it (a failed Responses stream).
- `via-anthropic` / `tools-via-anthropic`: `api_type: anthropic` backends whose
  Anthropic-compatible endpoint is this same yallmp (its `/v1/messages`), with
  `target_model` `stub-chat` / `tools`. A chat request to them goes out as
  Messages and comes back as chat; a Messages request passes through.

Run it with `bash scripts/sdk-test.sh`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from test_openai_sdk import PROXY_BIN, START_TIMEOUT, free_port, report_log, stop, tail, wait_ready

CLIENT_KEY = "sk-client-key-anthropic-test"
TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TOOL_ARGS = {"city": "Paris"}


class ToolUpstream(BaseHTTPRequestHandler):
    """OpenAI chat completions that call the request's first tool (or echo)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # Every request body received, newest last (the tests read what went
    # upstream).
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ToolUpstream.received.append(body)
        tools = body.get("tools") or []
        model = body.get("model", "tools")
        if model == "cut":
            self.cut()
            return
        if model == "upstream-error":
            c = {"id": "chatcmpl-err", "object": "chat.completion.chunk", "created": 1,
                 "model": model,
                 "choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}]}
            e = {"error": {"message": "The backend ran out of capacity.", "type": "server_error"}}
            self.reply("text/event-stream",
                       f"data: {json.dumps(c)}\n\ndata: {json.dumps(e)}\n\n".encode())
            return
        if tools:
            name = tools[0]["function"]["name"]
            args = json.dumps(TOOL_ARGS)
            message = {"role": "assistant", "content": None, "reasoning_content": "Call the tool.",
                       "tool_calls": [{"id": "call_sdk_1", "type": "function",
                                       "function": {"name": name, "arguments": args}}]}
            finish = "tool_calls"
        else:
            name, args = None, None
            message = {"role": "assistant", "content": "No tools, no calls."}
            finish = "stop"
        usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
        if not body.get("stream"):
            self.reply("application/json", json.dumps({
                "id": "chatcmpl-tools", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage}).encode())
            return

        def chunk(delta, finish_reason=None, **extra):
            c = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1,
                 "model": model, "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish_reason}], **extra}
            return f"data: {json.dumps(c)}\n\n"

        frames = [chunk({"role": "assistant", "content": ""})]
        if name:
            frames.append(chunk({"reasoning_content": "Call the tool."}))
            frames.append(chunk({"tool_calls": [{"index": 0, "id": "call_sdk_1", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        else:
            for word in ["No ", "tools, ", "no ", "calls."]:
                frames.append(chunk({"content": word}))
        frames.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            c = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1,
                 "model": model, "choices": [], "usage": usage}
            frames.append(f"data: {json.dumps(c)}\n\n")
        frames.append("data: [DONE]\n\n")
        self.reply("text/event-stream", "".join(frames).encode())

    def cut(self) -> None:
        """A chunked event stream cut after its first event (no last chunk)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        c = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1, "model": "cut",
             "choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}]}
        data = f"data: {json.dumps(c)}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        self.close_connection = True

    def reply(self, content_type: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def tool_upstream() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ToolUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def proxy_url(request, tmp_path_factory, tool_upstream) -> str:
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail(f"{PROXY_BIN} not found: run `cargo build` (or set YALLMP_BIN)")
    work = tmp_path_factory.mktemp("yallmp-anthropic")
    # The Anthropic backends point at this instance itself, so its port is
    # chosen here.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    models = [
        {"model_name": "stub-chat", "model_params": {"api_type": "stub"}},
        {"model_name": "stub-chat-only",
         "model_params": {"api_type": "stub", "supports_responses": False}},
        {"model_name": "tools",
         "model_params": {"api_base": tool_upstream, "supports_responses": False}},
        {"model_name": "cut",
         "model_params": {"api_base": tool_upstream, "supports_responses": False}},
        {"model_name": "upstream-error",
         "model_params": {"api_base": tool_upstream, "supports_responses": False}},
        {"model_name": "via-anthropic",
         "model_params": {"api_type": "anthropic", "api_base": base, "api_key": CLIENT_KEY,
                          "target_model": "stub-chat"}},
        {"model_name": "tools-via-anthropic",
         "model_params": {"api_type": "anthropic", "api_base": f"{base}/v1",
                          "api_key": CLIENT_KEY, "target_model": "tools"}},
    ]
    config = work / "config.yaml"
    config.write_text(json.dumps({
        "model_list": models,
        "proxy_settings": {"enable_responses_endpoint": True,
                           "auth": {"api_keys": [CLIENT_KEY]}},
    }, indent=2))
    log = work / "yallmp.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YALLMP_")}
    env.setdefault("RUST_LOG", "info")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(PROXY_BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, start_new_session=True,
        )
    try:
        wait_ready(proc, f"{base}/healthz", log, "yallmp")
        yield base
    finally:
        stop(proc)
        report_log(request, "yallmp (anthropic)", log)


@pytest.fixture(scope="module")
def claude(proxy_url) -> anthropic.Anthropic:
    with anthropic.Anthropic(base_url=proxy_url, api_key=CLIENT_KEY, max_retries=0,
                             timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def oai(proxy_url) -> openai.OpenAI:
    with openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                       timeout=60) as c:
        yield c


# --- Anthropic SDK: /v1/messages ---

@pytest.mark.parametrize("model", ["stub-chat", "via-anthropic"])
def test_messages(claude, model):
    msg = claude.messages.create(
        model=model, max_tokens=100, system="You are a test.",
        messages=[{"role": "user", "content": "echo these words"}],
    )
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "echo these words"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["stub-chat", "via-anthropic"])
def test_messages_stream(claude, model):
    with claude.messages.stream(
        model=model, max_tokens=100,
        messages=[{"role": "user", "content": "stream these five words please"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "stream these five words please"
    assert len(pieces) > 1, "the answer should arrive in several deltas"
    assert final.content[0].text == "stream these five words please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["tools", "tools-via-anthropic"])
def test_messages_tools(claude, model, stream):
    kwargs = dict(model=model, max_tokens=200, tools=[TOOL],
                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    if stream:
        with claude.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = claude.messages.create(**kwargs)
    assert msg.stop_reason == "tool_use"
    kinds = [b.type for b in msg.content]
    assert kinds == ["thinking", "tool_use"], kinds
    assert msg.content[0].thinking == "Call the tool."
    use = msg.content[1]
    assert use.name == "get_weather"
    assert use.input == TOOL_ARGS
    # The tool result goes back as a user turn.
    follow = claude.messages.create(
        model=model, max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": "18C"}]}],
    )
    assert follow.content[0].text == "No tools, no calls."


def test_count_tokens(claude):
    # The stub cannot count: yallmp's documented estimate.
    count = claude.messages.count_tokens(
        model="stub-chat", messages=[{"role": "user", "content": "12345678"}])
    assert count.input_tokens == 2 + 3 + 3


def test_messages_errors(claude, proxy_url):
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="no-such-model", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.body["error"]["type"] == "not_found_error"
    with anthropic.Anthropic(base_url=proxy_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="stub-chat", max_tokens=5,
                                messages=[{"role": "user", "content": "hi"}])


# --- OpenAI SDK: chat through an Anthropic backend, and the Responses API ---

def test_chat_through_an_anthropic_backend(oai):
    c = oai.chat.completions.create(
        model="via-anthropic", messages=[{"role": "user", "content": "round trip"}])
    assert c.choices[0].message.content == "round trip"
    assert c.choices[0].finish_reason == "stop"
    stream = oai.chat.completions.create(
        model="via-anthropic", messages=[{"role": "user", "content": "round trip streamed"}],
        stream=True, stream_options={"include_usage": True})
    text, usage = [], []
    for chunk in stream:
        text.extend(ch.delta.content or "" for ch in chunk.choices)
        if chunk.usage:
            usage.append(chunk.usage)
    assert "".join(text) == "round trip streamed"
    assert len(usage) == 1 and usage[0].completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_chat_tools_through_an_anthropic_backend(oai, stream):
    tools = [{"type": "function", "function": {"name": TOOL["name"], "description": TOOL["description"],
                                                "parameters": TOOL["input_schema"]}}]
    kwargs = dict(model="tools-via-anthropic", tools=tools,
                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    if stream:
        with oai.chat.completions.stream(**kwargs) as s:
            final = s.get_final_completion()
    else:
        final = oai.chat.completions.create(**kwargs)
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGS


@pytest.mark.parametrize("model", ["stub-chat", "stub-chat-only", "via-anthropic"])
def test_responses(oai, model):
    r = oai.responses.create(model=model, input="respond with this")
    assert r.status == "completed"
    assert r.output_text == "respond with this"


@pytest.mark.parametrize("model", ["stub-chat", "stub-chat-only", "via-anthropic"])
def test_responses_stream(oai, model):
    with oai.responses.stream(model=model, input="stream this response") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "stream this response"
    assert final.output_text == "stream this response"


@pytest.mark.parametrize("model", ["tools", "tools-via-anthropic"])
def test_responses_tools(oai, model):
    tools = [{"type": "function", "name": TOOL["name"], "description": TOOL["description"],
              "parameters": TOOL["input_schema"]}]
    r = oai.responses.create(model=model, input="Weather in Paris?", tools=tools)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == TOOL_ARGS
    with oai.responses.stream(model=model, input="Weather in Paris?", tools=tools) as s:
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert json.loads(calls[0].arguments) == TOOL_ARGS


def test_responses_stream_cut_shows_the_proxys_error(oai):
    """A translated Responses stream the upstream cuts: the SDK's stream
    raises yallmp's error (from its `error` event), after the events before
    it, all numbered."""
    seen = []
    with pytest.raises(openai.APIError) as err:
        with oai.responses.stream(model="cut", input="hi") as s:
            for event in s:
                seen.append(event)
    assert "upstream stream failed" in err.value.message
    assert err.value.body["code"] == "stream_interrupted"
    assert seen[0].type == "response.created"
    assert "Half" in [e.delta for e in seen if e.type == "response.output_text.delta"]
    numbers = [e.sequence_number for e in seen]
    assert numbers == list(range(len(numbers)))


def test_responses_stream_upstream_error_shows_its_message(oai):
    """An error event from a chat backend in the middle of a translated
    Responses stream: the SDK's stream raises with the backend's message
    (the `error` event carries it as an `error` object too)."""
    with pytest.raises(openai.APIError) as err:
        with oai.responses.stream(model="upstream-error", input="hi") as s:
            for _ in s:
                pass
    assert err.value.message == "The backend ran out of capacity."
    assert err.value.body["code"] == "server_error"


# --- What Claude Code sends, through Messages -> chat ---

@pytest.mark.parametrize("stream", [False, True])
def test_claude_code_fields_reach_a_chat_backend_mapped_or_dropped(claude, stream):
    """Claude Code sends `context_management` and `output_config: {effort}`
    on every request, and keeps thinking blocks (here one with an empty
    signature, as a translated answer gives them). A chat backend must get
    none of Anthropic's own fields: effort becomes `reasoning_effort`."""
    extra = {"context_management": {"edits": []}, "output_config": {"effort": "high"}}
    messages = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Earlier thought.", "signature": ""},
            {"type": "text", "text": "Let me think."}]},
        {"role": "user", "content": "Go on."},
    ]
    before = len(ToolUpstream.received)
    if stream:
        with claude.messages.stream(model="tools", max_tokens=64, messages=messages,
                                    extra_body=extra) as s:
            msg = s.get_final_message()
    else:
        msg = claude.messages.create(model="tools", max_tokens=64, messages=messages,
                                     extra_body=extra)
    assert msg.stop_reason == "end_turn"
    assert "".join(b.text for b in msg.content if b.type == "text") == "No tools, no calls."
    sent = ToolUpstream.received[before:]
    assert len(sent) == 1, sent
    body = sent[0]
    assert "context_management" not in body, body
    assert "output_config" not in body, body
    assert body.get("reasoning_effort") == "high", body
    assert "signature" not in json.dumps(body), body

