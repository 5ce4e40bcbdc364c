"""Config-driven training: JSON configs whose keys map one-to-one to estimator parameters.

A config is ``{"estimator": name, "params": {...}, "data": {...}, "output": path}``.
``data`` is either ``{"generator": "mri", ...make_mri_data arguments..., "n_images": n,
"size": s}`` or ``{"h5": path}`` (DeepInPy-style HDF5). :func:`config_from_estimator`
writes an estimator's ``get_params()`` back as a config.
"""

import json
from pathlib import Path

import numpy as np

_JSON_TYPES = (str, int, float, bool, type(None))


def _estimators():
    from .utils import all_estimators

    return dict(all_estimators())


def estimator_from_config(config):
    """Build the estimator a config describes; unknown names and keys are errors."""
    estimators = _estimators()
    name = config.get("estimator")
    if name not in estimators:
        raise ValueError(f"config 'estimator' must be one of {sorted(estimators)}, got {name!r}.")
    cls = estimators[name]
    params = dict(config.get("params", {}))
    valid = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for {name}; valid keys: "
                         f"{sorted(valid)}.")
    for key, value in params.items():  # JSON has lists where the estimators take tuples
        if isinstance(value, list) and isinstance(valid[key], tuple):
            params[key] = tuple(value)
    return cls(**params)


def config_from_estimator(estimator, data=None, output=None):
    """The config of ``estimator`` (its JSON-representable parameters), optionally with
    ``data`` and ``output`` sections; ``estimator_from_config`` inverts it."""
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, _JSON_TYPES) or (isinstance(value, list) and all(
                isinstance(v, _JSON_TYPES) for v in value)):
            params[key] = value
        else:
            raise ValueError(f"parameter {key}={value!r} cannot be written to a JSON config.")
    config = {"estimator": type(estimator).__name__, "params": params}
    if data is not None:
        config["data"] = data
    if output is not None:
        config["output"] = output
    return config


def load_data(spec):
    """``(X, y, fit_params)`` from a config's ``data`` section."""
    spec = dict(spec)
    if "h5" in spec:
        from .datasets import load_deepinpy_h5

        X, y, maps, masks = load_deepinpy_h5(spec.pop("h5"), **spec)
        return X, y, {"maps": maps, "masks": masks}
    generator = spec.pop("generator", None)
    if generator != "mri":
        raise ValueError("config 'data' needs {'generator': 'mri', ...} or {'h5': path}.")
    from .datasets import make_mri_data, make_phantoms

    n_images, size = spec.pop("n_images", 100), spec.pop("size", 64)
    known = {"n_coils", "acceleration", "noise_std", "mask", "random_state"}
    unknown = sorted(set(spec) - known)
    if unknown:
        valid = sorted(known | {"n_images", "size", "generator", "h5"})
        raise ValueError(f"unknown data key(s) {unknown}; valid: {valid}.")
    images = make_phantoms(n_images, size, random_state=spec.get("random_state"))
    X, y, maps, masks = make_mri_data(images, **spec)
    return X, y, {"maps": maps, "masks": masks}


def fit_from_config(path, output=None):
    """Read a config file, fit its estimator on its data, save it with joblib.

    Returns
    -------
    estimator, output_path, training_score
    """
    import joblib

    config = json.loads(Path(path).read_text())
    unknown = sorted(set(config) - {"estimator", "params", "data", "output"})
    if unknown:
        raise ValueError(f"unknown top-level config key(s) {unknown}; valid: estimator, "
                         "params, data, output.")
    estimator = estimator_from_config(config)
    if "data" not in config:
        raise ValueError("config needs a 'data' section.")
    X, y, fit_params = load_data(config["data"])
    estimator.fit(X, y, **fit_params)
    output = Path(output or config.get("output") or "model.joblib")
    joblib.dump(estimator, output)
    score = float(np.asarray(estimator.score(X, y, **fit_params)))
    return estimator, output, score
