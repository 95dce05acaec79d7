"""DIS-SAM training: typed config, the two-stage trainer, torchrun support."""

from dissam.train.config import TrainConfig, apply_overrides, config_from_dict, load_config
from dissam.train.trainer import Trainer, TrainingError, train
from dissam.train.validation import authors_u8

__all__ = [
    "TrainConfig",
    "load_config",
    "apply_overrides",
    "config_from_dict",
    "Trainer",
    "TrainingError",
    "train",
    "authors_u8",
]
