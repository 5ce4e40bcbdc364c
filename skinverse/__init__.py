"""skinverse: scikit-learn estimators for learned inverse problems and simulation-based
inference, backed by PyTorch."""

__version__ = "0.1.0.dev0"

from .imnn import IMNNTransformer  # noqa: E402
from .implicit import ImplicitClassifier, ImplicitRegressor  # noqa: E402
from .rim import RIMRegressor  # noqa: E402
from .unrolled import UnrolledRegressor  # noqa: E402

__all__ = [
    "IMNNTransformer",
    "ImplicitClassifier",
    "ImplicitRegressor",
    "RIMRegressor",
    "UnrolledRegressor",
    "__version__",
]
