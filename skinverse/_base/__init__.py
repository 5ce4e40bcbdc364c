"""Shared torch-estimator machinery. Knows no method: device, seeding, the training loop,
callbacks, early stopping, checkpoints, CPU-safe pickling, progress and logging."""

from ._callbacks import Callback, EpochPrinter, ProgressBar, TensorBoardLogger
from ._device import resolve_device, resolve_dtype, to_numpy, to_tensor
from ._docs import doc_defaults, fill_doc
from ._estimator import FLOAT_DTYPES, BaseTorchEstimator, shared_params
from ._heads import ClassifierHead, RegressorHead, normalized_sample_weight
from ._random import init_parameters, make_generator
from ._state import EMA, BestWeights, Component, DivergenceGuard, TrainingState, WarmUp

__all__ = [
    "EMA",
    "FLOAT_DTYPES",
    "BestWeights",
    "Component",
    "DivergenceGuard",
    "TrainingState",
    "WarmUp",
    "BaseTorchEstimator",
    "Callback",
    "ClassifierHead",
    "EpochPrinter",
    "ProgressBar",
    "RegressorHead",
    "TensorBoardLogger",
    "doc_defaults",
    "fill_doc",
    "init_parameters",
    "make_generator",
    "normalized_sample_weight",
    "resolve_device",
    "resolve_dtype",
    "shared_params",
    "to_numpy",
    "to_tensor",
]
