"""Checkpoints: the training state as tensors and plain values, loaded with
``torch.load(..., weights_only=True)`` so that a file can never run code."""

import os
from pathlib import Path

import torch

from ._distributed import is_main_process

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


class CheckpointMixin:
    """Saving the training state after every epoch and resuming from it (the base's)."""

    def _checkpoint_state(self, finished):
        return {
            "config": config_key(self),
            "n_features_in": getattr(self, "n_features_in_", None),
            "finished": finished,
            "module": self.module_.state_dict(),
            "optimizer": None if self.optimizer_ is None else self.optimizer_.state_dict(),
            "scheduler": None if self.scheduler_ is None else self.scheduler_.state_dict(),
            "generator": self._generator.get_state(),
            "best_state": self._best_state,
            "n_iter": self.n_iter_,
            "t": self.t_,
            "loss_curve": list(self.loss_curve_),
            "best_loss": float(self.best_loss_),
            "validation_scores": self.validation_scores_,
            "best_validation_score": self.best_validation_score_,
            "no_improvement_count": self._no_improvement_count,
        }

    def _save_checkpoint(self, finished):
        if self.checkpoint_dir is not None and is_main_process():
            save_checkpoint(self.checkpoint_dir, self._checkpoint_state(finished))

    def _resume_from_checkpoint(self):
        """Load a checkpoint of this configuration; return the epochs it already ran."""
        if self.checkpoint_dir is None:
            return 0
        state = load_checkpoint(self.checkpoint_dir, map_location=self.device_)
        if state is None:
            return 0
        expected = config_key(self)
        if state["config"] != expected or state["n_features_in"] != getattr(
            self, "n_features_in_", None
        ):
            raise ValueError(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} holds a checkpoint of another "
                f"configuration or data shape:\n  saved:    {state['config']} with "
                f"{state['n_features_in']} features\n  expected: {expected} with "
                f"{getattr(self, 'n_features_in_', None)} features\n"
                "Use an empty directory or remove the checkpoint."
            )
        self.module_.load_state_dict(state["module"])
        if self.optimizer_ is not None:
            self.optimizer_.load_state_dict(state["optimizer"])
        if self.scheduler_ is not None and state["scheduler"] is not None:
            self.scheduler_.load_state_dict(state["scheduler"])
        self._generator.set_state(state["generator"].cpu())  # map_location moved it
        self._best_state = state["best_state"]
        self.n_iter_, self.t_ = state["n_iter"], state["t"]
        self.loss_curve_ = list(state["loss_curve"])
        self.best_loss_ = state["best_loss"]
        self.validation_scores_ = state["validation_scores"]
        self.best_validation_score_ = state["best_validation_score"]
        self._no_improvement_count = state["no_improvement_count"]
        if self.verbose:
            print(f"Resumed from {checkpoint_path(self.checkpoint_dir)} "
                  f"at epoch {self.n_iter_}.")
        return self.max_epochs if state["finished"] else self.n_iter_
