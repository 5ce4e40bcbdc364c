"""Config-driven training: JSON (or TOML) configs whose keys map one-to-one to estimator
parameters.

A config is ``{"estimator": name, "params": {...}, "data": {...}, "test_data": {...},
"output": "model.joblib"}``: ``estimator`` and ``params`` are the estimator section
(validated by the estimator's own ``set_params`` and ``_validate_params``), ``data`` the
training data (see :mod:`skinverse._cli_data`), ``test_data`` (optional) what
``predict``/``evaluate`` use instead, ``output`` the model's file name inside the output
directory. A parameter that takes a function may name one as ``{"callable":
"package.module:function"}`` (imported, so only from code you trust).
:func:`config_from_estimator` writes an estimator's ``get_params()`` back as a config.
"""

import importlib
import json
import os
import pickle
import tempfile
from pathlib import Path

from ._cli_data import DataError

_JSON_TYPES = (str, int, float, bool, type(None))
_TOP_KEYS = ("estimator", "params", "data", "test_data", "output")


class ConfigError(ValueError):
    """A config, parameter or output path that cannot be used (exit code 2)."""


class TrainingError(RuntimeError):
    """Fitting failed on valid inputs (exit code 1)."""


def _estimators():
    from .utils import all_estimators

    return dict(all_estimators())


# ---------------------------------------------------------------- reading configs
def read_config(path):
    """The config dict in the JSON (or, by suffix, TOML) file ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            config = tomllib.loads(text)
        else:
            config = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"{str(path)!r} is not valid "
                          f"{'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{str(path)!r} must hold an object with keys {list(_TOP_KEYS)}.")
    unknown = sorted(set(config) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {unknown}; valid: "
                          f"{', '.join(_TOP_KEYS)}.")
    return config


def _resolve_callable(key, value):
    spec = value.get("callable")
    if set(value) != {"callable"} or not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"parameter {key!r}: a table must be {{'callable': "
                          f"'package.module:function'}}, got {value!r}.")
    module, _, name = spec.partition(":")
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"parameter {key!r}: cannot import {spec!r}: {exc}") from exc
    return target


def _convert(cls, key, value, default):
    """JSON has lists where an estimator takes tuples, and no functions."""
    if isinstance(value, dict):
        return _resolve_callable(key, value)
    constraints = getattr(cls, "_parameter_constraints", {}).get(key, [])
    if isinstance(value, list) and (isinstance(default, tuple) or tuple in constraints):
        return tuple(value)
    return value


def estimator_from_config(config, defaults=None):
    """Build and validate the estimator a config describes.

    Parameters
    ----------
    config : dict
        With ``estimator`` (class name) and ``params``.
    defaults : dict or None, default=None
        Parameters a data problem defines; they fill the parameters ``params`` leaves
        unset or ``None``.

    Returns
    -------
    estimator : an unfitted skinverse estimator
    """
    estimators = _estimators()
    name = config.get("estimator")
    if name not in estimators:
        raise ConfigError(f"config 'estimator' must be one of {sorted(estimators)}, "
                          f"got {name!r}.")
    cls = estimators[name]
    estimator = cls()
    valid = estimator.get_params(deep=False)
    params = config.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"config 'params' must be a table, got {params!r}.")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {name}; valid keys: "
                          f"{sorted(valid)}.")
    params = {k: _convert(cls, k, v, valid[k]) for k, v in params.items()}
    for key, value in (defaults or {}).items():
        if key in valid and params.get(key) is None:
            params[key] = value
    estimator.set_params(**params)
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return estimator


def config_from_estimator(estimator, data=None, output=None):
    """The config of ``estimator`` (its JSON-representable parameters), optionally with
    ``data`` and ``output`` sections; :func:`estimator_from_config` inverts it."""
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, _JSON_TYPES) or (isinstance(value, list) and all(
                isinstance(v, _JSON_TYPES) for v in value)):
            params[key] = value
        else:
            raise ConfigError(f"parameter {key}={value!r} cannot be written to a JSON config.")
    config = {"estimator": type(estimator).__name__, "params": params}
    if data is not None:
        config["data"] = data
    if output is not None:
        config["output"] = output
    return config


_TEMPLATE_DATA = {
    "RIMRegressor": {"generator": "rim_deblurring", "n_samples": 1000, "n_features": 32,
                     "noise_std": 0.1, "random_state": 0},
    "IMNNTransformer": {"generator": "gaussian_mean_variance_problem", "n_data": 10,
                        "n_samples": 1000, "mode": "simulator", "random_state": 0},
    "ImplicitClassifier": {"generator": "load_digits"},
    "ImplicitRegressor": {"generator": "load_diabetes"},
    "UnrolledRegressor": {"generator": "make_mri_data", "n_images": 100, "size": 32,
                          "n_coils": 8, "acceleration": 4, "random_state": 0},
}


def template(name):
    """A complete config for estimator ``name``: default parameters and example data."""
    estimators = _estimators()
    if name not in estimators:
        raise ConfigError(f"unknown estimator {name!r}; choose among {sorted(estimators)}.")
    data = _TEMPLATE_DATA.get(name, {"file": "data.npz", "X": "X", "y": "y"})
    test = dict(data, random_state=1) if "random_state" in data else None
    config = config_from_estimator(estimators[name](), data=data, output="model.joblib")
    if test is not None:
        config["test_data"] = test
    return config


# ---------------------------------------------------------------- outputs and saving
def output_path(directory, name):
    """``directory / name``, refusing names that would leave ``directory``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"output name must be a non-empty string, got {name!r}.")
    relative = Path(name)
    if relative.is_absolute() or relative.drive or ".." in relative.parts:
        raise ConfigError(f"output name {name!r} must be a relative path inside the output "
                          f"directory (no absolute path, no '..').")
    root = Path(directory).resolve()
    target = (root / relative).resolve()
    if root != target and root not in target.parents:
        raise ConfigError(f"output {name!r} resolves to {str(target)!r}, outside the output "
                          f"directory {str(root)!r}.")
    return target


