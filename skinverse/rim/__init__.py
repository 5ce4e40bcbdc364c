"""Recurrent Inference Machines (Putzky & Welling, 2017): a learned optimiser for inverse
problems, as a scikit-learn regressor."""

from ._estimator import RIMRegressor

__all__ = ["RIMRegressor"]
