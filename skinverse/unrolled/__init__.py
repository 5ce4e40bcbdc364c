"""Model-based deep reconstruction for inverse problems such as multi-coil MRI (MoDL,
CG-SENSE, Deep Basis Pursuit, unrolled proximal gradient, ResNet post-processing)."""

from ._estimator import UnrolledRegressor

__all__ = ["UnrolledRegressor"]
