"""Downloads into the model cache, against a real HTTP server on 127.0.0.1 (tests/hub_helpers.py)."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from hub_helpers import FileServer, closed_port, empty_cache_home, payload, sha256, write_registry  # noqa: I001

from dissam.errors import DownloadError, OfflineError, VerificationError
from dissam.hub import download, fetch, models_dir
from dissam.hub.download import download_url, lock_path, part_path

DATA = payload(300_000)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache root, no offline switches, no overrides, no pause between resume attempts."""
    root = empty_cache_home(tmp_path, monkeypatch)
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.0)
    return root


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.files["/files/tiny.bin"] = DATA
        yield srv


def _register(home, srv, **fields):
    entry = {"role": "refiner", "url": srv.url("/files/tiny.bin"), "filename": "tiny.bin",
             "size": len(DATA), "sha256": sha256(DATA)}
    entry.update(fields)
    write_registry(home, {"tiny": entry})


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_good_download_lands_verified_in_the_cache(home, server):
    _register(home, server)
    path = fetch("tiny", progress=False)
    assert path == models_dir() / "tiny.bin"
    assert path.read_bytes() == DATA
    assert server.log == [("/files/tiny.bin", None, 200)]
    assert _leftovers(path.parent) == []


def test_wrong_checksum_is_refused_and_leaves_nothing_under_the_final_name(home, server):
    _register(home, server, sha256="0" * 64)
    with pytest.raises(VerificationError, match=r"SHA-256 of .* is [0-9a-f]{64}, expected 0{64}"):
        fetch("tiny", progress=False)
    assert not (models_dir() / "tiny.bin").exists()
    assert _leftovers(models_dir()) == []  # the refused part is deleted too


def test_a_server_announcing_another_size_is_refused_before_writing(home, server):
    _register(home, server, size=len(DATA) + 1)
    with pytest.raises(DownloadError, match="the registry expects"):
        fetch("tiny", progress=False)
    assert not (models_dir() / "tiny.bin").exists()


def test_connection_cut_half_way_is_resumed_with_a_range_request(home, server):
    _register(home, server)
    server.cut_after["/files/tiny.bin"] = 120_000
    path = fetch("tiny", progress=False)
    assert path.read_bytes() == DATA
    assert server.log == [("/files/tiny.bin", None, 200), ("/files/tiny.bin", "bytes=120000-", 206)]


def test_a_part_left_by_an_interrupted_run_is_continued(home, server):
    _register(home, server)
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(DATA[:200_000])
    assert fetch("tiny", progress=False).read_bytes() == DATA
    assert server.log == [("/files/tiny.bin", "bytes=200000-", 206)]


def test_a_server_that_ignores_range_replaces_the_part(home, server):
    _register(home, server)
    server.ignore_range = True
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(b"x" * 1000)  # not even a prefix of the file
    assert fetch("tiny", progress=False).read_bytes() == DATA
    assert server.log == [("/files/tiny.bin", "bytes=1000-", 200)]


def test_a_complete_part_is_verified_without_downloading_again(home, server):
    _register(home, server)
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(DATA)  # the run died between the last byte and the rename
    assert fetch("tiny", progress=False).read_bytes() == DATA
    assert server.log == []


def test_two_concurrent_downloaders_make_one_file_and_one_download(home, server):
    _register(home, server)
    server.delay = 0.02  # ~0.1 s of body: the second caller arrives while the first is downloading
    results: list = []
    errors: list = []

    def worker():
        try:
            results.append(fetch("tiny", progress=False))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == DATA
    assert [entry[2] for entry in server.log] == [200]  # one full download, no second request
    assert _leftovers(models_dir()) == []


def test_lock_file_sits_beside_the_destination(home, server):
    _register(home, server)
    path = fetch("tiny", progress=False)
    assert lock_path(path).parent == path.parent and lock_path(path).name == ".tiny.bin.lock"


def test_a_cached_file_makes_no_request(home, server):
    _register(home, server)
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)
    assert fetch("tiny") == dest
    assert server.log == []


def test_a_cached_file_is_used_in_offline_mode(home, server, monkeypatch):
    _register(home, server)
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch("tiny") == dest
    assert server.log == []


def test_a_cached_file_of_the_wrong_size_is_reported(home, server):
    _register(home, server)
    dest = models_dir() / "tiny.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA[:10])
    with pytest.raises(VerificationError, match="has 10 bytes, expected 300,000"):
        fetch("tiny")
    assert server.log == []


