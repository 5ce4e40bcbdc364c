r"""Figures for fitted skinverse estimators (needs matplotlib: ``pip install
"skinverse[plot]"``).

Every function draws into the ``ax``/``axes`` it is given (a new figure otherwise) and
returns what it drew on, so figures compose with plain matplotlib:

* :func:`plot_reconstructions` -- ground truth next to baselines and reconstructions,
  with the PSNR of each in its title;
* :func:`plot_rim_trajectory` -- the estimates of every step of a
  :class:`~skinverse.rim.RIMRegressor`, and the error per step;
* :func:`plot_implicit_structure` -- the learned matrices of an implicit model;
* :func:`plot_loss_curves` -- ``loss_curve_`` and ``validation_scores_`` of any fitted
  skinverse estimator (or scikit-learn's MLPs);
* :func:`plot_imnn_history` and :func:`plot_corner` -- IMNN training and posteriors.
"""

import numpy as np

from .metrics import psnr

__all__ = [
    "plot_corner",
    "plot_imnn_history",
    "plot_implicit_structure",
    "plot_loss_curves",
    "plot_reconstructions",
    "plot_rim_trajectory",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    return plt


def _axes_grid(axes, n_rows, n_cols, size):
    """``axes`` as a (n_rows, n_cols) array, or a new figure of that grid."""
    if axes is None:
        _, axes = _pyplot().subplots(n_rows, n_cols, squeeze=False,
                                     figsize=(size[0] * n_cols, size[1] * n_rows))
    axes = np.asarray(axes, dtype=object)
    if axes.size != n_rows * n_cols:
        raise ValueError(f"axes must hold {n_rows} x {n_cols} Axes, got {axes.size}.")
    return axes.reshape(n_rows, n_cols)


def _magnitudes(rows):
    """Rows of real parts then imaginary parts -> rows of magnitudes."""
    two = np.asarray(rows, dtype=np.float64).reshape(len(rows), 2, -1)
    return np.hypot(two[:, 0], two[:, 1])


def _as_dict(reconstructions):
    if isinstance(reconstructions, dict):
        return dict(reconstructions)
    return {"reconstruction": reconstructions}


# ---------------------------------------------------------------------- reconstructions
def plot_reconstructions(y_true, reconstructions, *, image_shape=None, indices=None,
                         n_images=3, data_range=None, magnitude=False, cmap="gray",
                         clim=None, axes=None):
    r"""Ground truth next to baselines and reconstructions, with the PSNR of each.

    One row per sample; the first column is the ground truth, then one column per entry
    of ``reconstructions`` (in its order: put the baselines first). Each title gives the
    sample's PSNR against the ground truth, :func:`skinverse.metrics.psnr` with
    ``data_range``. The images of a row share one grey scale (``clim``). With
    ``image_shape=None`` (1-D signals) each row is one Axes with every curve overlaid.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_features)
        Ground-truth signals or flattened images.
    reconstructions : dict of str to array-like, or array-like
        Name -> array of the same shape as ``y_true`` (e.g. ``{"Tikhonov": ...,
        "RIM": ...}``); a single array is called "reconstruction".
    image_shape : tuple of int or None, default=None
        Shape ``(H, W)`` of one image; ``None`` draws 1-D signals as curves.
    indices : array-like of int or None, default=None
        Samples to show; by default the first ``n_images``.
    n_images : int, default=3
        Number of samples shown when ``indices`` is None.
    data_range : float or None, default=None
        Range of the PSNR (see :func:`skinverse.metrics.psnr`); ``1.0`` for images in
        [0, 1].
    magnitude : bool, default=False
        Rows hold real parts then imaginary parts (the layout of
        :class:`~skinverse.unrolled.UnrolledRegressor`): show and score magnitudes.
    cmap : str, default='gray'
        Colour map of the images.
    clim : (float, float) or None, default=None
        Values shown black and white, e.g. ``(0, 1)`` for images in [0, 1]; by default
        each row's ground-truth minimum and maximum.
    axes : array of matplotlib Axes or None, default=None
        ``(n_rows, 1 + len(reconstructions))`` Axes for images, ``n_rows`` for signals.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        Shape ``(n_rows, 1 + len(reconstructions))`` for images, ``(n_rows, 1)`` for
        signals.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.plotting import plot_reconstructions
    >>> truth = np.random.RandomState(0).uniform(size=(2, 64))
    >>> axes = plot_reconstructions(truth, {"noisy": truth + 0.1}, image_shape=(8, 8),
    ...                             data_range=1.0)
    >>> axes.shape, axes[0, 1].get_title()
    ((2, 2), 'noisy\nPSNR 20.00 dB')
    """
    recon = {name: np.asarray(value, dtype=np.float64)
             for name, value in _as_dict(reconstructions).items()}
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    if magnitude:
        y_true, recon = _magnitudes(y_true), {k: _magnitudes(v) for k, v in recon.items()}
    for name, value in recon.items():
        if value.reshape(len(value), -1).shape != y_true.shape:
            raise ValueError(f"reconstructions[{name!r}] has shape {value.shape}, y_true "
                             f"{y_true.shape}.")
    indices = np.arange(min(n_images, len(y_true))) if indices is None else np.ravel(indices)
    rows = [(y_true[i], {k: v.reshape(len(v), -1)[i] for k, v in recon.items()})
            for i in indices]
    if image_shape is None or len(image_shape) == 1:
        axes = _axes_grid(axes, len(rows), 1, (6, 2.5))
        for ax, (truth, row) in zip(axes[:, 0], rows):
            _draw_signals(ax, truth, row, data_range)
        return axes
    axes = _axes_grid(axes, len(rows), 1 + len(recon), (2.2, 2.7))
    for row_axes, (truth, row) in zip(axes, rows):
        _draw_images(row_axes, truth, row, tuple(image_shape), data_range, cmap, clim)
    return axes


def _title(name, truth, estimate, data_range):
    value = psnr(truth[None], estimate[None], data_range=data_range)
    return f"{name}\nPSNR {value:.2f} dB"


def _draw_images(row_axes, truth, row, image_shape, data_range, cmap, clim):
    vmin, vmax = (truth.min(), truth.max()) if clim is None else clim
    panels = [("ground truth", truth, "ground truth")]
    panels += [(name, image, _title(name, truth, image, data_range))
               for name, image in row.items()]
    for ax, (_, image, title) in zip(row_axes, panels):
        ax.imshow(image.reshape(image_shape), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])


