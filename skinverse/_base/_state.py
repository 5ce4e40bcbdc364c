"""The training state: everything a fit carries between epochs, and the one rule that
decides which weights ``fit`` returns.

A fit is a :class:`TrainingState` moved forward epoch by epoch. The state owns the module,
the optimiser, the scheduler, the random stream, the seed of the validation split, the
counters and curves, the method's caches (``extra``) and an ordered list of stateful
components. Its :meth:`~TrainingState.state_dict` is the checkpoint, nothing else, and
resuming is :meth:`~TrainingState.load_state_dict`.

The components, in the order they act (this order is the contract):

1. :class:`WarmUp` scales the learning rate before each optimiser step (and restores it
   after);
2. the optimiser step;
3. :class:`EMA` updates the shadow weights after each step;
4. at the end of each epoch, :class:`DivergenceGuard` checks the loss: a non-finite loss
   ends training; a finite one vouches for the weights the epoch started from when it is
   a new low, and the epoch's own candidate weights are kept as the last completed ones;
5. the validation score is computed on the candidate weights and :class:`BestWeights`
   keeps the best of them;
6. the stopping rule and the scheduler step; then the callbacks; then the checkpoint.

The *candidate* weights of an epoch are the EMA shadow when EMA is on, else the module's
weights. :meth:`TrainingState.final_weights` is the one place that decides what ``fit``
returns; read it there.
"""

import math

import torch

from ..exceptions import TrainingDivergedError


def _clone(weights):
    return {k: v.detach().clone() for k, v in weights.items()}


class Component:
    """A stateful part of the training lifecycle; every hook is a no-op."""

    name = "component"

    def before_step(self, state):
        """Before each optimiser step."""

    def after_step(self, state):
        """After each optimiser step (also when the step raised)."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned."""

    def update_settings(self, other):
        """Take the settings (not the state) of ``other``, a component built from the
        current parameters (``warm_start``/``partial_fit`` with changed parameters)."""


class WarmUp(Component):
    """Linear learning-rate warm-up over the first ``steps`` optimiser steps."""

    name = "warmup"

    def __init__(self, steps):
        self.steps, self.done, self._saved = int(steps), 0, None

    def before_step(self, state):
        groups = state.optimizer.param_groups
        self._saved = [g["lr"] for g in groups]
        factor = min(1.0, (self.done + 1) / self.steps)
        for group in groups:
            group["lr"] *= factor

    def after_step(self, state):
        if self._saved is not None:
            for group, lr in zip(state.optimizer.param_groups, self._saved):
                group["lr"] = lr
            self._saved = None
        self.done += 1

    def update_settings(self, other):
        self.steps = other.steps

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state_dict):
        self.done = int(state_dict["done"])


class EMA(Component):
    r"""Exponential moving average of the parameters, updated after every step:
    :math:`\bar w \leftarrow d\,\bar w + (1 - d)\,w`, starting from the weights after the
    first step. Buffers are taken from the module as they are."""

    name = "ema"

    def __init__(self, decay):
        self.decay, self.shadow = float(decay), None

    def after_step(self, state):
        params = {k: p.detach() for k, p in state.module.named_parameters()}
        if self.shadow is None:
            self.shadow = _clone(params)
            return
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [params[k] for k in keys],
                             1.0 - self.decay)

    def candidate(self, module):
        weights = dict(module.state_dict())
        if self.shadow is not None:
            weights.update(self.shadow)
        return weights

    def update_settings(self, other):
        self.decay = other.decay

    def state_dict(self):
        return {"shadow": self.shadow}

    def load_state_dict(self, state_dict):
        self.shadow = state_dict["shadow"]


class DivergenceGuard(Component):
    """Keeps the last weights whose loss was finite and lower than every earlier loss of
    the call, and the weights of the last completed epoch.

    An epoch's loss is measured while its steps move the weights away from where the
    epoch started, so the weights *ending* epoch ``k`` are vouched for by the loss of
    epoch ``k + 1``: they become the guard's ``weights`` once that loss is finite and a
    new low. Weights that ended an epoch just before a blow-up (finite but huge) are
    therefore never returned. The weights a warm-started call begins from count as
    trained; a fresh initialisation does not.
    """

    name = "guard"

    def __init__(self):
        self.best_loss, self.weights, self.epoch, self.trained = math.inf, None, 0, False
        self.pending, self.pending_epoch, self.start_epoch = None, 0, 0

    def begin_call(self, state, trained=False):
        """Start of a ``fit``/``partial_fit`` call; ``trained``: the call continues a
        fitted model (warm start, ``partial_fit``, ``refit_at``)."""
        self.best_loss, self.epoch = math.inf, state.n_iter
        self.pending, self.pending_epoch = _clone(state.candidate()), state.n_iter
        self.start_epoch = state.n_iter
        self.trained = trained or state.n_iter > 0
        self.weights = self.pending

    def record(self, state, loss):
        """After a finite epoch ``state.n_iter`` with mean ``loss``."""
        if loss < self.best_loss:
            self.best_loss, self.weights, self.epoch = loss, self.pending, self.pending_epoch
            self.trained = self.trained or self.pending_epoch > self.start_epoch
        self.pending, self.pending_epoch = _clone(state.candidate()), state.n_iter

    def state_dict(self):
        return {"best_loss": self.best_loss, "weights": self.weights, "epoch": self.epoch,
                "trained": self.trained, "pending": self.pending,
                "pending_epoch": self.pending_epoch, "start_epoch": self.start_epoch}

    def load_state_dict(self, state_dict):
        self.best_loss, self.weights = float(state_dict["best_loss"]), state_dict["weights"]
        self.epoch, self.trained = int(state_dict["epoch"]), bool(state_dict["trained"])
        self.pending, self.pending_epoch = state_dict["pending"], int(state_dict["pending_epoch"])
        self.start_epoch = int(state_dict["start_epoch"])


