r"""Likelihood-free inference with IMNN summaries.

All three methods work in the space of the quasi-maximum-likelihood estimates
:math:`\hat\theta` of a fitted :class:`IMNNTransformer`, where the Fisher matrix :math:`F`
gives the natural metric :math:`d(\hat\theta, \hat\theta') =
\sqrt{(\hat\theta - \hat\theta')^\top F (\hat\theta - \hat\theta')}`; the prior is uniform
on a box.
"""

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it


def _box(low, high, n_params):
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (n_params,)).copy()
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), (n_params,)).copy()
    if np.any(high <= low):
        raise ValueError(f"prior bounds need low < high, got low={low}, high={high}.")
    return low, high


class _Inference:
    def __init__(self, imnn, prior_low, prior_high, simulator=None, random_state=None):
        check_is_fitted(imnn)
        self.imnn = imnn
        self.low, self.high = _box(prior_low, prior_high, imnn.n_params_)
        self.simulator = simulator if simulator is not None else imnn.simulator
        self.random_state = random_state

    def _estimates(self, X):
        estimates = np.asarray(self.imnn.transform(X), dtype=np.float64)
        if self.imnn.output != "estimate":
            raise ValueError("Likelihood-free inference needs output='estimate'.")
        return estimates

    def _distance(self, estimates, target):
        diff = estimates - target
        return np.sqrt(np.einsum("ni,ij,nj->n", diff, self.imnn.fisher_, diff))

    def _simulate_estimates(self, theta, generator):
        if self.simulator is None:
            raise ValueError("ABC needs a simulator (on the IMNN or passed here).")
        dtype = next(self.imnn.module_.parameters()).dtype
        with torch.no_grad():
            x = self.simulator(torch.as_tensor(theta, dtype=dtype), generator)
        return self._estimates(x.reshape(len(theta), -1).cpu().numpy())

    def _inside(self, theta):
        return np.all((theta >= self.low) & (theta <= self.high), axis=1)


