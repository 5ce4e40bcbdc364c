r"""The likelihood a RIM follows: an operator with Gaussian noise, a score function or an
energy function, and the least-squares linear model learned when none is given."""

import copy

import numpy as np
import torch

from .._base._warn import warn_user
from ..exceptions import PhysicsMismatchWarning
from ..operators import LinearOperator, MatrixOperator


class Physics:
    r"""Score :math:`\nabla_x \log p(y \mid x)` and the adjoint used to show ``y`` to the
    network, from whichever description the user gave.

    * ``operator`` and ``noise_std``: :math:`A^H (y - A x) / \sigma^2`;
    * ``score_fn(x, y)``: returns :math:`\nabla_x \log p(y \mid x)` (the *log-likelihood*
      gradient: it points towards more likely ``x``);
    * ``energy_fn(x, y)``: returns :math:`-\log p(y \mid x)` per sample (up to a constant);
      the score is minus its gradient, by autograd.

    ``x`` and ``y`` are batched tensors shaped like the operator's input and output (or
    flat ``(batch, n)`` without an operator).
    """

    def __init__(self, operator=None, noise_std=None, score_fn=None, energy_fn=None):
        self.operator, self.noise_std = operator, noise_std
        self.score_fn, self.energy_fn = score_fn, energy_fn
        self._norm = None

    @property
    def linear_gaussian(self):
        """True when the likelihood is an operator with Gaussian noise (no score/energy)."""
        return (self.operator is not None and self.noise_std is not None
                and self.score_fn is None and self.energy_fn is None)

    def operator_norm(self):
        r""":math:`\|A\|_2`, by a seeded power iteration computed once and cached."""
        if self._norm is None:
            generator = torch.Generator().manual_seed(0)
            probe = getattr(self.operator, "_tensors", ())
            ref = next((getattr(self.operator, n) for n in probe
                        if isinstance(getattr(self.operator, n, None), torch.Tensor)), None)
            dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
            device = ref.device if ref is not None else None
            self._norm = max(self.operator.norm(n_iter=60, generator=generator, device=device,
                                                dtype=dtype), 1e-30)
        return self._norm

    def step_size(self):
        r"""The gradient step :math:`1/L = \sigma^2 / \|A\|_2^2` of the Gaussian
        likelihood (1 without an operator and a noise level): the score times it is a
        signal-sized step, whatever the scale of :math:`A` and :math:`\sigma`."""
        if not self.linear_gaussian:
            return 1.0
        return self.noise_std**2 / self.operator_norm() ** 2

    def tikhonov(self, adjoint_y, max_iter=200, tol=1e-6):
        r"""Posterior mean under a white unit prior,
        :math:`(A^H A + \sigma^2 I)^{-1} A^H y` (the ridge / Wiener estimate), by
        conjugate gradients; :math:`\sigma^2` is floored at :math:`10^{-6}\|A\|^2`."""
        lam = max(self.noise_std**2, 1e-6 * self.operator_norm() ** 2)
        x, _ = self.operator.solve_normal(adjoint_y, lam=lam, max_iter=max_iter, tol=tol)
        return x

    def score(self, x, y, **extras):
        """The score; ``extras`` are per-sample tensors handed to ``score_fn``/``energy_fn``."""
        if self.score_fn is not None:
            return self.score_fn(x, y, **extras)
        if self.energy_fn is not None:
            # While training, x depends on the network: keep that graph (create_graph) so
            # the loss differentiates through the score; otherwise a leaf suffices.
            keep = torch.is_grad_enabled() and x.requires_grad
            with torch.enable_grad():
                x = x if keep else x.detach().requires_grad_(True)
                energy = self.energy_fn(x, y, **extras).sum()
                (grad,) = torch.autograd.grad(energy, x, create_graph=keep)
            return -grad
        return self.operator.score(x, y, self.noise_std)

    def adjoint(self, y):
        if self.operator is not None:
            return self.operator.adjoint(y)
        return y


def fit_linear_model(signals, observations):
    r"""Least-squares forward model :math:`X \approx Y A^\top` and the residual noise level.

    Parameters
    ----------
    signals : ndarray of shape (n, d)
    observations : ndarray of shape (n, m)

    Returns
    -------
    operator : MatrixOperator
        :math:`A` of shape (m, d).
    noise_std : float
        Root-mean-square residual (floored at 1e-3 of the data's scale).
    """
    solution, *_ = np.linalg.lstsq(signals, observations, rcond=None)
    residual = observations - signals @ solution
    scale = max(float(np.std(observations)), 1e-12)
    noise_std = max(float(np.sqrt(np.mean(residual**2))), 1e-3 * scale)
    return MatrixOperator(solution.T), noise_std


def row_chunks(*arrays, size=1024):
    """The rows of ``arrays`` (in memory), ``size`` at a time: what the statistics below
    read, so that data in memory and data read lazily in chunks of the same size give
    the same numbers bit for bit."""
    for start in range(0, len(arrays[0]), size):
        yield tuple(a[start:start + size] for a in arrays)


