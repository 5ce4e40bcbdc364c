"""What the implicit estimators share: module construction, well-posedness, solver
diagnostics, ``from_mlp``, ``robustness_bound`` and ``plot_structure``."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._base import BaseTorchEstimator
from .._base._warn import warn_user
from ..exceptions import EquilibriumConvergenceWarning
from ._module import ACTIVATIONS, ImplicitModule

_MLP_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid"}


def _check_user_activation(pair):
    """Check that a user's ``(phi, dphi)`` is increasing, non-expansive and consistent."""
    if len(pair) != 2 or not all(callable(f) for f in pair):
        raise TypeError(
            "activation must be one of "
            f"{sorted(ACTIVATIONS)} or a pair (phi, dphi) of callables on tensors."
        )
    phi, dphi = pair
    grid = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    try:
        values = phi(grid)
        midpoints = dphi((grid[1:] + grid[:-1]) / 2)
    except Exception as exc:
        raise TypeError(f"activation phi/dphi failed on a float64 tensor: {exc}") from exc
    numeric = torch.diff(values) / torch.diff(grid)
    if bool((numeric < -1e-9).any()) or bool((numeric > 1 + 1e-6).any()):
        raise ValueError(
            "activation phi must be increasing and non-expansive (0 <= phi' <= 1) for the "
            "equilibrium to be well posed; the given phi is not on [-6, 6]."
        )
    if float((midpoints - numeric).abs().max()) > 1e-2:
        raise ValueError("activation dphi does not match the derivative of phi on [-6, 6].")
    return phi, dphi, 1.0, True


