"""Checkpoints: the training state as tensors and plain values, loaded with
``torch.load(..., weights_only=True)`` so that a file can never run code."""

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = 1
# Parameters that may change between an interrupted fit and its resumption.
_RESUMABLE_PARAMS = ("verbose", "callbacks", "log_dir", "checkpoint_dir", "max_epochs")


def config_key(estimator):
    """A string that identifies the configuration a checkpoint belongs to."""
    params = estimator.get_params(deep=False)
    kept = {k: v for k, v in params.items() if k not in _RESUMABLE_PARAMS}
    return f"{type(estimator).__name__}({sorted(kept.items())!r})"


def checkpoint_path(directory):
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory, state):
    """Write ``state`` atomically (a crash mid-write never leaves a broken file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory)
    tmp = target.with_suffix(".tmp")
    torch.save({"format": _FORMAT, **state}, tmp)
    os.replace(tmp, target)


def load_checkpoint(directory, map_location):
    """The state saved in ``directory``, or ``None`` when there is none."""
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format") != _FORMAT:
        raise ValueError(
            f"{path} was written by an incompatible version of skinverse "
            f"(format {state.get('format')!r}, expected {_FORMAT})."
        )
    return state
