"""Toy simulation problems whose Fisher information is known in closed form."""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FisherProblem:
    """A simulator with a fiducial point and its analytic Fisher information.

    Attributes
    ----------
    simulator : callable
        ``simulator(theta, generator)``: ``theta`` of shape (n, n_params) -> data
        (n, n_data); the same generator state gives the same noise.
    theta_fid : ndarray of shape (n_params,)
    fisher : ndarray of shape (n_params, n_params)
        Fisher information of one data set at ``theta_fid``.
    name : str
    """

    simulator: object
    theta_fid: np.ndarray
    fisher: np.ndarray
    name: str


def _noise(theta, n_data, generator):
    noise = torch.randn((theta.shape[0], n_data), generator=generator, dtype=theta.dtype)
    return noise.to(theta.device)


class _Simulator:
    """A picklable simulator (module-level class, so estimators holding it pickle and
    travel to Dask workers): ``kind`` picks the model."""

    def __init__(self, kind, n_data, scale=1.0, basis=None):
        self.kind, self.n_data, self.scale, self.basis = kind, n_data, scale, basis

    def __call__(self, theta, generator):
        noise = _noise(theta, self.n_data, generator)
        if self.kind == "mean":
            return theta[:, :1] + self.scale * noise
        if self.kind == "variance":
            return torch.sqrt(theta[:, :1]) * noise
        if self.kind == "mean_variance":
            return theta[:, :1] + torch.sqrt(theta[:, 1:2]) * noise
        if self.kind == "linear":  # theta @ basis, basis (n_params, n_data)
            basis = torch.as_tensor(self.basis, dtype=theta.dtype, device=theta.device)
            return theta @ basis + self.scale * noise
        if self.kind in ("exponential", "laplace"):
            uniform = torch.rand((theta.shape[0], self.n_data), generator=generator,
                                 dtype=theta.dtype).to(theta.device)
            eps = torch.finfo(theta.dtype).eps
            uniform = uniform.clamp(eps, 1 - eps)
            if self.kind == "exponential":  # rate theta, by the inverse CDF
                return -torch.log(uniform) / theta[:, :1]
            centred = (uniform - 0.5).clamp(-0.5 + eps, 0.5 - eps)  # location theta
            return theta[:, :1] - self.scale * torch.sign(centred) * torch.log1p(
                -2 * centred.abs())
        if self.kind == "lognormal":  # log x ~ N(theta_0, scale^2)
            return torch.exp(theta[:, :1] + self.scale * noise)
        grid = torch.linspace(0, 1, self.n_data, dtype=theta.dtype, device=theta.device)
        return theta[:, :1] * grid + self.scale * noise

    def __repr__(self):
        return f"{self.kind} simulator (n_data={self.n_data})"


def gaussian_mean_problem(n_data=10, sigma=1.0, theta_fid=0.0):
    r"""``n_data`` draws of :math:`\mathcal N(\mu, \sigma^2)`; :math:`F = N / \sigma^2`.

    Examples
    --------
    >>> from skinverse.datasets import gaussian_mean_problem
    >>> gaussian_mean_problem(10).fisher
    array([[10.]])
    """

    return FisherProblem(_Simulator("mean", n_data, sigma), np.array([theta_fid], dtype=float),
                         np.array([[n_data / sigma**2]]), "gaussian mean")


def gaussian_variance_problem(n_data=10, theta_fid=1.0):
    r"""``n_data`` draws of :math:`\mathcal N(0, \theta)`; :math:`F = N / (2\theta^2)`.

    Examples
    --------
    >>> from skinverse.datasets import gaussian_variance_problem
    >>> gaussian_variance_problem(10).fisher
    array([[5.]])
    """

    return FisherProblem(_Simulator("variance", n_data), np.array([theta_fid], dtype=float),
                         np.array([[n_data / (2 * theta_fid**2)]]), "gaussian variance")