class Moments:
    """Count, mean and centred second moments of rows seen chunk by chunk (float64; the
    pairwise update of Chan, Golub and LeVeque, exact for any chunking up to rounding).
    ``full=True`` keeps the whole co-moment matrix (a covariance), else its diagonal."""

    def __init__(self, full=False):
        self.full, self.n, self.mean, self.m2 = full, 0, None, None

    def add(self, rows):
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        n, mean = len(rows), rows.mean(axis=0)
        centred = rows - mean
        m2 = centred.T @ centred if self.full else (centred**2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total, delta = self.n + n, mean - self.mean
        cross = np.outer(delta, delta) if self.full else delta**2
        self.m2 = self.m2 + m2 + cross * (self.n * n / total)
        self.mean = self.mean + delta * (n / total)
        self.n = total


def standardization(chunks, operator):
    """(signal offset, observation offset, scale) of the training data: the mean signal
    ``m``, its image ``A m`` and the RMS of the centred signals (1 when they are
    constant). Without an operator (the least-squares model is learned through the
    origin) the offsets are 0 and the scale is the RMS of the signals.

    ``chunks`` yields ``(signals, observations)`` row blocks (:func:`row_chunks`).
    """
    moments, raw_square, n_obs, dtype = Moments(), 0.0, None, None
    for signals, observations in chunks:
        moments.add(signals)
        raw_square += float(np.square(np.asarray(signals, dtype=np.float64)).sum())
        n_obs, dtype = observations.shape[1], observations.dtype
    mean = moments.mean
    raw_rms = float(np.sqrt(raw_square / (moments.n * mean.size)))
    if operator is None:
        mean = np.zeros_like(mean)
        scale = raw_rms
    else:
        scale = float(np.sqrt(moments.m2.sum() / (moments.n * mean.size)))
    # Constant signals (no spread relative to their own size, whatever the units: strain
    # data of 1e-21 is not constant) keep the units of their size, or 1 when all zero.
    if not np.isfinite(scale) or scale <= 1e-12 * raw_rms or scale == 0.0:
        scale = raw_rms if np.isfinite(raw_rms) and raw_rms > 0 else 1.0
    if operator is None:
        obs_mean = np.zeros(n_obs, dtype=dtype)
    else:
        op = copy.deepcopy(operator).to(dtype=torch.float64)
        with torch.no_grad():
            image = op.forward(torch.as_tensor(mean, dtype=torch.float64).reshape(
                1, *op.input_shape))
        obs_mean = image.reshape(-1).numpy()
    return mean, obs_mean, scale


def wiener_filter(operator, noise_std, chunks):
    r"""The linear minimum-MSE estimator of the signals' mean :math:`m` and covariance
    :math:`\Sigma` (estimated from the signals, with a jitter of :math:`10^{-6}` of their
    variance): :math:`x_0 = m + G (X - A m)`,
    :math:`G = \Sigma A^\top (A \Sigma A^\top + \sigma^2 I)^{-1}`. For a Gaussian prior
    it is the posterior mean.

    ``chunks`` yields row blocks of the signals (one pass, :class:`Moments`).

    Returns
    -------
    gain : ndarray of shape (n_signal, n_obs)
    offset : ndarray of shape (n_signal,)
        :math:`m - G A m`.
    """
    moments = Moments(full=True)
    for signals in chunks:
        moments.add(signals)
    n = moments.mean.size
    op = copy.deepcopy(operator).to("cpu", torch.float64)
    with torch.no_grad():
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *op.input_shape)
        matrix = op.forward(eye).reshape(n, -1).numpy().T  # (n_obs, n)
    mean = moments.mean
    cov = moments.m2 / (moments.n - 1) if moments.n > 1 else np.zeros((n, n))
    cov += 1e-6 * max(float(np.trace(cov)) / n, 1e-12) * np.eye(n)
    observed = matrix @ cov
    gram = observed @ matrix.T + noise_std**2 * np.eye(matrix.shape[0])
    gain = np.linalg.solve(gram, observed).T
    return gain, mean - gain @ (matrix @ mean)


def check_score_sign(physics, signals, observations, extras):
    r"""Catch the common sign slip (a score of the *negative* log-likelihood).

    From :math:`x_0 = 0` the true signals are more likely than :math:`x_0`, so the score at
    :math:`x_0` must correlate positively with them; an energy must be lower at them.
    """
    with torch.no_grad():
        zeros = torch.zeros_like(signals)
    if physics.energy_fn is not None:
        with torch.no_grad():
            at_truth = physics.energy_fn(signals, observations, **extras).mean()
            at_zero = physics.energy_fn(zeros, observations, **extras).mean()
        if not bool(torch.isfinite(at_truth) & torch.isfinite(at_zero)):
            raise ValueError("energy_fn returned NaN or infinity on the training data (at "
                             "the signals or at zero); it must be finite there.")
        if bool(at_truth > at_zero):
            raise ValueError(
                "energy_fn is larger at the training signals than at zero: it must return "
                "-log p(y | x) per sample (lower is more likely). Is its sign flipped?"
            )
    elif physics.score_fn is not None:
        score = physics.score(zeros, observations, **extras)
        if tuple(score.shape) != tuple(signals.shape):
            raise ValueError(
                f"score_fn returned shape {tuple(score.shape)}; expected the shape of x, "
                f"{tuple(signals.shape)}."
            )
        if not bool(torch.isfinite(score).all()):
            raise ValueError("score_fn returned NaN or infinity on the training data (at "
                             "x = 0); it must be finite there.")
        if float((score * signals).sum()) < 0:
            raise ValueError(
                "score_fn points away from the training signals: it must return "
                "grad_x log p(y | x) (the log-likelihood's gradient, not the energy's). "
                "Is its sign flipped?"
            )


