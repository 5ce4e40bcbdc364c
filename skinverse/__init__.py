"""skinverse: scikit-learn estimators for learned inverse problems and simulation-based
inference, backed by PyTorch."""

__version__ = "0.1.0.dev0"

import os as _os

# OpenMP threads that find no work spin for a while by default; on a machine where other
# processes keep a core busy, torch's default of one thread per core then runs many times
# slower (a 3-epoch RIM fit, 2 threads, loaded machine: 29.9 s spinning, 5.0 s passive,
# 4.4 s with 1 thread; benchmarks/bench_threads.py: busy/idle 1.7-2.6x -> 0.8-1.1x).
# Passive waiting removes the collapse, at 20-45 % on small 2-thread fits on an idle
# machine. It takes effect only when skinverse is imported before torch and the user
# has not chosen a policy (doc/scaling.rst says how to opt out).
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
