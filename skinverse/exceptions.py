"""Warnings and errors raised by skinverse."""

from sklearn.exceptions import ConvergenceWarning, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "CheckpointError",
    "DivergenceWarning",
    "EquilibriumConvergenceWarning",
    "NotFittedError",
    "PhysicsMismatchWarning",
    "TrainingDivergedError",
    "TrainingInterruptedWarning",
]


class DivergenceWarning(ConvergenceWarning):
    """Training met a non-finite loss or non-finite weights and was stopped.

    The last weights with a finite loss are restored, so the fitted estimator never
    predicts NaN; the optimiser state is reset.
    """


class TrainingInterruptedWarning(UserWarning):
    """``fit`` was interrupted (KeyboardInterrupt); the estimator keeps the best weights
    seen so far and is usable."""


class EquilibriumConvergenceWarning(ConvergenceWarning):
    """A fixed-point solve of an implicit model ended above its tolerance.

    The message states the largest residual; the lowest-residual iterate was used.
    """


class TrainingDivergedError(FloatingPointError):
    """Training met a non-finite loss before any epoch lowered the loss, so there are no
    trained weights to return; the estimator is left unfitted."""


class CheckpointError(ValueError):
    """A checkpoint file is damaged, foreign, or was written by another configuration."""


class PhysicsMismatchWarning(UserWarning):
    """The training pairs do not fit the forward model given (``X`` far from ``A(y)``
    in units of ``noise_std``): usually ``X`` was rescaled before the estimator."""