class _ImplicitMixin:
    """What both implicit estimators share: module, well-posedness, diagnostics."""

    _model_params = (*BaseTorchEstimator._model_params, "hidden_size", "activation",
                     "fit_D", "bias", "structure", "rank")
    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS)), tuple],
        "fit_D": ["boolean"],
        "bias": ["boolean"],
        "well_posedness": [StrOptions({"inf_norm", "monotone", "none"})],
        "kappa": [Interval(Real, 0, 1, closed="neither")],
        "monotone_margin": [Interval(Real, 0, 1, closed="neither")],
        "structure": [StrOptions({"dense", "upper", "low_rank"})],
        "rank": [None, Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"auto", "picard", "anderson"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver_tol": [Interval(Real, 0, None, closed="neither")],
        "backward": [StrOptions({"implicit", "phantom", "exact"})],
        "backward_steps": [Interval(Integral, 1, None, closed="left")],
        "l1_penalty": [Interval(Real, 0, None, closed="left")],
        "reuse_equilibria": ["boolean"],
    }

    def _store_implicit_params(self, namespace):
        """Store the implicit-model parameters from an ``__init__``'s ``locals()``."""
        for name in _ImplicitMixin._parameter_constraints.keys() - set(
                BaseTorchEstimator._parameter_constraints):
            setattr(self, name, namespace[name])

    # ------------------------------------------------------------------ building
    def _activation(self):
        if isinstance(self.activation, str):
            return ACTIVATIONS[self.activation]
        return _check_user_activation(self.activation)

    def _build_module(self, data):
        phi, dphi, lipschitz, monotone = self._activation()
        if self.well_posedness == "monotone" and self.activation != "relu":
            raise ValueError(
                "well_posedness='monotone' needs activation='relu' (the splitting solver's "
                f"fixed points match the model's only for ReLU); got {self.activation!r}."
            )
        if self.well_posedness == "monotone" and self.structure != "dense":
            raise ValueError("well_posedness='monotone' supports structure='dense' only.")
        rank = self.rank if self.rank is not None else max(1, self.hidden_size // 10)
        if self.structure == "low_rank" and rank > self.hidden_size:
            raise ValueError(f"rank={rank} exceeds hidden_size={self.hidden_size}.")
        return ImplicitModule(
            self.n_features_in_, self.hidden_size, self.n_outputs_, phi=phi, dphi=dphi,
            lipschitz=lipschitz, fit_D=self.fit_D, bias=self.bias,
            well_posedness=self.well_posedness, kappa=self.kappa,
            monotone_margin=self.monotone_margin, structure=self.structure, rank=rank,
            solver=self.solver, max_iter=self.max_iter, solver_tol=self.solver_tol,
            backward=self.backward, backward_steps=self.backward_steps,
        )

    def _history_attributes(self):
        return {"forward_iterations_": "forward_iterations",
                "backward_iterations_": "backward_iterations",
                "fraction_converged_": "fraction_converged"}

    # ------------------------------------------------------------------ training steps
    def _streams(self, source):
        """Lazy data is read whole: the equilibria are cached per training sample."""
        return False

    def _validate_fit_data(self, X, y, **kwargs):
        data = super()._validate_fit_data(X, y, **kwargs)
        if self.reuse_equilibria:
            data["index"] = np.arange(len(data["X"]))
        return data

    def _begin_call(self, state, train, val, resumed):
        """One equilibrium start point per training sample and the training solver
        schedule (tolerance, first convergence tests), kept in the state (so a resumed
        fit solves exactly as the interrupted one would have); fresh each call."""
        self.module_.schedule = None
        if not self.reuse_equilibria:
            return
        n = int(train["index"].max()) + 1 if len(train["index"]) else 0
        if val is not None and len(val["index"]):
            n = max(n, int(val["index"].max()) + 1)
        cache = state.extra.get("equilibria")
        schedule = state.extra.get("solver_schedule")
        if (not resumed or cache is None or schedule is None
                or tuple(cache.shape) != (n, self.hidden_size)):
            state.extra["equilibria"] = torch.zeros(n, self.hidden_size,
                                                    dtype=self._torch_dtype, device=self.device_)
            state.extra["solver_schedule"] = schedule = {}
        self.module_.schedule = schedule
        if "tol" not in schedule:
            self.module_.schedule_tolerance(None)

    def _forward(self, X):
        index = getattr(self, "_batch_index", None)
        cache = self.training_state_.extra.get("equilibria") if index is not None else None
        if index is None or cache is None:
            out = self.module_(X)
        else:  # index_select/index_copy_: 3-5x cheaper than advanced indexing here
            out = self.module_(X, z0=cache.index_select(0, index))
            cache.index_copy_(0, index, self.module_.last_equilibrium)
        self.module_.last_equilibrium = None
        return out

    def _equilibrium_movement(self, before, index):
        """Median relative sup-norm change of the cached equilibria ``index`` since
        ``before`` (their values at the start of the epoch)."""
        after = self.training_state_.extra["equilibria"].index_select(0, index)
        change = (after - before).abs_().amax(dim=1)
        return float(change.div_(after.abs().amax(dim=1).clamp_min_(1.0)).median())

    def _compute_loss(self, batch):
        self._batch_index = batch.get("index") if self.module_.training else None
        try:
            loss = super()._compute_loss(batch)
        finally:
            self._batch_index = None
        if self.l1_penalty:
            loss = loss + self.l1_penalty * self.module_.l1_norm()
        return loss

    def _train_step(self, batch, share=1.0):
        loss = super()._train_step(batch, share)
        self.module_.enforce_well_posedness()
        return loss

    def _run_epoch(self, train, batch_hooks):
        self.module_.stats.clear()
        cache = self.training_state_.extra.get("equilibria")
        tracked = cache is not None and self.module_.schedule is not None
        if tracked:  # each training sample is visited once per epoch; a median of 256
            index = train["index"][:256]  # of them is as good as all, at a fifth of the cost
            before = cache.index_select(0, index)
            untouched = not bool(before.any())  # first epoch: no previous equilibria
        loss = super()._run_epoch(train, batch_hooks)
        if tracked:
            movement = None if untouched else self._equilibrium_movement(before, index)
            self.module_.schedule_tolerance(movement)
        forward = [s for kind, s in self.module_.stats if kind == "forward"]
        backward = [s for kind, s in self.module_.stats if kind == "backward"]
        history = self.training_state_.history
        history["forward_iterations"].append(float(np.mean([s.iterations for s in forward])))
        history["backward_iterations"].append(
            float(np.mean([s.iterations for s in backward])) if backward else 0.0
        )
        history["fraction_converged"].append(
            float(np.mean([s.fraction_converged for s in forward])))
        self._warn_if_unconverged(forward + backward, "training")
        self.module_.stats.clear()
        return loss

    def _warn_if_unconverged(self, stats, where):
        worst = max((s.max_residual for s in stats), default=0.0)
        if worst > self.solver_tol and not (where == "training" and self._solver_warned):
            self._solver_warned = where == "training"
            warn_user(
                f"The equilibrium solve did not reach solver_tol={self.solver_tol:g} during "
                f"{where}: largest relative residual {worst:.3g} after max_iter="
                f"{self.max_iter} iterations; the lowest-residual iterate was used. Raise "
                "max_iter, use solver='anderson' or lower kappa.",
                EquilibriumConvergenceWarning,
            )

    def _fit(self, X, y, **kwargs):
        self._solver_warned = False
        super()._fit(X, y, **kwargs)
        self.training_state_.extra.pop("equilibria", None)  # this call's cache only
        self.training_state_.extra.pop("solver_schedule", None)
        self.module_.schedule = None
        self.module_.stats.clear()
        self.A_inf_norm_ = self.module_.a_inf_norm()
        return self

    def _predict_outputs(self, X, extras=None):
        check_is_fitted(self)
        self.module_.stats.clear()
        outputs, dtype = super()._predict_outputs(X, extras)
        self._warn_if_unconverged([s for _, s in self.module_.stats], "prediction")
        self.module_.stats.clear()
        if not bool(torch.isfinite(outputs).all()):
            raise FloatingPointError(
                "The equilibrium diverged (non-finite state) for some samples; this can only "
                "happen with well_posedness='none'. Use well_posedness='inf_norm'."
            )
        return outputs, dtype

    # ------------------------------------------------------------------ inspection
    def get_matrices(self):
        """``A, B, C, D`` of the fitted model as float64 arrays.

        Returns
        -------
        A : ndarray of shape (hidden_size, hidden_size)
        B : ndarray of shape (hidden_size, n_features)
        C : ndarray of shape (n_outputs, hidden_size)
        D : ndarray of shape (n_outputs, n_features)
            Zero when ``fit_D=False``.
        """
        check_is_fitted(self)
        return self._matrices()

    def _matrices(self):
        """``A, B, C, D`` as float64 numpy arrays (``D`` zero when not fitted)."""
        check_is_fitted(self)
        module = self.module_
        with torch.no_grad():
            A, B, C = (t.detach().cpu().double().numpy() for t in
                       (module.matrix_A(), module.B, module.C))
            D = (module.D.detach().cpu().double().numpy() if module.D is not None
                 else np.zeros((C.shape[0], B.shape[1])))
        return A, B, C, D

    def robustness_bound(self, sigma):
        r"""Worst-case change of the outputs when every input moves by at most ``sigma``.

        For a componentwise non-expansive :math:`\phi` (ReLU-type) and
        :math:`\rho(|A|) < 1` (the Perron-Frobenius condition),
        :math:`|\Delta u| \le \sigma` implies

        .. math::

            |\Delta \hat y| \le |C| (I - |A|)^{-1} |B| \sigma + |D| \sigma

        componentwise (El Ghaoui et al. 2021, Sec. 4). For a classifier it bounds the
        change of the logits.

        Parameters
        ----------
        sigma : float or array-like of shape (n_features,)
            Bound on the absolute perturbation of each input feature.

        Returns
        -------
        bound : ndarray of shape (n_outputs,)
            Bound on the absolute change of each output.
        """
        A, B, C, D = self._matrices()
        name = self.activation if isinstance(self.activation, str) else "user"
        if name == "silu":
            raise ValueError("robustness_bound needs a non-expansive activation; SiLU is not.")
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (B.shape[1],))
        if np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
            raise ValueError("sigma must be finite and non-negative.")
        radius = np.max(np.abs(np.linalg.eigvals(np.abs(A)))) if A.size else 0.0
        if radius >= 1:
            raise ValueError(
                f"The Perron-Frobenius condition fails: the spectral radius of |A| is "
                f"{radius:.4f} >= 1, so the bound does not hold."
            )
        eye = np.eye(A.shape[0])
        state = np.linalg.solve(eye - np.abs(A), np.abs(B) @ sigma)
        return np.abs(C) @ state + np.abs(D) @ sigma

    def plot_structure(self, ax=None):
        """Show :math:`|[[A, B], [C, D]]|` as an image (needs matplotlib).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when ``None``.

        Returns
        -------
        ax : matplotlib Axes
        """
        try:
            import matplotlib.pyplot as plt
            from matplotlib.colors import LogNorm
        except ImportError as exc:
            raise ImportError("plot_structure needs matplotlib: pip install matplotlib") from exc
        A, B, C, D = self._matrices()
        block = np.abs(np.block([[A, B], [C, D]]))
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        positive = block[block > 0]
        vmin = max(positive.min(), positive.max() * 1e-4) if positive.size else 1e-8
        image = ax.imshow(np.where(block > 0, block, np.nan), cmap="viridis",
                          norm=LogNorm(vmin=vmin, vmax=max(block.max(), vmin * 10)))
        n = A.shape[0]
        ax.axhline(n - 0.5, color="red", lw=1)
        ax.axvline(n - 0.5, color="red", lw=1)
        ax.set_title("|[[A, B], [C, D]]|")
        ax.set_xlabel(f"state (0..{n - 1}) | inputs")
        ax.set_ylabel("state | outputs")
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
        return ax

    # ------------------------------------------------------------------ embedding an MLP
    @classmethod
    def from_mlp(cls, mlp, **params):
        """Embed a fitted scikit-learn MLP exactly as an implicit model.

        With hidden layers :math:`x_l = \\phi(W_l x_{l-1} + b_l)` the state stacks
        :math:`z = (x_L, \\dots, x_1)`; :math:`A` holds :math:`W_2, \\dots, W_L` above its
        diagonal (strictly upper-triangular, hence well posed for any weights), :math:`B`
        holds :math:`W_1`, :math:`C` the output layer and :math:`D = 0`. Picard iteration
        from zero reaches the equilibrium in :math:`L` steps, so predictions equal the
        MLP's (to the precision of ``dtype``).

        Parameters
        ----------
        mlp : MLPClassifier or MLPRegressor
            A fitted MLP with activation 'relu', 'tanh' or 'logistic'.
        **params
            Further parameters of the implicit estimator (``dtype``, ``device``, ...).

        Returns
        -------
        estimator : ImplicitClassifier or ImplicitRegressor
            A fitted estimator with ``structure='upper'`` and ``well_posedness='none'``.
        """
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        expected = MLPClassifier if issubclass(cls, ClassifierMixin) else MLPRegressor
        if not isinstance(mlp, expected):
            raise TypeError(f"{cls.__name__}.from_mlp needs a {expected.__name__}, got "
                            f"{type(mlp).__name__}.")
        check_is_fitted(mlp)
        if mlp.activation not in _MLP_ACTIVATIONS:
            raise ValueError(f"MLP activation {mlp.activation!r} has no implicit counterpart; "
                             f"supported: {sorted(_MLP_ACTIVATIONS)}.")
        if getattr(mlp, "out_activation_", "") not in ("softmax", "logistic", "identity"):
            raise ValueError(f"MLP output activation {mlp.out_activation_!r} is not supported.")
        multilabel = getattr(getattr(mlp, "_label_binarizer", None), "y_type_", "")
        if multilabel == "multilabel-indicator":
            raise ValueError("from_mlp does not support multilabel MLPClassifier.")
        weights = [W.T for W in mlp.coefs_]  # (out, in)
        hidden = [W.shape[0] for W in weights[:-1]]
        n = sum(hidden)
        offsets = np.cumsum([0] + hidden[::-1])  # x_L first: rows of layer l at offsets
        block = {layer: offsets[len(hidden) - 1 - layer] for layer in range(len(hidden))}
        A = np.zeros((n, n))
        b = np.zeros(n)
        for layer in range(len(hidden)):
            rows = slice(block[layer], block[layer] + hidden[layer])
            b[rows] = mlp.intercepts_[layer]
            if layer > 0:
                cols = slice(block[layer - 1], block[layer - 1] + hidden[layer - 1])
                A[rows, cols] = weights[layer]
        B = np.zeros((n, weights[0].shape[1]))
        B[block[0] : block[0] + hidden[0]] = weights[0]
        C = np.zeros((weights[-1].shape[0], n))
        last = len(hidden) - 1
        C[:, block[last] : block[last] + hidden[last]] = weights[-1]
        settings = dict(hidden_size=n, activation=_MLP_ACTIVATIONS[mlp.activation],
                        structure="upper", well_posedness="none", fit_D=False, bias=True,
                        max_iter=max(50, len(hidden) + 2))
        est = cls(**{**settings, **params})
        est._validate_params()
        est.n_features_in_ = mlp.n_features_in_
        if hasattr(mlp, "feature_names_in_"):
            est.feature_names_in_ = mlp.feature_names_in_
        est.n_outputs_ = C.shape[0]
        if hasattr(mlp, "classes_"):
            est.classes_ = mlp.classes_
        else:
            est._y_is_1d = C.shape[0] == 1
        est._initialize(None)
        module = est.module_
        with torch.no_grad():
            for name, value in (("A", A), ("B", B), ("C", C), ("b", b), ("c", mlp.intercepts_[-1])):
                getattr(module, name).copy_(torch.as_tensor(value))
        est.A_inf_norm_ = module.a_inf_norm()
        module.eval()
        return est


