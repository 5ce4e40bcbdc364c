"""BaseTorchEstimator: the one training loop behind every skinverse estimator.

``fit`` reads as a table of contents -- validate, initialise, split, loop, finish -- and
each step is a small method that an estimator overrides where its method needs to
(``_build_module``, ``_compute_loss``, ``_train_step``, ``_run_epoch``, ...).
"""

import copy
import inspect
import math
import os
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..exceptions import ConvergenceWarning, DivergenceWarning, TrainingInterruptedWarning
from ._callbacks import Callback, EpochPrinter, ProgressBar, TensorBoardLogger
from ._checkpoint import CheckpointMixin
from ._device import device_available, resolve_device, resolve_dtype, to_numpy, to_tensor
from ._distributed import all_reduce_sum, average_gradients, is_main_process, shard, world
from ._docs import fill_doc
from ._random import build_module_isolated, init_parameters, make_generator
from ._warn import warn_user

FLOAT_DTYPES = (np.float64, np.float32)
# Fused Adam/AdamW/SGD on the CPU arrived in torch 2.4 (on CUDA earlier).
_FUSED_OPTIMIZERS = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)
# Rows per forward pass at predict time: bounds memory without a per-sample loop.
PREDICT_CHUNK = 4096


@fill_doc(max_epochs=200, learning_rate=0.001)
def shared_params(namespace):
    """The base's parameters out of a subclass ``__init__``'s ``locals()``.

    Subclasses list every parameter explicitly (scikit-learn reads the signature) and pass
    the shared ones on with ``super().__init__(**shared_params(locals()))``.
    """
    return {name: namespace[name] for name in _SHARED_NAMES}


