"""Helpers for the app tests: tiny predictors, a uvicorn server on a loopback port, odd uploads."""

from __future__ import annotations

import io
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
    """uvicorn serving ``app`` on 127.0.0.1 (an ephemeral port) in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

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
