"""Training config: defaults = the paper, YAML overlay, typed key=value overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dissam.errors import DisSamError
from dissam.train.config import TrainConfig, apply_overrides, config_from_dict, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_papers_settings():
    c = TrainConfig()
    assert (c.optim.lr, c.optim.batch_size, c.optim.weight_decay) == (4e-5, 6, 0.0)
    assert (c.gt_encoder.lr, c.gt_encoder.target_maxf, c.gt_encoder.bn_mode) == (1e-4, 0.99, "train")
    assert (c.loss.bce_weight, c.loss.iou_weight, c.loss.ortho_weight, c.loss.ortho_mode) == (
        20.0,
        0.5,
        1e-8,
        "all_nonbias",
    )
    assert (c.schedule.valid_every, c.schedule.early_stop, c.data.size) == (3000, 20, 1024)


def test_shipped_configs_load():
    paper = load_config(CONFIGS / "dis_sam.yaml")
    assert paper.model.variant == "dis-sam" and paper.optim.lr == 4e-5 and paper.data.augment is True
    tiny = load_config(CONFIGS / "tiny_cpu.yaml")
    assert tiny.model.variant == "dis-sam-compact" and tiny.data.size == 64


def test_yaml_then_overrides_typed(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 1.0e-3\nschedule:\n  max_steps: 10\n")
    c = load_config(
        p,
        [
            "optim.lr=2e-4",
            "schedule.valid_metrics=[maxFm, HCE]",
            "runtime.compile=true",
            "data.cache_dir=null",
            "data.train=/a/b",
            "optim.betas=[0.8, 0.9]",
            "schedule.max_steps=20",
        ],
    )
    assert c.optim.lr == 2e-4 and isinstance(c.optim.lr, float)
    assert c.schedule.valid_metrics == ["maxFm", "HCE"]
    assert c.runtime.compile is True and c.data.cache_dir is None
    assert c.data.train == ["/a/b"] and c.optim.betas == [0.8, 0.9] and c.schedule.max_steps == 20
    # the resolved config round-trips through its YAML dump
    assert config_from_dict(yaml.safe_load(dump_config(c))) == c


@pytest.mark.parametrize(
    "override,match",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'.*known keys under optim: lr"),
        ("optimizer.lr=1", "unknown config key 'optimizer'"),
        ("optim.batch_size=abc", "optim.batch_size: expected int"),
        ("runtime.compile=maybe", "runtime.compile: expected bool"),
        ("optim.lr", "not of the form"),
        ("optim=3", "optim: expected a mapping"),
    ],
)
def test_bad_overrides(override, match):
    with pytest.raises(DisSamError, match=match):
        apply_overrides(TrainConfig(), [override])


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.variant=big", "model.variant='big' is not one of"),
        ("gt_encoder.bn_mode=frozen", "gt_encoder.bn_mode"),
        ("loss.ortho_mode=convs", "loss.ortho_mode"),
        ("schedule.select_metric=HCE", "must be one of schedule.valid_metrics"),
        ("data.size=100", "multiple of 32"),
        ("model.init=imagenet", "model.init"),
        ("runtime.amp=fp8", "runtime.amp"),
        ("optim.lr_schedule=step", "optim.lr_schedule"),
        ("optim.lr_schedule=cosine", "needs schedule.max_steps"),
    ],
)
def test_invalid_values(override, match):
    with pytest.raises(DisSamError, match=match):
        load_config(None, [override])


def test_missing_config_file(tmp_path):
    with pytest.raises(DisSamError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
