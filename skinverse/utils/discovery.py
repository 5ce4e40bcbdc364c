"""Find every public skinverse estimator (used by the common tests and the docs)."""

import importlib
import inspect
import pkgutil
from operator import itemgetter

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin

_TYPE_MIXINS = {
    "classifier": ClassifierMixin,
    "regressor": RegressorMixin,
    "transformer": TransformerMixin,
}


def _public_modules():
    import skinverse

    yield skinverse
    prefix = skinverse.__name__ + "."
    for info in pkgutil.walk_packages(skinverse.__path__, prefix=prefix):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or "tests" in parts:
            continue
        yield importlib.import_module(info.name)


def all_estimators(type_filter=None):
    """Public estimators of skinverse, as sorted ``(name, class)`` pairs.

    A class counts when a public module exposes it, it derives from
    :class:`sklearn.base.BaseEstimator`, its name is public and does not start with
    ``Base``, and it is not abstract.

    Parameters
    ----------
    type_filter : {'classifier', 'regressor', 'transformer'}, list of those or None
        Keep only estimators of these kinds.

    Returns
    -------
    estimators : list of (str, type)
        Name and class of each estimator, sorted by name.

    Examples
    --------
    >>> from skinverse.utils import all_estimators
    >>> names = [name for name, _ in all_estimators()]
    """
    found = {}
    for module in _public_modules():
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseEstimator)
                and cls.__module__.startswith("skinverse")
                and not name.startswith(("_", "Base"))
                and not inspect.isabstract(cls)
            ):
                found[name] = cls
    estimators = sorted(found.items(), key=itemgetter(0))
    if type_filter is None:
        return estimators
    kinds = [type_filter] if isinstance(type_filter, str) else list(type_filter)
    unknown = set(kinds) - set(_TYPE_MIXINS)
    if unknown:
        raise ValueError(
            f"type_filter must be None or among {sorted(_TYPE_MIXINS)}, got {sorted(unknown)}."
        )
    return [
        (name, cls)
        for name, cls in estimators
        if any(issubclass(cls, _TYPE_MIXINS[kind]) for kind in kinds)
    ]
