"""A mock Bedrock runtime that checks SigV4 with botocore (run in the
`bedrock` venv by tests/sdk/test_bedrock_sigv4.py).

    python bedrock_mock.py ACCESS_KEY SECRET REGION [SESSION_TOKEN]

It prints its port, then answers POST /model/{id}/converse (JSON) and
/converse-stream (an AWS event stream, framed here with zlib's CRC32, not
with any code the proxy shares) when botocore's `SigV4Auth`, given the
same method, URL, signed headers, body and the received `x-amz-date`,
computes the same signature as the request's `Authorization` header; else
403 `InvalidSignatureException`, as AWS answers. GET /results lists what
it checked.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session
from botocore.validate import ParamValidator

ACCESS, SECRET, REGION = sys.argv[1], sys.argv[2], sys.argv[3]
TOKEN = sys.argv[4] if len(sys.argv) > 4 else None
SERVICE = get_session().get_service_model("bedrock-runtime")
RESULTS: list[dict] = []
LOCK = threading.Lock()


def check(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[bool, str]:
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 Authorization header"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    scope = parts["Credential"].split("/")
    if scope[0] != ACCESS or scope[2] != REGION or scope[3] != "bedrock":
        return False, f"wrong credential scope {parts['Credential']}"
    signed = parts["SignedHeaders"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return False, f"{required} not signed"
    if TOKEN is not None and (
        "x-amz-security-token" not in signed or headers.get("x-amz-security-token") != TOKEN
    ):
        return False, "session token missing or not signed"
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}",
        headers={name: headers[name] for name in signed},
        data=body,
    )
    signer = SigV4Auth(Credentials(ACCESS, SECRET, TOKEN), "bedrock", REGION)
    request.context["timestamp"] = headers["x-amz-date"]
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != parts["Signature"]:
        return False, f"signature mismatch; botocore's canonical request:\n{canonical}"
    return True, "ok"


def shape_errors(path: str, body: bytes) -> str:
    """The body checked against botocore's Converse/ConverseStream input
    shape (the path's model id included); empty when it fits."""
    from urllib.parse import unquote

    _, _, model, action = path.split("/", 3)
    op = SERVICE.operation_model("ConverseStream" if action == "converse-stream" else "Converse")
    params = json.loads(body)
    params["modelId"] = unquote(model)
    report = ParamValidator().validate(params, op.input_shape)
    return report.generate_report() if report.has_errors() else ""


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, string headers, payload, CRCs."""
    hb = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hb += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hb) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hb))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + hb + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: dict) -> bytes:
    return frame(
        {":message-type": "event", ":event-type": kind, ":content-type": "application/json"},
        json.dumps(payload).encode(),
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        with LOCK:
            data = json.dumps(RESULTS).encode()
        self.reply(200, "application/json", data)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok, why = check("POST", self.path, headers, body)
        shape = shape_errors(self.path, body)
        with LOCK:
            RESULTS.append({"path": self.path, "ok": ok, "why": why, "shape": shape,
                            "token": "x-amz-security-token" in headers})
        if ok and shape:
            self.reply(400, "application/json", json.dumps({"message": shape}).encode(),
                       {"x-amzn-ErrorType": "ValidationException"})
            return
        if not ok:
            data = json.dumps({"message": "The request signature we calculated does not "
                               "match the signature you provided."}).encode()
            self.reply(403, "application/json", data,
                       {"x-amzn-ErrorType": "InvalidSignatureException"})
            return
        sent = json.loads(body)
        text = "signed " + sent["messages"][0]["content"][0]["text"]
        if self.path.endswith("/converse-stream"):
            data = b"".join([
                event("messageStart", {"role": "assistant"}),
                event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
                event("contentBlockStop", {"contentBlockIndex": 0}),
                event("messageStop", {"stopReason": "end_turn"}),
                event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2,
                                             "totalTokens": 5}, "metrics": {"latencyMs": 1}}),
            ])
            self.reply(200, "application/vnd.amazon.eventstream", data)
            return
        data = json.dumps({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
            "metrics": {"latencyMs": 1},
        }).encode()
        self.reply(200, "application/json", data)

    def reply(self, status: int, content_type: str, data: bytes,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-amzn-RequestId", "req-123")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
