r"""Reconstruction metrics -- PSNR, SSIM, NMSE -- as functions and scikit-learn scorers.

Samples are rows of 2-D arrays (the data contract): ``y_true`` and ``y_pred`` have shape
``(n_samples, n_features)``, one flattened signal or image per row, and ``image_shape``
restores the structure of a row where a metric needs it (SSIM). A 1-D array is read as
``n_samples`` samples of one feature each, as scikit-learn reads a single-output target.

Every metric is computed per sample and then averaged over the samples, weighted by
``sample_weight`` when it is given:

.. math:: M = \frac{\sum_i w_i\, m(x_i, \hat x_i)}{\sum_i w_i} .

The dynamic range :math:`R` of PSNR and SSIM follows one rule (see :func:`psnr`):
an explicit ``data_range`` when given, otherwise the range ``max - min`` of each
reference sample.
"""

from numbers import Real

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.metrics import make_scorer
from sklearn.utils.validation import check_consistent_length

__all__ = [
    "make_psnr_scorer",
    "make_ssim_scorer",
    "nmse",
    "nmse_scorer",
    "psnr",
    "psnr_scorer",
    "ssim",
]

#: PSNR of a sample reconstructed exactly (instead of :math:`+\infty`), in dB.
PSNR_CAP = 1000.0


def _pair(y_true, y_pred):
    """Both arrays as float64 of shape (n_samples, n_features), checked."""
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
    """The range :math:`R` of each sample, shape (n_samples,): see :func:`psnr`."""
    if data_range is not None:
        if isinstance(data_range, str):
            raise ValueError(f"data_range must be None, a number or one per sample, got "
                             f"{data_range!r}.")
        peak = np.asarray(data_range, dtype=np.float64)
        if peak.ndim > 1 or (peak.ndim == 1 and len(peak) != len(y_true)):
            raise ValueError(f"data_range must be a number or one per sample "
                             f"({len(y_true)}), got shape {peak.shape}.")
        if not (np.all(np.isfinite(peak)) and np.all(peak > 0)):
            raise ValueError(f"data_range must be finite and positive, got {data_range!r}.")
        return np.broadcast_to(peak, (len(y_true),)).astype(np.float64)
    span = y_true.max(axis=1) - y_true.min(axis=1)
    magnitude = np.abs(y_true).max(axis=1)
    return np.where(span > 0, span, np.where(magnitude > 0, magnitude, 1.0))


def _weighted_mean(values, sample_weight):
    if sample_weight is None:
        return float(np.mean(values))
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.shape != values.shape:
        raise ValueError(f"sample_weight must have shape ({len(values)},), got "
                         f"{weight.shape}.")
    if not (np.all(np.isfinite(weight)) and np.all(weight >= 0) and weight.sum() > 0):
        raise ValueError("sample_weight must be finite, non-negative, with a positive sum.")
    return float(np.average(values, weights=weight))