def check_operator(operator):
    if not isinstance(operator, LinearOperator):
        raise TypeError(
            "operator must be a skinverse.operators.LinearOperator, got "
            f"{type(operator).__name__}."
        )
    if getattr(operator, "complex_input", False) or getattr(operator, "complex_output", False):
        raise ValueError("RIMRegressor works with real operators; this one is complex.")
    if type(operator).adjoint is LinearOperator.adjoint and not hasattr(operator, "outer"):
        raise ValueError(
            f"{type(operator).__name__} has no adjoint; the RIM needs A^H for the "
            "likelihood score."
        )


def check_operator_shapes(op, input_shape, channels, backbone):
    """The operator's signal shape must agree with ``input_shape`` (and ``channels``); an
    image operator needs ``input_shape`` unless a dense GRU (``backbone='gru'``) is asked
    for."""
    if op is None:
        return
    signal = tuple(op.input_shape)
    if input_shape is None:
        if len(signal) > 1 and backbone == "auto":
            raise ValueError(
                f"The operator works on signals of shape {signal}: pass "
                f"input_shape={signal[-2:] if len(signal) > 2 else signal} (and channels "
                "for a leading channel axis) for a convolutional backbone, or "
                "backbone='gru' to treat each signal as a flat vector.")
        return
    if signal not in {tuple(input_shape), (channels, *input_shape)}:
        raise ValueError(
            f"input_shape={tuple(input_shape)} with channels={channels} disagrees with the "
            f"operator's input_shape {signal}: they describe the same signal and must "
            "match.")


def check_physics_units(operator, noise_std, signals, observations):
    """Warn when the observations are not in the operator's units (e.g. scaled by a
    StandardScaler in a Pipeline) or ``noise_std`` is far below the residual: the residual
    ``X - A(y)`` over more than 5 noise levels (a smaller one is noiseless data or a
    cautious ``noise_std``)."""
    rows = slice(0, min(256, len(signals)))
    with torch.no_grad():
        op64 = copy.deepcopy(operator).to(dtype=torch.float64)
        pred = op64.forward(torch.as_tensor(signals[rows], dtype=torch.float64).reshape(
            -1, *op64.input_shape)).reshape(len(signals[rows]), -1)
    ratio = float(np.sqrt(np.mean((observations[rows] - pred.numpy()) ** 2))) / noise_std
    if ratio > 5.0:
        warn_user(
            f"The observations X do not match operator and noise_std: the residual "
            f"X - A(y) is {ratio:.3g} times the noise level noise_std. If X was rescaled "
            "(e.g. a StandardScaler before RIMRegressor in a Pipeline), the operator sees "
            "other units than it models: keep X in the operator's units (the RIM handles "
            "scale itself). Otherwise check noise_std.",
            PhysicsMismatchWarning)


def validate_extras(extras, n_samples, score_fn, energy_fn):
    """Per-sample keyword arguments for score_fn/energy_fn, as arrays of n_samples rows
    (keys prefixed ``extra:``, so they travel with the batches)."""
    if extras and score_fn is None and energy_fn is None:
        raise ValueError(
            f"Per-sample arguments {sorted(extras)} were given, but only score_fn or "
            "energy_fn take them (operators are fixed)."
        )
    checked = {}
    for name, value in extras.items():
        array = np.asarray(value)
        if array.ndim == 0 or len(array) != n_samples:
            raise ValueError(
                f"Per-sample argument {name!r} must have one row per sample "
                f"({n_samples}), got shape {array.shape}."
            )
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Per-sample argument {name!r} must be numeric.")
        checked[f"extra:{name}"] = array
    return checked


def merge_physics_params(physics_params, extras):
    """One dict of per-sample arrays from the routable ``physics_params`` (a numpy
    structured array with one field per argument, or a mapping) and keywords."""
    merged = dict(extras)
    if physics_params is None:
        return merged
    names = getattr(getattr(physics_params, "dtype", None), "names", None)
    if names:
        merged.update({name: physics_params[name] for name in names})
    elif hasattr(physics_params, "items"):
        merged.update(physics_params)
    else:
        raise TypeError("physics_params must be a numpy structured array (one field per "
                        "argument) or a mapping of per-sample arrays.")
    return merged


def split_extras(batch):
    """The ``extra:`` entries of a batch, without the prefix."""
    return {k[6:]: v for k, v in batch.items() if k.startswith("extra:")}
