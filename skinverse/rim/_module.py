r"""The RIM iteration as a ``torch.nn.Module``.

.. math::

    \eta_0 = \ell^{-1}(x_0), \qquad
    (\Delta_t, h_{t+1}) = g_\theta\big(\eta_t,\ \psi(\nabla_\eta \log p(y \mid \ell(\eta_t))),
    \ A^H y,\ h_t\big), \qquad \eta_{t+1} = \eta_t + \Delta_t

with :math:`\ell` the link function, :math:`\psi` the score transform and the memory
:math:`h` carried through every step.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _softplus_inverse(x):
    return x + torch.log(-torch.expm1(-x.clamp_min(1e-6)))


# name -> (link, inverse link, derivative of the link)
LINKS = {
    "identity": (lambda e: e, lambda x: x, lambda e: torch.ones_like(e)),
    "softplus": (F.softplus, _softplus_inverse, torch.sigmoid),
    "sigmoid": (torch.sigmoid, lambda x: torch.logit(x.clamp(1e-6, 1 - 1e-6)),
                lambda e: torch.sigmoid(e) * (1 - torch.sigmoid(e))),
}


def _normalize(g):
    scale = g.reshape(g.shape[0], -1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)
    return g / scale.reshape(-1, *([1] * (g.dim() - 1)))


# 'precondition' is the identity applied to the score times the likelihood's step size
# sigma^2 / ||A||^2 (see ``RIMModule.forward``).
TRANSFORMS = {"identity": lambda g: g, "arcsinh": torch.asinh, "normalize": _normalize,
              "precondition": lambda g: g}
INITS = ("adjoint", "zeros", "pinv", "learned", "tikhonov", "wiener")


class RIMModule(nn.Module):
    r"""Unrolled RIM: ``forward(y, physics, extras)`` returns the estimates of every step
    (``extras``: per-sample tensors for the physics).

    The physics (operator, score or energy) is an argument, not a submodule: it holds no
    trainable parameters and belongs to the estimator.

    Parameters
    ----------
    net : nn.Module
        ``net(input, memory) -> (update, memory)``; the input stacks the current estimate,
        the transformed score and :math:`A^H y` along the channel axis.
    n_steps : int
    signal_shape : tuple
        Shape of one signal as the physics sees it.
    net_shape : tuple
        The same signal as the network sees it: ``(channels, *spatial)`` or ``(d,)``.
    init : {'auto', 'zeros', 'adjoint', 'pinv', 'learned', 'tikhonov', 'wiener'}
        'wiener' needs :meth:`set_wiener`; 'auto' is 'wiener' when it was set, else
        'tikhonov' with an operator and Gaussian noise, else 'adjoint'.
    score_transform : {'identity', 'arcsinh', 'normalize', 'precondition'}
        With 'precondition' the score is multiplied by the likelihood's gradient step
        :math:`\sigma^2/\|A\|^2` (``physics.step_size()``) and :math:`A^H y` by
        :math:`1/\|A\|^2`, which makes the network's inputs invariant to the scale of the
        operator and of the noise.
    link : {'identity', 'softplus', 'sigmoid'}
    """

    def __init__(self, net, n_steps, signal_shape, net_shape, init, score_transform, link):
        super().__init__()
        self.net, self.n_steps = net, n_steps
        self.signal_shape, self.net_shape = tuple(signal_shape), tuple(net_shape)
        self.init, self.score_transform, self.link = init, score_transform, link
        self.autocast_dtype = None  # torch.bfloat16 / torch.float16: mixed-precision network
        if init == "learned":
            self.init_scale = nn.Parameter(torch.ones(1))
            self.init_shift = nn.Parameter(torch.zeros(1))
        self.register_buffer("wiener_gain", None)
        self.register_buffer("wiener_offset", None)

    def set_wiener(self, gain, offset):
        r"""The linear initial estimate :math:`x_0 = G X + b` (``gain`` of shape
        (n_signal, n_obs), ``offset`` (n_signal,)): the Wiener filter of the training
        signals' mean and covariance."""
        self.wiener_gain = torch.as_tensor(gain)
        self.wiener_offset = torch.as_tensor(offset)

    def reset_parameters_with(self, generator):
        from .._base._random import init_parameters  # the estimator layer's helper

        init_parameters(self.net, generator)
        if self.wiener_gain is not None:
            # From the Wiener estimate the updates start at zero (the network's last layer
            # zeroed): training moves the estimate only where the data say so.
            last = [m for m in self.net.modules()
                    if isinstance(getattr(m, "weight", None), torch.Tensor)
                    and m.weight.dim() >= 2][-1]
            with torch.no_grad():
                last.weight.zero_()
                if getattr(last, "bias", None) is not None:
                    last.bias.zero_()
        if self.init == "learned":
            with torch.no_grad():
                self.init_scale.fill_(1.0)
                self.init_shift.zero_()

    def _to_net(self, v):
        return v.reshape(v.shape[0], *self.net_shape)

    def _to_signal(self, v):
        return v.reshape(v.shape[0], *self.signal_shape)

    def initial_estimate(self, adjoint_y, physics, init=None, y=None):
        init = self.init if init is None else init
        if init == "wiener":
            # in float64: the product then rounds the same for any number of rows
            wide = torch.float64 if y.device.type != "mps" else torch.float32
            flat = y.reshape(y.shape[0], -1).to(wide)
            x = flat @ self.wiener_gain.to(wide).T + self.wiener_offset.to(wide)
            return self._to_signal(x.to(adjoint_y.dtype))
        if init == "zeros":
            return torch.zeros_like(adjoint_y)
        if init == "adjoint":
            return adjoint_y
        if init == "learned":
            return self.init_scale * adjoint_y + self.init_shift
        if init == "tikhonov":
            return physics.tikhonov(adjoint_y)
        operator = physics.operator
        x, _ = operator.solve_normal(adjoint_y, lam=1e-3 * physics.operator_norm() ** 2,
                                     max_iter=100, tol=1e-6)
        return x

    def resolved(self, physics):
        """(init, score_transform) with 'auto' resolved: 'tikhonov' and 'precondition'
        for an operator with Gaussian noise, 'adjoint' and 'identity' otherwise."""
        gaussian = physics.linear_gaussian
        init, transform = self.init, self.score_transform
        if init == "auto":
            init = ("wiener" if self.wiener_gain is not None else
                    "tikhonov" if gaussian else "adjoint")
        if init == "wiener" and self.wiener_gain is None:
            raise ValueError("init='wiener' needs the Wiener filter (set_wiener).")
        if transform == "auto":
            transform = "precondition" if gaussian else "identity"
        if not gaussian and (init == "tikhonov" or transform == "precondition"):
            raise ValueError("init='tikhonov' and score_transform='precondition' need an "
                             "operator with Gaussian noise (no score_fn or energy_fn).")
        return init, transform

    def forward(self, y, physics, extras=None):
        link, inverse, derivative = LINKS[self.link]
        init, transform_name = self.resolved(physics)
        transform = TRANSFORMS[transform_name]
        adjoint_y = physics.adjoint(y)
        eta = inverse(self.initial_estimate(adjoint_y, physics, init, y))
        memory, estimates = None, []
        step, adjoint_step = 1.0, 1.0
        if transform_name == "precondition":  # signal-sized inputs: A^H r / ||A||^2
            step, adjoint_step = physics.step_size(), 1.0 / physics.operator_norm() ** 2
        adjoint_net = self._to_net(adjoint_y * adjoint_step)
        channel_axis = 1 if len(self.net_shape) > 1 else -1
        for _ in range(self.n_steps):
            x = link(eta)
            score = physics.score(x, y, **(extras or {})) * derivative(eta) * step
            inputs = torch.cat(
                [self._to_net(eta), self._to_net(transform(score)), adjoint_net], dim=channel_axis
            )
            if self.autocast_dtype is None:
                update, memory = self.net(inputs, memory)
            else:  # the backbone in low precision, the physics and the iterate in full
                with torch.autocast(inputs.device.type, dtype=self.autocast_dtype):
                    update, memory = self.net(inputs, memory)
                update = update.to(eta.dtype)
            eta = eta + self._to_signal(update)
            estimates.append(link(eta))
        return torch.stack(estimates, dim=1)  # (batch, n_steps, *signal_shape)


def step_weights(spec, n_steps):
    """Loss weights of the steps, normalised to sum to 1 (``step_weights``)."""
    if isinstance(spec, str):
        weights = {
            "uniform": np.ones(n_steps),
            "increasing": np.arange(1, n_steps + 1, dtype=float),
            "final": np.eye(n_steps)[-1],
        }[spec]
    else:
        weights = np.asarray(spec, dtype=float)
        if weights.shape != (n_steps,) or np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError(
                f"step_weights must be 'uniform', 'increasing', 'final' or {n_steps} "
                f"non-negative numbers with a positive sum, got {spec!r}."
            )
    return weights / weights.sum()
