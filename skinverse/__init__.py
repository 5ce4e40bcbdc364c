"""skinverse: scikit-learn estimators for learned inverse problems and simulation-based
inference, backed by PyTorch."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