class GaussianApproximation(_Inference):
    r"""Posterior :math:`\propto \mathcal N(\theta; \hat\theta_\mathrm{obs}, F^{-1})` times a
    uniform prior: the Fisher matrix as the inverse covariance around the estimate.

    Parameters
    ----------
    imnn : IMNNTransformer
        Fitted, with ``output='estimate'``.
    prior_low, prior_high : float or array-like of shape (n_params,)
        The uniform prior's box.

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.datasets import gaussian_mean_problem
    >>> from skinverse.imnn import GaussianApproximation, IMNNTransformer
    >>> problem = gaussian_mean_problem(10)
    >>> imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=[0.0], n_s=200,
    ...                        n_d=200, hidden_layer_sizes=(8,), max_epochs=100,
    ...                        random_state=0).fit()
    >>> grids, densities = GaussianApproximation(imnn, -2, 2).marginals(np.zeros((1, 10)))
    >>> densities[0].shape
    (1, 200)
    """

    def log_prob(self, theta, X_obs):
        """Unnormalised log-posterior of each ``theta`` row for each observation.

        Returns
        -------
        ndarray of shape (n_observations, n_theta)
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        estimates = self._estimates(X_obs)
        diff = theta[None] - estimates[:, None]
        logp = -0.5 * np.einsum("oni,ij,onj->on", diff, self.imnn.fisher_, diff)
        return np.where(self._inside(theta)[None], logp, -np.inf)

    def marginals(self, X_obs, n_grid=200):
        """Marginal posterior densities of every parameter on a grid over the prior.

        Returns
        -------
        grids : list of ndarray of shape (n_grid,)
        densities : list of ndarray of shape (n_observations, n_grid)
            Normalised to integrate to 1 over the prior range.
        """
        estimates = self._estimates(X_obs)
        covariance = np.linalg.inv(self.imnn.fisher_)
        grids, densities = [], []
        for i in range(len(self.low)):
            grid = np.linspace(self.low[i], self.high[i], n_grid)
            density = np.exp(-0.5 * (grid[None] - estimates[:, i : i + 1]) ** 2
                             / covariance[i, i])
            density /= _trapezoid(density, grid, axis=1)[:, None]
            grids.append(grid)
            densities.append(density)
        return grids, densities


class ApproximateBayesianComputation(_Inference):
    r"""Rejection ABC: draw :math:`\theta` from the prior, simulate, compress, and keep the
    draws whose estimates are closest to the observed one in the Fisher metric.

    Parameters
    ----------
    imnn : IMNNTransformer
    prior_low, prior_high : float or array-like of shape (n_params,)
    simulator : callable or None, default=None
        Defaults to the IMNN's simulator.
    random_state : int, RandomState instance or None, default=None
    """

    def run(self, X_obs, n_simulations=10000, accept_fraction=0.01):
        """Posterior samples for one observation ``X_obs`` (shape (1, n_features)).

        Returns
        -------
        samples : ndarray of shape (n_accepted, n_params)
        distances : ndarray of shape (n_accepted,)
        """
        target = self._estimates(np.atleast_2d(X_obs))[0]
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        theta = rng.uniform(self.low, self.high, size=(n_simulations, len(self.low)))
        distances = self._distance(self._simulate_estimates(theta, generator), target)
        keep = np.argsort(distances)[: max(1, int(accept_fraction * n_simulations))]
        return theta[keep], distances[keep]


class PopulationMonteCarlo(_Inference):
    r"""ABC population Monte Carlo (Beaumont, Cornuet, Marin & Robert 2009).

    A first population of ``n_particles`` is the closest of ``n_initial`` prior draws. Each
    round sets the tolerance to the ``quantile`` of the current distances, moves every
    particle that is farther than it by a Gaussian kernel (twice the weighted particle
    covariance) until it falls inside, and re-weights with
    :math:`w_i \propto \pi(\theta_i) / \sum_j w_j K(\theta_i \mid \theta_j)`. It stops when
    a round accepts fewer than ``min_acceptance`` of its proposals.

    Parameters
    ----------
    imnn : IMNNTransformer
    prior_low, prior_high : float or array-like of shape (n_params,)
    simulator : callable or None, default=None
    random_state : int, RandomState instance or None, default=None

    References
    ----------
    M. A. Beaumont, J.-M. Cornuet, J.-M. Marin, C. P. Robert, "Adaptive approximate
    Bayesian computation", Biometrika 96(4), 983-990, 2009.
    """

    def run(self, X_obs, n_particles=500, n_initial=5000, quantile=0.75,
            min_acceptance=0.1, max_rounds=20, proposals_per_round=None):
        """Weighted posterior samples for one observation.

        Returns
        -------
        particles : ndarray of shape (n_particles, n_params)
        weights : ndarray of shape (n_particles,)
            Normalised importance weights.
        n_simulations : int
            Simulations used in all.
        """
        target = self._estimates(np.atleast_2d(X_obs))[0]
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        theta = rng.uniform(self.low, self.high, size=(n_initial, len(self.low)))
        distances = self._distance(self._simulate_estimates(theta, generator), target)
        best = np.argsort(distances)[:n_particles]
        particles, distances = theta[best], distances[best]
        weights = np.full(n_particles, 1.0 / n_particles)
        n_simulations = n_initial
        batch = proposals_per_round or n_particles
        for _ in range(max_rounds):
            tolerance = np.quantile(distances, quantile)
            covariance = 2 * np.atleast_2d(np.cov(particles.T, aweights=weights))
            chol = np.linalg.cholesky(covariance + 1e-12 * np.eye(len(self.low)))
            moving = distances > tolerance
            previous, previous_weights = particles.copy(), weights
            accepted = proposed = 0
            while moving.any():
                idx = np.flatnonzero(moving)
                parents = particles[rng.choice(n_particles, size=batch, p=weights)]
                proposals = parents + rng.normal(size=parents.shape) @ chol.T
                proposals = proposals[self._inside(proposals)]
                if not len(proposals):
                    continue
                found = self._distance(self._simulate_estimates(proposals, generator), target)
                n_simulations += len(proposals)
                proposed += len(proposals)
                good = np.flatnonzero(found <= tolerance)[: len(idx)]
                accepted += len(good)
                particles[idx[: len(good)]] = proposals[good]
                distances[idx[: len(good)]] = found[good]
                moving[idx[: len(good)]] = False
                if proposed > 50 * n_particles:
                    break
            weights = self._reweight(particles, previous, previous_weights, covariance)
            if proposed and accepted / proposed < min_acceptance:
                break
        return particles, weights, n_simulations

    def _reweight(self, particles, previous, previous_weights, covariance):
        """:math:`w_i \\propto \\pi(\\theta_i) / \\sum_j w_j K(\\theta_i \\mid \\theta_j)` over the
        previous population."""
        inverse = np.linalg.inv(covariance)
        diff = particles[:, None] - previous[None]
        kernel = np.exp(-0.5 * np.einsum("abi,ij,abj->ab", diff, inverse, diff))
        new = self._inside(particles) / (kernel @ previous_weights)
        return new / new.sum()
