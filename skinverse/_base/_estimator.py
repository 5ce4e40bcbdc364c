"""BaseTorchEstimator: the scikit-learn face of the one training loop behind every
skinverse estimator -- parameters, the steps a method overrides, prediction, pickling.

The lifecycle itself (``fit`` as validate, initialise, split, loop, finish) is in
``_loop.py``; what a fit carries between epochs and the rule for the returned weights
are in ``_state.py``.
"""

import copy
import inspect
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._device import check_finite_tensor, device_available, to_numpy, to_tensor
from ._docs import fill_doc
from ._loop import TrainingLoop
from ._sources import STREAM_ROWS, _Column, check_finite_rows, is_lazy_array
from ._state import TrainingState
from ._warn import warn_user

FLOAT_DTYPES = (np.float64, np.float32)
# Rows per forward pass at predict time: bounds memory without a per-sample loop.
PREDICT_CHUNK = 4096


@fill_doc(max_epochs=200, learning_rate=0.001)
def shared_params(namespace):
    """The base's parameters out of a subclass ``__init__``'s ``locals()``.

    Subclasses list every parameter explicitly (scikit-learn reads the signature) and pass
    the shared ones on with ``super().__init__(**shared_params(locals()))``.
    """
    return {name: namespace[name] for name in _SHARED_NAMES}


