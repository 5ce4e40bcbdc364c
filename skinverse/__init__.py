"""skinverse: scikit-learn estimators for learned inverse problems and simulation-based
inference, backed by PyTorch."""

__version__ = "0.1.0.dev0"

import os as _os

# OpenMP threads that find no work spin by default; on a machine where another process
# keeps a core busy, torch's default of one thread per core then runs 5-10x slower than
# one thread (measured: a 3-epoch RIM fit, 2 threads, one core busy: 29.9 s spinning,
# 5.0 s passive, 4.4 s with 1 thread). Passive waiting removes the collapse. It takes
# effect only when skinverse is imported before torch and the user has not chosen.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
