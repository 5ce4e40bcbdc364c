"""IMNNTransformer: information-maximising neural networks as a scikit-learn transformer."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._base import (
    FLOAT_DTYPES,
    BaseTorchEstimator,
    doc_defaults,
    fill_doc,
    make_generator,
    shared_params,
    to_numpy,
)
from ._data import check_derivatives
from ._fisher import fisher_statistics, imnn_loss, quasi_ml_estimate
from ._inputs import _FisherInputs
from ._readout import _Readout
from ._steps import _FisherSteps

_RECORDS = ("detF", "detC", "detinvC", "Lambda2", "r")
_SMOOTHING = 0.05  # weight of the newest step in the validation score's running average


@doc_defaults(
    early_stopping="'auto'", lr_schedule="'plateau'",
    types={"early_stopping": "'auto' or bool"},
    notes={"early_stopping": (
        "        'auto': validate on fresh simulations (simulator mode), or on a held-out\n"
        "        ``validation_fraction`` of given simulations when it holds at least\n"
        "        ``10 (n_summaries + 1)`` of each kind, else not at all. Otherwise:\n")},
)
@fill_doc(max_epochs=3000, learning_rate=0.01, n_iter_no_change=400)
class IMNNTransformer(TransformerMixin, _FisherInputs, _Readout, _FisherSteps,
                      BaseTorchEstimator):
    r"""Information-maximising neural network: compress data to summaries that keep the
    Fisher information about parameters :math:`\theta`.

    A network :math:`f` maps data to summaries :math:`t` (``n_summaries >= n_params``).
    From simulations at a fiducial :math:`\theta_\mathrm{fid}` it estimates the mean
    :math:`\mu`, the covariance :math:`C` and the derivative
    :math:`\partial\mu/\partial\theta` of the summaries, and maximises

    .. math::

        F = \frac{\partial\mu}{\partial\theta}^\top C^{-1} \frac{\partial\mu}{\partial\theta}

    through the loss :math:`-\ln\det F + r\Lambda_2`,
    :math:`\Lambda_2 = \|C - I\|_F + \|C^{-1} - I\|_F`,
    :math:`r = \lambda\Lambda_2 / (\Lambda_2 + e^{-\alpha\Lambda_2})`,
    :math:`\alpha = -\ln(\epsilon(\lambda-1) + \epsilon^2/(1+\epsilon))/\epsilon`.
    ``transform`` returns the quasi-maximum-likelihood estimate
    :math:`\hat\theta = \theta_\mathrm{fid} + F^{-1}\frac{\partial\mu}{\partial\theta}^\top
    C^{-1}(t - \mu)` (or the summaries).

    Three ways to supply the information:

    * ``simulator(theta, generator)`` (``fit()``): fresh simulations every step; derivatives
      by forward-mode autograd, or by seed-matched finite differences with
      ``delta_theta``;
    * ``fit(X, derivatives=D)``: ``X`` the fiducial simulations (n_s, n_features), ``D``
      exact gradients (n_d, n_features, n_params) or finite-difference pairs
      (n_d, 2, n_params, n_features) made with ``delta_theta``;
    * ``fit(X, y)``: simulations ``X`` at parameters ``y`` spread around the fiducial point;
      :math:`\partial\mu/\partial\theta` is the least-squares slope of the summaries on
      ``y`` and :math:`C` the covariance of the residuals (``theta_fid`` defaults to the
      mean of ``y``).

    Parameters
    ----------
    simulator : callable or None, default=None
        ``simulator(theta, generator)`` with ``theta`` a float tensor (n, n_params) and a
        :class:`torch.Generator`; returns (n, n_features) or ``(n, *input_shape)``. The same
        generator state must give the same noise.
    theta_fid : array-like of shape (n_params,) or None, default=None
        Fiducial parameters (required with a simulator or derivatives).
    n_s : int, default=1000
        Fiducial simulations per step (simulator mode).
    n_d : int, default=1000
        Derivative simulations per step (simulator mode); at most ``n_s``. With
        autograd derivatives they are the first ``n_d`` of the ``n_s`` fiducial
        simulations (as in Charnock et al.), so a step simulates ``n_s`` data sets.
    n_summaries : int or None, default=None
        Number of summaries; ``None`` means ``n_params``.
    delta_theta : float, array-like or None, default=None
        Finite-difference half-steps: used by the simulator mode instead of autograd, and
        required with finite-difference pairs.
    lam : float, default=2.0
        :math:`\lambda`, strength of the covariance regulariser (see Notes for the
        choice of the default).
    epsilon : float, default=0.1
        :math:`\epsilon`, the :math:`\Lambda_2` at which the regulariser switches off.
    model : torch.nn.Module or None, default=None
        The compression network (copied and re-initialised from ``random_state``); it
        receives inputs of shape ``(batch, *input_shape)``, returns (batch, n_summaries).
        ``None`` builds the network of ``architecture``.
    architecture : {'auto', 'mlp', 'deepsets'}, default='auto'
        The default network (ignored with ``model``). 'mlp': a multilayer perceptron of
        ``hidden_layer_sizes`` on all features, SiLU activations (smooth, because the
        loss differentiates the summaries with respect to the data). 'deepsets': one
        network of a single data point shared by all of them and summed,
        :math:`t = W\sum_i g(x_i)/\sqrt N + b` -- for independent, identically
        distributed data points the optimal summary at the fiducial point, the score
        :math:`\sum_i \partial_\theta \ln p(x_i|\theta)`, has exactly this form, so
        the network learns one function of one variable whatever the number of points
        (including non-smooth ones such as :math:`\operatorname{sign}(x - \theta)`); it
        is tabulated on 1024 knots over the range of the data and interpolated, which
        makes a step cost a few operations per data point. Its last layer starts at the
        Fisher-optimal linear combination of its random features, whitened. 'auto':
        'deepsets' when fiducial simulations (``min(n_s, 1000)`` drawn at fit, or the
        given ones with their derivatives) look like independent draws of one
        distribution -- rank tests of equal marginals, of equal distributions of
        :math:`\partial x/\partial\theta`, and of no rank correlation between features,
        each at six standard deviations -- and there are at least two features; 'mlp'
        otherwise, and always for ``fit(X, y)``.
    hidden_layer_sizes : tuple of int or 'auto', default='auto'
        Hidden layers of the default network (for 'deepsets', of :math:`g`). 'auto':
        for 'deepsets' one layer of 32 units; for 'mlp' one hidden layer of
        :math:`8 (n_\mathrm{features} + n_\mathrm{params})` units rounded up to a power
        of two, between 64 and 512: the optimal summaries of Gaussian data are sums of
        per-feature quadratics, and a single smooth layer represents such a sum with a
        few units per feature.
    input_shape : tuple of int or None, default=None
        Shape of one sample for ``model`` (``X`` rows are flattened samples).
    output : {'estimate', 'summaries'}, default='estimate'
        What ``transform`` returns.
    min_epochs : int, default=0
        No stopping before this many steps.
    standardize : {'auto'} or bool, default='auto'
        Standardise the network's inputs, :math:`(x - m)/s`, with the mean and standard
        deviation of fiducial simulations (the training ones, or ``min(n_s, 1000)`` drawn
        at fit with a simulator); the Fisher information is invariant to this map, and
        unit-scale inputs make the training independent of the units of the data.
        'auto' and True use one ``m``, ``s`` per feature with the default MLP; 'auto'
        uses a single ``m``, ``s`` for all features with 'deepsets' (one function for
        all points) and with a user's ``model`` (it keeps their spatial structure).
    {shared_parameters}

    Attributes
    ----------
    fisher_ : ndarray of shape (n_params, n_params)
        Fisher information of the fitted summaries (on the training simulations; see
        :meth:`fisher_information` for an unbiased figure on fresh ones).
    covariance_, inverse_covariance_ : ndarray of shape (n_summaries, n_summaries)
    mean_ : ndarray of shape (n_summaries,)
    dmu_dtheta_ : ndarray of shape (n_summaries, n_params)
    theta_fid_ : ndarray of shape (n_params,)
    n_params_ : int
    architecture_ : {'mlp', 'deepsets', 'model'}
        The network ``fit`` built ('model': the user's ``model``).
    history_ : dict of lists
        Per step: ``detF``, ``detC``, ``detinvC``, ``Lambda2``, ``r`` and, with early
        stopping, the same prefixed by ``val_``.
    {shared_attributes}

    Notes
    -----
    The defaults and their rules. The Fisher information is invariant to an invertible
    map of the data and to the scale of the summaries, so the defaults are made
    independent of the units: the inputs are standardised with fiducial simulations
    (``standardize``), the width of the default network grows with the number of data
    points and parameters (``hidden_layer_sizes='auto'``), and the covariance
    regulariser of Charnock et al. (``lam``, ``epsilon``: :math:`r(\Lambda_2)` switches
    it off smoothly below :math:`\Lambda_2 \approx \epsilon`) uses a moderate
    :math:`\lambda = 2` (with :math:`\lambda = 10` the regulariser dominates the first
    hundreds of steps and training is several times slower). Training stops on
    convergence of the Fisher information of held-out simulations: with
    ``early_stopping='auto'`` (default) a fixed validation set of fresh simulations (or,
    with given simulations, a held-out ``validation_fraction`` when it holds at least
    :math:`10(n_\text{summaries} + 1)` of each kind; otherwise no validation) is
    scored by :math:`\ln\det F` every step, the learning rate (1e-2, Adam) is divided
    by 10 after ``n_iter_no_change // 2`` steps without a new best
    (``lr_schedule='plateau'``), training stops after ``n_iter_no_change`` (400) such
    steps, and the best weights are restored. With a simulator every step sees fresh
    simulations, so the training loss itself is too noisy to stop on. The score that
    stopping, the schedule and the best weights follow (``validation_scores_``) is the
    validation :math:`\ln\det F` averaged exponentially over steps, with weight 0.05
    for the newest (about the last 20 steps): where the optimal summary is steep, as
    :math:`\operatorname{sign}(x - \theta)`, one step's value scatters by 10 % from the
    next, and the maximum of the raw values stopped training at a lucky early step
    (Laplace location from 18 points: 0.940 of the analytic :math:`\det F`, 0.956 with
    the average; 0.955 and 0.976 with another seed). The validation
    score is noisy too (a few per cent with :math:`n_s` simulations), and its maximum over
    hundreds of steps is biased upwards, most where :math:`\det F` comes from few data
    points: at the end of a simulator fit the restored weights and the last ones are
    scored once more on :math:`10\,n_s` fresh simulations (at most 10,000 unless ``n_s``
    is more), and the higher is kept (exponential rate from 8 data points: 0.934 of the
    analytic :math:`\det F` without this, 0.982 with it).

    The last layer of the default networks is linear in their features :math:`h`, and
    its Fisher-optimal value for given features is closed-form,
    :math:`W = C_h^{-1}\partial\mu_h/\partial\theta`: it starts there (ridge
    :math:`10^{-2}\operatorname{tr}C_h/n_h`, whitened), and at the end of a fit with a
    simulator it is solved once more on :math:`10\,n_s` fresh simulations (at most
    10,000 unless ``n_s`` is more; ridge :math:`10^{-6}`), kept when the :math:`\ln\det
    F` of that second fresh set is higher than with the trained layer -- stochastic
    gradients on ``n_s`` simulations per step leave it short of that optimum, most for
    summaries with steep features such as :math:`\operatorname{sign}(x - \theta)`.

    One epoch is one optimiser step on all simulations; ``batch_size`` bounds how many
    go through the network at once (the gradient is then accumulated in two passes:
    summaries first, then the loss's gradient with respect to them, chunk by chunk), so
    it never changes the result.

    References
    ----------
    T. Charnock, G. Lavaux, B. D. Wandelt, "Automatic physical inference with
    information maximizing neural networks", Phys. Rev. D 97, 083004, 2018.

    M. Zaheer, S. Kottur, S. Ravanbakhsh, B. Poczos, R. Salakhutdinov, A. Smola,
    "Deep sets", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.datasets import gaussian_mean_problem
    >>> from skinverse.imnn import IMNNTransformer
    >>> problem = gaussian_mean_problem(n_data=10)
    >>> imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
    ...                        n_s=200, n_d=200, hidden_layer_sizes=(16,), max_epochs=1000,
    ...                        early_stopping=True, random_state=0).fit()
    >>> bool(imnn.fisher_information(random_state=1)[0, 0] > 8.0)  # analytic: 10
    True
    """

    _validation_smoothing = _SMOOTHING
    _model_params = (*BaseTorchEstimator._model_params, "n_summaries", "model",
                     "hidden_layer_sizes", "architecture", "input_shape", "standardize")
    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "simulator": [None, callable],
        "theta_fid": [None, "array-like"],
        "n_s": [Interval(Integral, 3, None, closed="left")],
        "n_d": [Interval(Integral, 1, None, closed="left")],
        "n_summaries": [None, Interval(Integral, 1, None, closed="left")],
        "delta_theta": [None, Interval(Real, 0, None, closed="neither"), "array-like"],
        "lam": [Interval(Real, 1, None, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "model": [None, HasMethods(["forward", "parameters"])],
        "hidden_layer_sizes": [tuple, StrOptions({"auto"})],
        "architecture": [StrOptions({"auto", "mlp", "deepsets"})],
        "input_shape": [None, tuple],
        "output": [StrOptions({"estimate", "summaries"})],
        "min_epochs": [Interval(Integral, 0, None, closed="left")],
        "standardize": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(
        self, *, simulator=None, theta_fid=None, n_s=1000, n_d=1000, n_summaries=None,
        delta_theta=None, lam=2.0, epsilon=0.1, model=None, hidden_layer_sizes="auto",
        architecture="auto", input_shape=None, output="estimate", min_epochs=0, standardize="auto",
        max_epochs=3000,
        batch_size="auto", learning_rate=1e-2, optimizer="adam", alpha=0.0,
        lr_schedule="plateau", grad_clip=None, early_stopping="auto", validation_fraction=0.1,
        n_iter_no_change=400, tol=1e-4, warm_start=False, random_state=None, device="auto",
        dtype="float32", verbose=0, callbacks=None, log_dir=None, checkpoint_dir=None,
    ):
        self.simulator = simulator
        self.theta_fid = theta_fid
        self.n_s = n_s
        self.n_d = n_d
        self.n_summaries = n_summaries
        self.delta_theta = delta_theta
        self.lam = lam
        self.epsilon = epsilon
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.architecture = architecture
        self.input_shape = input_shape
        self.output = output
        self.min_epochs = min_epochs
        self.standardize = standardize
        super().__init__(**shared_params(locals()))

    # ------------------------------------------------------------------ module
    def _print_every(self):
        return max(1, self.max_epochs // 50)  # an epoch is one step: ~50 progress lines

    def _keeps_module_initialisation(self):
        return self.model is not None  # the user's module keeps the user's initialisation

    def _initialize(self, data):
        state = super()._initialize(data)
        if self._delta is not None:
            self._delta = self._delta.to(self.device_, self._torch_dtype)
        if self.architecture_ == "deepsets" and data["mode"] != "design":
            if data["mode"] == "simulator":
                tensors = self._simulate(make_generator(self._validation_seed() + 2))
            else:
                tensors = self._to_tensors(data)
            self._init_readout(tensors)
        return state

    def _validation_seed(self):
        """Seed of the fixed fresh simulations that validate (simulator mode); one per fit,
        kept in the training state."""
        return self._split_seed()

    def _publish(self, state):
        super()._publish(state)
        keys = list(_RECORDS) + ([f"val_{key}" for key in _RECORDS]
                                 if self._validates() else [])
        self.history_ = {key: state.history.setdefault(f"imnn:{key}", []) for key in keys}

    def _forward(self, X):
        inputs = X if self.input_shape is None else X.reshape(X.shape[0], *self.input_shape)
        out = self.module_(inputs)
        if out.dim() != 2 or out.shape[1] != self.n_summaries_:
            raise ValueError(f"model returned shape {tuple(out.shape)}; expected "
                             f"(batch, {self.n_summaries_}) summaries.")
        return out

    def _run_epoch(self, train, batch_hooks):
        if train["mode"] == "simulator":  # fresh simulations every step
            train = self._simulate(self._generator)
        self.module_.train()
        self.optimizer_.zero_grad(set_to_none=True)
        try:
            loss, record = self._step_loss(train)
        except ValueError:
            if self._summaries_finite(train):
                raise
            return float("nan")  # the network diverged: the lifecycle restores and stops
        self._apply_step()
        for key in _RECORDS:
            self.history_[key].append(record[key])
        for hook in batch_hooks:
            hook.on_batch_end(self, 0, loss)
        return float(loss)

    def _summaries_finite(self, data):
        with torch.no_grad():
            return bool(torch.isfinite(self._forward(data["X"][:256])).all())

    def _validation_record(self, val):
        with torch.no_grad():
            t, dt = self._summaries(val, cache=True)
            return imnn_loss(self._statistics(t, dt, val), self.lam, self.epsilon)[1]

    def _validation_logdet(self, val):
        return float(np.log(max(self._validation_record(val)["detF"], 1e-300)))

    def _validation_score(self, val):
        record = self._validation_record(val)
        for key in _RECORDS:
            self.history_[f"val_{key}"].append(record[key])
        return float(np.log(max(record["detF"], 1e-300)))

    def _end_epoch(self, epoch, loss, val, start):
        logs = super()._end_epoch(epoch, loss, val, start)
        if logs is not None and self.n_iter_ < self.min_epochs:
            logs["stop"] = False
        return logs

    def _finish(self, state, callbacks, incremental):
        best = state.component("best")
        self._last_weights = None
        if (self._simulating and best is not None and best.weights is not None
                and best.epoch != state.n_iter
                and state.stop_reason not in ("diverged", "interrupted")):
            self._last_weights = {k: v.clone() for k, v in self.module_.state_dict().items()}
        super()._finish(state, callbacks, incremental)

    def _fit_loop(self, state, train, val, n_epochs, **kwargs):
        self._simulating = train["mode"] == "simulator"
        super()._fit_loop(state, train, val, n_epochs, **kwargs)
        if self._simulating and state.stop_reason not in ("diverged", "interrupted"):
            self._polish_readout(self._referee() if val is not None else None)
        if train["mode"] == "simulator":  # the final statistics on one fixed fresh set
            train = self._simulate(make_generator(self._validation_seed() + 1))
        self._set_statistics(train)

    def _set_statistics(self, data):
        self.module_.eval()
        with torch.no_grad():
            stats = self._statistics(*self._summaries(data), data)
        for name in ("fisher", "covariance", "inverse_covariance", "mean", "dmu_dtheta"):
            setattr(self, f"{name}_", to_numpy(stats[name]).astype(np.float64))
        self._stats = {k: v.detach() for k, v in stats.items()}

    # ------------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None, derivatives=None):
        """Train the compression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or None
            Fiducial simulations (with ``derivatives``), simulations at parameters ``y``, or
            ``None`` with a ``simulator``.
        y : array-like of shape (n_samples,) or (n_samples, n_params), default=None
            Parameters of each simulation in ``X`` (the local-design mode).
        derivatives : array-like, default=None
            Exact gradients (n_d, n_features, n_params) or finite-difference pairs
            (n_d, 2, n_params, n_features) of simulations at ``theta_fid``. Routed as
            metadata: ``set_fit_request(derivatives=True)`` inside a meta-estimator.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        return self._fit(X, y, incremental=False, derivatives=derivatives)

    def transform(self, X):
        """Quasi-maximum-likelihood estimates (or summaries) of the data ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_params) or (n_samples, n_summaries)
            :math:`\\hat\\theta` with ``output='estimate'``, the summaries otherwise.
        """
        check_is_fitted(self)
        if X is None:
            raise ValueError("transform needs data X to compress. A fit on the simulator "
                             "has no data of its own: call fit() and then transform(X) "
                             "(fit_transform(None) has nothing to transform).")
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        if getattr(self, "input_standardization_", None) is not None:
            mean, scale = self.input_standardization_
            X = ((X - mean) / scale).astype(X.dtype, copy=False)
        t, dtype = self._predict_outputs(X)
        if self.output == "summaries":
            return to_numpy(t, dtype)
        theta = torch.as_tensor(self.theta_fid_, dtype=t.dtype, device=t.device)
        return to_numpy(quasi_ml_estimate(t, self._stats, theta), dtype)

    def get_feature_names_out(self, input_features=None):
        """``theta_hat0, ...`` (or ``summary0, ...`` with ``output='summaries'``).

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self)
        if self.output == "summaries":
            return np.asarray([f"summary{i}" for i in range(self.n_summaries_)], dtype=object)
        return np.asarray([f"theta_hat{i}" for i in range(self.n_params_)], dtype=object)

    def score(self, X, y=None, derivatives=None):
        r""":math:`\ln\det F` of the summaries of ``X`` (higher is better; any real value).

        .. math::

            F = \Big(\frac{\partial\mu}{\partial\theta}\Big)^{\!\top} C^{-1}
            \frac{\partial\mu}{\partial\theta},

        with :math:`C` the covariance of the summaries and :math:`\mu` their mean. With
        ``derivatives`` (fiducial simulations ``X``), or ``y`` (simulations at parameters
        ``y``: :math:`\partial\mu/\partial\theta` by regressing the summaries on ``y``),
        everything is estimated on the given data; with neither, the covariance comes
        from ``X`` and :math:`\partial\mu/\partial\theta` from the fit. On held-out
        simulations it estimates the information the summaries keep, at most the
        analytic :math:`\ln\det F` of the data (up to sampling error); on the training
        simulations it is biased upwards.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_params), default=None
        derivatives : array-like, default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        data = {"mode": "design" if y is not None else "fiducial", "X": X}
        if derivatives is not None:
            data["derivatives"], data["mode"] = check_derivatives(derivatives, X.shape[1], len(X))
        elif y is not None:
            data["y"] = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
        tensors = {"mode": data["mode"], **self._to_tensors_plain(data)}
        self.module_.eval()
        with torch.no_grad():
            if data["mode"] == "fiducial":
                t = self._summaries({"mode": "design", "X": tensors["X"]})[0]
                dmu = self._stats["dmu_dtheta"]
                stats = fisher_statistics(t, dmu[None].expand(2, -1, -1))
            else:
                stats = self._statistics(*self._summaries(tensors), tensors)
            _, logdet = torch.linalg.slogdet(stats["fisher"])
        return float(logdet)

    def fisher_information(self, n_simulations=None, random_state=None):
        """Fisher matrix of the fitted summaries on fresh simulations (simulator mode).

        The best value seen in training is biased upwards (the network was selected on
        it); this is the honest figure.

        Parameters
        ----------
        n_simulations : int or None, default=None
            Fiducial and derivative simulations (``None``: ``n_s`` and ``n_d``).
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        fisher : ndarray of shape (n_params, n_params)
        """
        check_is_fitted(self)
        if self.simulator is None:
            raise ValueError("fisher_information needs a simulator; use score(X, ...) on "
                             "held-out simulations instead.")
        saved = self.n_s, self.n_d
        if n_simulations is not None:
            self.n_s = self.n_d = int(n_simulations)
        try:
            data = self._simulate(make_generator(random_state))
        finally:
            self.n_s, self.n_d = saved
        self.module_.eval()
        with torch.no_grad():
            stats = self._statistics(*self._summaries(data), data)
        return to_numpy(stats["fisher"]).astype(np.float64)

    def refit_at(self, theta, X=None, y=None, derivatives=None):
        """Move the fiducial point to ``theta`` and continue training there.

        The recommended iterative procedure: fit, estimate the parameters of the observed
        data, refit at the estimate. With a simulator no data are needed.

        Parameters
        ----------
        theta : array-like of shape (n_params,)
        X, y, derivatives : as in :meth:`fit`, simulated at ``theta``.

        Returns
        -------
        self : object
        """
        check_is_fitted(self)
        warm = self.warm_start
        self.set_params(theta_fid=np.asarray(theta, dtype=np.float64), warm_start=True)
        try:
            self._validate_params()
            data = self._validate_fit_data(X, y, reset=False, derivatives=derivatives)
            self.theta_fid_ = np.asarray(data["theta"], dtype=np.float64)
            tensors = self._to_tensors(data)
            state = self.training_state_
            self._apply_hyperparameters(state, reset_stopping=True)
            val = self._split(tensors, data)[1] if self._validates() else None
            self._fit_loop(state, tensors, val, self.max_epochs, incremental=False)
        finally:
            self.warm_start = warm
        return self

    def __getstate__(self):
        state = super().__getstate__()
        for key in ("_stats", "_delta"):
            value = state.get(key)
            if isinstance(value, dict):
                state[key] = {k: v.cpu() for k, v in value.items()}
            elif isinstance(value, torch.Tensor):
                state[key] = value.cpu()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "_stats", None) is not None:
            self._stats = {k: v.to(self.device_) for k, v in self._stats.items()}
        if getattr(self, "_delta", None) is not None:
            self._delta = self._delta.to(self.device_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # y or derivatives carry the parameters
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
