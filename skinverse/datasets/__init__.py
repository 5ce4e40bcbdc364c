"""Data generators and loaders that work offline."""

from ._container import MultiCoilData
from ._fisher_problems import (
    FisherProblem,
    exponential_rate_problem,
    gaussian_mean_problem,
    gaussian_mean_variance_problem,
    gaussian_variance_problem,
    laplace_location_problem,
    line_slope_problem,
    linear_model_problem,
    lognormal_problem,
)
from ._images import make_textured_images
from ._lazy import HDF5Array
from ._mri import (
    load_deepinpy_h5,
    make_cartesian_mask,
    make_coil_maps,
    make_mri_data,
    make_phantoms,
    make_poisson_disc_mask,
)
from ._signals import (
    LinearGaussianProblem,
    load_sample_patches,
    make_gaussian_signals,
    make_linear_gaussian_problem,
    squared_exponential_covariance,
)

__all__ = [
    "FisherProblem",
    "HDF5Array",
    "LinearGaussianProblem",
    "MultiCoilData",
    "exponential_rate_problem",
    "gaussian_mean_problem",
    "gaussian_mean_variance_problem",
    "gaussian_variance_problem",
    "laplace_location_problem",
    "line_slope_problem",
    "linear_model_problem",
    "lognormal_problem",
    "load_deepinpy_h5",
    "load_sample_patches",
    "make_cartesian_mask",
    "make_coil_maps",
    "make_mri_data",
    "make_phantoms",
    "make_poisson_disc_mask",
    "make_gaussian_signals",
    "make_linear_gaussian_problem",
    "make_textured_images",
    "squared_exponential_covariance",
]
