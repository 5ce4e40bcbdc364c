"""What the ``fit``, ``predict`` and ``evaluate`` commands do, as functions."""

import inspect
from pathlib import Path

import numpy as np

from ._cli_data import DataError, load_data
from ._config import (
    ConfigError,
    TrainingError,
    check_picklable,
    estimator_from_config,
    output_path,
    read_config,
    save_model,
)

_RECONSTRUCTORS = ("RIMRegressor", "UnrolledRegressor")


def _side(method, data):
    """The side arrays of ``data`` that ``method`` takes by name."""
    accepted = inspect.signature(method).parameters
    return {k: v for k, v in data.side.items() if k in accepted}


def _data_of(config, path, section="data"):
    """The data of ``config[section]`` (relative files from the config's folder)."""
    if section not in config:
        raise ConfigError(f"config {str(path)!r} needs a '{section}' section.")
    return load_data(config[section], Path(path).parent)


def fit_estimator(estimator, data):
    """``estimator.fit`` on ``data``: from the simulator, or on ``X``, ``y`` and side data."""
    name = type(estimator).__name__
    if data.simulate:
        args, kwargs = (), {}
    else:
        if data.y is None and not hasattr(estimator, "transform"):
            raise DataError(f"{name} needs targets: the data section names no 'y'.")
        args, kwargs = (data.X, data.y), _side(estimator.fit, data)
    try:
        return estimator.fit(*args, **kwargs)
    except (ConfigError, DataError, KeyboardInterrupt):
        raise
    except Exception as exc:  # any failure inside fit is a failed training
        raise TrainingError(f"fitting {name} failed: {type(exc).__name__}: {exc}") from exc


def _call(method, *args, **kwargs):
    """Call a prediction or scoring method; its errors on the given data are data errors."""
    try:
        return method(*args, **kwargs)
    except (ValueError, TypeError, IndexError) as exc:
        owner = type(method.__self__).__name__
        raise DataError(f"{owner}.{method.__name__} failed on this data: {exc}") from exc


def score_estimator(estimator, data):
    """``estimator.score`` on ``data`` (None without targets, or IMNN derivatives)."""
    side = _side(estimator.score, data)
    if data.y is None and "derivatives" not in side:
        return None
    value = _call(estimator.score, data.X, data.y, **side)
    return float(np.asarray(value))


def predict_estimator(estimator, data):
    """``predict`` (or ``transform`` for a transformer) on ``data.X``."""
    method = getattr(estimator, "predict", None) or estimator.transform
    return np.asarray(_call(method, data.X, **_side(method, data)))


def fit_from_config(path, output=None, output_dir="."):
    """Read a config file, fit its estimator on its data, save it with joblib.

    Parameters
    ----------
    path : path
        The config file.
    output : path or None, default=None
        Where to save the model; ``None``: the config's ``output`` name (default
        ``model.joblib``) inside ``output_dir``, which it may not leave.
    output_dir : path, default='.'

    Returns
    -------
    estimator, output_path, training_score
    """
    config = read_config(path)
    data = _data_of(config, path)
    estimator = estimator_from_config(config, data.params)
    check_picklable(estimator, params_only=True)  # fail before training, not after
    if output is None:
        output = output_path(output_dir, config.get("output", "model.joblib"))
    fit_estimator(estimator, data)
    save_model(estimator, output)
    return estimator, Path(output), score_estimator(estimator, data)


def data_for_model(config_path=None, data_file=None):
    """The data ``predict``/``evaluate`` use: a file, or the config's ``test_data``
    (else ``data``) section; with the parameters the problem defines."""
    if data_file is not None:
        return load_data(str(data_file))
    config = read_config(config_path)
    return _data_of(config, config_path, "test_data" if "test_data" in config else "data")


def score_name(estimator):
    """What ``estimator.score`` measures."""
    from sklearn.base import is_classifier

    name = type(estimator).__name__
    if is_classifier(estimator):
        return "accuracy"
    return {"IMNNTransformer": "ln det F", "UnrolledRegressor": "mean PSNR dB "
            "(magnitudes)"}.get(name, "R^2")


def _magnitudes(flat):
    two = np.asarray(flat, dtype=np.float64).reshape(len(flat), 2, -1)
    return np.hypot(two[:, 0], two[:, 1])


def _reconstruction_metrics(estimator, data, pred):
    from .metrics import nmse, psnr, ssim

    truth, pred = np.asarray(data.y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    truth, pred = truth.reshape(len(truth), -1), pred.reshape(len(pred), -1)
    if data.complex_images:
        truth, pred = _magnitudes(truth), _magnitudes(pred)
    shape = data.image_shape
    if shape is not None and int(np.prod(shape)) != truth.shape[1]:
        shape = None
    rows = [("PSNR dB", psnr(truth, pred)), ("NMSE", nmse(truth, pred))]
    rows.append(("SSIM", ssim(truth, pred, image_shape=shape)))
    if "optimal" in data.reference:
        optimal = np.asarray(data.reference["optimal"]).reshape(len(truth), -1)
        ratio = np.mean((pred - truth) ** 2) / np.mean((optimal - truth) ** 2)
        rows.append(("MSE / optimal (posterior mean)", float(ratio)))
    return rows


def _fisher_rows(estimator, data):
    rows = []
    if getattr(estimator, "simulator", None) is not None:
        fisher = estimator.fisher_information(random_state=0)
        rows.append(("ln det F (fresh simulations)", float(np.linalg.slogdet(fisher)[1])))
    if "fisher" in data.reference:
        rows.append(("ln det F analytic", float(np.linalg.slogdet(data.reference["fisher"])[1])))
    return rows


def evaluate_estimator(estimator, data):
    """``[(name, value), ...]``: the estimator's score and, for reconstructions, PSNR, NMSE
    and SSIM (of magnitudes for complex images), and known references."""
    score = score_estimator(estimator, data)
    if score is None:
        raise DataError("evaluate needs targets: the data names no 'y' (nor 'derivatives').")
    rows = [(f"score ({score_name(estimator)})", score)]
    if type(estimator).__name__ in _RECONSTRUCTORS:
        rows += _reconstruction_metrics(estimator, data, predict_estimator(estimator, data))
    if type(estimator).__name__ == "IMNNTransformer":
        rows += _fisher_rows(estimator, data)
    return rows
