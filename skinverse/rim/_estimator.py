"""RIMRegressor: Recurrent Inference Machines as a scikit-learn estimator."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples

from .._base import (
    EMA,
    BaseTorchEstimator,
    RegressorHead,
    WarmUp,
    doc_defaults,
    fill_doc,
    make_generator,
    shared_params,
    to_numpy,
)
from .._base._distributed import shard
from .._base._heads import R2Sums
from ..nn import RecurrentConvNet, RecurrentDenseNet
from ._data import RIMData
from ._module import INITS, LINKS, TRANSFORMS, RIMModule, step_weights
from ._physics import (
    Physics,
    check_physics_units,
    check_score_sign,
    fit_linear_model,
    merge_physics_params,
    split_extras,
    validate_extras,
)


@doc_defaults(early_stopping="True", tol="1e-5", lr_schedule="'plateau'")
@fill_doc(max_epochs=200, learning_rate=0.003, n_iter_no_change=50, streams=True)
class RIMRegressor(RegressorMixin, RIMData, RegressorHead, BaseTorchEstimator):
    r"""Recurrent Inference Machine: a learned optimiser for the inverse problem
    :math:`X = F(y) + \text{noise}` (observations ``X``, signals ``y``).

    From an initial estimate, a recurrent network :math:`g_\theta` with memory :math:`h`
    takes the current estimate, the likelihood score and the observation brought to
    signal space, and proposes an update:

    .. math::

        x_{t+1} = x_t + g_\theta(x_t, \nabla_x \log p(X \mid x_t), A^H X, h_t), \qquad
        \mathcal L = \sum_{t=1}^T w_t \|x_t - y\|^2 .

    The physics is an ``operator`` with Gaussian noise (score
    :math:`A^H (X - A x)/\sigma^2`), a ``score_fn`` or an ``energy_fn``; with none, fit
    learns a linear forward model from the training pairs by least squares (and the noise
    level from its residuals), so the estimator works on any regression data.

    Parameters
    ----------
    operator : LinearOperator or None, default=None
        Forward model from signals (its ``input_shape``) to observations (its
        ``output_shape``). ``X`` rows hold flattened observations, ``y`` rows flattened
        signals.
    noise_std : float or None, default=None
        Noise level :math:`\sigma`; ``None`` estimates it from the training residuals
        ``X - A y``.
    score_fn : callable or None, default=None
        ``score_fn(x, X)`` returns :math:`\nabla_x \log p(X \mid x)` for batched tensors
        (``x`` shaped like the operator's input, or ``(batch, n_signal)``). The sign is
        checked at fit: at ``x = 0`` the score must point towards the training signals.
    energy_fn : callable or None, default=None
        ``energy_fn(x, X)`` returns :math:`-\log p(X \mid x)` per sample; the score is
        minus its gradient (autograd). Checked at fit: lower at the training signals than
        at zero. Give ``score_fn`` or ``energy_fn``, not both.
    input_shape : tuple of int or None, default=None
        Spatial shape of a signal (1-D, 2-D or 3-D) for the convolutional backbones;
        ``None`` treats signals as vectors (dense GRU), except that with
        ``backbone='auto'`` an operator on 2-D signals gives its own shape (images get
        the U-Net).
    channels : int, default=1
        Channels of a signal; ``channels * prod(input_shape)`` must equal the signal size.
    backbone : {'auto', 'unet', 'hourglass', 'gru'}, default='auto'
        Recurrent network: convolutional GRUs in a U-Net or an Hourglass (any size, odd
        too), or a dense GRU. 'auto' is 'unet' with ``input_shape`` and 'gru' without.
    width : int, default=32
        Channels at the finest scale of the convolutional backbones.
    depth : int, default=2
        Scales of the convolutional backbones.
    hidden_size : int, default=64
        Memory size of the dense GRU.
    n_steps : int, default=8
        Number of RIM steps :math:`T`.
    step_weights : {'uniform', 'increasing', 'final'} or array-like, default='uniform'
        Loss weights :math:`w_t` of the steps (normalised to sum to 1).
    init : {'auto', 'tikhonov', 'adjoint', 'zeros', 'pinv', 'learned'}, default='auto'
        Initial estimate: the ridge (Wiener) estimate
        :math:`(A^H A + \sigma^2 I)^{-1} A^H X` -- the posterior mean under a white prior of
        unit variance, which is the prior of the standardised signals --, :math:`A^H X`,
        zeros, the (regularised) pseudo-inverse by conjugate gradients, or a learned affine
        map of :math:`A^H X`. 'auto' is 'tikhonov' with an operator (given or learned) and
        a Gaussian noise level, 'adjoint' with a ``score_fn``/``energy_fn``.
    score_transform : {'auto', 'precondition', 'identity', 'arcsinh', 'normalize'}, default='auto'
        Preprocessing of the score before the network sees it. 'precondition' multiplies
        the score by the gradient step :math:`\sigma^2/\|A\|_2^2` (and :math:`A^H X` by
        :math:`1/\|A\|_2^2`): the network sees :math:`A^H(X - Ax)/\|A\|_2^2`, a
        signal-sized step whatever
        the scale of the operator and of the noise (the identity score grows like
        :math:`\|A\|^2/\sigma^2` and saturates the network on well-measured problems).
        'auto' is 'precondition' with an operator and a Gaussian noise level, 'identity'
        with a ``score_fn``/``energy_fn``.
    standardize : {'auto'} or bool, default='auto'
        Fit and predict in standardised units: the signals become
        :math:`(y - m)/s` (``m`` the mean training signal -- 0 when the operator is
        learned --, ``s`` the root-mean-square of the centred training signals) and,
        consistently with the physics, the observations
        :math:`(X - A m)/s` and the noise level :math:`\sigma/s`; predictions are mapped
        back. This makes the fit invariant to the units of the signals. 'auto' standardises
        with an operator (given or learned) and ``link='identity'``, never with a
        ``score_fn``/``energy_fn`` (their physics is not linear) or when training from
        ``prior_sampler``.
    link : {'identity', 'softplus', 'sigmoid'}, default='identity'
        The RIM iterates :math:`\eta` with :math:`x = \ell(\eta)` (positive or bounded
        signals); the score is taken through the chain rule. Training signals must lie in
        the link's range ([0, inf) for 'softplus', [0, 1] for 'sigmoid'; checked).
    ema_decay : float or None, default=None
        Keep an exponential moving average of the weights and use it after fit.
    warmup_steps : int, default=0
        Linear learning-rate warm-up over this many optimiser steps.
    prior_sampler : callable or None, default=None
        ``prior_sampler(n, generator)`` returns ``n`` signals ``(n, n_signal)``; with an
        ``operator`` and ``noise_std`` it trains on fresh simulated pairs every epoch
        (``fit(None)``).
    n_simulations : int, default=1000
        Pairs simulated per epoch with ``prior_sampler``.
    resample_noise : {'auto'} or bool, default='auto'
        Pair each training signal with another pair's noise in every batch:
        :math:`X_i \leftarrow A y_i + (X_j - A y_j)` with :math:`j` the next sample of the
        (reshuffled) batch, so that the network never sees the same noise on the same
        signal twice and cannot memorise it (on 2000 sparse 1-D signals it otherwise
        fits the training noise and ends no better than the Wiener filter). The noise keeps
        its own distribution (the residuals are permuted, not redrawn), so a misstated
        ``noise_std`` does not change it. 'auto': on with an operator and a Gaussian
        noise level (no ``score_fn``/``energy_fn``, whose noise may depend on the
        signal) when training on pairs (not ``prior_sampler``, which simulates anyway).
        Under ``torch.distributed`` each rank pairs within its part of the batch, so a
        data-parallel fit is not bit-equal to a one-process fit with this on.
    mixed_precision : {'bf16', 'fp16'} or None, default=None
        Run the backbone under ``torch.autocast`` in bfloat16 or float16 (with loss scaling
        on CUDA); the physics, the iterates and the loss stay in ``dtype``. Worth it for
        the convolutional backbones on a GPU.
    {shared_parameters}

    Attributes
    ----------
    physics_ : Physics
        The likelihood used (with the learned operator when none was given).
    operator_ : LinearOperator or None
        The operator in use, on ``device_`` (learned when ``operator=None``).
    noise_std_ : float or None
        The noise level in use, in the units of the data (the physics works with
        :math:`\sigma/s` when the data are standardised, see ``standardize``).
    best_step_ : int
        The step (1..T) whose estimate ``predict`` returns: the one with the lowest error
        on the validation split (``early_stopping=True``) or on the training data.
    step_errors_ : ndarray of shape (n_steps,)
        Mean squared error of each step on that data.
    n_outputs_ : int
        Signal size.
    {shared_attributes}

    Notes
    -----
    The defaults and their rules. With an operator and a Gaussian noise level:

    * the fit runs in standardised units (``standardize``): signals over their RMS ``s``
      after removing their mean ``m``, observations :math:`(X - Am)/s`, noise
      :math:`\sigma/s`, so nothing depends on the units of the signals;
    * the network sees the preconditioned score :math:`A^H(X - Ax)/\|A\|_2^2`
      (``score_transform``), invariant to the scale of :math:`A` and :math:`\sigma`;
    * the RIM starts from the Wiener filter of the training signals' mean and covariance
      (``init``; for signals of at most :math:`2^{22}` entries times observations) and its
      updates start at zero (the network's last layer is zero-initialised), so it starts
      at the best linear estimate and learns what the linear estimate misses;
    * each batch pairs every signal with another pair's noise (``resample_noise``), so
      the network learns the signals' prior rather than the training noise;
    * training stops on a validation plateau: ``early_stopping=True`` holds out
      ``validation_fraction`` of the pairs, the learning rate is divided by 10 after
      ``n_iter_no_change // 2`` epochs without a better validation :math:`R^2` of the
      best step (``lr_schedule='plateau'``; ``tol=1e-5`` is small because :math:`R^2`
      is close to 1 on well-measured problems), training stops after
      ``n_iter_no_change`` such epochs (at most ``max_epochs``), and ``predict`` uses the
      step with the lowest validation error (``best_step_``). Starting at the Wiener
      estimate, the network first moves away from it before it learns what it misses:
      ``learning_rate=3e-3`` and ``n_iter_no_change=50`` leave it the epochs to do so
      (with 1e-3 and 20 it stopped at the Wiener filter on sparse and piecewise-constant
      signals; ``benchmarks/bench_rim_priors.py``).

    See Also
    --------
    skinverse.operators : The forward models.

    References
    ----------
    P. Putzky, M. Welling, "Recurrent Inference Machines for Solving Inverse Problems",
    arXiv:1706.04008, 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.operators import Blur, gaussian_kernel
    >>> from skinverse.rim import RIMRegressor
    >>> rng = np.random.RandomState(0)
    >>> signals = np.cumsum(rng.normal(size=(300, 16)), axis=1) / 4
    >>> blur = Blur(gaussian_kernel(5, 1.5), input_shape=(16,))
    >>> import torch
    >>> observed = blur(torch.as_tensor(signals, dtype=torch.float32)).numpy()
    >>> observed += 0.05 * rng.normal(size=observed.shape)
    >>> rim = RIMRegressor(operator=blur, noise_std=0.05, n_steps=4, max_epochs=20,
    ...                    learning_rate=3e-3, random_state=0).fit(observed, signals)
    >>> rim.score(observed, signals) > 0.8
    True
    """

    _model_params = (*BaseTorchEstimator._model_params, "operator", "noise_std", "score_fn",
                     "energy_fn", "input_shape", "channels", "backbone", "width", "depth",
                     "hidden_size", "n_steps", "init", "score_transform", "standardize",
                     "link")
    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "operator": [None, HasMethods(["forward", "adjoint"])],
        "noise_std": [None, Interval(Real, 0, None, closed="neither")],
        "score_fn": [None, callable],
        "energy_fn": [None, callable],
        "input_shape": [None, tuple],
        "channels": [Interval(Integral, 1, None, closed="left")],
        "backbone": [StrOptions({"auto", "unet", "hourglass", "gru"})],
        "width": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 1, 6, closed="both")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "step_weights": [StrOptions({"uniform", "increasing", "final"}), "array-like"],
        "init": [StrOptions({"auto", *INITS})],
        "score_transform": [StrOptions({"auto", *TRANSFORMS})],
        "standardize": [StrOptions({"auto"}), "boolean"],
        "link": [StrOptions(set(LINKS))],
        "ema_decay": [None, Interval(Real, 0, 1, closed="neither")],
        "warmup_steps": [Interval(Integral, 0, None, closed="left")],
        "prior_sampler": [None, callable],
        "n_simulations": [Interval(Integral, 2, None, closed="left")],
        "resample_noise": [StrOptions({"auto"}), "boolean"],
        "mixed_precision": [None, StrOptions({"bf16", "fp16"})],
    }

    def __init__(
        self, *, operator=None, noise_std=None, score_fn=None, energy_fn=None,
        input_shape=None, channels=1, backbone="auto", width=32, depth=2, hidden_size=64,
        n_steps=8, step_weights="uniform", init="auto", score_transform="auto",
        standardize="auto", link="identity", ema_decay=None, warmup_steps=0,
        prior_sampler=None, n_simulations=1000, resample_noise="auto", mixed_precision=None,
        max_epochs=200,
        batch_size="auto", learning_rate=3e-3, optimizer="adam", alpha=0.0,
        lr_schedule="plateau", grad_clip=None, early_stopping=True, validation_fraction=0.1,
        n_iter_no_change=50, tol=1e-5, warm_start=False,
        random_state=None, device="auto", dtype="float32", verbose=0, callbacks=None,
        log_dir=None, checkpoint_dir=None, num_workers=0,
    ):
        self.num_workers = num_workers
        self.operator = operator
        self.noise_std = noise_std
        self.score_fn = score_fn
        self.energy_fn = energy_fn
        self.input_shape = input_shape
        self.channels = channels
        self.backbone = backbone
        self.width = width
        self.depth = depth
        self.hidden_size = hidden_size
        self.n_steps = n_steps
        self.step_weights = step_weights
        self.init = init
        self.score_transform = score_transform
        self.standardize = standardize
        self.link = link
        self.ema_decay = ema_decay
        self.warmup_steps = warmup_steps
        self.prior_sampler = prior_sampler
        self.n_simulations = n_simulations
        self.resample_noise = resample_noise
        self.mixed_precision = mixed_precision
        super().__init__(**shared_params(locals()))

    def _build_module(self, data):
        operator, noise_std = self.operator, self.noise_std
        if data.get("simulate"):
            signals = observations = None
        else:
            signals, observations = data["y"], data["X"]  # (only the head of lazy data)
        if operator is None and self.score_fn is None and self.energy_fn is None:
            operator, noise_std = fit_linear_model(signals, observations)
        elif operator is not None:
            operator = copy.deepcopy(operator)  # never move or change the user's object
            if (noise_std is not None and signals is not None and self.score_fn is None
                    and self.energy_fn is None):
                # signals and observations may be standardised: compare in those units
                check_physics_units(operator, self._physics_noise(noise_std), signals,
                                    observations)
            if noise_std is None and self.score_fn is None and self.energy_fn is None:
                with torch.no_grad():
                    pred = operator.to(dtype=torch.float64).forward(
                        torch.as_tensor(signals, dtype=torch.float64).reshape(
                            len(signals), *operator.input_shape))
                noise_std = max(float((torch.as_tensor(observations) -
                                       pred.reshape(len(signals), -1)).std()), 1e-6)
        self.operator_ = operator.to(self.device_, self._torch_dtype) if operator else None
        noise_std = self._physics_noise(noise_std)  # standardised units (see standardize)
        self.noise_std_ = self._user_noise(noise_std)
        self.physics_ = Physics(self.operator_, noise_std, self.score_fn, self.energy_fn)
        n_obs = self.n_features_in_
        n_signal = self.n_outputs_
        obs_shape, signal_shape, net_shape = self._shapes(n_obs, n_signal)
        self._obs_shape, self._signal_shape = obs_shape, signal_shape
        if signals is not None and (self.score_fn or self.energy_fn):
            rows = slice(0, min(64, len(signals)))
            head = self._to_tensors({"y": signals[rows], "X": observations[rows],
                                     **{k: v[rows] for k, v in data.items()
                                        if k.startswith("extra:")}})
            check_score_sign(self.physics_, head["y"].reshape(-1, *signal_shape),
                             head["X"].reshape(-1, *obs_shape), split_extras(head))
        backbone, input_shape = self.backbone, self._input_shape()
        if backbone == "auto":
            backbone = "gru" if input_shape is None else "unet"
        if backbone == "gru":
            if input_shape is not None and len(net_shape) > 1:
                net_shape = (n_signal,)
            net = RecurrentDenseNet(3 * n_signal, n_signal, self.hidden_size)
        else:
            if input_shape is None:
                raise ValueError(f"backbone={backbone!r} needs input_shape (the spatial shape).")
            net = RecurrentConvNet(len(input_shape), 3 * self.channels, self.channels,
                                   width=self.width, depth=self.depth, skip=backbone == "unet")
        self._weights = torch.as_tensor(step_weights(self.step_weights, self.n_steps))
        module = RIMModule(net, self.n_steps, signal_shape, net_shape, self.init,
                           self.score_transform, self.link)
        module.autocast_dtype = {None: None, "bf16": torch.bfloat16,
                                 "fp16": torch.float16}[self.mixed_precision]
        all_signals = None if signals is None else (
            lambda: (c["y"] for _, c in self._validated_chunks(data)))
        self._set_wiener_init(module, all_signals)
        return module

    def _initialize(self, data):
        state = super()._initialize(data)
        self._weights = self._weights.to(self.device_, self._torch_dtype)
        return state

    def _method_components(self):
        components = []
        if self.warmup_steps:
            components.append(WarmUp(self.warmup_steps))
        if self.ema_decay is not None:
            components.append(EMA(self.ema_decay))
        return components

    def _to_tensors(self, data):
        if data.get("simulate"):
            # The first set (validation split, best step) from its own seed, kept in the
            # state: the training stream is the same whether or not the fit was resumed.
            extra = self.training_state_.extra
            if "simulation_seed" not in extra:
                extra["simulation_seed"] = int(torch.randint(2**31 - 1, (1,),
                                                             generator=self._generator))
            return self._simulate(self.n_simulations, make_generator(extra["simulation_seed"]))
        return super()._to_tensors(data)

    # ------------------------------------------------------------------ training steps
    def _forward(self, X, **extras):
        """All steps' estimates, flattened: (batch, n_steps, n_signal)."""
        observations = X.reshape(X.shape[0], *self._obs_shape)
        trajectory = self.module_(observations, self.physics_, extras)
        return trajectory.reshape(X.shape[0], self.n_steps, -1)

    def _resamples_noise(self):
        if self.resample_noise == "auto":
            return (self.physics_.linear_gaussian and self.operator is not None
                    and not getattr(self, "_simulating", False))
        if self.resample_noise and self.operator is None:
            raise ValueError("resample_noise=True needs an operator (the noise is X - A y).")
        return bool(self.resample_noise)

    def _compute_loss(self, batch):
        if self._resamples_noise() and len(batch["X"]) > 1:
            signals = batch["y"].reshape(-1, *self._signal_shape)
            clean = self.physics_.operator.forward(signals).reshape(len(signals), -1)
            noise = batch["X"] - clean
            batch = {**batch, "X": clean + torch.roll(noise, 1, dims=0)}
        trajectory = self._forward(batch["X"], **split_extras(batch))
        errors = (trajectory - batch["y"][:, None]).pow(2).mean(dim=2) @ self._weights
        weights = batch.get("sample_weight")
        return errors.mean() if weights is None else (weights * errors).mean()

    def _validation_score(self, val):
        """Variance-weighted R² of the best step (``predict`` uses the best step), batch by
        batch."""
        sums = [R2Sums() for _ in range(self.n_steps)]
        with torch.no_grad():
            for batch in self._iter_batches(val, shuffle=False):
                trajectory = self._forward(batch["X"], **split_extras(batch))
                for step, step_sums in enumerate(sums):
                    step_sums.add(batch["y"], trajectory[:, step])
        return max(step_sums.r2("variance_weighted") for step_sums in sums)

    def _local_batches(self, train):
        """With ``prior_sampler``: fresh pairs every epoch, simulated one batch at a time
        (an epoch of ``n_simulations`` is never held whole); every data-parallel rank
        simulates the same global batch from the shared stream and keeps its slice."""
        if not getattr(self, "_simulating", False):
            yield from super()._local_batches(train)
            return
        n = self._n_rows(train)
        size = self._effective_batch_size(n)
        for start in range(0, n, size):
            rows = min(size, n - start)
            yield shard(self._simulate(rows), rows)

    def _begin_call(self, state, train, val, resumed):
        """A fresh fit scores its starting point (the initial estimate at every step: the
        network's last layer starts at zero) as epoch 0: the weights it returns must beat
        that start on validation, and the patience counts from it."""
        super()._begin_call(state, train, val, resumed)
        best = state.component("best")
        if val is None or resumed or state.n_iter or best is None or best.weights is not None:
            return
        score = self._score_candidate(state, val)
        best.record(state, score)
        state.best_validation_score = score

    def _fit_loop(self, state, train, val, n_epochs, **kwargs):
        super()._fit_loop(state, train, val, n_epochs, **kwargs)
        self._choose_best_step(val if val is not None else train)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None, physics_params=None, **extras):
        """Train on pairs of observations ``X`` and signals ``y``, or on simulations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_observation_features) or None
            Observations; ``None`` with ``prior_sampler`` simulates fresh pairs each epoch.
        y : array-like of shape (n_samples, n_signal) or (n_samples,)
            The true signals.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.
        physics_params : numpy structured array of n_samples rows, or mapping, default=None
            Per-sample arguments passed (batched, as tensors) to ``score_fn`` or
            ``energy_fn``, one field per argument. Being one named array it routes as
            metadata (``set_fit_request(physics_params=True)``) and is split with the
            cross-validation folds.
        **extras : array-like with n_samples rows
            The same arguments as keywords (``Pipeline(...).fit(X, y, rim__sigma=...)``).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if X is None and self.prior_sampler is None:
            raise ValueError("X is None: pass training pairs (X, y), or set prior_sampler.")
        self._simulating = X is None
        try:
            return self._fit(X, y, incremental=False, sample_weight=sample_weight,
                             **merge_physics_params(physics_params, extras))
        finally:
            self._simulating = False

    def _choose_best_step(self, data):
        self.module_.eval()
        errors = torch.zeros(self.n_steps, dtype=torch.float64)
        with torch.no_grad():
            for batch in self._iter_batches(data, shuffle=False):
                trajectory = self._forward(batch["X"], **split_extras(batch))
                errors += (trajectory - batch["y"][:, None]).pow(2).sum(dim=(0, 2)).double().cpu()
        self.step_errors_ = (errors / (self._n_rows(data) * self.n_outputs_)).numpy()
        if getattr(self, "_standardization_", None) is not None:  # in the data's units
            self.step_errors_ = self.step_errors_ * self._standardization_[2] ** 2
        self.best_step_ = int(np.argmin(self.step_errors_)) + 1

    # ------------------------------------------------------------------ prediction
    def predict(self, X, return_trajectory=False, physics_params=None, **extras):
        """Reconstruct signals from observations ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_observation_features)
            Observations.
        return_trajectory : bool, default=False
            Return the estimates of every step, shape (n_samples, n_steps, n_signal).
        physics_params, **extras : per-sample arguments of ``score_fn``/``energy_fn``, as in
            :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples, n_signal) or (n_samples,)
            The estimate of step ``best_step_`` (in the float dtype of ``X``).
        """
        merged = merge_physics_params(physics_params, extras)
        extras = {k[6:]: v for k, v in validate_extras(merged, _num_samples(X), self.score_fn,
                                                             self.energy_fn).items()}
        trajectory, dtype = self._predict_outputs(X, extras)
        trajectory = to_numpy(trajectory, dtype)
        standardization = getattr(self, "_standardization_", None)
        if standardization is not None:
            mean, _, scale = standardization
            trajectory = (trajectory * scale + mean).astype(dtype, copy=False)
        if return_trajectory:
            return trajectory
        pred = trajectory[:, self.best_step_ - 1]
        return pred.ravel() if self._y_is_1d else pred

    def score(self, X, y, sample_weight=None, physics_params=None, **extras):
        r""":math:`R^2` of the reconstructions of ``X`` against the signals ``y``.

        .. math::

            R^2 = 1 - \frac{\sum_i w_i \|\hat x_i - x_i\|^2}
            {\sum_i w_i \|x_i - \bar x\|^2}

        over whole signals (scikit-learn's ``r2_score`` with
        ``multioutput='variance_weighted'``, weights ``sample_weight``; :math:`\bar x` the
        mean signal): 1 is a perfect reconstruction, 0 that of the mean signal, and it is
        unbounded below. A per-feature average would let nearly constant features (an
        image's empty background) dominate with huge negative values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_observation_features)
        y : array-like of shape (n_samples, n_signal) or (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        physics_params, **extras : per-sample arguments, as in :meth:`fit`.

        Returns
        -------
        score : float
        """
        pred = self.predict(X, physics_params=physics_params, **extras)
        return r2_score(y, pred, sample_weight=sample_weight, multioutput="variance_weighted")

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "operator_", None) is not None:
            self.operator_.to(self.device_)
            self._weights = self._weights.to(self.device_)

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("operator_") is not None and self.device_.type != "cpu":
            state["operator_"] = copy.deepcopy(self.operator_).to("cpu")
            state["physics_"] = Physics(state["operator_"], self.physics_.noise_std,
                                        self.score_fn, self.energy_fn)
            state["_weights"] = self._weights.cpu()
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