class BestWeights(Component):
    """Keeps the candidate weights of the epoch with the best validation score."""

    name = "best"

    def __init__(self):
        self.score, self.weights, self.epoch = -math.inf, None, 0

    def record(self, state, score):
        if score > self.score:
            self.score, self.epoch = score, state.n_iter
            self.weights = _clone(state.candidate())

    def state_dict(self):
        return {"score": self.score, "weights": self.weights, "epoch": self.epoch}

    def load_state_dict(self, state_dict):
        self.score, self.weights = float(state_dict["score"]), state_dict["weights"]
        self.epoch = int(state_dict["epoch"])


class TrainingState:
    """Everything a fit carries between epochs.

    Attributes
    ----------
    module, optimizer, scheduler, generator
        The network, its optimiser and scheduler (or ``None``), the random stream of
        shuffling and simulation.
    split_seed : int or None
        Seed of the validation split (drawn once, so a resumed fit holds out the same
        samples).
    n_iter, t, no_improvement_count : int
    best_loss, best_validation_score : float
    history : dict of lists
        ``'loss'``, ``'validation_score'`` and the method's own curves.
    extra : dict
        The method's caches (tensors or plain values), saved with the state.
    stop_reason : str or None
        ``'converged'``, ``'callback'``, ``'max_epochs'``, ``'diverged'``,
        ``'interrupted'`` once training ended; ``None`` while it runs.
    components : list of Component
        In the order they act.
    """

    def __init__(self, module, optimizer, scheduler, generator, components):
        self.module, self.optimizer, self.scheduler = module, optimizer, scheduler
        self.generator = generator
        self.components = list(components)
        self.split_seed = None
        self.n_iter = self.t = self.no_improvement_count = 0
        self.best_loss, self.best_validation_score = math.inf, -math.inf
        self.history = {"loss": [], "validation_score": []}
        self.extra = {}
        self.stop_reason = None
        self.hyper = None  # (optimizer, learning_rate, alpha, lr_schedule) in use

    def component(self, name):
        return next((c for c in self.components if c.name == name), None)

    def candidate(self):
        """The weights this epoch offers: the EMA shadow when EMA is on."""
        ema = self.component("ema")
        return ema.candidate(self.module) if ema is not None else self.module.state_dict()

    def final_weights(self):
        """The weights ``fit`` returns -- the one rule:

        1. with a validation set, the candidate of the best-scoring epoch (a method may
           score its starting weights as epoch 0; they are not returned after a
           divergence, which goes to rule 3);
        2. after an interrupt, the candidate of the last completed epoch (the weights the
           call started from if none completed);
        3. after a non-finite loss, the last trained weights whose loss was finite and a
           new low (see :class:`DivergenceGuard`); with none,
           :class:`~skinverse.exceptions.TrainingDivergedError`;
        4. otherwise the candidate of the last epoch.
        """
        best, guard = self.component("best"), self.component("guard")
        untrained = best is not None and best.epoch == 0  # the start scored best (RIM)
        if best is not None and best.weights is not None and not (
                untrained and self.stop_reason == "diverged"):
            return best.weights
        if self.stop_reason == "interrupted":
            return guard.pending
        if self.stop_reason == "diverged":
            if not guard.trained:
                raise TrainingDivergedError(
                    f"Training diverged (non-finite loss) at epoch {self.n_iter + 1} before "
                    "the loss vouched for any trained weights: there is no model to return. "
                    "Lower learning_rate, set grad_clip, or check the data's scale."
                )
            return guard.weights
        return self.candidate()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self):
        return {
            "module": self.module.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "split_seed": self.split_seed,
            "counters": {"n_iter": self.n_iter, "t": self.t,
                         "no_improvement_count": self.no_improvement_count,
                         "best_loss": self.best_loss,
                         "best_validation_score": self.best_validation_score},
            "history": {k: list(v) for k, v in self.history.items()},
            "extra": dict(self.extra),
            "stop_reason": self.stop_reason,
            "components": {c.name: c.state_dict() for c in self.components},
        }

    def load_state_dict(self, state):
        names = sorted(c.name for c in self.components)
        if sorted(state["components"]) != names:
            raise ValueError(f"the saved state has components {sorted(state['components'])}, "
                             f"this estimator {names}.")
        self.module.load_state_dict(state["module"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        self.split_seed = state["split_seed"]
        counters = state["counters"]
        self.n_iter, self.t = int(counters["n_iter"]), int(counters["t"])
        self.no_improvement_count = int(counters["no_improvement_count"])
        self.best_loss = float(counters["best_loss"])
        self.best_validation_score = float(counters["best_validation_score"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.extra = dict(state["extra"])
        self.stop_reason = state["stop_reason"]
        for component in self.components:
            component.load_state_dict(state["components"][component.name])
