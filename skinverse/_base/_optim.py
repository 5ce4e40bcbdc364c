"""Optimiser, learning-rate schedule and loss scaling of the training loop, and how a
warm start or ``partial_fit`` applies changed hyperparameters to them."""

import math

import torch

from ._fused import FusedAdam, FusedAdamW
from ._state import BestWeights

# Fused Adam/AdamW/SGD on the CPU arrived in torch 2.4 (on CUDA earlier).
_FUSED_OPTIMIZERS = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


class OptimizerSetup:
    """Builds ``state.optimizer``/``state.scheduler`` from the estimator's parameters (a
    base class of :class:`~skinverse._base._loop.TrainingLoop`, no state of its own)."""

    def _make_grad_scaler(self):
        """float16 autocast (estimators with a ``mixed_precision`` parameter) on CUDA needs
        loss scaling; anything else none."""
        fp16 = getattr(self, "mixed_precision", None) == "fp16"
        return torch.amp.GradScaler("cuda") if fp16 and self.device_.type == "cuda" else None

    def _hyperparameters(self):
        return (self.optimizer, self.learning_rate, self.alpha, self.lr_schedule)

    def _apply_hyperparameters(self, state, *, reset_stopping):
        """``warm_start``/``partial_fit``: train on with the current parameters.

        A changed optimiser kind rebuilds the optimiser; a changed learning rate, penalty
        or schedule is applied to every parameter group and restarts the schedule; the
        components follow ``early_stopping``/``ema_decay``/``warmup_steps``. A new
        ``fit`` call (not ``partial_fit``) restarts the stopping rule, as scikit-learn's.
        """
        if state.hyper != self._hyperparameters() and state.optimizer is not None:
            if state.hyper[0] != self.optimizer:
                state.optimizer = self._build_optimizer()
            for group in state.optimizer.param_groups:
                group["lr"], group["weight_decay"] = self.learning_rate, self.alpha
            state.scheduler = self._build_scheduler(state.optimizer)
            state.hyper = self._hyperparameters()
        kept, fresh = {c.name: c for c in state.components}, self._components()
        for component in fresh:
            if component.name in kept:
                kept[component.name].update_settings(component)
        state.components = [kept.get(c.name, c) for c in fresh]
        if reset_stopping:
            state.no_improvement_count = 0
            state.best_loss, state.best_validation_score = math.inf, -math.inf
            if state.component("best") is not None:
                state.components = [BestWeights() if c.name == "best" else c
                                    for c in state.components]
        state.stop_reason = None
        self.optimizer_, self.scheduler_ = state.optimizer, state.scheduler

    def _build_optimizer(self):
        params = self._optimizer_param_groups()
        if not params:  # nothing to learn (e.g. CG-SENSE with a fixed lambda)
            return None
        options = {"lr": self.learning_rate, "weight_decay": self.alpha}
        fused = _FUSED_OPTIMIZERS and self.device_.type in ("cpu", "cuda")
        if fused:
            options["fused"] = True  # one kernel for all parameters: ~3x faster steps
        if self.optimizer == "adam":  # (the Fused* classes: the same step, less around it)
            return (FusedAdam if fused else torch.optim.Adam)(params, **options)
        if self.optimizer == "adamw":
            return (FusedAdamW if fused else torch.optim.AdamW)(params, **options)
        return torch.optim.SGD(params, momentum=0.9, nesterov=True, **options)

    def _build_scheduler(self, optimizer):
        sched = torch.optim.lr_scheduler
        if self.lr_schedule is None or optimizer is None:
            return None
        if callable(self.lr_schedule):
            return self.lr_schedule(optimizer)
        if self.lr_schedule == "step":
            return sched.StepLR(optimizer, step_size=max(1, self.max_epochs // 3))
        if self.lr_schedule == "cosine":
            return sched.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        mode = "max" if self._validates() else "min"
        patience = max(1, self.n_iter_no_change // 2)
        threshold = self._plateau_threshold()
        options = {"mode": mode, "patience": patience, "factor": self._plateau_factor}
        if threshold is not None:  # else torch's default: a relative gain of 1e-4
            options.update(threshold=threshold, threshold_mode="abs")
        return sched.ReduceLROnPlateau(optimizer, **options)

    #: What ``lr_schedule='plateau'`` multiplies the rate by at a plateau (torch's 0.1).
    _plateau_factor = 0.1

    def _plateau_threshold(self):
        """An absolute gain below which ``lr_schedule='plateau'`` counts an epoch as
        stalled, or ``None`` for torch's relative 1e-4."""
        return None

    #: Weight of the newest epoch's validation score in the exponential average that
    #: early stopping, the plateau schedule and the best weights follow (kept in the
    #: training state, so checkpointed); ``None`` follows each epoch's own score.
    _validation_smoothing = None

    def _score_candidate(self, state, val):
        """Validation score of the epoch's candidate weights, averaged exponentially over
        epochs with ``_validation_smoothing`` (restarted with the best score, when a new
        fit or a reset begins)."""
        score = self._candidate_score(state, val)
        weight = self._validation_smoothing
        if weight is None or not math.isfinite(score):
            return score
        previous = state.extra.get("validation_average")
        if previous is not None and state.best_validation_score > -math.inf:
            score = previous + weight * (score - previous)
        state.extra["validation_average"] = score
        return score
