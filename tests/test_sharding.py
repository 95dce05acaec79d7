"""``dissam.sharding``: one reading of torchrun's variables for every sharded command."""

from __future__ import annotations

import json

import pytest
import torch

from dissam.errors import DisSamError
from dissam.sharding import DistEnv, device_for_rank, dist_env, gather_reports, report_fatal, shard


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "DISSAM_BARRIER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_without_variables(clean_env):
    env = dist_env()
    assert env == DistEnv(0, 0, 1) and env.is_main and not env.enabled and env.tag() == ""


def test_torchrun_variables_on_two_nodes(clean_env):
    clean_env.setenv("RANK", "5")
    clean_env.setenv("LOCAL_RANK", "1")
    clean_env.setenv("WORLD_SIZE", "8")
    env = dist_env()
    assert env == DistEnv(5, 1, 8) and not env.is_main and env.tag() == " [rank 5/8]"


@pytest.mark.parametrize("rank,world,local", [("2", "2", None), ("-1", "2", None), ("x", "2", None), ("0", "0", None),
                                              ("0", "2", "-1")])
def test_bad_variables_are_clear_errors(clean_env, rank, world, local):
    clean_env.setenv("RANK", rank)
    clean_env.setenv("WORLD_SIZE", world)
    if local is not None:
        clean_env.setenv("LOCAL_RANK", local)
    with pytest.raises(DisSamError, match="RANK|LOCAL_RANK"):
        dist_env()


def test_each_rank_gets_its_own_gpu(clean_env, monkeypatch):
    """The benchmark bug: every rank on cuda:0. Under torchrun, auto and bare "cuda" mean cuda:LOCAL_RANK."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert device_for_rank("auto", DistEnv(5, 1, 8)) == torch.device("cuda", 1)
    assert device_for_rank("cuda", DistEnv(3, 3, 4)) == torch.device("cuda", 3)
    assert device_for_rank(None, DistEnv(6, 6, 8)) == torch.device("cuda", 2)  # 8 processes on 4 GPUs
    assert device_for_rank("cuda:2", DistEnv(1, 1, 4)) == torch.device("cuda", 2)  # explicit index kept
    assert device_for_rank("auto", DistEnv()) == torch.device("cuda")  # one process: the current GPU
    assert device_for_rank("cpu", DistEnv(1, 1, 2)) == torch.device("cpu")
    clean_env.setenv("RANK", "1")
    clean_env.setenv("LOCAL_RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    assert device_for_rank("auto") == torch.device("cuda", 1)  # read from the environment


def test_cuda_requested_without_cuda(clean_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for_rank("auto", DistEnv(1, 1, 2)) == torch.device("cpu")
    with pytest.raises(DisSamError, match="CUDA is not available"):
        device_for_rank("cuda", DistEnv(1, 1, 2))


def test_shard_parts_are_disjoint_and_cover():
    items = list(range(11))[::-1]
    parts = [shard(items, r, 3, key=int) for r in range(3)]
    assert sorted(x for p in parts for x in p) == list(range(11))
    assert parts[0] == [0, 3, 6, 9]


def test_file_barrier_gathers_in_rank_order_and_reports_a_stopped_rank(clean_env, tmp_path):
    envs = [DistEnv(r, r, 3) for r in range(3)]
    assert gather_reports({"rank": 2, "n": 20}, envs[2], tmp_path, poll_s=0.01) is None
    assert gather_reports({"rank": 1, "n": 10}, envs[1], tmp_path, poll_s=0.01) is None
    got = gather_reports({"rank": 0, "n": 0}, envs[0], tmp_path, poll_s=0.01)
    assert [r["n"] for r in got] == [0, 10, 20]
    bad = tmp_path / "bad"
    report_fatal(envs[1], bad, "weights not found")
    assert json.loads((bad / "rank1.json").read_text())["fatal"] == "weights not found"
    with pytest.raises(DisSamError, match="rank 1 stopped: weights not found"):
        gather_reports({"rank": 0}, envs[0], bad, timeout_s=5, poll_s=0.01)
    with pytest.raises(DisSamError, match="timed out waiting for rank1.json, rank2.json"):
        gather_reports({"rank": 0}, envs[0], tmp_path / "empty", timeout_s=0.05, poll_s=0.01)
