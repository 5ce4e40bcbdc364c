"""Building blocks for writing your own skinverse-style estimator.

Subclass :class:`BaseTorchEstimator` with a head (:class:`ClassifierHead` or
:class:`RegressorHead`) and implement ``_build_module(data)``; the shared training loop
does the rest.
"""

from ._base import (
    EMA,
    BaseTorchEstimator,
    BestWeights,
    ClassifierHead,
    Component,
    DivergenceGuard,
    RegressorHead,
    TrainingState,
    WarmUp,
)

__all__ = [
    "EMA",
    "BaseTorchEstimator",
    "BestWeights",
    "ClassifierHead",
    "Component",
    "DivergenceGuard",
    "RegressorHead",
    "TrainingState",
    "WarmUp",
]
