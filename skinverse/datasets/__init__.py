"""Data generators and loaders that work offline."""

from ._container import MultiCoilData
from ._fisher_problems import (
    FisherProblem,
    gaussian_mean_problem,
    gaussian_mean_variance_problem,
    gaussian_variance_problem,
    line_slope_problem,
)
from ._images import make_textured_images
from ._mri import (
    load_deepinpy_h5,
    make_cartesian_mask,
    make_coil_maps,
    make_mri_data,
    make_phantoms,
    make_poisson_disc_mask,
)
from ._signals import load_sample_patches, make_gaussian_signals, squared_exponential_covariance

__all__ = [
    "FisherProblem",
    "MultiCoilData",
    "gaussian_mean_problem",
    "gaussian_mean_variance_problem",
    "gaussian_variance_problem",
    "line_slope_problem",
    "load_deepinpy_h5",
    "load_sample_patches",
    "make_cartesian_mask",
    "make_coil_maps",
    "make_mri_data",
    "make_phantoms",
    "make_poisson_disc_mask",
    "make_gaussian_signals",
    "make_textured_images",
    "squared_exponential_covariance",
]