def _unpicklable_reason(value):
    try:
        pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - __reduce__ of any object may raise anything
        return exc
    return None


def _is_local_function(value):
    qualname = getattr(value, "__qualname__", "")
    return callable(value) and ("<lambda>" in qualname or "<locals>" in qualname)


def check_picklable(estimator, params_only=False):
    """Raise :class:`ConfigError` naming the parameter that stops ``estimator`` pickling.

    Parameters
    ----------
    estimator : estimator
    params_only : bool, default=False
        Check only the parameters (cheap: before fitting).
    """
    for key, value in estimator.get_params(deep=False).items():
        exc = _unpicklable_reason(value)
        if exc is None:
            continue
        if _is_local_function(value):
            raise ConfigError(
                f"parameter {key!r} is a lambda or local function "
                f"({getattr(value, '__qualname__', value)}), which cannot be pickled, so the "
                f"model could not be saved: define it with 'def' at module level (in an "
                f"importable module) and pass that function instead.")
        raise ConfigError(f"parameter {key!r} cannot be pickled ({type(exc).__name__}: "
                          f"{exc}), so the model could not be saved.")
    if not params_only:
        exc = _unpicklable_reason(estimator)
        if exc is not None:
            raise ConfigError(f"the fitted {type(estimator).__name__} cannot be pickled "
                              f"({type(exc).__name__}: {exc}).")


def save_model(estimator, path):
    """Check that ``estimator`` pickles, then ``joblib.dump`` it atomically to ``path``."""
    import joblib

    check_picklable(estimator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        joblib.dump(estimator, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_model(path):
    """The estimator that ``fit`` saved at ``path`` (a pickle: load only your own files)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {str(path)!r} not found.")
    what = (f"cannot load a model from {str(path)!r}: it is not a model file written by "
            "'python -m skinverse fit' (or joblib.dump of a fitted estimator)")
    try:
        model = joblib.load(path)
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, KeyError,
            IndexError, TypeError, ValueError, OSError) as exc:  # damaged or foreign file
        raise DataError(f"{what} ({type(exc).__name__}: {exc}).") from exc
    if not hasattr(model, "get_params") or not (hasattr(model, "predict")
                                                or hasattr(model, "transform")):
        raise DataError(f"{what}; it holds a {type(model).__name__}.")
    return model
