"""A small real HTTP upstream for tests, demos and benchmarks: an OpenAI-compatible echo server.

It answers ``GET /health`` with a switchable status, ``POST /v1/chat/completions`` with a chat completion
(optionally streamed as SSE), and records every request it saw. It runs in a thread on its own port and
can be stopped and restarted on the same port (to simulate an upstream outage).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

__all__ = ["TestUpstream"]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(
        self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, body: bytes) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record(b"")
        owner = self.server.owner
        if self.path.split("?")[0] == "/health":
            self._send(
                owner.health_status, b'{"status":"ok"}' if owner.health_status < 500 else b'{"down":1}'
            )
            return
        self._send(owner.answer_status, json.dumps({"path": self.path, "ok": True}).encode())

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        owner = self.server.owner
        if owner.answer_delay:
            time.sleep(owner.answer_delay)  # a slow upstream: nothing, not even the status line, for a while
        if owner.answer_status != 200:
            self._send(owner.answer_status, b'{"error":"upstream failure"}')
            return
        try:
            req = json.loads(body or b"{}")
        except json.JSONDecodeError:
            req = {}
        model = req.get("model", "test-model") if isinstance(req, dict) else "test-model"
        if isinstance(req, dict) and req.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for word in ("Hello", " from", " the", " upstream"):
                chunk = {"choices": [{"delta": {"content": word}}], "model": model}
                data = f"data: {json.dumps(chunk)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(owner.stream_delay)
            done = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
            return
        answer = {
            "id": "chatcmpl-kube402",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hello from the upstream"},
                }
            ],
            "path": self.path,
        }
        self._send(200, json.dumps(answer).encode())


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: TestUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up early (probes, cancelled streams) are not errors here


class TestUpstream:
    """``start()`` binds ``host`` (default 127.0.0.1; port 0 = free port, kept across restarts); ``stop()``
    closes it. Bind a test host's address (``TestHost.gateway``) to put it behind an EndpointSlice."""

    __test__ = False  # not a pytest test class

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.health_status = 200
        self.answer_status = 200
        self.stream_delay = 0.01
        self.answer_delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TestUpstream:
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def paid_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].split("?")[0] != "/health"]