def _draw_signals(ax, truth, row, data_range):
    ax.plot(truth, "k", lw=2, label="ground truth")
    for name, signal in row.items():
        ax.plot(signal, label=_title(name, truth, signal, data_range).replace("\n", ", "))
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------- RIM
def plot_rim_trajectory(rim, X, y=None, *, index=0, image_shape=None, steps=None,
                        clim=None, axes=None, **predict_params):
    r"""The estimates :math:`x_1, \dots, x_T` of a fitted RIM, and its error per step.

    A :class:`~skinverse.rim.RIMRegressor` refines its estimate over ``n_steps`` steps;
    ``rim.predict(X, return_trajectory=True)`` returns all of them. This draws sample
    ``index`` at each step (images side by side, or 1-D signals overlaid from light to
    dark) and, with ``y``, the mean squared error of each step over all samples of ``X``
    (the step that ``predict`` returns, ``best_step_``, is marked).

    Parameters
    ----------
    rim : RIMRegressor
        Fitted.
    X : array-like of shape (n_samples, n_observation_features)
        Observations.
    y : array-like of shape (n_samples, n_signal) or None, default=None
        True signals: adds the ground truth and the error-per-step panel.
    index : int, default=0
        The sample whose estimates are drawn.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` to draw each step as an image; ``None`` draws curves.
    steps : array-like of int or None, default=None
        Steps (1..T) to draw as images; all by default.
    clim : (float, float) or None, default=None
        Values shown black and white in the images; by default the ground truth's range
        (with ``y``), else the range of all the images drawn.
    axes : array of matplotlib Axes or None, default=None
        Signals: 1 Axes, 2 with ``y``. Images: one per step, plus the truth and the error
        panel with ``y``.
    **predict_params
        Passed to ``rim.predict`` (``physics_params`` and per-sample arguments).

    Returns
    -------
    axes : ndarray of matplotlib Axes
        The panels, the error-per-step panel last when ``y`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.rim import RIMRegressor
    >>> from skinverse.plotting import plot_rim_trajectory
    >>> rng = np.random.RandomState(0)
    >>> y = rng.normal(size=(40, 8))
    >>> X = y + 0.1 * rng.normal(size=y.shape)
    >>> rim = RIMRegressor(n_steps=3, max_epochs=2, random_state=0).fit(X, y)
    >>> axes = plot_rim_trajectory(rim, X, y)
    >>> len(axes[0].lines), len(axes[1].lines[0].get_xdata())  # 3 steps + the truth
    (4, 3)
    """
    trajectory = rim.predict(X, return_trajectory=True, **predict_params)
    n_steps = trajectory.shape[1]
    truth = None if y is None else np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    if image_shape is None or len(image_shape) == 1:
        axes = _axes_grid(axes, 1, 1 + (truth is not None), (5.5, 4)).ravel()
        _draw_trajectory_curves(axes[0], trajectory[index], truth, index)
    else:
        steps = np.arange(1, n_steps + 1) if steps is None else np.ravel(steps)
        images = [(f"step {s}", trajectory[index, s - 1]) for s in steps]
        if truth is not None:
            images.append(("ground truth", truth[index]))
        axes = _axes_grid(axes, 1, len(images) + (truth is not None), (2.2, 2.4)).ravel()
        if clim is None:
            shown = [images[-1]] if truth is not None else images
            clim = (min(im.min() for _, im in shown), max(im.max() for _, im in shown))
        _draw_trajectory_images(axes, images, tuple(image_shape), clim)
    if truth is not None:
        _draw_step_errors(axes[-1], ((trajectory - truth[:, None]) ** 2).mean(axis=(0, 2)),
                          getattr(rim, "best_step_", None))
    return axes


