"""Figures (needs matplotlib, ``pip install "skinverse[plot]"``)."""

import numpy as np

__all__ = ["plot_corner", "plot_imnn_history"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    return plt


def plot_imnn_history(imnn, expected_detF=None, axes=None):
    """Training history of an :class:`~skinverse.imnn.IMNNTransformer`: det F (with the
    expected value as a line), det C and det C^-1, and the regulariser.

    Parameters
    ----------
    imnn : IMNNTransformer
        Fitted.
    expected_detF : float or None, default=None
        The analytic (or target) determinant of the Fisher matrix.
    axes : array of 3 matplotlib Axes or None, default=None

    Returns
    -------
    axes : array of matplotlib Axes
    """
    plt = _pyplot()
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    history = imnn.history_
    steps = np.arange(1, len(history["detF"]) + 1)
    axes[0].plot(steps, history["detF"], label="training")
    if "val_detF" in history:
        axes[0].plot(steps, history["val_detF"], label="validation")
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


def plot_corner(samples, weights=None, labels=None, truth=None, bins=40, axes=None):
    """Marginal histograms and pairwise scatter of posterior samples.

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_params)
    weights : array-like of shape (n_samples,) or None, default=None
    labels : list of str or None, default=None
    truth : array-like of shape (n_params,) or None, default=None
        Marked on every panel.
    bins : int, default=40
    axes : 2-D array of matplotlib Axes or None, default=None

    Returns
    -------
    axes : 2-D array of matplotlib Axes
    """
    plt = _pyplot()
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    n = samples.shape[1]
    labels = labels or [f"theta{i}" for i in range(n)]
    if axes is None:
        _, axes = plt.subplots(n, n, figsize=(3 * n, 3 * n), squeeze=False)
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
                ax.scatter(samples[:, j], samples[:, i], s=2, alpha=0.3,
                           c=None if weights is None else weights)
                if truth is not None:
                    ax.plot(truth[j], truth[i], "k+", ms=12)
            if i == n - 1:
                ax.set_xlabel(labels[j])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
    return axes
