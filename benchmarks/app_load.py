"""`dissam app` under load: 40 concurrent clients on several images, plus slow, vanishing and hostile ones.

Starts ``dissam app`` in a subprocess (the built-in models unless extra arguments say otherwise),
warms it up with one request, then, all at once:

* ``--requests`` clients (default 40) on the five example images, half one-shot (the image and the
  boxes in one multipart request), half two-step (upload, then predict by ``image_id``); a ``503``
  (queue full) is retried after a pause, as a polite client does, and counted;
* ``--slow`` clients that trickle an upload (1 KiB every 0.5 s): the server answers ``408`` after
  ``--body-timeout`` seconds;
* ``--vanishing`` clients that send a whole predict request and hang up without reading: their
  requests are dropped from the queue (or stopped between boxes);
* hostile requests: a 31 MiB JSON body with two million boxes, JSON nested 10,000 deep, a
  decompression-bomb PNG, an EPS file;
* the whole load runs ``--rounds`` times (default 2): memory that settles after the first round
  and does not grow in the second is the server's working set, not a leak;
* a prober that asks ``GET /api/info`` every 0.25 s (its worst latency shows whether the event loop
  ever stalled).

It reports the answers by status, request latencies, the prober's worst latency, the server's
resident memory (RSS) after the warm-up, at its peak and after the load, and what the server logged
(lines per level, tracebacks).

``--malloc-arena-max default 2`` runs the whole load once per value, the server started with glibc's
``MALLOC_ARENA_MAX`` set to it (``default``: unset), side by side in one run.

Usage: PYTHONPATH=src python benchmarks/app_load.py [--requests 40] [--slow 6] [--vanishing 6] [--rounds 2]
       [--queue-size 8] [--body-timeout 10] [--malloc-arena-max default 2] [-- EXTRA dissam app ARGUMENTS]
Writes benchmarks/results/app_load.json (``--out``: elsewhere) with the table ``load``: one column per
allocator setting.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from results_io import markdown_table, save

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "images").glob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boxes_for(size: tuple[int, int], rng: random.Random, n: int) -> list[list[int]]:
    w, h = size
    out = []
    for _ in range(n):
        x0, y0 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
        out.append([x0, y0, min(w - 1, x0 + rng.randrange(w // 5, w // 2)), min(h - 1, y0 + rng.randrange(h // 5, h // 2))])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--slow", type=int, default=6)
    ap.add_argument("--vanishing", type=int, default=6)
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--body-timeout", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="load rounds (RSS after each)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the server (default 1)")
    ap.add_argument("--malloc-arena-max", nargs="+", default=["default"], metavar="N",
                    help="run the load once per value of the server's MALLOC_ARENA_MAX ('default': unset)")
    ap.add_argument("--out", help="the results file (default benchmarks/results/app_load.json)")
    ap.add_argument("extra", nargs="*", help="more `dissam app` arguments (after --)")
    args = ap.parse_args()
    runs = {}
    for arenas in args.malloc_arena_max:
        runs[arenas] = run_load(args, None if arenas == "default" else arenas)
        print(json.dumps(runs[arenas], indent=1), flush=True)
    columns = ["default allocator" if a == "default" else f"`MALLOC_ARENA_MAX={a}`" for a in runs]
    save("app_load", {"runs": runs}, {"load": markdown_table(["", *columns], table_rows(args, list(runs.values())))},
         out=args.out, notes="the built-in models unless extra arguments say otherwise; each column one server process")


def table_rows(args, runs: list[dict]) -> list[list]:
    """The rows of the docs' table: one value per run."""
    def cells(fn):
        return [fn(r) for r in runs]

    def answers(r, key):
        return r["answers"].get(key, 0)

    def logged(r, level):
        return r["server_log"]["lines_by_level"].get(level, 0)

    other = lambda r: sum(v for k, v in r["answers"].items() if k.startswith("client ") and k != "client 200")  # noqa: E731
    rounds = "after " + " / after ".join(f"round {k + 1}" for k in range(args.rounds))
    return [
        [f"clients answered `200` (of {args.requests} per round, {args.rounds} rounds)", *cells(lambda r: answers(r, "client 200"))],
        ["other answers to clients (`404` lost image, `500`, ...)", *cells(other)],
        [f"`503` answers retried by the clients (queue of {args.queue_size} full)", *cells(lambda r: r["retried_503"])],
        [f"slow uploads: `408` after {args.body_timeout:g} s / `503` (too many bodies being received)",
         *cells(lambda r: f"{answers(r, 'slow 408')} / {answers(r, 'slow 503')}")],
        ["vanishing clients: dropped from the queue or stopped (server log: \"went away\")",
         *cells(lambda r: r["server_log"]["went_away"])],
        ["hostile: `400` (deep JSON, bomb, EPS) / `413` (JSON body) / `503`",
         *cells(lambda r: f"{answers(r, 'hostile 400')} / {answers(r, 'hostile 413')} / {answers(r, 'hostile 503')}")],
        ["`GET /api/info` during the load: median / worst",
         *cells(lambda r: f"{r['info_probe']['median_ms']:.1f} ms / {r['info_probe']['max_ms']:.0f} ms")],
        ["wall time per round", *cells(lambda r: ", ".join(f"{w:.0f} s" for w in r["wall_s_per_round"]))],
        ["server RSS after the warm-up", *cells(lambda r: f"{r['rss_mib']['after_warmup']} MiB")],
        [f"server RSS {rounds}", *cells(lambda r: " / ".join(str(v) for v in r["rss_mib"]["after_each_round"]) + " MiB")],
        ["server RSS peak", *cells(lambda r: f"{r['rss_mib']['peak']} MiB")],
        ["server log: ERROR lines / tracebacks", *cells(lambda r: f"{logged(r, 'ERROR')} / {r['server_log']['tracebacks']}")],
        ["server log: INFO / WARNING lines", *cells(lambda r: f"{logged(r, 'INFO')} / {logged(r, 'WARNING')}")],
    ]


