"""Signals and images that need no download: Gaussian-process draws with their known
covariance, and patches of the photographs that ship with scikit-learn."""

import numpy as np
from sklearn.datasets import load_sample_images
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.utils import check_random_state


def squared_exponential_covariance(n_features, length_scale=3.0, jitter=1e-6):
    r"""Covariance :math:`\Sigma_{ij} = \exp(-(i-j)^2 / (2\ell^2)) + \text{jitter}\,\delta_{ij}`
    of a stationary Gaussian process on a grid of ``n_features`` points.

    Examples
    --------
    >>> from skinverse.datasets import squared_exponential_covariance
    >>> squared_exponential_covariance(3, length_scale=1.0).round(3)
    array([[1.   , 0.607, 0.135],
           [0.607, 1.   , 0.607],
           [0.135, 0.607, 1.   ]])
    """
    grid = np.arange(n_features)
    cov = np.exp(-0.5 * ((grid[:, None] - grid[None]) / length_scale) ** 2)
    return cov + jitter * np.eye(n_features)


def make_gaussian_signals(n_samples=1000, n_features=32, *, length_scale=3.0,
                          random_state=None):
    r"""Draws :math:`x \sim \mathcal N(0, \Sigma)` with a squared-exponential covariance.

    With a linear operator and Gaussian noise the optimal (minimum-MSE) reconstruction is
    the posterior mean, in closed form -- a reference for learned reconstructions.

    Parameters
    ----------
    n_samples, n_features : int
        Number and length of the signals.
    length_scale : float, default=3.0
        Correlation length :math:`\ell` in grid points.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    signals : ndarray of shape (n_samples, n_features)
    covariance : ndarray of shape (n_features, n_features)

    Examples
    --------
    >>> from skinverse.datasets import make_gaussian_signals
    >>> x, cov = make_gaussian_signals(5, 8, random_state=0)
    >>> x.shape, cov.shape
    ((5, 8), (8, 8))
    """
    rng = check_random_state(random_state)
    cov = squared_exponential_covariance(n_features, length_scale)
    signals = rng.normal(size=(n_samples, n_features)) @ np.linalg.cholesky(cov).T
    return signals, cov


def load_sample_patches(patch_size=16, n_patches=1000, *, grayscale=True,
                        random_state=None):
    """Square patches of the two photographs bundled with scikit-learn, scaled to [0, 1].

    Parameters
    ----------
    patch_size : int, default=16
        Side of a patch (odd sizes too).
    n_patches : int, default=1000
        Patches drawn, half from each image.
    grayscale : bool, default=True
        Average the colour channels; otherwise patches are ``(3, size, size)``.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    patches : ndarray of shape (n_patches, patch_size * patch_size) or (n_patches, 3 * ...)
        One flattened patch per row (channels first when in colour), in random order.

    Examples
    --------
    >>> from skinverse.datasets import load_sample_patches
    >>> load_sample_patches(8, 10, random_state=0).shape
    (10, 64)
    """
    rng = check_random_state(random_state)
    images = load_sample_images().images
    per_image = [n_patches // 2, n_patches - n_patches // 2]
    out = []
    for image, count in zip(images, per_image):
        image = image.astype(np.float64) / 255.0
        if grayscale:
            image = image.mean(axis=2)
        patches = extract_patches_2d(image, (patch_size, patch_size), max_patches=count,
                                     random_state=rng)
        if not grayscale:
            patches = patches.transpose(0, 3, 1, 2)
        out.append(patches.reshape(count, -1))
    patches = np.concatenate(out)
    return patches[rng.permutation(len(patches))]  # both images in any slice
