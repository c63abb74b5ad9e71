"""A real local HTTP server for notification tests: records webhook and GitHub API requests,
answers from a script (429 with Retry-After, 500s, then 2xx), keeps GitHub comments so a lookup
finds them, and can hold its answer to a POST (so a test can kill the daemon while it waits)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """Start with ``Receiver().start()``; ``url`` is its base URL."""

    #: Answers to POSTs, in order: (status, headers); once used up, 200 (webhook) / 201 (GitHub).
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    #: Set: a POST waits for ``release`` before answering (``arrived`` tells it came).
    hold: bool = False
    #: Set: GETs answer 200 with this raw body (a broken proxy's HTML) instead of the comments.
    get_raw: bytes | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self, body: Any) -> None:
                with receiver.lock:
                    receiver.requests.append(
                        Recorded(self.command, self.path, dict(self.headers.items()), body)
                    )

            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the daemon was killed meanwhile
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._record(None)
                if receiver.get_raw is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(receiver.get_raw)))
                    self.end_headers()
                    self.wfile.write(receiver.get_raw)
                    return
                with receiver.lock:
                    comments = list(receiver.comments)
                self._answer(200, {}, comments)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                self._record(body)
                github = "/comments" in self.path or self.path.endswith("/issues")
                with receiver.lock:
                    status, headers = (
                        receiver.script.pop(0) if receiver.script else (201 if github else 200, {})
                    )
                    if github and status < 300:
                        # Stored before the answer leaves: GitHub has it even if we never hear.
                        receiver.comments.append({"id": len(receiver.comments) + 1, **body})
                if receiver.hold:
                    receiver.arrived.set()
                    receiver.release.wait(30)
                self._answer(status, headers, {"ok": status < 300})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> None:
        """Poll ``predicate()`` until true (a condition with a deadline, not a sleep for time)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; requests: {self.requests}")
            time.sleep(0.01)
