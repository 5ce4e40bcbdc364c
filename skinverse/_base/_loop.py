"""The training lifecycle shared by every estimator, read top to bottom.

``_fit`` validates the data, builds a fresh :class:`~skinverse._base._state.TrainingState`
(or continues the fitted one with the current hyperparameters, or resumes a checkpoint),
splits off the validation set and runs the epochs; ``_fit_loop`` runs each epoch in the
documented order -- batches (warm-up, optimiser step, EMA), then the divergence guard,
the validation score and the best weights, the stopping rule and the scheduler, the
callbacks, the checkpoint -- and ``_finish`` loads the weights that
:meth:`TrainingState.final_weights <skinverse._base._state.TrainingState.final_weights>`
decides, the one place that does.
"""

import math
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..exceptions import (
    ConvergenceWarning,
    DivergenceWarning,
    TrainingDivergedError,
    TrainingInterruptedWarning,
)
from ._batches import TRIM_EVERY, BatchSteps, RowSubset
from ._callbacks import Callback, EpochPrinter, ProgressBar, TensorBoardLogger
from ._checkpoint import Checkpointer, canonical
from ._device import (
    check_finite_tensor,
    release_free_memory,
    resolve_device,
    resolve_dtype,
    to_tensor,
)
from ._distributed import (
    all_reduce_sum,
    average_gradients,
    data_parallel,
    is_main_process,
    world,
)
from ._fused import optimizer_step
from ._optim import OptimizerSetup
from ._random import build_module_isolated, init_parameters, make_generator, shared_seed
from ._sources import (
    LazyPlan,
    LazyRows,
    lazy_source,
)
from ._state import BestWeights, DivergenceGuard, TrainingState
from ._warn import warn_user

