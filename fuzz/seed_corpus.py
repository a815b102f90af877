#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/seed-*) from the repo's
fixtures: SSE fixtures, parser vectors, config files and the YAML in the
tests, translator fixtures. Inputs the fuzzer found (crash-*, regression
inputs) are other files in the same folders and are left alone.

    python3 fuzz/seed_corpus.py
"""
import glob
import hashlib
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FORMATS = ["auto", "hermes", "qwen3_coder", "glm", "kimi_k2", "minimax_m2",
           "deepseek_v31", "xml", "json"]
THINK_TAGS = ["think", "thinking", "seed:think", "reasoning"]
LIMITS = [0, 16, 64, 1024]


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cuts(*offsets):
    return bytes([len(offsets)]) + b"".join(struct.pack("<H", o) for o in offsets)


def sse_seeds():
    streams = [read("tests/fixtures/anthropic/stream_tool_thinking.sse"),
               read("tests/fixtures/anthropic/chat_stream_tool_reasoning.sse")]
    small = [
        b": comment\n\ndata: {\"a\":1}\n\nevent: x\r\ndata: b\r\n\r\ndata: c\r\rdata: tail",
        b"data: 1\n\ndata: 2\r\n\r\n: c\n\ndata: 3\n\ndata: tail",
        b"event: message_start\ndata: {\"x\":1}\ndata: more\n\ndata: [DONE]\n\n",
        b"data:x\n\nid: 7\nretry: 10\n\ndata\n\ndata: \xff\xfe\n\n\r",
        b"data: a\r",
    ]
    for s in streams:
        write("sse_decoder", cuts() + s)
        write("sse_decoder", cuts(7, 300, 301) + s)
    for s in small:
        write("sse_decoder", cuts(1, len(s) // 2) + s)


def parse_tags_seeds():
    for f in ["vectors.json", "yallmp-vectors.json"]:
        for v in json.loads(read("tests/fixtures/parser-vectors/" + f)):
            p = v["parse_tags"]
            b0 = FORMATS.index(p.get("tool_format", "auto"))
            b1 = 0
            b1 |= 0 if p.get("parse_thinking", True) else 1
            b1 |= 2 if p.get("starts_in_reasoning") else 0
            b1 |= 0 if p.get("parse_tool_calls", True) else 4
            b1 |= 8 if p.get("tool_arg_format") == "json" else 0
            b1 |= LIMITS.index(p.get("tool_buffer_limit", 0)) << 4
            b1 |= 64 if "tools" in v else 0
            b1 |= 128 if "tool_open" in p else 0
            b2 = THINK_TAGS.index(p.get("think_tag", "think"))
            text = v["content"].encode()
            write("parse_tags_stream", bytes([b0, b1, b2, 3, 0]) + text)
    # Every module order over one text with thinking and a tool call.
    text = b"<think>plan</think>ok<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>"
    for mods in range(8):
        write("parse_tags_stream", bytes([0, 64, mods << 2, mods, 1]) + text)


def config_seeds():
    for f in sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))):
        write("config_loader", open(f, "rb").read())
    for f in sorted(glob.glob(os.path.join(ROOT, "tests", "*.rs"))
                    + glob.glob(os.path.join(ROOT, "src", "config", "*.rs"))):
        for m in re.finditer(r'r#"(.*?)"#', open(f).read(), re.S):
            t = m.group(1)
            if "model_list" in t or "proxy_settings" in t or "router_settings" in t:
                write("config_loader", t.encode())
    write("config_loader", b"""model_list:
  - model_name: a
    model_params: {model: openai/gpt-4o, api_key: ${OPENAI_API_KEY}, api_base: $URL}
  - model_name: b
    model_params: {model: os.environ/URL, timeout: ${NUM}, max_retries: ${NUM}}
server: {port: ${PORT}}
\0models:
  - model_name: c
    model_params: {model: openai/c, api_key: x}
deleted: [a]
""")


def translator_seeds():
    a = "tests/fixtures/anthropic/"
    raw = {0: "chat_request.json", 1: "messages_request.json", 2: "message_response.json",
           3: "message_response.as_chat.json"}
    for sel, f in raw.items():
        write("anthropic", bytes([sel]) + read(a + f))
        write("anthropic", bytes([sel | 8]) + b"\x01\x02\x03\x04\x05\x06\x07\x08")
    write("anthropic", bytes([4]) + b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    write("anthropic", bytes([4 | 16 | 8]) + b"\x02\x07\x01")
    write("anthropic", bytes([5]) + read(a + "messages_request.json"))
    write("anthropic", bytes([6 | 16]) + cuts(100, 900) + read(a + "stream_tool_thinking.sse"))
    write("anthropic", bytes([6 | 8]) + cuts(5) + b"\x03\x01\x04\x01\x05\x09\x02\x06")
    write("anthropic", bytes([7]) + cuts(100, 900) + read(a + "chat_stream_tool_reasoning.sse"))
    write("anthropic", bytes([7 | 8]) + cuts(5) + b"\x03\x01\x04\x01\x05\x09\x02\x06")
    reqs = [
        b'{"model":"m","instructions":"Be nice.","input":"Hello","max_output_tokens":20}',
        b'{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"ok"}],"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"stream":true}',
        b'{"model":"m","input":"weather?","reasoning":{"effort":"low"},"text":{"format":{"type":"json_object"}}}',
    ]
    for r in reqs:
        write("responses", bytes([0]) + r)
        write("responses", bytes([2]) + r)
    write("responses", bytes([8]) + b"\x01\x02\x03\x04\x05\x06\x07\x08")
    write("responses", bytes([3]) + read(a + "message_response.as_chat.json"))
    write("responses", bytes([4]) + read(a + "message_response.json"))
    write("responses", bytes([5]) + cuts(100, 900) + read(a + "chat_stream_tool_reasoning.sse"))
    write("responses", bytes([5 | 8]) + cuts(5) + b"\x03\x01\x04\x01\x05\x09\x02\x06")
    write("responses", bytes([7]) + cuts(100, 900) + read(a + "stream_tool_thinking.sse"))
    write("responses", bytes([7 | 8]) + cuts(5) + b"\x03\x01\x04\x01\x05\x09\x02\x06")


if __name__ == "__main__":
    sse_seeds()
    parse_tags_seeds()
    config_seeds()
    translator_seeds()
    total = 0
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        total += size
        print(f"{t}: {len(files)} files, {size} bytes")
    print(f"total {total} bytes")
