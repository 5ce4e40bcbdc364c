"""Building blocks for writing your own skinverse-style estimator.

Subclass :class:`BaseTorchEstimator` with a head (:class:`ClassifierHead` or
:class:`RegressorHead`) and implement ``_build_module(data)``; the shared training loop
does the rest.
"""

from ._base import BaseTorchEstimator, ClassifierHead, RegressorHead

__all__ = ["BaseTorchEstimator", "ClassifierHead", "RegressorHead"]