def _draw_trajectory_images(axes, images, image_shape, clim):
    for ax, (title, image) in zip(axes, images):
        ax.imshow(image.reshape(image_shape), cmap="gray", vmin=clim[0], vmax=clim[1])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])


def _draw_step_errors(ax, errors, best_step):
    ax.plot(np.arange(1, len(errors) + 1), errors, "o-", label="mean squared error")
    if best_step is not None:
        ax.axvline(best_step, color="k", ls=":", label=f"best_step_ = {best_step}")
    ax.set_xlabel("RIM step")
    ax.set_ylabel("MSE")
    ax.legend(fontsize=7, loc="best")


def _draw_trajectory_curves(ax, trajectory, truth, index):
    colours = _pyplot().cm.viridis(np.linspace(0.15, 0.9, len(trajectory)))
    for step, (estimate, colour) in enumerate(zip(trajectory, colours), start=1):
        ax.plot(estimate, color=colour, lw=1, label=f"step {step}")
    if truth is not None:
        ax.plot(truth[index], "k--", lw=2, label="ground truth")
    ax.set_title(f"sample {index}: estimate per step")
    ax.legend(fontsize=7, ncol=2)


# ---------------------------------------------------------------------- implicit
def plot_implicit_structure(model, *, kind="heatmap", precision=0.0, axes=None):
    r"""The learned matrices of a fitted implicit model,
    :math:`z = \phi(Az + Bu + b)`, :math:`\hat y = Cz + Du + c`.

    ``kind='heatmap'`` draws :math:`|[[A, B], [C, D]]|` on a log scale with the model's
    own :meth:`~skinverse.implicit.ImplicitClassifier.plot_structure`; ``kind='spy'``
    draws the sparsity pattern of each of :math:`A, B, C, D`, with the fraction of
    non-zeros in the title -- the view for ``l1_penalty`` or ``structure='upper'``.

    Parameters
    ----------
    model : ImplicitClassifier, ImplicitRegressor or a Pipeline ending in one
        Fitted.
    kind : {'heatmap', 'spy'}, default='heatmap'
    precision : float, default=0.0
        ``kind='spy'``: entries with :math:`|a| \le` ``precision`` times the largest
        absolute entry of the four blocks count as zeros (trained weights are rarely
        exactly 0; ``precision=0.01`` keeps the entries above 1% of the largest).
    axes : matplotlib Axes (heatmap), array of 4 Axes (spy) or None, default=None

    Returns
    -------
    axes : matplotlib Axes (heatmap) or ndarray of 2 x 2 Axes (spy: A, B / C, D)

    Examples
    --------
    >>> from sklearn.neural_network import MLPRegressor
    >>> from skinverse.implicit import ImplicitRegressor
    >>> from skinverse.plotting import plot_implicit_structure
    >>> X = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    >>> mlp = MLPRegressor(hidden_layer_sizes=(3, 2), max_iter=5, random_state=0)
    >>> mlp = mlp.fit(X, [0, 1, 2, 3])
    >>> axes = plot_implicit_structure(ImplicitRegressor.from_mlp(mlp), kind="spy")
    >>> axes[0, 0].get_title()  # A holds W_2 (2 x 3) above its diagonal
    'A (5 x 5), 24% non-zero'
    """
    model = model[-1] if hasattr(model, "steps") else model
    if kind == "heatmap":
        return model.plot_structure(ax=axes)
    if kind != "spy":
        raise ValueError(f"kind must be 'heatmap' or 'spy', got {kind!r}.")
    # The matrices the heatmap shows (a method of the fitted model, in float64).
    matrices = dict(zip("ABCD", model.get_matrices()))
    largest = max((np.abs(m).max() for m in matrices.values() if m.size), default=0.0)
    axes = _axes_grid(axes, 2, 2, (3.5, 3.5))
    for ax, (name, matrix) in zip(axes.ravel(), matrices.items()):
        nonzero = np.abs(matrix) > precision * largest
        ax.spy(nonzero, markersize=max(1.0, 80.0 / max(matrix.shape + (1,))), aspect="auto")
        fraction = nonzero.mean() if matrix.size else 0.0
        ax.set_title(f"{name} ({matrix.shape[0]} x {matrix.shape[1]}), "
                     f"{100 * fraction:.0f}% non-zero", fontsize=9)
    return axes


