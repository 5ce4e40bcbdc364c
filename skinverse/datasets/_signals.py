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


class LinearGaussianProblem:
    r"""A linear inverse problem with a Gaussian prior and Gaussian noise, whose optimal
    (minimum-MSE) reconstruction is known in closed form.

    :math:`x \sim \mathcal N(m, \Sigma)`, :math:`X = A x + \sigma e`; the posterior mean
    :math:`\hat x = m + \Sigma A^\top (A \Sigma A^\top + \sigma^2 I)^{-1} (X - A m)` is
    the optimum that a learned reconstruction is compared with.

    Parameters
    ----------
    matrix : ndarray of shape (n_obs, n_signal)
        :math:`A`.
    covariance : ndarray of shape (n_signal, n_signal)
        :math:`\Sigma`.
    noise_std : float
        :math:`\sigma`.
    mean : float or ndarray of shape (n_signal,), default=0.0
        :math:`m`.
    operator : LinearOperator or None, default=None
        The operator as the estimators take it (a :class:`MatrixOperator` of ``matrix``
        when ``None``).
    name : str, default=''
    """

    def __init__(self, matrix, covariance, noise_std, mean=0.0, operator=None, name=""):
        from ..operators import MatrixOperator

        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.covariance = np.asarray(covariance, dtype=np.float64)
        self.noise_std = float(noise_std)
        self.mean = np.broadcast_to(np.asarray(mean, dtype=np.float64),
                                    (self.matrix.shape[1],)).copy()
        self.operator = operator if operator is not None else MatrixOperator(self.matrix)
        self.name = name
        A, S = self.matrix, self.covariance
        self.gain = S @ A.T @ np.linalg.inv(A @ S @ A.T + self.noise_std**2 *
                                            np.eye(A.shape[0]))
        self._chol = np.linalg.cholesky(S)

    def sample(self, n_samples, random_state=None):
        """``n_samples`` pairs: observations (n, n_obs) and signals (n, n_signal)."""
        rng = check_random_state(random_state)
        signals = self.mean + rng.normal(size=(n_samples, len(self.mean))) @ self._chol.T
        noise = self.noise_std * rng.normal(size=(n_samples, self.matrix.shape[0]))
        return signals @ self.matrix.T + noise, signals

    def posterior_mean(self, observations):
        """The optimal reconstruction of each row of ``observations``."""
        return self.mean + (observations - self.mean @ self.matrix.T) @ self.gain.T

    def optimal_mse(self):
        """Expected squared error per signal entry of the posterior mean."""
        A, S = self.matrix, self.covariance
        return float(np.trace(S - self.gain @ A @ S)) / len(S)


def _conditioned_matrix(n_obs, n_signal, condition, rng):
    """A random matrix with singular values spaced log-uniformly from 1 to 1/condition."""
    u, _ = np.linalg.qr(rng.normal(size=(n_obs, n_obs)))
    v, _ = np.linalg.qr(rng.normal(size=(n_signal, n_signal)))
    k = min(n_obs, n_signal)
    singular = np.logspace(0, -np.log10(condition), k)
    return u[:, :k] @ np.diag(singular) @ v[:, :k].T


def make_linear_gaussian_problem(kind="blur", n_features=32, *, n_obs=None, shape=None,
                                 condition=100.0, relative_noise=0.1, signal_scale=1.0,
                                 signal_mean=0.0, operator_scale=1.0, length_scale=3.0,
                                 random_state=None):
    r"""A :class:`LinearGaussianProblem` from a family of operators.

    Parameters
    ----------
    kind : {'blur', 'matrix', 'compressed', 'inpainting', 'identity'}, default='blur'
        Gaussian blur (1-D, or 2-D with ``shape``), a random matrix of condition number
        ``condition``, random Gaussian measurements (``n_obs`` rows), a random mask
        keeping ``n_obs`` entries, or the identity (denoising).
    n_features : int, default=32
        Signal size (``prod(shape)`` with ``shape``).
    n_obs : int or None, default=None
        Measurements ('matrix', 'compressed', 'inpainting'); ``None`` means
        ``n_features`` ('matrix') or half of it.
    shape : tuple of int or None, default=None
        2-D signals: a separable squared-exponential prior and a 2-D blur.
    condition : float, default=100.0
        Condition number of the 'matrix' operator.
    relative_noise : float, default=0.1
        :math:`\sigma` over the RMS of the noiseless observations :math:`A(x - m)`.
    signal_scale, signal_mean : float, default=1.0, 0.0
        Standard deviation and mean of the prior.
    operator_scale : float, default=1.0
        Multiplies :math:`A` (the problem is the same up to units).
    length_scale : float, default=3.0
        Correlation length of the prior in grid points.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    problem : LinearGaussianProblem

    Examples
    --------
    >>> from skinverse.datasets._signals import make_linear_gaussian_problem
    >>> p = make_linear_gaussian_problem("compressed", 16, n_obs=8, random_state=0)
    >>> X, x = p.sample(4, random_state=0)
    >>> X.shape, x.shape, p.posterior_mean(X).shape
    ((4, 8), (4, 16), (4, 16))
    """
    import torch

    from ..operators import Blur, Inpainting, MatrixOperator, gaussian_kernel

    rng = check_random_state(random_state)
    if shape is not None:
        n_features = int(np.prod(shape))
        cov = np.kron(*(squared_exponential_covariance(s, length_scale) for s in shape))
    else:
        cov = squared_exponential_covariance(n_features, length_scale)
    operator = None
    if kind == "blur":
        signal_shape = tuple(shape) if shape is not None else (n_features,)
        width = rng.uniform(1.0, 2.0)
        kernel = gaussian_kernel(5, width, ndim=len(signal_shape))
        blur = Blur(torch.as_tensor(kernel) * operator_scale, input_shape=signal_shape)
        eye = torch.eye(n_features, dtype=torch.float64).reshape(n_features, *signal_shape)
        matrix = blur.to(dtype=torch.float64).forward(eye).reshape(n_features, -1).numpy().T
        operator = Blur(torch.as_tensor(kernel) * operator_scale, input_shape=signal_shape)
    elif kind == "matrix":
        matrix = _conditioned_matrix(n_obs or n_features, n_features, condition, rng)
        matrix *= operator_scale
    elif kind == "compressed":
        m = n_obs or n_features // 2
        matrix = operator_scale * rng.normal(size=(m, n_features)) / np.sqrt(m)
    elif kind == "inpainting":
        m = n_obs or n_features // 2
        keep = rng.choice(n_features, m, replace=False)
        mask = np.zeros(n_features)
        mask[keep] = 1.0
        matrix = operator_scale * np.diag(mask)  # the full grid, zeros where unobserved
        signal_shape = tuple(shape) if shape is not None else (n_features,)
        operator = (Inpainting(torch.as_tensor(mask.reshape(signal_shape)))
                    if operator_scale == 1.0 else MatrixOperator(matrix))
    elif kind == "identity":
        matrix = operator_scale * np.eye(n_features)
    else:
        raise ValueError(f"Unknown kind {kind!r}.")
    cov = signal_scale**2 * cov
    signal_rms = np.sqrt(np.trace(matrix @ cov @ matrix.T) / matrix.shape[0])
    noise_std = relative_noise * signal_rms
    return LinearGaussianProblem(matrix, cov, noise_std, signal_mean, operator,
                                 name=kind if shape is None else f"{kind} 2-D")