_IMPLICIT_PARAMETERS = """\
    hidden_size : int, default=100
        Dimension :math:`n` of the equilibrium state :math:`z`.
    activation : {'relu', 'leaky_relu', 'tanh', 'sigmoid', 'silu'} or (phi, dphi), \
default='relu'
        The componentwise activation :math:`\\phi`, or a pair of callables on tensors: an
        increasing, non-expansive ``phi`` and its derivative ``dphi`` (checked at fit).
        SiLU is not non-expansive: its Lipschitz constant 1.0998 divides ``kappa``.
    fit_D : bool, default=True
        Learn the direct input-output matrix :math:`D` (``False`` fixes :math:`D = 0`).
    bias : bool, default=True
        Learn the offsets :math:`b` and :math:`c`.
    well_posedness : {'inf_norm', 'monotone', 'none'}, default='inf_norm'
        'inf_norm' projects every row of :math:`A` onto the l1 ball of radius
        :math:`\\kappa / L` after each optimiser step (exact Euclidean projection), so
        :math:`\\|A\\|_\\infty \\le \\kappa/L` and the map is a contraction; 'monotone'
        parametrises :math:`A = (1-m) I - W^\\top W + S - S^\\top` (ReLU only, solved by
        forward-backward splitting, backward by a dense solve); 'none' leaves :math:`A`
        free (well posed only for ``structure='upper'``).
    kappa : float, default=0.95
        Bound on :math:`L \\|A\\|_\\infty` with 'inf_norm'.
    monotone_margin : float, default=0.1
        Monotonicity margin :math:`m` with 'monotone'.
    structure : {'dense', 'upper', 'low_rank'}, default='dense'
        'upper' keeps :math:`A` strictly upper-triangular (a feed-forward network as a
        special case); 'low_rank' uses :math:`A = P Q^\\top` of rank ``rank`` (its rows
        are rescaled, not projected, to meet the norm bound).
    rank : int or None, default=None
        Rank with 'low_rank'; ``None`` means ``max(1, hidden_size // 10)``.
    solver : {'auto', 'picard', 'anderson'}, default='auto'
        Fixed-point solver of the forward and adjoint equilibria: Picard iteration, or
        Anderson acceleration with one residual difference (closed form, per sample),
        mixed every second iteration. Both test convergence every few iterations and
        keep each sample's first converged iterate, so a prediction does not depend on
        its batch. From a cold start (prediction) Anderson needs half of Picard's
        iterations in 0.75x the time; the warm-started training solves stop after 3-6
        iterations, where Anderson saves half an iteration but fits 5-10% slower on
        digits. 'auto' takes the faster of the two in each case: Picard for the
        training solves when ``reuse_equilibria=True``, Anderson otherwise.
    max_iter : int, default=50
        Maximum solver iterations per equilibrium.
    solver_tol : float, default=1e-4
        Tolerance on the relative sup-norm residual :math:`\\|f(z) - z\\|_\\infty /
        \\max(1, \\|f(z)\\|_\\infty)` of prediction solves. Training solves use a
        tolerance that tightens as training converges: with ``reuse_equilibria``,
        ``min(100 * solver_tol, max(solver_tol, 0.1 * m))``, :math:`m` the median
        relative change of the training equilibria (of the first 256 samples) over the
        previous epoch (the first epoch uses ``100 * solver_tol``); without, ``10 * solver_tol``. An equilibrium
        solved much more accurately than the next epoch moves it is wasted work; the
        test scores on digits, breast cancer, wine, diabetes and Friedman #1 stay within
        0.002 of those of training solves at ``10 * solver_tol``.
    backward : {'implicit', 'phantom', 'exact'}, default='implicit'
        Gradient rule: 'implicit' solves the adjoint fixed point
        :math:`w = g + J^\\top w`; 'phantom' back-propagates through ``backward_steps``
        applications of the map from the equilibrium (1 step is the Jacobian-free
        gradient); 'exact' solves :math:`(I - J)^\\top w = g` densely (small ``n``).
    backward_steps : int, default=5
        Steps of the 'phantom' gradient.
    l1_penalty : float, default=0.0
        Weight of :math:`\\sum |A| + |B| + |C| + |D|` added to the loss (sparsity).
    reuse_equilibria : bool, default=True
        Start each training sample's forward solve from its equilibrium of the previous
        epoch (the fixed point is unique, so only the iteration count changes), and
        schedule the training solves: the tolerance above, and the first convergence
        test of each solve at the iteration where the previous one stopped (each test is
        a host synchronisation). Keeps ``n_samples * hidden_size`` floats on the device
        during ``fit``. On digits it cuts forward iterations per step from 11 to 5."""

_IMPLICIT_ATTRIBUTES = """\
    A_inf_norm_ : float
        :math:`\\|A\\|_\\infty` of the fitted model.
    forward_iterations_ : list of float
        Mean forward solver iterations per batch, per epoch.
    backward_iterations_ : list of float
        Mean adjoint solver iterations per batch, per epoch (0 without adjoint solves).
    fraction_converged_ : list of float
        Mean fraction of samples whose forward solve converged, per epoch."""

_MATHS = r"""
    The hidden state is an equilibrium instead of a stack of layers:

    .. math::

        z = \phi(A z + B u + b), \qquad \hat y = C z + D u + c,

    with :math:`\phi` componentwise, increasing and non-expansive. When
    :math:`\|A\|_\infty < 1` the map is a contraction in the sup norm, so the
    equilibrium exists, is unique and Picard iteration finds it. Gradients come from the
    implicit function theorem, without storing the iterations."""


def _fill_implicit(cls):
    doc = cls.__doc__.replace("{implicit_parameters}", _IMPLICIT_PARAMETERS.strip())
    doc = doc.replace("{implicit_attributes}", _IMPLICIT_ATTRIBUTES.strip())
    cls.__doc__ = doc.replace("{maths}", _MATHS.strip("\n"))
    return cls
