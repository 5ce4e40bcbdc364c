"""The IMNN's three sources of Fisher information, validated into tensors.

* simulator: fresh fiducial and derivative simulations every step;
* ``fit(X, derivatives=...)``: fiducial simulations and exact gradients
  (n_d, n_features, n_params) or seed-matched finite-difference pairs
  (n_d, 2, n_params, n_features);
* ``fit(X, y)``: simulations at parameters ``y`` around the fiducial point (a local design):
  the derivative of the mean summary is the least-squares slope of the summaries on ``y``
  and the covariance that of the residuals.
"""

import numpy as np
import torch
from sklearn.utils.validation import check_array


def check_derivatives(derivatives, n_features, n_s):
    """Validate a derivative array; return (array, layout) with layout 'gradient' or 'pairs'."""
    array = check_array(derivatives, ensure_2d=False, allow_nd=True, dtype=[np.float64, np.float32],
                        input_name="derivatives")
    if array.ndim == 3 and array.shape[1] == n_features:
        layout = "gradient"
    elif array.ndim == 4 and array.shape[1] == 2 and array.shape[3] == n_features:
        layout = "pairs"
    else:
        raise ValueError(
            f"derivatives has shape {array.shape}; expected exact gradients "
            f"(n_d, {n_features}, n_params) or finite-difference pairs "
            f"(n_d, 2, n_params, {n_features}) for X with {n_features} features."
        )
    if len(array) > n_s:
        raise ValueError(
            f"n_d={len(array)} derivative simulations exceed the n_s={n_s} fiducial ones; "
            "the IMNN needs n_d <= n_s."
        )
    return array, layout


def summary_derivatives(forward, x, derivatives, layout, delta_theta):
    r""":math:`\partial t / \partial \theta` of shape (n, n_summaries, n_params).

    ``gradient``: Jacobian-vector products of the network along each
    :math:`\partial x / \partial \theta_k` (forward-mode autograd, differentiable in the
    network's weights). ``pairs``: central differences
    :math:`(f(x^+_k) - f(x^-_k)) / (2\delta\theta_k)`.
    """
    if layout == "gradient":
        columns = []
        for k in range(derivatives.shape[-1]):
            _, column = torch.func.jvp(forward, (x,), (derivatives[..., k],))
            columns.append(column)
        return torch.stack(columns, dim=-1)
    n, _, n_params = derivatives.shape[:3]
    plus = forward(derivatives[:, 0].reshape(n * n_params, -1)).reshape(n, n_params, -1)
    minus = forward(derivatives[:, 1].reshape(n * n_params, -1)).reshape(n, n_params, -1)
    return ((plus - minus) / (2 * delta_theta[None, :, None])).transpose(1, 2)


def design_statistics(summaries, parameters):
    r"""Fisher statistics from simulations at varied parameters (a local linear model).

    Regress :math:`t_i = \mu + B (\theta_i - \bar\theta) + e_i`: :math:`B` estimates
    :math:`\partial\mu/\partial\theta` and the residual covariance estimates :math:`C`.
    """
    n, n_params = parameters.shape
    centred = parameters - parameters.mean(dim=0)
    design = torch.cat([torch.ones_like(centred[:, :1]), centred], dim=1)
    gram = design.T @ design
    coefficients = torch.linalg.solve(gram, design.T @ summaries)  # (1 + p, q)
    residual = summaries - design @ coefficients
    covariance = residual.T @ residual / (n - n_params - 1)
    inverse = torch.linalg.inv(covariance)
    dmu = coefficients[1:].T
    fisher = dmu.T @ inverse @ dmu
    return {"mean": coefficients[0], "covariance": covariance, "inverse_covariance": inverse,
            "dmu_dtheta": dmu, "fisher": (fisher + fisher.T) / 2}


def split_simulations(tensors, fraction, seed):
    """Hold out ``fraction`` of each kind of given simulation: X with its parameters y,
    derivatives with the fiducial simulations X_d they belong to."""
    rng = np.random.RandomState(seed)
    train, val = dict(tensors), dict(tensors)
    for group in (("X", "y"), ("derivatives", "X_d")):
        if group[0] not in tensors:
            continue
        n = len(tensors[group[0]])
        n_val = max(1, int(round(fraction * n)))
        if n - n_val < 3:
            raise ValueError(f"early_stopping cannot hold out {n_val} of {n} simulations.")
        order = torch.as_tensor(rng.permutation(n), device=tensors[group[0]].device)
        for key in group:
            if key in tensors:
                val[key] = tensors[key][order[:n_val]]
                train[key] = tensors[key][order[n_val:]]
    return train, val


def enough_to_validate(data, n_summaries, fraction):
    """``early_stopping='auto'``: fresh simulations always validate; given simulations
    only when the held-out part of each kind has at least ``10 (n_summaries + 1)`` of them
    (fewer cannot estimate the covariance of the summaries)."""
    if data["mode"] == "simulator":
        return True
    need = 10 * (n_summaries + 1)
    sizes = [len(data[k]) for k in ("X", "derivatives") if data.get(k) is not None]
    held = [int(round(fraction * n)) for n in sizes]
    return all(h >= need and n - h >= need for h, n in zip(held, sizes))