def psnr(y_true, y_pred, *, data_range=None, sample_weight=None):
    r"""Peak signal-to-noise ratio in dB, averaged over samples (higher is better).

    For each sample (row) :math:`x \in \mathbb R^d` and its reconstruction :math:`\hat x`,

    .. math::

        \mathrm{PSNR}(x, \hat x) = 10 \log_{10} \frac{R^2}{\frac1d \|\hat x - x\|_2^2},

    and the result is the mean over samples, weighted by ``sample_weight``. A sample
    reconstructed exactly counts as 1000 dB (not :math:`+\infty`), so means stay finite.

    The range :math:`R` (``data_range``):

    * a number: the same :math:`R` for every sample -- the convention for images with a
      known range (``1.0`` for images in [0, 1], ``255`` for 8-bit images). Use it to
      compare with published figures;
    * an array of ``n_samples`` numbers: one :math:`R` per sample;
    * ``None`` (default): each reference's own range,
      :math:`R = \max_j x_j - \min_j x_j` over the whole sample. This needs no units and
      is invariant to shifting and scaling both arrays together, so it is right for
      images in any range: [0, 1], [0, 255], Hounsfield units, or signed, zero-centred
      signals (where it is the peak-to-peak amplitude, e.g. twice the amplitude of a
      sinusoid). For a constant reference it falls back to :math:`\max_j |x_j|`, and
      for an all-zero reference to 1.

    The default differs from :func:`skimage.metrics.peak_signal_noise_ratio`, which uses
    the dtype's range for integers and ``max - min`` of the *whole array* for floats:
    here every sample gets its own range, so a dark patch is not judged against the
    brightest one. With ``data_range=1`` on images in [0, 1] both agree.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_features) or (n_samples,)
        References, one flattened signal or image per row.
    y_pred : array-like of the same shape
        Reconstructions.
    data_range : float, array-like of shape (n_samples,) or None, default=None
        :math:`R`, positive; ``None`` applies the per-sample rule above.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Non-negative weights of the samples in the mean.

    Returns
    -------
    psnr : float
        Mean PSNR in dB.

    See Also
    --------
    psnr_scorer, make_psnr_scorer : The scorers for model selection.

    References
    ----------
    Q. Huynh-Thu, M. Ghanbari, "Scope of validity of PSNR in image/video quality
    assessment", Electronics Letters 44(13), 800-801, 2008.

    Examples
    --------
    An error of 0.1 in one of two pixels of an image in [0, 1] is an MSE of 0.005:

    >>> from skinverse.metrics import psnr
    >>> round(psnr([[0.0, 1.0]], [[0.1, 1.0]]), 2)  # 10 log10(1 / 0.005)
    23.01
    >>> round(psnr([[0.0, 255.0]], [[25.5, 255.0]]), 2)  # the same image in [0, 255]
    23.01
    >>> round(psnr([[0.0, 0.5]], [[0.1, 0.5]], data_range=1.0), 2)
    23.01
    """
    y_true, y_pred = _pair(y_true, y_pred)
    mse = np.mean((y_true - y_pred) ** 2, axis=1)
    peak = _data_range(y_true, data_range)
    with np.errstate(divide="ignore"):
        values = 10 * np.log10(peak**2 / mse)
    return _weighted_mean(np.minimum(values, PSNR_CAP), sample_weight)


def nmse(y_true, y_pred, *, sample_weight=None):
    r"""Normalised mean squared error, averaged over samples (lower is better).

    .. math:: \mathrm{NMSE}(x, \hat x) = \frac{\|\hat x - x\|_2^2}{\|x\|_2^2}

    per sample (row), then the mean over samples weighted by ``sample_weight``. It has no
    range to choose and is invariant to scaling both arrays; 0 is perfect and 1 is the
    error of predicting zeros. An all-zero reference divides by :math:`10^{-300}`
    (a huge value, not an error).

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_features) or (n_samples,)
        References.
    y_pred : array-like of the same shape
        Reconstructions.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Non-negative weights of the samples in the mean.

    Returns
    -------
    nmse : float

    References
    ----------
    J. Zbontar et al., "fastMRI: An open dataset and benchmarks for accelerated MRI",
    arXiv:1811.08839, 2018 (Sec. 5.1).

    Examples
    --------
    >>> from skinverse.metrics import nmse
    >>> nmse([[3.0, 4.0]], [[3.0, 3.0]])  # 1 / 25
    0.04
    >>> nmse([[3.0, 4.0], [1.0, 0.0]], [[3.0, 3.0], [0.0, 0.0]], sample_weight=[3, 1])
    0.28
    """
    y_true, y_pred = _pair(y_true, y_pred)
    norms = np.sum(y_true**2, axis=1)
    values = np.sum((y_true - y_pred) ** 2, axis=1) / np.maximum(norms, 1e-300)
    return _weighted_mean(values, sample_weight)