@pytest.mark.parametrize("switch", ["DISSAM_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_fails_at_once_with_instructions(home, server, monkeypatch, switch):
    _register(home, server)
    monkeypatch.setenv(switch, "1")
    with pytest.raises(OfflineError) as info:
        fetch("tiny")
    msg = str(info.value)
    assert server.url("/files/tiny.bin") in msg
    assert str(models_dir() / "tiny.bin") in msg and "copy it to" in msg
    assert server.log == []


def test_no_network_gives_a_clear_error_with_a_short_connect_timeout(home, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/sam.pth"
    write_registry(home, {"tiny": {"role": "sam", "url": url, "filename": "sam.pth"}})
    seen: list[float] = []
    real_open = download._open

    def spy(request, timeout):
        seen.append(timeout)
        return real_open(request, timeout)

    monkeypatch.setattr(download, "_open", spy)
    with pytest.raises(OfflineError) as info:
        fetch("tiny")
    msg = str(info.value)
    assert f"cannot reach {url}" in msg and "connect timeout 10 s" in msg
    assert str(models_dir() / "sam.pth") in msg
    assert "copy it to" in msg
    assert seen == [10.0]  # one attempt (no retries before any byte), with the short default timeout
    assert not (models_dir() / "sam.pth").exists()


def test_a_host_that_never_answers_times_out_with_the_configured_timeout(home, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # the kernel accepts the connection; nobody ever answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.pth"
        monkeypatch.setenv("DISSAM_DOWNLOAD_TIMEOUT", "0.3")
        with pytest.raises(OfflineError, match=r"connect timeout 0\.3 s"):
            download_url(url, home / "models" / "x.pth", progress=False)
        assert not (home / "models" / "x.pth").exists()
    finally:
        listener.close()


def test_http_errors_name_the_url(home, server):
    write_registry(home, {"gone": {"role": "sam", "url": server.url("/missing.pth"), "filename": "gone.pth"}})
    with pytest.raises(DownloadError, match=r"/missing.pth answered HTTP 404"):
        fetch("gone")
    assert not (models_dir() / "gone.pth").exists()


def test_a_mirror_serves_every_file_entry(home, server, monkeypatch):
    """DISSAM_MIRROR points the registry's files at one server (air-gapped sites)."""
    server.files["/mirror/tiny.bin"] = DATA
    write_registry(home, {"tiny": {"role": "refiner", "filename": "tiny.bin", "sha256": sha256(DATA)}})
    monkeypatch.setenv("DISSAM_MIRROR", server.url("/mirror/"))
    assert fetch("tiny", progress=False).read_bytes() == DATA
    assert server.log == [("/mirror/tiny.bin", None, 200)]


def test_a_url_variable_overrides_one_entry(home, server, monkeypatch):
    server.files["/other/tiny.bin"] = DATA
    _register(home, server, url="https://unreachable.invalid/tiny.bin")
    monkeypatch.setenv("DISSAM_URL_TINY", server.url("/other/tiny.bin"))
    assert fetch("tiny", progress=False).read_bytes() == DATA
    assert server.log == [("/other/tiny.bin", None, 200)]


def test_structural_check_runs_on_downloads_without_a_checksum(home, server, tmp_path):
    """A refiner published without a checksum is checked by its exact key set and shapes."""
    import torch

    from dissam.hub import get_entry
    from dissam.hub.store import local_path
    from dissam.models.isnet import build_refiner

    good = home.parent / "builtin.safetensors"
    good.write_bytes(local_path(get_entry("dis-sam-compact")).read_bytes())
    bad = tmp_path / "bad.pth"
    torch.save(build_refiner("gt-encoder-compact").state_dict(), bad)
    server.files["/ok.safetensors"] = good.read_bytes()
    server.files["/bad.pth"] = bad.read_bytes()
    write_registry(home, {
        "ok": {"role": "refiner", "url": server.url("/ok.safetensors"), "filename": "ok.safetensors",
               "check": "refiner:dis-sam-compact"},
        "bad": {"role": "refiner", "url": server.url("/bad.pth"), "filename": "bad.pth",
                "check": "refiner:dis-sam-compact"},
    })
    assert fetch("ok", progress=False).read_bytes() == good.read_bytes()
    with pytest.raises(VerificationError, match=r"not the 'dis-sam-compact' network:\n  missing keys"):
        fetch("bad", progress=False)
    assert not (models_dir() / "bad.pth").exists()


def test_two_processes_download_once(home, server):
    """The lock works across processes (e.g. torchrun ranks), not only threads."""
    import subprocess
    import sys

    _register(home, server)
    server.delay = 0.05
    code = "from dissam.hub import fetch; print(fetch('tiny', progress=False))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {str(models_dir() / "tiny.bin")}
    assert (models_dir() / "tiny.bin").read_bytes() == DATA
    assert [entry[2] for entry in server.log] == [200]


def test_a_file_url_mirror_works_for_shared_drives(home, tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    (share / "tiny.bin").write_bytes(DATA)
    write_registry(home, {"tiny": {"role": "refiner", "filename": "tiny.bin", "sha256": sha256(DATA),
                                   "size": len(DATA)}})
    monkeypatch.setenv("DISSAM_MIRROR", share.as_uri())
    assert fetch("tiny", progress=False).read_bytes() == DATA
