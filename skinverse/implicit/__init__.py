"""Implicit deep learning: equilibrium models ``z = phi(A z + B u + b)``,
``y = C z + D u + c`` as scikit-learn estimators (El Ghaoui et al., 2021)."""

from ._estimator import ImplicitClassifier, ImplicitRegressor

__all__ = ["ImplicitClassifier", "ImplicitRegressor"]
