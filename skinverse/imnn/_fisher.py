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
"""

import math

import torch


def regularisation_rate(lam, epsilon):
    r""":math:`\alpha = -\ln(\epsilon(\lambda - 1) + \epsilon^2 / (1 + \epsilon)) / \epsilon`."""
    return -math.log(epsilon * (lam - 1) + epsilon**2 / (1 + epsilon)) / epsilon


def fisher_statistics(summaries, derivatives):
    r"""Mean, covariance, mean derivative and Fisher matrix of the summaries.

    Parameters
    ----------
    summaries : Tensor of shape (n_s, n_summaries)
        Summaries of the fiducial simulations.
    derivatives : Tensor of shape (n_d, n_summaries, n_params)
        :math:`\partial t / \partial \theta` of the derivative simulations.

    Returns
    -------
    dict with ``mean`` (n_summaries,), ``covariance`` and ``inverse_covariance``
    (n_summaries, n_summaries), ``dmu_dtheta`` (n_summaries, n_params) and ``fisher``
    (n_params, n_params).
    """
    mean = summaries.mean(dim=0)
    centred = summaries - mean
    covariance = centred.T @ centred / (summaries.shape[0] - 1)
    inverse = torch.linalg.inv(covariance)
    dmu = derivatives.mean(dim=0)
    fisher = dmu.T @ inverse @ dmu
    fisher = (fisher + fisher.T) / 2
    return {"mean": mean, "covariance": covariance, "inverse_covariance": inverse,
            "dmu_dtheta": dmu, "fisher": fisher}


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
        record = {
            "detF": float(torch.exp(logdet)) if float(sign) > 0 else 0.0,
            "detC": float(torch.linalg.det(covariance)),
            "detinvC": float(torch.linalg.det(inverse)),
            "Lambda2": float(lambda2),
            "r": float(r),
        }
    return loss, record


def quasi_ml_estimate(summaries, stats, theta_fid):
    r"""Quasi-maximum-likelihood estimate
    :math:`\hat\theta = \theta_\mathrm{fid} + F^{-1} \frac{\partial\mu}{\partial\theta}^\top
    C^{-1} (t - \mu)`, one row per summary row."""
    projection = torch.linalg.solve(stats["fisher"],
                                    stats["dmu_dtheta"].T @ stats["inverse_covariance"])
    return theta_fid + (summaries - stats["mean"]) @ projection.T
