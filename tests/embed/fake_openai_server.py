"""A real HTTP server on 127.0.0.1 that speaks the OpenAI embeddings API, with injectable faults."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import zlib

import numpy as np


def vector_for(text: str, dim: int) -> np.ndarray:
    """The server's deterministic 'embedding' of a text, so tests can check every value."""
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(dim).astype(np.float32)


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server``; ``server.base_url`` goes to the client.

    ``faults`` is consumed one per request: "429", "500", "timeout", "malformed", or None (healthy); and bodies
    that parse but must not be used: "nan" (a vector holding NaN), "same_index" (every item claims index 0),
    "short_dim" (vectors one shorter), "html" (an HTML error page with status 200).
    """

    def __init__(self, dim: int = 3072, delay_s: float = 2.0):
        self.dim = dim
        self.delay_s = delay_s
        self.faults: list[str | None] = []
        self.requests: list[dict] = []  # every request body the server answered or faulted
        self.auth_headers: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth_headers.append(self.headers.get("Authorization", ""))
                fault = owner.faults.pop(0) if owner.faults else None
                if fault == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": "1"})
                if fault == "500":
                    return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                if fault == "timeout":
                    time.sleep(owner.delay_s)
                    return self._send(500, {"error": {"message": "too late"}})
                if fault == "malformed":
                    return self._send_raw(200, b'{"object": "list", "data": [{"embedding": 12')
                if fault == "html":
                    return self._send_raw(200, b"<html><body>502 Bad Gateway</body></html>", {}, "text/html")
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                dim = body.get("dimensions", owner.dim)
                data = []
                for i, text in enumerate(inputs):
                    vec = vector_for(text, dim - (fault == "short_dim"))
                    if fault == "nan" and i == len(inputs) - 1:
                        vec[3] = np.nan
                    emb = (base64.b64encode(vec.astype("<f4").tobytes()).decode()
                           if body.get("encoding_format") == "base64" else vec.tolist())
                    data.append({"object": "embedding", "index": 0 if fault == "same_index" else i, "embedding": emb})
                self._send(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})

            def _send(self, code, payload, headers=None):
                self._send_raw(code, json.dumps(payload).encode(), headers)

            def _send_raw(self, code, raw, headers=None, content_type="application/json"):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of the fault

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