# ---------------------------------------------------------------------- training curves
def plot_loss_curves(estimators, *, labels=None, log="auto", ax=None):
    """Training loss per epoch and, when recorded, the validation score per epoch.

    Reads ``loss_curve_`` and ``validation_scores_`` -- the attributes of every fitted
    skinverse estimator, and of scikit-learn's ``MLPClassifier``/``MLPRegressor``. Losses
    go on ``ax``; validation scores (higher is better: accuracy, :math:`R^2`, PSNR, ...)
    on a twin axis at the right, dashed, in the same colour.

    Parameters
    ----------
    estimators : estimator, list of estimators or dict of str to estimator
        Fitted; a Pipeline contributes its last step.
    labels : list of str or None, default=None
        Legend entries; the dict keys or the class names by default.
    log : bool or 'auto', default='auto'
        Logarithmic loss axis; 'auto' uses it when every loss is positive.
    ax : matplotlib Axes or None, default=None

    Returns
    -------
    ax : matplotlib Axes
        The loss axis.
    val_ax : matplotlib Axes or None
        The validation-score axis, ``None`` when no estimator recorded scores.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> from skinverse.plotting import plot_loss_curves
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> mlp = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    >>> mlp = mlp.fit(X, X.sum(axis=1))
    >>> ax, val_ax = plot_loss_curves(mlp)
    >>> bool(np.array_equal(ax.lines[0].get_ydata(), mlp.loss_curve_)), val_ax
    (True, None)
    """
    if isinstance(estimators, dict):
        labels = list(estimators) if labels is None else labels
        estimators = list(estimators.values())
    elif not isinstance(estimators, (list, tuple)):
        estimators = [estimators]
    estimators = [est[-1] if hasattr(est, "steps") else est for est in estimators]
    labels = labels or [type(est).__name__ for est in estimators]
    curves = [np.asarray(est.loss_curve_, dtype=np.float64) for est in estimators]
    ax = _pyplot().subplots(figsize=(6, 4))[1] if ax is None else ax
    val_ax = None
    for k, (est, curve, label) in enumerate(zip(estimators, curves, labels)):
        ax.plot(np.arange(1, len(curve) + 1), curve, color=f"C{k}", label=f"{label} loss")
        scores = getattr(est, "validation_scores_", None)
        if scores is not None and len(scores):
            val_ax = ax.twinx() if val_ax is None else val_ax
            val_ax.plot(np.arange(1, len(scores) + 1), scores, "--", color=f"C{k}",
                        label=f"{label} validation")
    if log is True or (log == "auto" and all(np.all(c > 0) for c in curves)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    handles, names = ax.get_legend_handles_labels()
    if val_ax is not None:
        val_ax.set_ylabel("validation score")
        more = val_ax.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    ax.legend(handles, names, fontsize=8)
    return ax, val_ax


# ---------------------------------------------------------------------- IMNN
def plot_imnn_history(imnn, expected_detF=None, axes=None):
    r"""Training history of an :class:`~skinverse.imnn.IMNNTransformer`.

    Three panels per step: :math:`\det F` of the summaries (with the validation curve
    when ``early_stopping=True``, and ``expected_detF`` as a dashed line), the
    determinants of the summaries' covariance :math:`C` and of :math:`C^{-1}` (both
    should settle at 1, the regulariser's target), and the regulariser
    :math:`\Lambda_2` with its strength :math:`r`.

    Parameters
    ----------
    imnn : IMNNTransformer
        Fitted.
    expected_detF : float or None, default=None
        The analytic (or target) determinant of the Fisher matrix.
    axes : array of 3 matplotlib Axes or None, default=None

    Returns
    -------
    axes : ndarray of 3 matplotlib Axes

    Examples
    --------
    >>> from skinverse.datasets import gaussian_mean_problem
    >>> from skinverse.imnn import IMNNTransformer
    >>> from skinverse.plotting import plot_imnn_history
    >>> problem = gaussian_mean_problem(n_data=10)
    >>> imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
    ...                        n_s=50, n_d=50, hidden_layer_sizes=(8,), max_epochs=5,
    ...                        random_state=0).fit()
    >>> axes = plot_imnn_history(imnn, expected_detF=10.0)
    >>> len(axes[0].lines[0].get_ydata()) == imnn.n_iter_
    True
    """
    axes = _axes_grid(axes, 1, 3, (4.3, 3.5)).ravel()
    history = imnn.history_
    steps = np.arange(1, len(history["detF"]) + 1)
    axes[0].plot(steps, history["detF"], label="training")
    if "val_detF" in history:
        axes[0].plot(steps[: len(history["val_detF"])], history["val_detF"],
                     label="validation")
    if expected_detF is not None:
        axes[0].axhline(expected_detF, color="k", ls="--", label="expected")
    axes[0].set_ylabel("det F")
    axes[1].semilogy(steps, history["detC"], label="det C")
    axes[1].semilogy(steps, history["detinvC"], label="det C^-1")
    axes[2].semilogy(steps, history["Lambda2"], label="Lambda2")
    axes[2].semilogy(steps, np.maximum(history["r"], 1e-12), label="r")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend()
    return axes


def _credible_levels(density, masses):
    """Density thresholds enclosing each probability mass of a normalised histogram."""
    flat = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(flat) / flat.sum()
    return sorted(flat[min(np.searchsorted(cumulative, m), len(flat) - 1)] for m in masses)


def plot_corner(samples, weights=None, labels=None, truth=None, bins=40, contours=True,
                axes=None):
    r"""Marginal histograms and pairwise posterior contours of (weighted) samples.

    The diagonal shows each parameter's histogram; below it, each pair's samples as
    points and, with ``contours=True``, the 68% (thick) and 95% (thin) highest-density
    contours of their 2-D histogram (:math:`\sqrt{n}/2` bins a side, between 5 and
    ``bins // 2``, smoothed by a Gaussian of one bin).

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_params)
        Posterior samples (ABC draws, PMC particles).
    weights : array-like of shape (n_samples,) or None, default=None
        Importance weights (PMC).
    labels : list of str or None, default=None
    truth : array-like of shape (n_params,) or None, default=None
        Marked on every panel.
    bins : int, default=40
    contours : bool, default=True
        Draw the credible contours in the pair panels.
    axes : 2-D array of matplotlib Axes or None, default=None

    Returns
    -------
    axes : ndarray of shape (n_params, n_params) of matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.plotting import plot_corner
    >>> samples = np.random.RandomState(0).normal(size=(2000, 2))
    >>> axes = plot_corner(samples, labels=["mu", "Sigma"], truth=[0.0, 0.0])
    >>> axes.shape, axes[1, 0].get_xlabel()
    ((2, 2), 'mu')
    """
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    n = samples.shape[1]
    labels = labels or [f"theta{i}" for i in range(n)]
    axes = _axes_grid(axes, n, n, (3, 3))
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
            elif i == j:
                ax.hist(samples[:, i], bins=bins, weights=weights, density=True, color="C0")
                if truth is not None:
                    ax.axvline(truth[i], color="k", ls="--")
            else:
                _draw_pair(ax, samples[:, j], samples[:, i], weights, bins, contours)
                if truth is not None:
                    ax.plot(truth[j], truth[i], "k+", ms=12)
            if i == n - 1:
                ax.set_xlabel(labels[j])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
    return axes


def _draw_pair(ax, x, y, weights, bins, contours):
    ax.scatter(x, y, s=2, alpha=0.3, color="C0")
    if not contours:
        return
    from scipy.ndimage import gaussian_filter

    n_bins = int(np.clip(np.sqrt(len(x)) / 2, 5, max(bins // 2, 5)))
    density, xe, ye = np.histogram2d(x, y, bins=n_bins, weights=weights)
    density = gaussian_filter(density, 1.0)  # a smooth estimate, not the bins' noise
    if not density.sum() > 0:
        return
    levels = np.unique(_credible_levels(density, (0.95, 0.68)))
    centres = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    if len(levels) and levels[-1] < density.max():
        ax.contour(*centres, density.T, levels=levels, colors="k",
                   linewidths=[1.0, 1.8][-len(levels):])
