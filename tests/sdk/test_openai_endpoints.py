"""The OpenAI Python SDK's own audio, images, files, batches and
moderations methods, and a Cohere-shaped rerank with httpx, through the
yallmp binary to a mock OpenAI upstream this file starts (it records every
request, so the test sees what reached it: path, model, the multipart
parts byte for byte).

Run with `bash scripts/sdk-test.sh` (pytest picks this file up with the rest).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2 as httpx  # the HTTP client the pinned openai SDK brings (httpx's successor)
import openai
import pytest

from test_openai_sdk import running_yallmp

SPEECH = b"ID3\x04fake-mp3-" + bytes(range(256)) * 8
UPSTREAM_KEY = "sk-endpoints-upstream"


def wav(samples: int = 800) -> bytes:
    """A mono 16-bit 8 kHz WAV of a ramp (not silence: every byte value)."""
    data = b"".join(struct.pack("<h", (i * 97) % 65536 - 32768) for i in range(samples))
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(data)) + data)


class Upstream(BaseHTTPRequestHandler):
    hits: list[dict] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        Upstream.hits.append({"method": self.command, "path": self.path,
                              "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        path = self.path.split("?")[0]
        if path.endswith("/audio/speech"):
            return self._send(200, "audio/mpeg", SPEECH)
        if path.endswith("/audio/transcriptions"):
            return self._json({"text": "hello from the mock"})
        if path.endswith("/images/generations") or path.endswith("/images/edits"):
            return self._json({"created": 1, "data": [{"b64_json": "aGk="}]})
        if path.endswith("/moderations"):
            return self._json({"id": "modr-1", "model": "omni-moderation-latest",
                               "results": [{"flagged": False, "categories": {},
                                            "category_scores": {}}]})
        if path.endswith("/rerank"):
            return self._json({"id": "r", "results": [{"index": 1, "relevance_score": 0.9}]})
        if path.endswith("/files"):
            return self._json({"id": "file-1", "object": "file", "bytes": 5, "created_at": 1,
                               "filename": "batch.jsonl", "purpose": "batch",
                               "status": "processed"})
        if path.endswith("/batches"):
            return self._json({"id": "batch_1", "object": "batch",
                               "endpoint": "/v1/chat/completions", "input_file_id": "file-1",
                               "completion_window": "24h", "status": "validating",
                               "created_at": 1})
        return self._json({"error": {"message": f"no {path}"}}, 404)

    do_POST = do_GET = do_DELETE = _answer

    def _json(self, v: dict, status: int = 200) -> None:
        self._send(status, "application/json", json.dumps(v).encode())

    def _send(self, status: int, ct: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", ct)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def parts(hit: dict) -> dict[str, tuple[str | None, bytes]]:
    """The multipart parts a hit carried: name -> (file name, bytes)."""
    head = f"content-type: {hit['headers']['content-type']}\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + hit["body"])
    out = {}
    for p in msg.iter_parts():
        out[p.get_param("name", header="content-disposition")] = (
            p.get_filename(), p.get_payload(decode=True))
    return out


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def base(request, tmp_path_factory, upstream):
    def model(name: str, target: str) -> dict:
        return {"model_name": name, "model_params": {
            "api_base": upstream, "api_key": UPSTREAM_KEY, "target_model": target}}
    config = {
        "model_list": [model("whisper", "whisper-1"), model("tts", "tts-1"),
                       model("painter", "gpt-image-1"), model("omni-moderation", "omni-moderation-latest"),
                       model("reranker", "bge-reranker"), model("store", "unused")],
        "proxy_settings": {"files_model": "store"},
    }
    yield from running_yallmp(request, tmp_path_factory.mktemp("endpoints"), config)


@pytest.fixture
def client(base) -> openai.OpenAI:
    Upstream.hits.clear()
    return openai.OpenAI(base_url=f"{base}/v1", api_key="sk-client", max_retries=0)


def last() -> dict:
    return Upstream.hits[-1]


def test_transcription_sends_the_wav_byte_for_byte(client, tmp_path):
    audio = wav()
    f = tmp_path / "hello.wav"
    f.write_bytes(audio)
    with f.open("rb") as fh:
        t = client.audio.transcriptions.create(model="whisper", file=fh, language="en")
    assert t.text == "hello from the mock"
    hit = last()
    assert hit["path"] == "/v1/audio/transcriptions"
    assert hit["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    got = parts(hit)
    assert got["file"] == ("hello.wav", audio)
    assert got["model"][1] == b"whisper-1"
    assert got["language"][1] == b"en"


def test_speech_streams_to_a_file(client, tmp_path):
    out = tmp_path / "speech.mp3"
    with client.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input="hi"
    ) as r:
        assert r.headers["content-type"] == "audio/mpeg"
        r.stream_to_file(out)
    assert out.read_bytes() == SPEECH
    assert json.loads(last()["body"])["model"] == "tts-1"


def test_images_generate_and_edit(client, tmp_path):
    img = client.images.generate(model="painter", prompt="a cat")
    assert img.data[0].b64_json == "aGk="
    assert json.loads(last()["body"])["model"] == "gpt-image-1"
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with png.open("rb") as fh:
        client.images.edit(model="painter", image=fh, prompt="hat")
    got = parts(last())
    assert last()["path"] == "/v1/images/edits"
    assert got["image"][1] == png.read_bytes()
    assert got["model"][1] == b"gpt-image-1"


def test_moderations_without_and_with_a_model(client):
    r = client.moderations.create(input="hello")
    assert r.results[0].flagged is False
    assert last()["path"] == "/v1/moderations"
    client.moderations.create(model="omni-moderation", input="hello")
    assert json.loads(last()["body"])["model"] == "omni-moderation-latest"


def test_files_and_batches_go_to_the_files_backend(client, tmp_path):
    jsonl = tmp_path / "batch.jsonl"
    jsonl.write_bytes(b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{}}\n')
    with jsonl.open("rb") as fh:
        f = client.files.create(file=fh, purpose="batch")
    assert f.id == "file-1"
    assert last()["path"] == "/v1/files"
    assert parts(last())["file"][1] == jsonl.read_bytes()
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert b.id == "batch_1"
    assert json.loads(last()["body"])["input_file_id"] == "file-1"


def test_rerank_cohere_shape(base):
    Upstream.hits.clear()
    r = httpx.post(f"{base}/v1/rerank", json={"model": "reranker", "query": "cat",
                                               "documents": ["dog", "cat"], "top_n": 1})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["index"] == 1
    assert json.loads(last()["body"])["model"] == "bge-reranker"