class BaseTorchEstimator(TrainingLoop, BaseEstimator):
    """Base class of the skinverse estimators: one PyTorch training loop behind the
    scikit-learn API.

    A subclass implements ``_build_module(data)`` (return a ``torch.nn.Module`` for the
    validated training data) and, unless it uses :class:`ClassifierHead` or
    :class:`RegressorHead`, ``_validate_fit_data`` and ``_compute_loss``. The loop -- mini-
    batches indexed on the device, early stopping, recovery from divergence, checkpoints,
    callbacks, CPU-safe pickling -- is shared.

    Parameters
    ----------
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import RegressorMixin
    >>> from torch import nn
    >>> from skinverse.base import BaseTorchEstimator, RegressorHead
    >>> class LinearTorchRegressor(RegressorMixin, RegressorHead, BaseTorchEstimator):
    ...     def _build_module(self, data):
    ...         return nn.Linear(self.n_features_in_, self.n_outputs_)
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> reg = LinearTorchRegressor(max_epochs=5, random_state=0).fit(X, X @ [1.0, 2.0, 3.0])
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "adamw", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [None, StrOptions({"step", "cosine", "plateau"}), callable],
        "grad_clip": [None, Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"})],
        "verbose": ["verbose"],
        "callbacks": [None, list],
        "log_dir": [None, str, os.PathLike],
        "checkpoint_dir": [None, str, os.PathLike],
        "num_workers": [Interval(Integral, 0, None, closed="left")],  # estimators that stream
    }

    def __init__(
        self,
        *,
        max_epochs=200,
        batch_size="auto",
        learning_rate=1e-3,
        optimizer="adam",
        alpha=0.0,
        lr_schedule=None,
        grad_clip=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype="float32",
        verbose=0,
        callbacks=None,
        log_dir=None,
        checkpoint_dir=None,
    ):
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.alpha = alpha
        self.lr_schedule = lr_schedule
        self.grad_clip = grad_clip
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.callbacks = callbacks
        self.log_dir = log_dir
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ steps to override
    def _validate_fit_data(self, X, y, *, reset):
        """Validate the training data; return a dict of per-sample arrays (first axis n)."""
        X, y = validate_data(self, X, y, reset=reset, dtype=FLOAT_DTYPES, y_numeric=True)
        return {"X": X, "y": y}

    def _build_module(self, data):
        """Return a new ``torch.nn.Module`` for the validated training ``data``."""
        raise NotImplementedError

    def _forward(self, X):
        """Network output for a batch of inputs (a tensor on ``device_``)."""
        return self.module_(X)

    def _compute_loss(self, batch):
        """Scalar training loss of one batch (a dict of tensors)."""
        raise NotImplementedError

    def _validation_score(self, val):
        """Score on the validation tensors, higher is better; default: minus the loss."""
        with torch.no_grad():
            losses = [
                float(self._compute_loss(b)) * self._n_rows(b)
                for b in self._iter_batches(val, shuffle=False)
            ]
        return -sum(losses) / self._n_rows(val)

    def _stratify_labels(self, data):
        """Labels to stratify the validation split by (classifiers), or ``None``."""
        return None

    def _optimizer_param_groups(self):
        """Parameters (or param groups) handed to the optimiser."""
        return [p for p in self.module_.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None):
        """Fit the estimator; subclasses document their own signature."""
        return self._fit(X, y, incremental=False)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    # ------------------------------------------------------------------ prediction
    def _predict_outputs(self, X, extras=None):
        """Validate ``X`` and return (network outputs as a tensor, X's float dtype).

        ``extras`` are validated per-sample arrays handed to ``_forward`` chunk by chunk.
        A memory-map or HDF5 dataset is read, validated and predicted ``STREAM_ROWS``
        rows at a time, so only the predictions are held whole.
        """
        check_is_fitted(self)
        if not is_lazy_array(X):
            X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
            return self._forward_chunks(self._predict_inputs(X), extras), X.dtype
        column = _Column(X, "X")
        if len(column) == 0:
            validate_data(self, column.read(np.arange(0)), reset=False, dtype=FLOAT_DTYPES)
        outputs, dtype = [], None
        for start in range(0, len(column), STREAM_ROWS):
            rows = np.arange(start, min(start + STREAM_ROWS, len(column)))
            chunk = column.read(rows)
            check_finite_rows({"X": chunk}, rows)
            chunk = validate_data(self, chunk, reset=False, dtype=FLOAT_DTYPES)
            dtype = chunk.dtype
            more = {k: v[rows] for k, v in extras.items()} if extras else None
            outputs.append(self._forward_chunks(self._predict_inputs(chunk), more, start))
        return torch.cat(outputs), dtype

    def _predict_inputs(self, X):
        """Validated rows of ``X`` as the network takes them (RIM standardises them)."""
        return X

    def _forward_chunks(self, X, extras=None, offset=0):
        self.module_.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], PREDICT_CHUNK):
                rows = slice(start, start + PREDICT_CHUNK)
                chunk = to_tensor(X[rows], dtype=self._torch_dtype, device=self.device_)
                check_finite_tensor(chunk, "X", self.dtype, offset=offset + start)
                if extras:
                    more = self._to_tensors({k: v[rows] for k, v in extras.items()})
                    outputs.append(self._forward(chunk, **more))
                else:
                    outputs.append(self._forward(chunk))
        return torch.cat(outputs)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Everything on the CPU, the training state as its ``state_dict``: loads on any
        machine, and ``warm_start``/``partial_fit`` continue exactly after loading."""
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        for key in ("optimizer_", "scheduler_", "_generator", "_grad_scaler", "_loaders",
                    "_parallel"):
            state.pop(key, None)
        training = state.pop("training_state_", None)
        if training is not None:
            saved = training.state_dict()
            del saved["module"]  # module_ holds the weights
            state["_training_state"] = (_map_tensors(saved, "cpu"), training.hyper)
        on_cpu = getattr(self, "device_", torch.device("cpu")).type == "cpu"
        if "module_" in state and not on_cpu:
            state["module_"] = copy.deepcopy(self.module_).to("cpu")
        return state

    def __setstate__(self, state):
        saved = state.pop("_training_state", None)
        super().__setstate__(state)
        if "module_" not in state:
            return
        if not device_available(self.device_):
            warn_user(
                f"This estimator was fitted on {self.device_}, which is not available "
                "here; it was loaded on the CPU.",
                UserWarning,
            )
            self.device_ = torch.device("cpu")
        self.module_.to(self.device_)
        self._grad_scaler = self._make_grad_scaler()
        if saved is None:
            return
        saved, hyper = saved
        self._generator = torch.Generator(device="cpu")
        optimizer = self._build_optimizer()
        training = TrainingState(self.module_, optimizer, self._build_scheduler(optimizer),
                                 self._generator, self._components())
        saved = _map_tensors(saved, self.device_)
        saved["module"] = self.module_.state_dict()
        saved["components"] = {c.name: saved["components"].get(c.name, c.state_dict())
                               for c in training.components}
        training.load_state_dict(saved)
        training.hyper = hyper
        self.training_state_ = training
        self._publish(training)


_SHARED_NAMES = tuple(
    name for name in inspect.signature(BaseTorchEstimator.__init__).parameters if name != "self"
)


def _map_tensors(obj, device):
    """Copy of a nested dict/list structure with every tensor moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, device) for v in obj)
    return obj


__all__ = ["BaseTorchEstimator", "FLOAT_DTYPES", "shared_params", "to_numpy"]