def ssim(y_true, y_pred, *, image_shape=None, data_range=None, sigma=1.5,
         sample_weight=None):
    r"""Structural similarity (Wang et al. 2004) with a Gaussian window, averaged over
    pixels and samples (higher is better, 1 for identical images).

    With local means :math:`\mu`, variances :math:`\sigma^2` and covariance
    :math:`\sigma_{x\hat x}` from a Gaussian window of width ``sigma`` (truncated at 3.5
    widths: an 11-pixel window for ``sigma=1.5``, as in the paper),

    .. math::

        \mathrm{SSIM}(x, \hat x) = \frac1d \sum_{\text{pixels}}
        \frac{(2\mu_x\mu_{\hat x} + C_1)(2\sigma_{x\hat x} + C_2)}
        {(\mu_x^2 + \mu_{\hat x}^2 + C_1)(\sigma_x^2 + \sigma_{\hat x}^2 + C_2)},
        \quad C_1 = (0.01 R)^2,\ C_2 = (0.03 R)^2,

    then the mean over samples weighted by ``sample_weight``. :math:`R` follows the rule
    of :func:`psnr` (``data_range``). The statistics are population moments and the
    image borders are reflected and kept in the mean; this equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)`` away from the borders, which
    scikit-image crops.

    Parameters
    ----------
    y_true : array-like of shape (n_samples, n_features) or (n_samples,)
        References, one flattened image per row.
    y_pred : array-like of the same shape
        Reconstructions.
    image_shape : tuple of int or None, default=None
        Shape of one sample (e.g. ``(H, W)``, or ``(D, H, W)``); ``None`` treats
        samples as 1-D signals.
    data_range : float, array-like of shape (n_samples,) or None, default=None
        :math:`R`; ``None`` is each reference's ``max - min`` (see :func:`psnr`).
    sigma : float, default=1.5
        Width of the Gaussian window in pixels.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Non-negative weights of the samples in the mean.

    Returns
    -------
    ssim : float
        Mean SSIM, in [-1, 1].

    See Also
    --------
    make_ssim_scorer : The scorer for model selection.

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
    >>> bool(ssim(x, x + 0.2, image_shape=(8, 8)) < 1)  # a brightness shift
    True
    """
    y_true, y_pred = _pair(y_true, y_pred)
    shape = (y_true.shape[1],) if image_shape is None else tuple(image_shape)
    if int(np.prod(shape)) != y_true.shape[1]:
        raise ValueError(f"image_shape {shape} does not hold {y_true.shape[1]} features.")
    if not (isinstance(sigma, Real) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
    peak = _data_range(y_true, data_range).reshape(-1, *[1] * len(shape))
    x, y = y_true.reshape(-1, *shape), y_pred.reshape(-1, *shape)
    widths = (0, *[sigma] * len(shape))  # no smoothing across samples

    def blur(a):
        return gaussian_filter(a, widths, truncate=3.5, mode="reflect")

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return _weighted_mean(index.reshape(len(index), -1).mean(axis=1), sample_weight)


def make_psnr_scorer(data_range=None):
    """A scikit-learn scorer of :func:`psnr` with a fixed ``data_range``.

    Use it in ``GridSearchCV(..., scoring=make_psnr_scorer(1.0))`` or
    ``cross_val_score``; higher is better. ``sample_weight`` given to the search's
    ``fit`` reaches the metric through scikit-learn's metadata routing
    (``set_score_request``) when that is enabled.

    Parameters
    ----------
    data_range : float or None, default=None
        See :func:`psnr`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returns the PSNR of ``estimator.predict(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.model_selection import cross_val_score
    >>> from skinverse.metrics import make_psnr_scorer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(size=(30, 4))
    >>> scores = cross_val_score(Ridge(), X, X, cv=3, scoring=make_psnr_scorer(1.0))
    >>> scores.shape
    (3,)
    """
    return make_scorer(psnr, data_range=data_range)


def make_ssim_scorer(image_shape=None, data_range=None, sigma=1.5):
    """A scikit-learn scorer of :func:`ssim` for samples of ``image_shape``.

    SSIM needs the image shape, which a scorer cannot guess from flat rows; this factory
    fixes it (and ``data_range`` and ``sigma``). Higher is better.

    Parameters
    ----------
    image_shape : tuple of int or None, default=None
        Shape of one sample; see :func:`ssim`.
    data_range : float or None, default=None
        See :func:`psnr`.
    sigma : float, default=1.5
        Width of the Gaussian window.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returns the SSIM of ``estimator.predict(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyRegressor
    >>> from skinverse.metrics import make_ssim_scorer
    >>> scorer = make_ssim_scorer(image_shape=(4, 4))
    >>> X = np.random.RandomState(0).uniform(size=(5, 16))
    >>> model = DummyRegressor().fit(X, X)
    >>> bool(scorer(model, X, X) < 1)
    True
    """
    return make_scorer(ssim, image_shape=image_shape, data_range=data_range, sigma=sigma)


psnr_scorer = make_psnr_scorer()
psnr_scorer.__doc__ = "Scorer of :func:`psnr` with the per-sample range (higher is better)."
nmse_scorer = make_scorer(nmse, greater_is_better=False)
nmse_scorer.__doc__ = "Scorer of :func:`nmse`, negated so that higher is better."
