"""Simulations at the fiducial point and their derivatives, seed-matched."""

import torch


def _run(simulator, theta, generator, state):
    generator.set_state(state)  # seed matching: the same noise for every call
    return simulator(theta, generator)


def check_simulation(x, n, where):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"simulator must return a torch.Tensor, got {type(x).__name__} ({where}).")
    if x.shape[0] != n:
        raise ValueError(
            f"simulator returned {x.shape[0]} simulations for {n} parameter rows ({where}); "
            "expected shape (n, *input_shape)."
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"simulator returned NaN or infinity ({where}).")
    return x


def simulate_fiducial(simulator, theta_fid, n, generator):
    """``n`` simulations at ``theta_fid`` (shape (n, *input_shape))."""
    theta = theta_fid.expand(n, -1).contiguous()
    with torch.no_grad():
        return check_simulation(simulator(theta, generator), n, "fiducial simulations")


def simulate_derivatives(simulator, theta_fid, n, generator, delta_theta=None):
    r"""Simulations and their derivatives with respect to :math:`\theta`, seed-matched.

    With ``delta_theta=None`` the derivatives come from forward-mode autograd through the
    simulator: ``(x, dx)`` with ``dx`` of shape (n, *input_shape, n_params). With
    ``delta_theta`` they are central finite-difference pairs
    :math:`x(\theta \pm \delta\theta_k e_k)` drawn with the same noise, of shape
    (n, 2, n_params, *input_shape) -- the layout of ``fit(derivatives=...)``.
    """
    n_params = theta_fid.shape[-1]
    theta = theta_fid.expand(n, -1).contiguous()
    state = generator.get_state()
    if delta_theta is None:
        columns = []
        x = None
        for k in range(n_params):
            direction = torch.zeros_like(theta)
            direction[:, k] = 1
            try:
                x, dx = torch.func.jvp(lambda th: _run(simulator, th, generator, state),
                                       (theta,), (direction,))
            except Exception as exc:  # noqa: BLE001 - any failure means "not differentiable"
                raise ValueError(
                    "The simulator is not differentiable by forward-mode autograd "
                    f"({type(exc).__name__}: {exc}); pass delta_theta to use seed-matched "
                    "finite differences instead."
                ) from exc
            columns.append(dx.detach())
        x = check_simulation(x.detach(), n, "derivative simulations")
        return x, torch.stack(columns, dim=-1)
    delta = torch.as_tensor(delta_theta, dtype=theta.dtype, device=theta.device)
    delta = delta.expand(n_params)
    pairs = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            shifted = []
            for k in range(n_params):
                moved = theta.clone()
                moved[:, k] += sign * delta[k]
                shifted.append(check_simulation(_run(simulator, moved, generator, state), n,
                                                "finite-difference simulations"))
            pairs.append(torch.stack(shifted, dim=1))
    return None, torch.stack(pairs, dim=1)  # (n, 2, n_params, *input_shape)