class BaseTorchEstimator(CheckpointMixin, BaseEstimator):
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

    # ------------------------------------------------------------------ the loop
    def _fit(self, X, y, *, incremental, **fit_params):
        """Validate, initialise (or continue), split and run the epochs."""
        continuing = (incremental or self.warm_start) and self.__sklearn_is_fitted__()
        data = self._validate_fit_data(X, y, reset=not continuing, **fit_params)
        n_epochs = 1 if incremental else self.max_epochs
        if not continuing:
            self._initialize(data)
            n_epochs -= self._resume_from_checkpoint()
        tensors = self._to_tensors(data)
        use_validation = self.early_stopping and not incremental
        train, val = self._split(tensors, data) if use_validation else (tensors, None)
        self._fit_loop(train, val, max(n_epochs, 0), incremental=incremental)
        return self

    def _initialize(self, data):
        """Fresh fitted state: device, generator, module, optimiser, curves."""
        self.device_ = resolve_device(self.device)
        self._torch_dtype = resolve_dtype(self.dtype)
        self._generator = make_generator(self.random_state)
        module = build_module_isolated(lambda: self._build_module(data))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"_build_module must return a torch.nn.Module, got {type(module).__name__}."
            )
        init_parameters(module, self._generator)
        self.module_ = module.to(device=self.device_, dtype=self._torch_dtype)
        self.optimizer_ = self._build_optimizer()
        self.scheduler_ = self._build_scheduler()
        # float16 autocast (estimators with a mixed_precision parameter) needs loss scaling.
        fp16 = getattr(self, "mixed_precision", None) == "fp16"
        self._grad_scaler = (torch.amp.GradScaler("cuda") if fp16 and self.device_.type == "cuda"
                             else None)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._no_improvement_count = 0
        self._best_state = None

    def _build_optimizer(self):
        params = self._optimizer_param_groups()
        if not params:  # nothing to learn (e.g. CG-SENSE with a fixed lambda)
            return None
        options = {"lr": self.learning_rate, "weight_decay": self.alpha}
        if _FUSED_OPTIMIZERS and self.device_.type in ("cpu", "cuda"):
            options["fused"] = True  # one kernel for all parameters: ~3x faster steps
        if self.optimizer == "adam":
            return torch.optim.Adam(params, **options)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, **options)
        return torch.optim.SGD(params, momentum=0.9, nesterov=True, **options)

    def _build_scheduler(self):
        sched = torch.optim.lr_scheduler
        if self.lr_schedule is None or self.optimizer_ is None:
            return None
        if callable(self.lr_schedule):
            return self.lr_schedule(self.optimizer_)
        if self.lr_schedule == "step":
            return sched.StepLR(self.optimizer_, step_size=max(1, self.max_epochs // 3))
        if self.lr_schedule == "cosine":
            return sched.CosineAnnealingLR(self.optimizer_, T_max=self.max_epochs)
        mode = "max" if self.early_stopping else "min"
        patience = max(1, self.n_iter_no_change // 2)
        return sched.ReduceLROnPlateau(self.optimizer_, mode=mode, patience=patience)

    def _to_tensors(self, data):
        """Per-sample arrays to tensors on the device (floats in the module's dtype)."""
        out = {}
        for key, value in data.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                kind = "f" if value.is_floating_point() else "i"
            else:
                kind = np.asarray(value).dtype.kind
            dtype = self._torch_dtype if kind in "fc" else torch.long if kind in "iu" else None
            if isinstance(value, torch.Tensor):
                out[key] = value.to(device=self.device_, dtype=dtype)
            else:
                out[key] = to_tensor(value, dtype=dtype, device=self.device_)
        return out

    def _split(self, tensors, data):
        """Hold out ``validation_fraction`` of the samples (stratified when possible)."""
        n = self._n_rows(tensors)
        seed = int(torch.randint(2**31 - 1, (1,), generator=self._generator))
        try:
            train_idx, val_idx = train_test_split(
                np.arange(n),
                test_size=self.validation_fraction,
                random_state=seed,
                stratify=self._stratify_labels(data),
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping=True could not hold out validation_fraction="
                f"{self.validation_fraction} of {n} samples: {exc}"
            ) from exc
        take = lambda idx: {  # noqa: E731
            k: v[torch.as_tensor(idx, device=v.device)] for k, v in tensors.items()
        }
        return take(train_idx), take(val_idx)

    @staticmethod
    def _n_rows(tensors):
        return len(next(iter(tensors.values())))

    def _effective_batch_size(self, n):
        return min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)

    def _iter_batches(self, tensors, *, shuffle):
        """Mini-batches by indexing tensors already on the device (no DataLoader)."""
        n = self._n_rows(tensors)
        size = self._effective_batch_size(n)
        if not shuffle:
            for start in range(0, n, size):
                yield {k: v[start : start + size] for k, v in tensors.items()}
            return
        order = torch.randperm(n, generator=self._generator).to(self.device_)
        for start in range(0, n, size):
            idx = order[start : start + size]
            yield {k: v[idx] for k, v in tensors.items()}

    def _train_step(self, batch, share=1.0):
        """One optimiser step on (this rank's share of) a batch; returns the detached loss.

        Under ``torch.distributed`` the gradients of the ranks' slices are averaged,
        weighted by ``share``, so the step is the one of the whole global batch.
        """
        if self.optimizer_ is None:
            with torch.no_grad():
                return self._compute_loss(batch).detach()
        self.optimizer_.zero_grad(set_to_none=True)
        loss = self._compute_loss(batch)
        scaler = self._grad_scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
        if self._world_size > 1:
            average_gradients(self.module_.parameters(), share)
        if scaler is not None:
            scaler.unscale_(self.optimizer_)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.module_.parameters(), self.grad_clip)
        if scaler is None:
            self.optimizer_.step()
        else:
            scaler.step(self.optimizer_)
            scaler.update()
        return loss.detach()

    def _run_epoch(self, train, batch_hooks):
        """One pass over ``train``; returns the mean loss (one device sync per epoch)."""
        self.module_.train()
        losses, sizes = [], []
        for index, batch in enumerate(self._iter_batches(train, shuffle=True)):
            local, share = batch, 1.0
            if self._world_size > 1:
                local, share = shard(batch, self._n_rows(batch))
            loss = self._train_step(local, share)
            losses.append(loss)
            sizes.append(self._n_rows(local))
            for hook in batch_hooks:
                hook.on_batch_end(self, index, loss)
        weights = torch.tensor(sizes, dtype=torch.float64, device=self.device_)
        totals = torch.stack([torch.stack(losses).to(torch.float64) @ weights, weights.sum()])
        if self._world_size > 1:
            all_reduce_sum(totals)  # over ranks: the global-batch mean
        total, n = totals.tolist()
        self.t_ += int(n)
        return total / n

    def _all_callbacks(self, n_batches):
        """The built-in callbacks the parameters ask for, then the user's."""
        callbacks = []
        main = is_main_process()  # under torch.distributed only rank 0 prints and logs
        if self.verbose and main:
            callbacks.append(EpochPrinter())
        if self.verbose >= 2 and main:
            callbacks.append(ProgressBar(n_batches))
        if self.log_dir is not None and main:
            callbacks.append(TensorBoardLogger(self.log_dir))
        for cb in self.callbacks or []:
            if not isinstance(cb, Callback):
                raise TypeError(
                    "callbacks must be a list of skinverse.callbacks.Callback instances, "
                    f"got {type(cb).__name__}."
                )
            callbacks.append(cb)
        return callbacks

    def _fit_loop(self, train, val, n_epochs, *, incremental):
        batch_size = self._effective_batch_size(self._n_rows(train))
        self._world_size = world()[1]
        if batch_size < self._world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {self._world_size} data-parallel "
                "processes: every process needs at least one sample of each batch."
            )
        n_batches = math.ceil(self._n_rows(train) / batch_size)
        callbacks = self._all_callbacks(n_batches)
        batch_hooks = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        for cb in callbacks:
            cb.on_train_begin(self)
        self._last_good = self._snapshot()
        stopped = interrupted = False
        try:
            for _ in range(n_epochs):
                epoch = self.n_iter_ + 1
                for cb in callbacks:
                    cb.on_epoch_begin(self, epoch)
                start = time.perf_counter()
                loss = self._run_epoch(train, batch_hooks)
                if not math.isfinite(loss):
                    self._recover_from_divergence(f"loss {loss} at epoch {epoch}")
                    stopped = True
                    break
                logs = self._end_epoch(epoch, loss, val, start)
                for cb in callbacks:
                    cb.on_epoch_end(self, logs)
                self._save_checkpoint(finished=False)
                if logs["stop"]:
                    stopped = True
                    break
        except KeyboardInterrupt:
            stopped = interrupted = True
            best = self._best_state if val is not None else None
            self._restore(best if best is not None else self._last_good)
            warn_user(
                f"Training interrupted after {self.n_iter_} epoch(s); the estimator keeps "
                f"the {'best' if val is not None else 'last completed'} weights and can "
                "be used or trained further with warm_start=True.",
                TrainingInterruptedWarning,
            )
        self._finish(val, callbacks, stopped or incremental or n_epochs == 0, interrupted)

    def _end_epoch(self, epoch, loss, val, start):
        """Record the epoch, update the stopping criterion and the scheduler."""
        self.n_iter_ += 1
        self.loss_curve_.append(loss)
        score = None
        if val is not None:
            self.module_.eval()
            score = float(self._validation_score(val))
            self.validation_scores_.append(score)
        self._update_no_improvement_count(loss, score)
        learning_rate = (self.optimizer_.param_groups[0]["lr"]  # the rate this epoch used
                         if self.optimizer_ is not None else 0.0)
        if self.scheduler_ is not None:
            plateau = isinstance(self.scheduler_, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if plateau:
                self.scheduler_.step(score if score is not None else loss)
            else:
                self.scheduler_.step()
        self._last_good = self._snapshot()
        return {
            "epoch": epoch,
            "loss": loss,
            "validation_score": score,
            "learning_rate": learning_rate,
            "seconds": time.perf_counter() - start,
            "stop": self._no_improvement_count >= self.n_iter_no_change,
        }

    def _update_no_improvement_count(self, loss, score):
        """sklearn's MLP rule: count epochs that do not improve by more than ``tol``."""
        if score is not None:
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self._snapshot()
        else:
            improved = loss <= self.best_loss_ - self.tol
        self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1

    def _finish(self, val, callbacks, stopped, interrupted=False):
        if not self._parameters_finite():
            self._recover_from_divergence("non-finite weights after the last step")
        if val is not None and self._best_state is not None:
            self._restore(self._best_state)
        self.module_.eval()
        for cb in callbacks:
            cb.on_train_end(self)
        if not interrupted:  # the last epoch's checkpoint stays the one to resume from
            self._save_checkpoint(finished=True)
        self._last_good = None
        if not stopped:
            warn_user(
                f"Maximum number of epochs ({self.max_epochs}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )

    def _recover_from_divergence(self, what):
        self._restore(self._last_good)
        self.optimizer_ = self._build_optimizer()
        self.scheduler_ = self._build_scheduler()
        warn_user(
            f"Training diverged ({what}); training stopped, the weights of the last "
            f"finite epoch ({self.n_iter_}) were restored and the optimiser state reset. "
            "Lower learning_rate or set grad_clip.",
            DivergenceWarning,
        )

    def _parameters_finite(self):
        flags = [torch.isfinite(p).all() for p in self.module_.parameters()]
        return bool(torch.stack(flags).all()) if flags else True

    def _snapshot(self):
        return {k: v.detach().clone() for k, v in self.module_.state_dict().items()}

    def _restore(self, state):
        if state is not None:
            self.module_.load_state_dict(state)

    # ------------------------------------------------------------------ prediction
    def _predict_outputs(self, X, extras=None):
        """Validate ``X`` and return (network outputs as a tensor, X's float dtype).

        ``extras`` are validated per-sample arrays handed to ``_forward`` chunk by chunk.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        return self._forward_chunks(X, extras), X.dtype

    def _forward_chunks(self, X, extras=None):
        self.module_.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], PREDICT_CHUNK):
                rows = slice(start, start + PREDICT_CHUNK)
                chunk = to_tensor(X[rows], dtype=self._torch_dtype, device=self.device_)
                if extras:
                    more = self._to_tensors({k: v[rows] for k, v in extras.items()})
                    outputs.append(self._forward(chunk, **more))
                else:
                    outputs.append(self._forward(chunk))
        return torch.cat(outputs)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Everything on the CPU, the optimiser as a state dict: loads on any machine."""
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        on_cpu = getattr(self, "device_", torch.device("cpu")).type == "cpu"
        if "module_" in state and not on_cpu:
            state["module_"] = copy.deepcopy(self.module_).to("cpu")
        for key in ("optimizer_", "scheduler_"):
            if state.get(key) is not None:
                state[key] = _map_tensors(state[key].state_dict(), "cpu")
        if state.get("_best_state") is not None:
            state["_best_state"] = _map_tensors(state["_best_state"], "cpu")
        if "_generator" in state:
            state["_generator"] = state["_generator"].get_state()
        state.pop("_last_good", None)
        return state

    def __setstate__(self, state):
        optimizer_state = state.pop("optimizer_", None)
        scheduler_state = state.pop("scheduler_", None)
        generator_state = state.pop("_generator", None)
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
        if self._best_state is not None:
            self._best_state = _map_tensors(self._best_state, self.device_)
        self._generator = torch.Generator(device="cpu")
        if generator_state is not None:
            self._generator.set_state(generator_state)
        self.optimizer_ = self._build_optimizer()
        if optimizer_state is not None and self.optimizer_ is not None:
            self.optimizer_.load_state_dict(optimizer_state)
        self.scheduler_ = self._build_scheduler()
        if scheduler_state is not None and self.scheduler_ is not None:
            self.scheduler_.load_state_dict(scheduler_state)


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
