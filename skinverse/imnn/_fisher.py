r"""The Fisher-information maths of the IMNN, as pure torch functions.

For summaries :math:`t_i = f(x_i)` of :math:`n_s` simulations at the fiducial parameter
and their derivatives :math:`\partial t / \partial \theta` on :math:`n_d` simulations:

.. math::

    \mu = \bar t,\quad C = \operatorname{cov}(t),\quad
    \frac{\partial \mu}{\partial \theta} = \overline{\partial t / \partial \theta},\quad
    F = \frac{\partial \mu}{\partial \theta}^\top C^{-1} \frac{\partial \mu}{\partial \theta}.

The loss is :math:`-\ln\det F + r\,\Lambda_2` with
:math:`\Lambda_2 = \|C - I\|_F + \|C^{-1} - I\|_F`,
:math:`r = \lambda \Lambda_2 / (\Lambda_2 + e^{-\alpha \Lambda_2})` and
:math:`\alpha = -\ln(\epsilon(\lambda - 1) + \epsilon^2/(1 + \epsilon)) / \epsilon`
(Charnock, Lavaux & Wandelt 2018).

Everything is one batched path: one Cholesky factorisation :math:`C = LL^\top` gives
:math:`C^{-1}`, :math:`\ln\det C` and :math:`F = W^\top W` with
:math:`W = L^{-1}\,\partial\mu/\partial\theta`, for any number of parameters.
"""

import math

import torch


def regularisation_rate(lam, epsilon):
    r""":math:`\alpha = -\ln(\epsilon(\lambda - 1) + \epsilon^2 / (1 + \epsilon)) / \epsilon`."""
    return -math.log(epsilon * (lam - 1) + epsilon**2 / (1 + epsilon)) / epsilon


def covariance_factor(covariance, scale=None):
    """Cholesky factor of a covariance, or ``None`` when it is not positive definite
    (numerically: a pivot below ``100 eps`` of ``scale``, the mean square of the summaries
    themselves -- centring constant summaries leaves rounding noise of that order --, or
    of the largest diagonal entry without it)."""
    factor, info = torch.linalg.cholesky_ex(covariance)
    if int(info) != 0:
        return None
    pivots = torch.diagonal(factor).pow(2)
    reference = covariance.diagonal().abs().max() if scale is None else scale
    floor = 100 * torch.finfo(covariance.dtype).eps * reference
    if not bool(pivots.min() > floor):
        return None
    return factor


def fisher_statistics(summaries, derivatives, factor=None):
    r"""Mean, covariance, mean derivative and Fisher matrix of the summaries.

    Parameters
    ----------
    summaries : Tensor of shape (n_s, n_summaries)
        Summaries of the fiducial simulations.
    derivatives : Tensor of shape (n_d, n_summaries, n_params)
        :math:`\partial t / \partial \theta` of the derivative simulations.
    factor : Tensor or None, default=None
        The Cholesky factor of the covariance when already computed.

    Returns
    -------
    dict with ``mean`` (n_summaries,), ``covariance`` and ``inverse_covariance``
    (n_summaries, n_summaries), ``dmu_dtheta`` (n_summaries, n_params), ``fisher``
    (n_params, n_params) and ``cholesky`` (the factor of the covariance).

    Raises
    ------
    torch.linalg.LinAlgError
        When the covariance is not positive definite.
    """
    mean = summaries.mean(dim=0)
    centred = summaries - mean
    covariance = centred.T @ centred / (summaries.shape[0] - 1)
    return _fisher_from(mean, covariance, derivatives.mean(dim=0), factor)


def _fisher_from(mean, covariance, dmu, factor=None):
    if factor is None:
        factor = covariance_factor(covariance)
    if factor is None:
        raise torch.linalg.LinAlgError("the covariance of the summaries is singular")
    inverse = torch.cholesky_inverse(factor)
    whitened = torch.linalg.solve_triangular(factor, dmu, upper=False)
    fisher = whitened.T @ whitened
    return {"mean": mean, "covariance": covariance, "inverse_covariance": inverse,
            "dmu_dtheta": dmu, "fisher": fisher, "cholesky": factor}


def imnn_loss(stats, lam, epsilon):
    r"""The IMNN loss and the quantities the history records.

    Returns
    -------
    loss : Tensor
        :math:`-\ln\det F + r \Lambda_2`.
    record : dict of float
        ``detF``, ``detC``, ``detinvC``, ``Lambda2`` and ``r``.
    """
    covariance, inverse = stats["covariance"], stats["inverse_covariance"]
    eye = torch.eye(covariance.shape[0], dtype=covariance.dtype, device=covariance.device)
    lambda2 = torch.linalg.matrix_norm(covariance - eye) + torch.linalg.matrix_norm(inverse - eye)
    alpha = regularisation_rate(lam, epsilon)
    r = lam * lambda2 / (lambda2 + torch.exp(-alpha * lambda2))
    sign, logdet = torch.linalg.slogdet(stats["fisher"])
    loss = -logdet + r * lambda2
    with torch.no_grad():
        factor = stats.get("cholesky")
        logdet_c = (2 * torch.log(torch.diagonal(factor)).sum() if factor is not None
                    else torch.logdet(covariance))
        values = torch.stack([logdet, sign, logdet_c, lambda2, r]).double().cpu().tolist()
    logdet_f, sign_f, logdet_c, lambda2_v, r_v = values
    record = {
        "detF": math.exp(logdet_f) if sign_f > 0 else 0.0,
        "detC": math.exp(logdet_c),
        "detinvC": math.exp(-logdet_c),
        "Lambda2": lambda2_v,
        "r": r_v,
    }
    return loss, record


def quasi_ml_estimate(summaries, stats, theta_fid):
    r"""Quasi-maximum-likelihood estimate
    :math:`\hat\theta = \theta_\mathrm{fid} + F^{-1} \frac{\partial\mu}{\partial\theta}^\top
    C^{-1} (t - \mu)`, one row per summary row."""
    projection = torch.linalg.solve(stats["fisher"],
                                    stats["dmu_dtheta"].T @ stats["inverse_covariance"])
    return theta_fid + (summaries - stats["mean"]) @ projection.T
