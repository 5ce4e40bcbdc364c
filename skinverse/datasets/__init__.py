"""Data generators and loaders that work offline."""

from ._signals import load_sample_patches, make_gaussian_signals, squared_exponential_covariance

__all__ = ["load_sample_patches", "make_gaussian_signals", "squared_exponential_covariance"]
