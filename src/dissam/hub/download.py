"""Downloading one file: never half-written, resumable, shared safely between processes.

:func:`download_url` ``(url, dest)``:

1. ``dest`` already there → returned at once, with no network access;
2. offline (``DISSAM_OFFLINE`` / ``HF_HUB_OFFLINE``) → :class:`~dissam.errors.OfflineError` at once;
3. a file lock ``.<name>.lock`` beside ``dest`` (``filelock``): a second process (another torchrun
   rank, a second shell) waits for the first, then finds ``dest`` and returns it, so a file is
   downloaded once;
4. the bytes go to ``.<stem>.part<suffix>``; a ``.part`` left by an interrupted run (or a connection cut in
   this one) is continued with an HTTP ``Range`` request (a server that ignores it sends the whole
   file, which then replaces the part);
5. ``verify(part)`` (size, SHA-256, key set...) runs on the finished part; a failure deletes it;
6. ``os.replace(part, dest)``: the final name only ever holds a complete, verified file.

Network errors: the connect timeout is short (``DISSAM_DOWNLOAD_TIMEOUT``, default 10 s), so a
machine without network gets an :class:`~dissam.errors.OfflineError` naming the URL, the cache path
and how to place the file by hand within seconds, not after the OS's minutes-long TCP timeout. A
transfer that stalls or is cut after it started is resumed (up to ``retries`` times in a row without
progress). ``urllib`` is used (standard library; it honours ``HTTPS_PROXY``/``NO_PROXY``).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dissam.errors import DownloadError, OfflineError
from dissam.hub.cache import download_timeout, is_offline
from dissam.utils import package_version

__all__ = ["download_url", "part_path", "lock_path", "manual_instructions"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
RETRY_PAUSE_S = 0.5  # between resume attempts (tests set it to 0)


def part_path(dest: Path) -> Path:
    # keeps the suffix: verification picks the reader (.safetensors or torch pickle) by it
    return dest.with_name(f".{dest.stem}.part{dest.suffix}")


def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.lock")


def manual_instructions(dest: Path, url: str | None = None, page: str | None = None, notes: str = "",
                        name: str | None = None) -> str:
    """How to put the file in place by hand (shown on every failure, and for manual entries)."""
    lines = []
    src = url or page
    if src:
        lines.append(f"  1. download it on a machine with internet: {src}")
    if notes:
        lines.append(f"     ({notes})")
    lines.append(f"  2. copy it to {dest}")
    lines.append(f"     e.g.  mkdir -p {dest.parent} && cp DOWNLOADED_FILE {dest}")
    if name:
        lines.append(f"  3. check it:  dissam models verify {name}")
    lines.append(
        "  (or set DISSAM_MIRROR / DISSAM_URL_<NAME> / a registry file to a server you can reach; see docs/models.md)"
    )
    return "\n".join(lines)


def _open(request: urllib.request.Request, timeout: float):
    """One HTTP request (a seam for tests that check which timeout is used)."""
    return urllib.request.urlopen(request, timeout=timeout)


def _user_agent() -> str:
    return f"dissam/{package_version('dissam')} (+model download)"


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs and CI
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=None if enabled else True, leave=False)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200" -> 100
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _total_from(resp, have: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr and not cr.endswith("/*"):
        with contextlib.suppress(ValueError):
            return int(cr.rsplit("/", 1)[1])
    cl = resp.headers.get("Content-Length")
    if cl is not None:
        with contextlib.suppress(ValueError):
            return int(cl) + (have if resp.status == 206 else 0)
    return None


def _transfer(url: str, part: Path, dest: Path, expected_size: int | None, timeout: float, retries: int,
              progress: bool) -> None:
    """Fill ``part`` with the whole body of ``url``, resuming after cuts and stalls."""
    failures = 0
    progressed = False  # bytes arrived in this call: the host is reachable, so a failure is worth a retry
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()  # longer than the real file: not a prefix of it
            have = 0
        if expected_size is not None and have == expected_size:
            return
        headers = {"User-Agent": _user_agent()}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            resp = _open(urllib.request.Request(url, headers=headers), timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing after `have`: the part is already complete
                return
            raise DownloadError(
                f"{url} answered HTTP {exc.code} {exc.reason}.\n"
                + manual_instructions(dest, url)
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            failures += 1
            if have and progressed and failures <= retries:  # a cut transfer: the server may be back
                log.warning("download of %s interrupted (%s); resuming at %d bytes", url, exc, have)
                time.sleep(RETRY_PAUSE_S)
                continue
            reason = getattr(exc, "reason", exc)
            raise OfflineError(
                f"cannot reach {url} ({type(reason).__name__}: {reason}; connect timeout {timeout:g} s). "
                f"The machine may be offline or the host blocked.\n"
                + (f"The {have:,} bytes received so far are kept in {part}; run again to resume.\n" if have else "")
                + manual_instructions(dest, url)
            ) from exc
        with resp:
            start = 0
            if have and resp.status == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != have:
                    raise DownloadError(f"{url}: the server resumed at byte {start}, not {have}; delete {part}")
            total = _total_from(resp, start)
            if expected_size is not None and total is not None and total != expected_size:
                raise DownloadError(
                    f"{url} is {total:,} bytes, but the registry expects {expected_size:,}: a different file "
                    "(a mirror serving another version, or an error page)"
                )
            received = 0
            with open(part, "ab" if start else "wb") as fh, _progress_bar(
                total or expected_size, start, dest.name, progress
            ) as bar:
                cut: BaseException | None = None
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # cut, reset or stalled
                        cut = exc
                        break
                    if not chunk:
                        break
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                fh.flush()
                os.fsync(fh.fileno())
        size_now = start + received
        want = total if total is not None else expected_size
        if cut is None and (want is None or size_now >= want):
            return
        progressed = progressed or received > 0
        failures = 0 if received else failures + 1
        if failures > retries:
            raise DownloadError(
                f"download of {url} keeps failing at {size_now:,} bytes ({cut or 'connection closed early'}); "
                f"the part is kept in {part}: run again to resume.\n" + manual_instructions(dest, url)
            )
        log.warning("download of %s cut at %d bytes (%s); resuming", url, size_now, cut or "closed early")
        time.sleep(RETRY_PAUSE_S)


def download_url(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    verify: Callable[[Path], object] | None = None,
    timeout: float | None = None,
    retries: int = 5,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (atomically, verified, resumable, once across processes).

    Args:
        url: ``http(s)://`` (or ``file://``) URL.
        dest: final path; its folder is created.
        expected_size: bytes, when known: a longer part is discarded, a server announcing another
            size is refused before any byte is written.
        verify: called with the finished temporary file; raise to refuse it (it is then deleted).
        timeout: connect / stall timeout in seconds (default ``DISSAM_DOWNLOAD_TIMEOUT`` or 10).
        retries: resume attempts in a row that bring no new byte before giving up.
        progress: show a tqdm bar (on a terminal only).

    Returns:
        ``dest``.

    Raises:
        OfflineError: offline mode, or the host cannot be reached (names the URL, ``dest`` and how to
            place the file by hand).
        DownloadError: an HTTP error, or a transfer that keeps failing.
        VerificationError (from ``verify``): the downloaded bytes are not the expected file.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    if is_offline():
        raise OfflineError(
            f"{dest.name} is not in the cache and offline mode is on (DISSAM_OFFLINE / HF_HUB_OFFLINE), "
            f"so {url} is not fetched.\n" + manual_instructions(dest, url)
        )
    from filelock import FileLock, Timeout

    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(dest)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another process is downloading %s; waiting for it", dest.name)
        lock.acquire()
    try:
        if dest.is_file():  # the other process finished it while we waited
            return dest
        part = part_path(dest)
        _transfer(url, part, dest, expected_size, timeout or download_timeout(), retries, progress)
        if verify is not None:
            try:
                verify(part)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        os.replace(part, dest)
        log.info("downloaded %s", dest)
        return dest
    finally:
        lock.release()
