r"""Unrolled reconstructions as a ``torch.nn.Module``, built from an operator, denoisers and
conjugate gradients (DeepInPy's System, Model and Optimisation blocks).

* ``'modl'``: :math:`x_{k+1} = (A^H A + \lambda I)^{-1}(A^H y + \lambda D(x_k))`;
* ``'cg-sense'``: :math:`x = (A^H A + \lambda I)^{-1} A^H y`, no network;
* ``'pgd'``: :math:`x_{k+1} = D(x_k - \eta A^H (A x_k - y))`;
* ``'dbp'``: :math:`x_{k+1} = \arg\min_x \|x - D(x_k)\|^2` s.t.
  :math:`\|A x - y\| \le \epsilon`, by ADMM;
* ``'resnet'``: :math:`x = D(A^H y)`.

:math:`\lambda` and :math:`\eta` are kept positive by a softplus; :math:`\lambda` is
``lam_scale * softplus(raw_lam)`` (the penalty :math:`\rho` of 'dbp' is
``softplus(raw_lam) / lam_scale``), with ``lam_scale`` :math:`= \|A\|^2` for
``lam='auto'``; the start is :math:`x_0 = A^H y / \|A\|^2` and the 'pgd' step
:math:`\eta = \mathrm{softplus}(\theta) / \|A\|^2`, so that the reconstruction does not
change when the operator and the data are scaled together (see ``_scale``). The conjugate-gradient
solves of :math:`(A^H A + \lambda I) x = b` are differentiated implicitly by default (a
second CG solve in the backward pass, so training memory does not grow with
``cg_max_iter``: :func:`~skinverse.operators._base.conjugate_gradient_implicit`);
``UnrolledModule.cg_backward = 'unrolled'`` back-propagates through the iterations
instead (the reference).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..operators import LinearOperator
from ._threshold import soft_threshold


def _softplus_inverse(value):
    return value if value > 30 else math.log(math.expm1(value))  # softplus(v) = v beyond


class UnrolledModule(nn.Module):
    """See the module docstring. ``denoisers`` holds one network (shared weights) or one per
    unroll; it is empty for 'cg-sense'."""

    #: lambda = lam_scale * softplus(raw_lam), and ||A||^2, which scales the start
    #: A^H y and the 'pgd' step; class attributes so that modules pickled before they
    #: existed still load (with 1).
    lam_scale = 1.0
    norm_squared = 1.0
    #: The images' typical peak magnitude (``signal_scale`` in _scale): the denoiser sees
    #: ``x / signal_scale`` and its output is scaled back, so that a reconstruction in
    #: any units is the one of unit-scale data, scaled (the rest of each scheme is linear).
    signal_scale = 1.0

    def __init__(self, method, denoisers, n_unrolls, lam, learn_lam, cg_max_iter, cg_tol,
                 admm_iter=5, epsilon=None, step=1.0, lam_scale=1.0, norm_squared=1.0):
        super().__init__()
        self.lam_scale, self.norm_squared = float(lam_scale), float(norm_squared)
        self.method, self.denoisers, self.n_unrolls = method, denoisers, n_unrolls
        self.cg_max_iter, self.cg_tol, self.admm_iter = cg_max_iter, cg_tol, admm_iter
        raw = torch.tensor(_softplus_inverse(lam))
        if learn_lam:
            self.raw_lam = nn.Parameter(raw)
        else:
            self.register_buffer("raw_lam", raw)
        if method == "pgd":
            self.raw_step = nn.Parameter(torch.tensor(_softplus_inverse(step)))
        self.register_buffer("epsilon", torch.tensor(0.0 if epsilon is None else epsilon))
        self.cg_iterations = []
        self.autocast_dtype = None  # torch.bfloat16 / torch.float16: mixed-precision denoiser

    def reset_parameters_with(self, generator):
        """Initialise the denoisers from ``generator``; keep lambda and the step as given."""
        from .._base._random import init_parameters

        for net in self.denoisers:
            init_parameters(net, generator)

    @property
    def lam(self):
        """The data-consistency weight (the ADMM penalty for 'dbp'), in the operator's
        units."""
        lam = F.softplus(self.raw_lam)
        return lam / self.lam_scale if self.method == "dbp" else lam * self.lam_scale

    def _denoise(self, k, x):
        net = self.denoisers[0 if len(self.denoisers) == 1 else k]
        flat = x.dim() == 2  # 1-D signals: a 1 x d image
        image = x[:, None] if flat else x
        # channels-last: oneDNN's convolutions run ~20 % faster on the CPU in that layout
        inputs = torch.stack([image.real, image.imag], dim=1).contiguous(
            memory_format=torch.channels_last)
        scale = self.signal_scale
        if scale != 1.0:
            inputs = inputs / scale
        if self.autocast_dtype is None:
            out = self._run(net, inputs)
        else:  # the denoiser in low precision; data consistency stays in full precision
            with torch.autocast(inputs.device.type, dtype=self.autocast_dtype):
                out = net(inputs)
            out = out.to(inputs.dtype)
        if scale != 1.0:
            out = out * scale
        out = torch.complex(out[:, 0], out[:, 1])
        return out[:, 0] if flat else out

    #: How the CG solves are differentiated: 'implicit' (one more CG solve in the
    #: backward pass, memory flat in cg_max_iter) or 'unrolled' (autograd through the
    #: iterations, the reference). A class attribute so that modules pickled before it
    #: existed still load.
    cg_backward = "implicit"
    #: Relative residual at which the implicit backward solve stops (``None``: ``cg_tol``).
    cg_backward_tol = None

    #: Recompute each denoiser's activations in the backward pass instead of keeping them
    #: (torch.utils.checkpoint): training memory of one denoiser call instead of
    #: ``n_unrolls``, for one more denoiser forward per unroll.
    checkpoint_denoiser = False

    def _run(self, net, inputs):
        if self.checkpoint_denoiser and torch.is_grad_enabled() and self.training:
            return checkpoint(net, inputs, use_reentrant=False)
        return net(inputs)

    def _solve(self, operator, b, lam, x0, params):
        if self.cg_backward_tol is not None and self.cg_backward == "implicit":
            params = {**params, "backward_tol": self.cg_backward_tol}  # only it has one
        x, n_iter = operator.solve_normal(b, lam, x0=x0, max_iter=self.cg_max_iter,
                                          tol=self.cg_tol, differentiate=self.cg_backward,
                                          **params)
        self.cg_iterations.append(n_iter)
        return x

    #: tau of the soft threshold of the output's magnitudes (``_threshold``), chosen
    #: after training and 0 while training; a class attribute so that modules pickled
    #: before it existed still load.
    output_threshold = 0.0

    def forward(self, y, operator, params):
        x = self._reconstruct(y, operator, params)
        return soft_threshold(x, self.output_threshold) if self.output_threshold else x

    def _reconstruct(self, y, operator, params):
        adjoint = operator.adjoint(y, **params)
        lam = self.lam
        x = adjoint / self.norm_squared if self.norm_squared != 1.0 else adjoint
        if self.method == "resnet":
            return self._denoise(0, x)
        if self.method == "cg-sense":
            return self._solve(operator, adjoint, lam, None, params)
        step = F.softplus(self.raw_step) / self.norm_squared if self.method == "pgd" else None
        for k in range(self.n_unrolls):
            if self.method == "modl":
                x = self._solve(operator, adjoint + lam * self._denoise(k, x), lam, x, params)
            elif self.method == "pgd":
                residual = operator.forward(x, **params) - y
                x = self._denoise(k, x - step * operator.adjoint(residual, **params))
            else:  # dbp
                x = self._basis_pursuit(self._denoise(k, x), y, operator, params, lam)
        return x

    def _basis_pursuit(self, z, y, operator, params, rho):
        r"""ADMM for :math:`\min_x \frac12\|x - z\|^2` s.t. :math:`\|Ax - y\| \le \epsilon`
        with the split :math:`v = Ax` and penalty :math:`\rho`."""
        x, v = z, operator.forward(z, **params)
        u = torch.zeros_like(v)
        shape = (-1,) + (1,) * (y.dim() - 1)
        for _ in range(self.admm_iter):
            rhs = z / rho + operator.adjoint(v - u, **params)
            x = self._solve(operator, rhs, 1 / rho, x, params)
            ax = operator.forward(x, **params)
            d = ax + u - y
            norm = d.abs().pow(2).reshape(d.shape[0], -1).sum(dim=1).sqrt()
            scale = torch.clamp(self.epsilon / norm.clamp_min(1e-12), max=1.0)
            v = y + d * scale.reshape(shape)
            u = u + ax - v
        return x


class RealPartsOperator(LinearOperator):
    """A real operator applied to complex images part by part: :math:`A(u + iv) = Au +
    iAv` (what the unrolled schemes, which run in complex arithmetic, need of a real
    operator such as a blur)."""

    def __init__(self, operator):
        super().__init__(operator.input_shape, operator.output_shape)
        self.operator = operator

    def _lift(self, apply, x):
        if not x.is_complex():
            return apply(x)
        return torch.complex(apply(x.real), apply(x.imag))

    def forward(self, x):
        return self._lift(self.operator.forward, x)

    def adjoint(self, y):
        return self._lift(self.operator.adjoint, y)

    def norm(self, *args, **kwargs):
        return self.operator.norm(*args, **kwargs)

    def to(self, device=None, dtype=None):
        self.operator.to(device, dtype)
        return self

    def __repr__(self):
        return f"RealPartsOperator({self.operator!r})"