class TrainingLoop(OptimizerSetup, BatchSteps):
    """The lifecycle methods of :class:`~skinverse.base.BaseTorchEstimator` (a base class
    of it, with no state of its own: everything a fit carries is in ``training_state_``)."""

    def _fit(self, X, y, *, incremental, **fit_params):
        """Validate, build (or continue, or resume) the training state, split, run the
        epochs, decide the returned weights."""
        continuing = (incremental or self.warm_start) and self.__sklearn_is_fitted__()
        if continuing and not hasattr(self, "training_state_"):
            raise ValueError(
                "This estimator has fitted weights but no training state to continue from "
                "(it was loaded from an older skinverse): fit it afresh with "
                "warm_start=False.")
        if continuing:
            self._check_model_params()
        source = lazy_source(X, y, fit_params)
        if source is not None and not self._streams(source):
            X, y, fit_params = self._read_whole(source)
            source = None
        if source is not None:
            data = self._validate_lazy(source, reset=not continuing)
        else:
            data = self._validate_fit_data(X, y, reset=not continuing, **fit_params)
        checkpointer, resumed = None, False
        if continuing:
            state = self.training_state_
            self._apply_hyperparameters(state, reset_stopping=not incremental)
            n_epochs = 1 if incremental else self.max_epochs
        else:
            state = self._initialize(data)
            if not incremental and self.checkpoint_dir is not None:
                fingerprint = data.source.fingerprint() if source is not None else data
                checkpointer = Checkpointer(self.checkpoint_dir, self, fingerprint)
                resumed = self._resume(state, checkpointer)
            n_epochs = 1 if incremental else self.max_epochs - state.n_iter
        tensors = self._to_tensors(data)
        use_validation = self._validates() and not incremental
        train, val = self._split(tensors, data) if use_validation else (tensors, None)
        # Lazy data can fail in a batch read late in an epoch (a NaN, a damaged item):
        # a fresh fit then leaves no model, a continued one the model it started from.
        before = (_copy_state(state) if source is not None and continuing else None)
        try:
            self._fit_loop(state, train, val, n_epochs, incremental=incremental,
                           resumed=resumed, checkpointer=checkpointer, continuing=continuing)
        except Exception:
            if source is not None and not continuing:
                self._forget_fit()
            elif before is not None:
                state.load_state_dict(before)
                self._publish(state)
            raise
        finally:
            self._loaders = {}  # persistent DataLoader workers end with the fit
        return self

    # Parameters that define the fitted model (its module's shapes, its units, its dtype):
    # warm_start/partial_fit cannot change them. Estimators extend the tuple.
    _model_params = ("dtype",)

    def _model_param_values(self):
        return {name: _frozen(getattr(self, name)) for name in self._model_params}

    def _check_model_params(self):
        """A ValueError naming the model-defining parameters changed since the model was
        built (a continued fit would otherwise ignore them, or fail deep in torch)."""
        fitted = getattr(self, "_model_params_", None)
        if fitted is None:  # fitted by an older skinverse
            return
        now = self._model_param_values()
        changed = [name for name in self._model_params
                   if name in fitted and fitted[name] != now[name]]
        if changed:
            raise ValueError(
                "warm_start=True and partial_fit continue the fitted model, which these "
                f"parameters define and which changed since it was built: {changed}. "
                "Restore them, or set warm_start=False (and call fit) to train a new model.")

    def _components(self):
        """The stateful components of a fit, in the order they act (see ``_state``)."""
        components = list(self._method_components())
        components.append(DivergenceGuard())
        if self._validates():
            components.append(BestWeights())
        return components

    def _validates(self):
        """Whether fit holds out a validation set (``early_stopping``; an estimator whose
        ``early_stopping`` has an ``'auto'`` resolves it here from the data)."""
        return bool(self.early_stopping)

    def _method_components(self):
        """Components a method adds before the guard (e.g. warm-up, EMA)."""
        return []

    def _may_skip_parameters(self):
        """Whether a training step may leave a trainable parameter unused (data-parallel
        training then looks for them after every backward pass)."""
        return False

    def _keeps_module_initialisation(self):
        """True when the module came from the user (keep its initialisation)."""
        return False

    def _initialize(self, data):
        """A fresh training state: device, generator, module, optimiser, components."""
        self.device_ = resolve_device(self.device)
        self._torch_dtype = resolve_dtype(self.dtype)
        generator = make_generator(shared_seed(self.random_state))
        self._generator = generator
        module = build_module_isolated(lambda: self._build_module(data))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"_build_module must return a torch.nn.Module, got {type(module).__name__}."
            )
        if not self._keeps_module_initialisation():
            init_parameters(module, generator)
        self.module_ = module.to(device=self.device_, dtype=self._torch_dtype)
        self._model_params_ = self._model_param_values()
        optimizer = self._build_optimizer()
        state = TrainingState(self.module_, optimizer, self._build_scheduler(optimizer),
                              generator, self._components())
        state.hyper = self._hyperparameters()
        self._grad_scaler = self._make_grad_scaler()
        self.training_state_ = state
        self._publish(state)
        return state

    def _resume(self, state, checkpointer):
        """Load this fit's checkpoint into ``state``; True when there was one."""
        saved = checkpointer.load(map_location=self.device_)
        if saved is None:
            return False
        if saved["counters"]["n_iter"] > self.max_epochs:
            warn_user(f"{checkpointer.path} ran {saved['counters']['n_iter']} epochs, more "
                      f"than max_epochs={self.max_epochs}: training afresh.", UserWarning)
            return False
        state.load_state_dict(saved)
        if state.stop_reason == "max_epochs" and state.n_iter < self.max_epochs:
            state.stop_reason = None  # a larger max_epochs continues the fit
        self._publish(state)
        if self.verbose:
            print(f"Resumed from {checkpointer.path} at epoch {state.n_iter}.")
        return True

    def _publish(self, state):
        """The fitted attributes, read off the state (the state is the truth)."""
        self.optimizer_, self.scheduler_ = state.optimizer, state.scheduler
        self.n_iter_, self.t_ = state.n_iter, state.t
        self.loss_curve_ = state.history["loss"]
        self.best_loss_ = state.best_loss
        validating = self._validates() or bool(state.history["validation_score"])
        self.validation_scores_ = state.history["validation_score"] if validating else None
        self.best_validation_score_ = state.best_validation_score if validating else None
        for attribute, key in self._history_attributes().items():
            setattr(self, attribute, state.history.setdefault(key, []))

    def _history_attributes(self):
        """Fitted list attributes the method keeps in ``state.history``: {attribute: key}."""
        return {}

    def _to_tensors(self, data):
        """Per-sample arrays to tensors on the device (floats in the module's dtype),
        checked finite after the cast (a float64 1e39 overflows float32). Lazy data
        stays where it is: all its rows, read batch by batch."""
        if isinstance(data, LazyPlan):
            return LazyRows(data, np.arange(data.source.n))
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
            if kind in "fc":
                check_finite_tensor(out[key], key, self.dtype)
        return out

    def _split_seed(self):
        """The validation split's seed: drawn once per fit and kept in the state."""
        state = self.training_state_
        if state.split_seed is None:
            state.split_seed = int(torch.randint(2**31 - 1, (1,), generator=self._generator))
        return state.split_seed

    #: Whether the validation split of in-memory data keeps its rows as views of the
    #: whole tensors (:class:`~skinverse._base._batches.RowSubset`) instead of copies:
    #: for estimators whose batches come only from the loop's batch iterators (image
    #: reconstruction, where a copy of the data is hundreds of MB).
    _split_in_place = False

    def _split(self, tensors, data):
        """Hold out ``validation_fraction`` of the samples (stratified when possible)."""
        n = self._n_rows(tensors)
        try:
            train_idx, val_idx = train_test_split(
                np.arange(n),
                test_size=self.validation_fraction,
                random_state=self._split_seed(),
                stratify=self._stratify_labels(data),
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping=True could not hold out validation_fraction="
                f"{self.validation_fraction} of {n} samples: {exc}"
            ) from exc
        if isinstance(tensors, LazyRows):
            return (LazyRows(tensors.plan, tensors.rows[train_idx]),
                    LazyRows(tensors.plan, tensors.rows[val_idx]))
        if self._split_in_place:
            device = next(iter(tensors.values())).device
            return tuple(RowSubset(tensors, torch.as_tensor(idx, device=device))
                         for idx in (train_idx, val_idx))
        take = lambda idx: {  # noqa: E731
            k: v[torch.as_tensor(idx, device=v.device)] for k, v in tensors.items()
        }
        return take(train_idx), take(val_idx)

    def _train_step(self, batch, share=1.0):
        """One optimiser step on (this rank's share of) a batch; returns the detached loss."""
        if self.optimizer_ is None:
            with torch.no_grad():
                return self._compute_loss(batch).detach()
        self.optimizer_.zero_grad(set_to_none=True)
        parallel = getattr(self, "_parallel", None)
        if parallel is not None:  # DistributedDataParallel: reduces while backward runs
            loss = parallel(batch)
            scaled = loss * (share * self._world_size)  # DDP averages: sum of share * grad
        else:
            loss = scaled = self._compute_loss(batch)
        scaler = self._grad_scaler
        (scaled if scaler is None else scaler.scale(scaled)).backward()
        self._apply_step(share, reduced=parallel is not None)
        return loss.detach()

    def _apply_step(self, share=1.0, reduced=False):
        """Gradients in ``.grad`` -> one optimiser step, with the components around it.

        Under ``torch.distributed`` the gradients of the ranks' slices are averaged,
        weighted by ``share``, so the step is the one of the whole global batch (already
        done by ``DistributedDataParallel`` when ``reduced``; methods that step outside
        :meth:`_train_step` get one flat all-reduce).
        """
        state, scaler = self.training_state_, self._grad_scaler
        for component in state.components:
            component.before_step(state)
        try:
            if self._world_size > 1 and not reduced:
                average_gradients(self.module_.parameters(), share)
            if scaler is not None:
                scaler.unscale_(self.optimizer_)
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.module_.parameters(), self.grad_clip)
            if scaler is None:
                optimizer_step(self.optimizer_)
            else:
                scaler.step(self.optimizer_)
                scaler.update()
        finally:
            for component in state.components:
                component.after_step(state)

    def _run_epoch(self, train, batch_hooks):
        """One pass over ``train``; returns the mean loss (one device sync per epoch)."""
        self.module_.train()
        losses, sizes = [], []
        for index, (local, share) in enumerate(self._local_batches(train)):
            loss = self._train_step(local, share)
            losses.append(loss)
            sizes.append(len(local["X"]) if "X" in local else self._n_rows(local))
            for hook in batch_hooks:
                hook.on_batch_end(self, index, loss)
        if len(sizes) >= TRIM_EVERY:  # a long epoch: return its freed batches' memory
            release_free_memory()
        weights = torch.tensor(sizes, dtype=torch.float64, device=self.device_)
        totals = torch.stack([torch.stack(losses).to(torch.float64) @ weights, weights.sum()])
        if self._world_size > 1:
            all_reduce_sum(totals)  # over ranks: the global-batch mean
        total, n = totals.tolist()
        self.training_state_.t += int(n)
        return total / n

    def _all_callbacks(self, n_batches):
        """The built-in callbacks the parameters ask for, then the user's."""
        callbacks = []
        main = is_main_process()  # under torch.distributed only rank 0 prints and logs
        if self.verbose and main:
            callbacks.append(EpochPrinter(every=self._print_every()))
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

    def _print_every(self):
        """Epochs between progress lines at ``verbose=1`` (1: every epoch)."""
        return 1

    def _begin_call(self, state, train, val, resumed):
        """Method hook before the first epoch of a call (e.g. caches kept in the state)."""

    def _fit_loop(self, state, train, val, n_epochs, *, incremental, resumed=False,
                  checkpointer=None, continuing=False):
        """The epochs of one call, in the documented order, then :meth:`_finish`."""
        batch_size = self._effective_batch_size(self._n_rows(train))
        self._world_size = world()[1]
        if batch_size < self._world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {self._world_size} data-parallel "
                "processes: every process needs at least one sample of each batch."
            )
        self._parallel = data_parallel(self) if self._world_size > 1 else None
        try:
            self._run_epochs(state, train, val, n_epochs, incremental=incremental,
                             resumed=resumed, checkpointer=checkpointer,
                             continuing=continuing, batch_size=batch_size)
        finally:
            self._parallel = None

    def _run_epochs(self, state, train, val, n_epochs, *, incremental, resumed,
                    checkpointer, continuing, batch_size):
        callbacks = self._all_callbacks(math.ceil(self._n_rows(train) / batch_size))
        batch_hooks = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        self._begin_call(state, train, val, resumed)
        if not resumed:  # (a resumed fit restored the guard of the interrupted one)
            state.component("guard").begin_call(state, trained=continuing)
        else:
            _load_callback_states(self.callbacks, state)
        for cb in callbacks:
            cb.on_train_begin(self)
        save = checkpointer is not None and is_main_process()
        done = 0
        try:
            while state.stop_reason is None and done < n_epochs:
                epoch = state.n_iter + 1
                for cb in callbacks:
                    cb.on_epoch_begin(self, epoch)
                start = time.perf_counter()
                loss = self._run_epoch(train, batch_hooks)
                done += 1
                logs = self._end_epoch(epoch, loss, val, start)
                if logs is not None:
                    converged = logs["stop"]
                    for cb in callbacks:
                        cb.on_epoch_end(self, logs)
                    if logs["stop"]:
                        state.stop_reason = "converged" if converged else "callback"
                    elif done == n_epochs and not incremental:
                        state.stop_reason = "max_epochs"
                if save:
                    _save_callback_states(self.callbacks, state)
                    checkpointer.save(state.state_dict())
        except KeyboardInterrupt:
            state.stop_reason = "interrupted"
        if n_epochs <= 0 and state.stop_reason is None:
            state.stop_reason = "max_epochs"
        self._finish(state, callbacks, incremental)

    def _end_epoch(self, epoch, loss, val, start):
        """Guard, validation and best weights, stopping rule, scheduler -- in that order.

        Returns the epoch's logs, or ``None`` when the loss was not finite (training
        stops; the epoch does not count).
        """
        state = self.training_state_
        if not math.isfinite(loss):
            state.stop_reason = "diverged"
            state.extra["divergence"] = f"loss {loss} at epoch {epoch}"
            return None
        state.n_iter += 1
        state.history["loss"].append(loss)
        state.component("guard").record(state, loss)
        score = None
        if val is not None:
            score = self._score_candidate(state, val)
            state.history["validation_score"].append(score)
            state.component("best").record(state, score)
        improved = self._update_stopping(state, loss, score)
        learning_rate = (self.optimizer_.param_groups[0]["lr"]  # the rate this epoch used
                         if self.optimizer_ is not None else 0.0)
        if self.scheduler_ is not None:
            plateau = isinstance(self.scheduler_, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if plateau:
                self.scheduler_.step(score if score is not None else loss)
            else:
                self.scheduler_.step()
        self._publish(state)
        return {
            "epoch": epoch,
            "loss": loss,
            "validation_score": score,
            "learning_rate": learning_rate,
            "seconds": time.perf_counter() - start,
            "improved": improved,
            "stop": state.no_improvement_count >= self.n_iter_no_change,
        }

    def _candidate_score(self, state, val):
        """Validation score of the epoch's candidate weights (the EMA shadow if any)."""
        self.module_.eval()
        ema = state.component("ema")
        if ema is None or ema.shadow is None:
            return float(self._validation_score(val))
        raw = {k: v.detach().clone() for k, v in self.module_.state_dict().items()}
        self.module_.load_state_dict(ema.candidate(self.module_))
        try:
            return float(self._validation_score(val))
        finally:
            self.module_.load_state_dict(raw)

    def _stopping_tol(self, validating):
        """``tol`` in the units of the monitored quantity (the validation score when
        ``validating``, else the training loss); estimators with a ``tol='auto'``
        resolve it here."""
        return self.tol

    def _update_stopping(self, state, loss, score):
        """sklearn's MLP rule: count epochs that do not improve by more than ``tol``."""
        tol = self._stopping_tol(score is not None)
        if score is not None:
            improved = score >= state.best_validation_score + tol
            state.best_validation_score = max(state.best_validation_score, score)
        else:
            improved = loss <= state.best_loss - tol
        state.best_loss = min(state.best_loss, loss)
        state.no_improvement_count = 0 if improved else state.no_improvement_count + 1
        return improved

    def _finish(self, state, callbacks, incremental):
        """Load the weights :meth:`TrainingState.final_weights` decides, and report."""
        reason = state.stop_reason
        try:
            weights = state.final_weights()
            self.module_.load_state_dict(weights)
            if not self._parameters_finite():
                raise TrainingDivergedError(
                    "The weights to return are not finite; lower learning_rate or set "
                    "grad_clip.")
        except TrainingDivergedError:
            self._forget_fit()
            raise
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        self.module_.eval()
        if reason == "diverged":  # the optimiser's moments hold NaN: start them afresh
            state.optimizer = self._build_optimizer()
            state.scheduler = self._build_scheduler(state.optimizer)
        self._publish(state)
        self._warn_on_stop(state, incremental)

    def _warn_on_stop(self, state, incremental):
        reason = state.stop_reason
        if reason == "diverged":
            best = state.component("best")
            kept = best if best is not None and best.weights is not None and best.epoch \
                else state.component("guard")
            warn_user(
                f"Training diverged ({state.extra.get('divergence', 'non-finite weights')}); "
                f"training stopped and the weights of epoch {kept.epoch} were restored. "
                "Lower learning_rate or set grad_clip.",
                DivergenceWarning,
            )
        elif reason == "interrupted":
            warn_user(
                f"Training interrupted after {state.n_iter} epoch(s); the estimator keeps "
                f"the {'best' if state.component('best') else 'lowest-loss'} weights so far "
                "and can be used or trained further with warm_start=True.",
                TrainingInterruptedWarning,
            )
        elif reason == "max_epochs" and not incremental:
            warn_user(
                f"Maximum number of epochs ({self.max_epochs}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )

    def _forget_fit(self):
        """Leave the estimator unfitted (after an error that leaves no model)."""
        for name in ("module_", "training_state_", "optimizer_", "scheduler_"):
            self.__dict__.pop(name, None)

    def _parameters_finite(self):
        flags = [torch.isfinite(p).all() for p in self.module_.parameters()]
        return bool(torch.stack(flags).all()) if flags else True


def _frozen(value):
    """A comparable stand-in for a parameter value (arrays, operators and modules by their
    content; what has no stable description, such as a lambda, by identity)."""
    try:
        return repr(canonical(value))
    except (ValueError, TypeError, RecursionError):
        return ("object", id(value))


def _copy_state(state):
    """A detached copy of a training state's ``state_dict`` (to roll a failed call back)."""
    return _clone(state.state_dict())


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _callback_key(index, callback):
    return f"{index}:{type(callback).__qualname__}"


def _save_callback_states(callbacks, state):
    """User callbacks with a ``state_dict`` are saved with the state (Lightning's rule)."""
    saved = {_callback_key(i, cb): cb.state_dict() for i, cb in enumerate(callbacks or [])
             if callable(getattr(cb, "state_dict", None))}
    if saved:
        state.extra["callbacks"] = saved


def _load_callback_states(callbacks, state):
    saved = state.extra.get("callbacks", {})
    for i, cb in enumerate(callbacks or []):
        key = _callback_key(i, cb)
        if key in saved and callable(getattr(cb, "load_state_dict", None)):
            cb.load_state_dict(saved[key])
