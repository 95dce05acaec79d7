"""Helpers for the app tests: tiny predictors, a uvicorn server on a loopback port, odd uploads."""

from __future__ import annotations

import io
import logging
import socket
import struct
import threading
import time
import zlib

import numpy as np
from PIL import Image

SIZE = 128  # refiner input size for the app tests (the paper uses 1024)


def tiny_predictor(tiny_sam_path, refiner):
    """A predictor with its own SAM stage (stages hold per-image state, so never share one)."""
    from dissam.predictor import DisSamPredictor
    from dissam.stages.sam import load_sam

    return DisSamPredictor(load_sam(tiny_sam_path), refiner, size=SIZE)


class LoopbackServer:
    """uvicorn serving ``app`` on 127.0.0.1 (an ephemeral port) in a thread of this process. uvicorn's
    loggers are left unconfigured (``log_config=None``): their records reach the root logger, where a
    test can capture them with the app's."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose header declares ``width x height`` pixels (its data would not fill it)."""
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after signature, length, type
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


class LogCapture(logging.Handler):
    """Every log record of the process (root logger, level DEBUG) while attached: what a server in a
    thread logs, uvicorn's records included (:class:`LoopbackServer` leaves them unconfigured)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogCapture:
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)

    def faults(self) -> list[str]:
        """Records at ERROR or above, or carrying a traceback: what must not appear for bad input."""
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records
                if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]

    def messages(self, logger: str = "dissam.app") -> list[str]:
        return [r.getMessage() for r in self.records if r.name == logger]


def raw_http(port: int, request: bytes, *, close_after_send: bool = False, timeout: float = 60) -> tuple[int, bytes]:
    """Send bytes as they are (a request no HTTP client would build) and read one response:
    ``(status, body)``; with ``close_after_send`` the socket is closed at once, ``(0, b"")``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        if close_after_send:
            return 0, b""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        length = next((int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")),
                      None)
        while length is not None and len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, body