def run_load(args, malloc_arena_max: str | None) -> dict:
    """One server process under the whole load (all rounds): its answers, latencies, memory and log."""
    import httpx
    import psutil
    from PIL import Image

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkdtemp(prefix="dissam_app_load_")) / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}
    env.pop("MALLOC_ARENA_MAX", None)
    if malloc_arena_max is not None:
        env["MALLOC_ARENA_MAX"] = malloc_arena_max
    cmd = [sys.executable, "-m", "dissam", "app", "--port", str(port), "--queue-size", str(args.queue_size),
           "--body-timeout", str(args.body_timeout), *args.extra]
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    proc = psutil.Process(server.pid)
    images = [(p.name, p.read_bytes(), Image.open(p).size) for p in EXAMPLES]
    try:
        http = httpx.Client(base_url=url, timeout=600)
        deadline = time.monotonic() + 300
        while True:
            try:
                if http.get("/api/info").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start; see {log_path}")
            time.sleep(0.5)
        name, data, size = images[0]
        warm = http.post("/api/predict", files={"image": (name, data, "image/jpeg")},
                         data={"boxes": json.dumps(boxes_for(size, random.Random(0), 1))})
        assert warm.status_code == 200, warm.text
        time.sleep(1.0)
        rss_before = proc.memory_info().rss
        peak = [rss_before]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.1):
                try:
                    peak[0] = max(peak[0], proc.memory_info().rss)
                except psutil.Error:
                    return

        probe_latency: list[float] = []

        def probe():
            while not stop.wait(0.25):
                t0 = time.perf_counter()
                try:
                    http.get("/api/info")
                except httpx.TransportError:
                    continue
                probe_latency.append(time.perf_counter() - t0)

        statuses: Counter = Counter()
        busy = Counter()
        latencies: list[float] = []

        def client(k: int):
            rng = random.Random(k)
            name, data, size = images[k % len(images)]
            boxes = boxes_for(size, rng, 1 + k % 2)
            t0 = time.perf_counter()
            with httpx.Client(base_url=url, timeout=600) as c:
                for _attempt in range(200):
                    if k % 2:
                        r = c.post("/api/predict", files={"image": (name, data, "image/jpeg")},
                                   data={"boxes": json.dumps(boxes)})
                    else:
                        r = c.post("/api/image", files={"image": (name, data, "image/jpeg")})
                        if r.status_code == 200:
                            r = c.post("/api/predict", json={"image_id": r.json()["image_id"], "boxes": boxes})
                    if r.status_code != 503:
                        break
                    busy["503 (retried)"] += 1
                    time.sleep(1.0 + rng.random())
            statuses[f"client {r.status_code}"] += 1
            latencies.append(time.perf_counter() - t0)

        def slow(k: int):
            head = (f"POST /api/image HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
                    "boundary=b0und\r\nContent-Length: 2000000\r\n\r\n--b0und\r\nContent-Disposition: form-data; "
                    'name="image"; filename="s.png"\r\n\r\n').encode()
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(head)
                s.settimeout(0.5)
                answer = b""
                for _ in range(int(args.body_timeout * 4) + 40):
                    try:
                        s.sendall(b"\0" * 1024)
                    except OSError:
                        break
                    try:
                        answer += s.recv(4096)
                        if answer:
                            break
                    except TimeoutError:
                        pass
                statuses[f"slow {answer[9:12].decode() or 'none'}"] += 1

        def vanishing(k: int):
            """A whole predict request, then hang up while it waits or runs (retried while the answer is 503)."""
            name, data, size = images[k % len(images)]
            body = json.dumps(boxes_for(size, random.Random(100 + k), 2))
            boundary = "v4nish"
            payload = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n\r\n').encode()
            payload += data + (f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="boxes"\r\n\r\n{body}\r\n'
                               f"--{boundary}--\r\n").encode()
            head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
                    f"boundary={boundary}\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
            for _attempt in range(500):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(head + payload)
                    s.settimeout(1.0)
                    try:
                        answer = s.recv(64)
                    except TimeoutError:
                        statuses["vanished while queued or running"] += 1
                        return
                if not answer.startswith(b"HTTP/1.1 503"):
                    statuses[f"vanishing answered {answer[9:12].decode()}"] += 1
                    return
                time.sleep(1.0)

        def hostile(k: int):
            try:
                statuses[f"hostile {hostile_request(k).status_code}"] += 1
            except httpx.TransportError as exc:  # the server may close while a refused body is still sent
                statuses[f"hostile {type(exc).__name__}"] += 1

        def hostile_request(k: int):
            with httpx.Client(base_url=url, timeout=600) as c:
                if k == 0:
                    r = c.post("/api/predict", content=b'{"boxes": [' + b"[1,2,3,4]," * 2_000_000 + b"[1,2,3,4]]}",
                               headers={"content-type": "application/json"})
                elif k == 1:
                    r = c.post("/api/predict", content=b'{"boxes": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
                               headers={"content-type": "application/json"})
                elif k == 2:
                    bomb = io.BytesIO()
                    Image.new("1", (8, 8)).save(bomb, format="PNG")
                    raw = bytearray(bomb.getvalue())
                    struct.pack_into(">II", raw, 16, 30000, 30000)
                    struct.pack_into(">I", raw, 29, zlib.crc32(bytes(raw[12:29])))
                    r = c.post("/api/image", files={"image": ("bomb.png", bytes(raw), "image/png")})
                else:
                    eps = io.BytesIO()
                    Image.new("RGB", (64, 64)).save(eps, format="EPS")
                    r = c.post("/api/image", files={"image": ("x.png", eps.getvalue(), "image/png")})
            return r

        threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=probe, daemon=True)]
        for t in threads:
            t.start()
        rss_rounds, walls = [], []
        for round_ in range(args.rounds):
            t0 = time.perf_counter()
            offset = 1000 * round_  # other boxes each round
            jobs = ([(client, offset + k) for k in range(args.requests)] + [(slow, k) for k in range(args.slow)]
                    + [(vanishing, offset + k) for k in range(args.vanishing)] + [(hostile, k) for k in range(4)])
            with ThreadPoolExecutor(len(jobs)) as pool:
                for f in [pool.submit(fn, k) for fn, k in jobs]:
                    f.result()
            walls.append(round(time.perf_counter() - t0, 1))
            time.sleep(2.0)
            rss_rounds.append(round(proc.memory_info().rss / 2**20))
        stop.set()
        wall = sum(walls)
        rss_after = proc.memory_info().rss
        info = http.get("/api/info").json()
    finally:
        server.terminate()
        server.wait(timeout=60)
    logged = log_path.read_text(errors="replace").splitlines()
    levels = Counter(line.split(" ", 1)[0] for line in logged if line.split(" ", 1)[0] in
                     ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    summary = {
        "command": " ".join(cmd[1:]), "requests": args.requests, "slow": args.slow, "vanishing": args.vanishing,
        "answers": dict(sorted(statuses.items())), "retried_503": busy["503 (retried)"],
        "rounds": args.rounds, "wall_s_per_round": walls, "wall_s": round(wall, 1), "client_latency_s": {"median": round(statistics.median(latencies), 1),
                                                      "max": round(max(latencies), 1)},
        "info_probe": {"n": len(probe_latency), "median_ms": round(statistics.median(probe_latency) * 1e3, 1),
                       "max_ms": round(max(probe_latency) * 1e3, 1)},
        "rss_mib": {"after_warmup": round(rss_before / 2**20), "after_each_round": rss_rounds,
                    "peak": round(peak[0] / 2**20), "after_load": round(rss_after / 2**20)},
        "server_log": {"lines_by_level": dict(levels), "tracebacks": sum("Traceback" in line for line in logged),
                       "went_away": sum("went away" in line for line in logged)},
        "limits": info["limits"],
    }
    summary["server_log"]["path"] = str(log_path)
    summary["env"] = "default" if malloc_arena_max is None else f"MALLOC_ARENA_MAX={malloc_arena_max}"
    return summary


if __name__ == "__main__":
    main()
