"""A real HTTP server on 127.0.0.1 for the download tests: Range support, a request log, and
faults on demand (a connection cut after N bytes, a slow body, a server that ignores Range)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    """Serves ``files[path] -> bytes``.

    Attributes:
        log: one ``(path, range header or None, status)`` per request, in arrival order.
        cut_after: ``{path: n}``: the next full-body response sends ``n`` bytes then closes (once).
        delay: seconds to sleep between 64 KiB chunks (to make two downloads overlap).
        ignore_range: answer every request with the whole file (status 200).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.cut_after: dict[str, int] = {}
        self.delay = 0.0
        self.ignore_range = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                body = server.files.get(self.path)
                rng = self.headers.get("Range")
                if body is None:
                    server._record(self.path, rng, 404)
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if start >= len(body):
                        server._record(self.path, rng, 416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                else:
                    status = 200
                server._record(self.path, rng, status)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                payload = body[start:]
                with server._lock:
                    cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    payload = payload[:cut]
                for i in range(0, len(payload), 1 << 16):
                    try:
                        self.wfile.write(payload[i : i + (1 << 16)])
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    if server.delay:
                        time.sleep(server.delay)
                if cut is not None:
                    # close mid-body: the client sees fewer bytes than Content-Length
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _record(self, path: str, rng: str | None, status: int) -> None:
        with self._lock:
            self.log.append((path, rng, status))

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(home: Path, models: dict) -> Path:
    """A user registry file in the cache root (``<DISSAM_HOME>/registry.json``)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "registry.json"
    path.write_text(json.dumps({"models": models}))
    return path


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


HUB_ENV = ("DISSAM_OFFLINE", "HF_HUB_OFFLINE", "DISSAM_MIRROR", "DISSAM_REGISTRY", "DISSAM_DOWNLOAD_TIMEOUT")


def empty_cache_home(tmp_path: Path, monkeypatch) -> Path:
    """``DISSAM_HOME`` set to an empty folder and every offline switch or URL override removed."""
    import os

    root = tmp_path / "home"
    monkeypatch.setenv("DISSAM_HOME", str(root))
    for key in list(os.environ):
        if key.startswith("DISSAM_URL_") or key in HUB_ENV:
            monkeypatch.delenv(key)
    return root