def gaussian_mean_variance_problem(n_data=10, theta_fid=(0.0, 1.0)):
    r"""``n_data`` draws of :math:`\mathcal N(\mu, \Sigma)`, :math:`\theta = (\mu, \Sigma)`;
    :math:`F = \operatorname{diag}(N/\Sigma, N/(2\Sigma^2))`, :math:`\det F = N^2/(2\Sigma^3)`
    (50 at :math:`N = 10`, :math:`\theta = (0, 1)`).

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.datasets import gaussian_mean_variance_problem
    >>> round(float(np.linalg.det(gaussian_mean_variance_problem(10).fisher)), 6)
    50.0
    """
    _, var = theta_fid
    fisher = np.diag([n_data / var, n_data / (2 * var**2)])
    return FisherProblem(_Simulator("mean_variance", n_data),
                         np.array(theta_fid, dtype=float), fisher, "gaussian mean and variance")


def line_slope_problem(n_data=10, noise_std=1.0, theta_fid=1.0):
    r"""A line through the origin, :math:`y_i = \theta x_i + \sigma \epsilon_i` on
    :math:`x_i = 0, \dots, 1`; :math:`F = \sum_i x_i^2 / \sigma^2`.

    Examples
    --------
    >>> from skinverse.datasets import line_slope_problem
    >>> round(float(line_slope_problem(11).fisher[0, 0]), 2)
    3.85
    """
    grid = np.linspace(0, 1, n_data)
    return FisherProblem(_Simulator("line", n_data, noise_std), np.array([theta_fid], dtype=float),
                         np.array([[np.sum(grid**2) / noise_std**2]]), "line slope")


def linear_model_problem(n_data=10, n_params=2, noise_std=1.0, theta_fid=None):
    r"""Data linear in ``n_params`` parameters,
    :math:`x_i = \sum_k \theta_k \phi_k(s_i) + \sigma\epsilon_i` with the Legendre
    polynomials :math:`\phi_k` of degree ``k`` on :math:`s_i \in [-1, 1]`;
    :math:`F = \Phi\Phi^\top / \sigma^2`.

    Examples
    --------
    >>> from skinverse.datasets._fisher_problems import linear_model_problem
    >>> linear_model_problem(5, 1).fisher
    array([[5.]])
    """
    grid = np.linspace(-1, 1, n_data)
    basis = np.stack([np.polynomial.legendre.Legendre.basis(k)(grid) for k in range(n_params)])
    theta = np.ones(n_params) if theta_fid is None else np.asarray(theta_fid, dtype=float)
    return FisherProblem(_Simulator("linear", n_data, noise_std, basis), theta,
                         basis @ basis.T / noise_std**2, f"linear model ({n_params} params)")


def exponential_rate_problem(n_data=10, theta_fid=1.0):
    r"""``n_data`` exponential draws of rate :math:`\theta`; :math:`F = N / \theta^2`.

    Examples
    --------
    >>> from skinverse.datasets._fisher_problems import exponential_rate_problem
    >>> exponential_rate_problem(10, 2.0).fisher
    array([[2.5]])
    """
    return FisherProblem(_Simulator("exponential", n_data), np.array([theta_fid], dtype=float),
                         np.array([[n_data / theta_fid**2]]), "exponential rate")


def laplace_location_problem(n_data=10, scale=1.0, theta_fid=0.0):
    r"""``n_data`` Laplace draws of location :math:`\theta` and scale :math:`b`;
    :math:`F = N / b^2` (the optimal summary, the median, is not linear in the data).

    Examples
    --------
    >>> from skinverse.datasets._fisher_problems import laplace_location_problem
    >>> laplace_location_problem(10, 2.0).fisher
    array([[2.5]])
    """
    return FisherProblem(_Simulator("laplace", n_data, scale), np.array([theta_fid], dtype=float),
                         np.array([[n_data / scale**2]]), "laplace location")


def lognormal_problem(n_data=10, sigma=1.0, theta_fid=0.0):
    r"""``n_data`` draws of :math:`e^{\theta + \sigma\epsilon}`; :math:`F = N / \sigma^2`.

    Examples
    --------
    >>> from skinverse.datasets._fisher_problems import lognormal_problem
    >>> lognormal_problem(10, 0.5).fisher
    array([[40.]])
    """
    return FisherProblem(_Simulator("lognormal", n_data, sigma), np.array([theta_fid], dtype=float),
                         np.array([[n_data / sigma**2]]), "log-normal location")
