r"""Reconstruction metrics -- PSNR, SSIM, NMSE -- as functions and scikit-learn scorers.

Samples are rows of 2-D arrays (the data contract); ``image_shape`` restores their
structure where a metric needs it (SSIM). Each function returns the mean over samples.
"""

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.metrics import make_scorer
from sklearn.utils.validation import check_consistent_length

__all__ = [
    "make_ssim_scorer",
    "nmse",
    "nmse_scorer",
    "psnr",
    "psnr_scorer",
    "ssim",
]


def _pair(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape.")
    check_consistent_length(y_true, y_pred)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("y_true and y_pred must be finite.")
    return y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)


def _data_range(y_true, data_range):
    if data_range is not None:
        return np.broadcast_to(np.asarray(data_range, dtype=np.float64), (len(y_true),))
    span = y_true.max(axis=1) - y_true.min(axis=1)
    return np.where(span > 0, span, np.abs(y_true).max(axis=1).clip(min=1e-12))


def psnr(y_true, y_pred, *, data_range=None):
    r"""Peak signal-to-noise ratio in dB, averaged over samples.

    .. math:: \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\frac1d \|\hat x - x\|^2}

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_features)
        Reference and reconstruction.
    data_range : float or None, default=None
        :math:`R`; by default each reference's max minus min.

    Returns
    -------
    float

    Examples
    --------
    >>> from skinverse.metrics import psnr
    >>> round(psnr([[0.0, 1.0]], [[0.1, 1.0]]), 2)
    23.01
    """
    y_true, y_pred = _pair(y_true, y_pred)
    mse = np.mean((y_true - y_pred) ** 2, axis=1)
    peak = _data_range(y_true, data_range)
    with np.errstate(divide="ignore"):
        values = 10 * np.log10(peak**2 / mse)
    return float(np.mean(np.minimum(values, 1000.0)))  # identical signals: capped, not inf


def nmse(y_true, y_pred):
    r"""Normalised mean squared error :math:`\|\hat x - x\|^2 / \|x\|^2`, averaged over
    samples (lower is better).

    Examples
    --------
    >>> from skinverse.metrics import nmse
    >>> nmse([[3.0, 4.0]], [[3.0, 3.0]])
    0.04
    """
    y_true, y_pred = _pair(y_true, y_pred)
    norms = np.sum(y_true**2, axis=1)
    return float(np.mean(np.sum((y_true - y_pred) ** 2, axis=1) / np.maximum(norms, 1e-300)))


def ssim(y_true, y_pred, *, image_shape=None, data_range=None, sigma=1.5):
    r"""Structural similarity (Wang et al. 2004) with a Gaussian window, averaged over
    pixels and samples.

    .. math::

        \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01 R)^2,\ C_2 = (0.03 R)^2

    with local statistics from a Gaussian window of width ``sigma``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples, n_features)
        Reference and reconstruction.
    image_shape : tuple of int or None, default=None
        Shape of one sample (e.g. ``(H, W)``); ``None`` treats samples as 1-D signals.
    data_range : float or None, default=None
        :math:`R`; by default each reference's max minus min.
    sigma : float, default=1.5
        Width of the Gaussian window.

    Returns
    -------
    float

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
    error visibility to structural similarity", IEEE Trans. Image Process. 13(4), 2004.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.metrics import ssim
    >>> x = np.random.RandomState(0).uniform(size=(2, 64))
    >>> ssim(x, x, image_shape=(8, 8))
    1.0
    """
    y_true, y_pred = _pair(y_true, y_pred)
    shape = (y_true.shape[1],) if image_shape is None else tuple(image_shape)
    if int(np.prod(shape)) != y_true.shape[1]:
        raise ValueError(f"image_shape {shape} does not hold {y_true.shape[1]} features.")
    peak = _data_range(y_true, data_range)
    values = []
    for x, y, r in zip(y_true, y_pred, peak):
        x, y = x.reshape(shape), y.reshape(shape)
        blur = lambda a: gaussian_filter(a, sigma, truncate=3.5, mode="reflect")  # noqa: E731
        mx, my = blur(x), blur(y)
        vx, vy = blur(x * x) - mx**2, blur(y * y) - my**2
        cxy = blur(x * y) - mx * my
        c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
        index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(index.mean())
    return float(np.mean(values))


psnr_scorer = make_scorer(psnr)
psnr_scorer.__doc__ = "Scorer of :func:`psnr` (higher is better)."
nmse_scorer = make_scorer(nmse, greater_is_better=False)
nmse_scorer.__doc__ = "Scorer of :func:`nmse` (negated, so higher is better)."


def make_ssim_scorer(image_shape=None, data_range=None):
    """A scikit-learn scorer of :func:`ssim` for samples of ``image_shape``.

    Examples
    --------
    >>> from skinverse.metrics import make_ssim_scorer
    >>> scorer = make_ssim_scorer(image_shape=(8, 8))
    """
    return make_scorer(ssim, image_shape=image_shape, data_range=data_range)
