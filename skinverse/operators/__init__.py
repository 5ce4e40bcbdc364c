"""Forward models (torch only): forward, adjoint, normal operator, the Gaussian
log-likelihood and its score, operator norm, conjugate gradients and composition.

Shared by :class:`~skinverse.rim.RIMRegressor` (the likelihood score) and the unrolled
estimators (data consistency).
"""

from ._base import Composition, LinearOperator, adjoint_test, conjugate_gradient
from ._families import Blur, Identity, Inpainting, MatrixOperator, gaussian_kernel
from ._mri import MultiCoilMRI, SubsampledFourier, fft2c, ifft2c

__all__ = [
    "Blur",
    "Composition",
    "Identity",
    "Inpainting",
    "LinearOperator",
    "MatrixOperator",
    "MultiCoilMRI",
    "SubsampledFourier",
    "adjoint_test",
    "conjugate_gradient",
    "fft2c",
    "gaussian_kernel",
    "ifft2c",
]
