"""Hooks into the training loop of every skinverse estimator."""

from ._base._callbacks import Callback, EpochPrinter, ProgressBar, TensorBoardLogger

__all__ = ["Callback", "EpochPrinter", "ProgressBar", "TensorBoardLogger"]
