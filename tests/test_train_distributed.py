"""The process layout and device of a training process, from torchrun's variables (simulated: no
process group is created, CUDA is faked where a GPU is needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from dissam.errors import DisSamError
from dissam.sharding import DistEnv, device_for_rank, dist_env
from dissam.train import distributed
from dissam.train.distributed import DistInfo, init_distributed, training_device

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_MAX_RESTARTS",
                 "TORCHELASTIC_USE_AGENT_STORE")


@pytest.fixture
def env(monkeypatch):
    """Set torchrun's variables (the others removed) for one test."""
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_vars(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_vars


@pytest.fixture
def fake_gpus(monkeypatch):
    """A machine with ``n`` GPUs as far as device selection can tell; records set_device calls."""
    calls = []

    def install(n: int, current: int = 0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(torch.device(dev)))
        return calls

    return install


def test_second_rank_of_two_gets_the_second_gpu(env, fake_gpus):
    env(RANK=1, LOCAL_RANK=1, WORLD_SIZE=2)
    fake_gpus(2)
    layout = dist_env()
    assert layout == DistEnv(rank=1, local_rank=1, world_size=2) and layout.enabled and not layout.is_main
    assert device_for_rank("auto", layout) == torch.device("cuda", 1)
    for requested in ("auto", "cuda"):
        assert training_device(requested, layout) == torch.device("cuda", 1), requested
    assert training_device("cuda:0", layout) == torch.device("cuda", 0)  # an explicit index is kept
    assert training_device("cpu", layout) == torch.device("cpu")


def test_local_rank_not_global_rank_picks_the_gpu_on_a_second_node(env, fake_gpus):
    env(RANK=5, LOCAL_RANK=1, WORLD_SIZE=8)
    fake_gpus(4)
    assert training_device("auto", dist_env()) == torch.device("cuda", 1)


def test_single_process_uses_the_current_gpu_with_an_explicit_index(env, fake_gpus):
    fake_gpus(2, current=1)
    layout = dist_env()
    assert layout == DistEnv(0, 0, 1)
    # torch.cuda.set_device and DDP's device_ids need an index
    assert training_device("auto", layout) == torch.device("cuda", 1)


def test_init_distributed_sets_the_rank_device_without_a_new_process_group(env, fake_gpus, monkeypatch):
    """The device part of init_distributed under a simulated torchrun rank (a process group that
    already exists is reused, so none is created here)."""
    env(RANK=1, LOCAL_RANK=1, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    calls = fake_gpus(2)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("no process group should be created")
    )
    info, dev = init_distributed("auto", "auto")
    assert isinstance(info, DistInfo) and (info.rank, info.local_rank, info.world_size) == (1, 1, 2)
    assert dev == torch.device("cuda", 1) and calls == [torch.device("cuda", 1)]


def test_init_distributed_chooses_the_backend_by_device(env, fake_gpus, monkeypatch):
    env(RANK=0, LOCAL_RANK=0, WORLD_SIZE=2)
    seen = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **k: seen.append(k))
    fake_gpus(0)
    assert init_distributed("auto", "auto")[1] == torch.device("cpu")
    fake_gpus(2)
    assert init_distributed("auto", "auto")[1] == torch.device("cuda", 0)
    assert init_distributed("cpu", "gloo")[1] == torch.device("cpu")
    assert init_distributed("cpu", "gloo", timeout_s=60)[1] == torch.device("cpu")
    assert [k["backend"] for k in seen] == ["gloo", "nccl", "gloo", "gloo"]
    assert all(k["init_method"] == "env://" for k in seen)
    # runtime.dist_timeout_s reaches the process group
    assert [k["timeout"] for k in seen] == [timedelta(seconds=1800)] * 3 + [timedelta(seconds=60)]


def test_restarts_with_the_shared_store_are_warned_about(env, monkeypatch):
    env(RANK=0, LOCAL_RANK=0, WORLD_SIZE=2, TORCHELASTIC_MAX_RESTARTS=1, TORCHELASTIC_USE_AGENT_STORE="True")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    with pytest.warns(UserWarning, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        init_distributed("cpu")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # what that variable makes torchrun set
    assert not distributed.restarts_share_the_agent_store()


def test_plain_process_is_single_and_on_the_cpu_without_cuda(env, fake_gpus):
    fake_gpus(0)
    info, dev = init_distributed("auto", "auto")
    assert (info.rank, info.local_rank, info.world_size, info.enabled) == (0, 0, 1, False)
    assert dev == torch.device("cpu")


@pytest.mark.parametrize(
    "device,match",
    [
        ("cuda", r"runtime.device='cuda' but CUDA is not available; use runtime.device=cpu"),
        ("cuda:1", r"runtime.device='cuda:1' but CUDA is not available"),
        ("gpu0", r"runtime.device='gpu0' is not a device"),
    ],
)
def test_unusable_devices_are_refused_with_the_setting_named(env, fake_gpus, device, match):
    fake_gpus(0)
    with pytest.raises(DisSamError, match=match):
        init_distributed(device, "auto")


@pytest.mark.parametrize(
    "values",
    [{"RANK": 2, "WORLD_SIZE": 2}, {"RANK": "one", "WORLD_SIZE": 2}, {"RANK": 0, "WORLD_SIZE": 0}],
)
def test_inconsistent_torchrun_variables_are_refused(env, values):
    env(**values)
    with pytest.raises(DisSamError, match="RANK"):
        init_distributed("cpu", "auto")


def test_collectives_are_no_ops_for_one_process():
    single = DistInfo()
    distributed.barrier(single)
    assert distributed.broadcast_object(single, {"a": 1}) == {"a": 1}
    assert distributed.all_finite(single, torch.tensor([1.0, 2.0]))
    assert not distributed.all_finite(single, torch.tensor([1.0, float("nan")]))
