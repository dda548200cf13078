"""Training the U-Net: data folders, augmentation, the loop, held-out evaluation."""

from nucscale.train._data import Sample, list_ids, load_samples, load_split, split_ids, targets
from nucscale.train._loop import (
    TrainConfig,
    export_weights,
    loss_fn,
    make_batch,
    train,
    tune_checkpoint,
)

__all__ = [
    "Sample",
    "TrainConfig",
    "export_weights",
    "list_ids",
    "load_samples",
    "load_split",
    "loss_fn",
    "make_batch",
    "split_ids",
    "targets",
    "train",
    "tune_checkpoint",
]
