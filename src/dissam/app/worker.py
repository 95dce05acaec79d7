"""The app's one model thread: jobs run one at a time, in arrival order, behind a bounded queue.

A job is a callable ``fn(cancel) -> result`` (``cancel`` a :class:`threading.Event`). When its
client goes away the server calls :meth:`Worker.abandon`: a job still waiting is taken out of the
queue at once (its slot is free for others) and its ``on_drop`` runs; a running job sees ``cancel``
set and stops at its next step. ``on_drop`` runs exactly once for a job that never ran; a job that
ran cleans up after itself.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable

from dissam.app.service import Busy


class Job:
    """One submitted call: its ``future``, its ``cancel`` event and when it was queued."""

    __slots__ = ("fn", "future", "cancel", "queued_at", "on_drop")

    def __init__(self, fn: Callable, on_drop: Callable[[], None] | None):
        self.fn, self.on_drop = fn, on_drop
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.cancel = threading.Event()
        self.queued_at = time.perf_counter()


class Worker:
    """One thread running submitted jobs in order, behind a queue of at most ``queue_size``."""

    def __init__(self, queue_size: int):
        self.maxsize = max(1, int(queue_size))
        self._jobs: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self.running: Job | None = None
        self.dropped = 0  # jobs taken out of the queue because their client went away
        self._thread = threading.Thread(target=self._loop, name="dissam-app-worker", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, on_drop: Callable[[], None] | None = None) -> Job:
        """Queue ``fn(cancel)``; raises :class:`~dissam.app.service.Busy` (503) when the queue is full."""
        job = Job(fn, on_drop)
        with self._cv:
            if len(self._jobs) >= self.maxsize:
                raise Busy(f"the server is busy ({self.maxsize} requests are waiting); try again in a moment")
            self._jobs.append(job)
            self._cv.notify()
        return job

    def abandon(self, job: Job) -> bool:
        """The job's client went away: drop it from the queue (True), or ask the running job to stop."""
        with self._cv:
            try:
                self._jobs.remove(job)
            except ValueError:
                job.cancel.set()  # running (it stops at its next step) or already finished
                return False
            self.dropped += 1
        job.future.cancel()
        if job.on_drop is not None:
            job.on_drop()
        return True

    def pending(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._cv:
            return len(self._jobs)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed and not self._jobs:
                    return
                job = self._jobs.popleft()
                self.running = job
            try:
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    result = job.fn(job.cancel)
                    if isinstance(result, dict) and isinstance(result.get("timings"), dict):
                        result["timings"]["queue_ms"] = round((time.perf_counter() - job.queued_at) * 1e3
                                                              - result["timings"].get("total_ms", 0.0), 1)
                    job.future.set_result(result)
                except BaseException as exc:  # delivered to the request that caused it; the loop goes on
                    job.future.set_exception(exc)
            finally:
                with self._cv:
                    self.running = None

    def close(self) -> None:
        """Stop after the jobs already queued (drop them: nobody will read their answers)."""
        with self._cv:
            dropped, self._jobs = list(self._jobs), collections.deque()
            self._closed = True
            self._cv.notify_all()
        for job in dropped:
            job.future.cancel()
            if job.on_drop is not None:
                job.on_drop()
        self._thread.join(timeout=30)
