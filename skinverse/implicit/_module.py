r"""The implicit model as a ``torch.nn.Module``: equilibrium forward, implicit backward.

.. math::

    z = \phi(A z + B u + b), \qquad \hat y = C z + D u + c.

The forward solve runs without autograd; one differentiable application of the map at the
equilibrium carries the gradient to :math:`A, B, b`, and a hook on its output replaces the
incoming gradient :math:`g` by the solution :math:`w` of the adjoint fixed point
:math:`w = g + J^\top w` with :math:`J = \operatorname{diag}(\phi'(A z + B u + b)) A`
(implicit differentiation), or the gradient of a few unrolled steps ('phantom'), or the
dense solve of :math:`(I - J)^\top w = g` ('exact').
"""

import math

import torch
from torch import nn

from ._projection import inf_norm, monotone_matrix, project_rows_l1
from ._solvers import SOLVERS, picard


# Named functions (not lambdas) so that fitted modules pickle.
def _relu_grad(x):
    return (x > 0).to(x.dtype)


def _leaky_relu(x):
    return nn.functional.leaky_relu(x, 0.01)


def _leaky_relu_grad(x):
    return torch.where(x > 0, 1.0, 0.01).to(x.dtype)


def _tanh_grad(x):
    return 1 - torch.tanh(x) ** 2


def _sigmoid_grad(x):
    s = torch.sigmoid(x)
    return s * (1 - s)


def _silu_grad(x):
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


# name -> (phi, dphi, Lipschitz constant, monotone)
ACTIVATIONS = {
    "relu": (torch.relu, _relu_grad, 1.0, True),
    "leaky_relu": (_leaky_relu, _leaky_relu_grad, 1.0, True),
    "tanh": (torch.tanh, _tanh_grad, 1.0, True),
    "sigmoid": (torch.sigmoid, _sigmoid_grad, 0.25, True),
    # SiLU is neither monotone nor non-expansive: its slope peaks at 1.0998.
    "silu": (nn.functional.silu, _silu_grad, 1.0998, False),
}


class ImplicitModule(nn.Module):
    """Parameters and equilibrium computation of an implicit model (see module docstring).

    ``structure`` is 'dense', 'upper' (strictly upper-triangular :math:`A`: a feed-forward
    network, whose Picard iteration ends in at most ``n`` steps) or 'low_rank'
    (:math:`A = P Q^\\top`). ``well_posedness`` is 'inf_norm' (:math:`\\|A\\|_\\infty \\le
    \\kappa / L` after every step, :math:`L` the Lipschitz constant of :math:`\\phi`),
    'monotone' (:math:`A = (1-m)I - W^\\top W + S - S^\\top`, ReLU only) or 'none'.
    """

    def __init__(self, n_inputs, hidden_size, n_outputs, *, phi, dphi, lipschitz, fit_D,
                 bias, well_posedness, kappa, monotone_margin, structure, rank, solver,
                 max_iter, solver_tol, backward, backward_steps):
        super().__init__()
        n = hidden_size
        self.phi, self.dphi, self.lipschitz = phi, dphi, lipschitz
        self.well_posedness, self.kappa, self.margin = well_posedness, kappa, monotone_margin
        self.structure, self.solver, self.backward_mode = structure, solver, backward
        self.max_iter, self.solver_tol, self.backward_steps = max_iter, solver_tol, backward_steps
        if well_posedness == "monotone":
            self.W = nn.Parameter(torch.empty(n, n))
            self.S = nn.Parameter(torch.empty(n, n))
        elif structure == "low_rank":
            self.P = nn.Parameter(torch.empty(n, rank))
            self.Q = nn.Parameter(torch.empty(n, rank))
        else:
            self.A = nn.Parameter(torch.empty(n, n))
        if structure == "upper":
            self.register_buffer("mask", torch.ones(n, n).triu(diagonal=1))
        self.B = nn.Parameter(torch.empty(n, n_inputs))
        self.C = nn.Parameter(torch.empty(n_outputs, n))
        self.D = nn.Parameter(torch.empty(n_outputs, n_inputs)) if fit_D else None
        self.b = nn.Parameter(torch.empty(n)) if bias else None
        self.c = nn.Parameter(torch.empty(n_outputs)) if bias else None
        self.stats = []

    #: Tolerance of the solves made in training mode, as a multiple of ``solver_tol``
    #: (prediction solves use ``solver_tol`` itself). A training step only needs the
    #: equilibrium to the accuracy of a stochastic gradient, and with warm-started
    #: equilibria the next epoch refines it. 10 cut forward iterations by 1.5-3x at equal
    #: test scores on digits, breast cancer, wine, diabetes and Friedman #1
    #: (benchmarks/bench_implicit.py). A class attribute, so that fitted modules
    #: pickled before it existed still load.
    training_tol_factor = 10.0

    def _tol(self):
        return self.solver_tol * (self.training_tol_factor if self.training else 1.0)

    def _solved(self, kind, stats):
        """Record ``stats``, its residual relative to the tolerance in force times
        ``solver_tol`` (so that the estimator's test ``max_residual > solver_tol`` means
        "did not converge" in training too)."""
        stats.max_residual *= self.solver_tol / self._tol()
        self.stats.append((kind, stats))

    # ------------------------------------------------------------------ parameters
    def reset_parameters_with(self, generator):
        """Draw the initial weights from ``generator`` (called by the estimator).

        :math:`B, C, D` and the biases follow ``nn.Linear``; :math:`A` starts small
        (entries in :math:`\\pm 1/n`, row l1 norms about 1/2) so the initial model is
        well-posed and close to a one-layer network.
        """
        n = self.B.shape[0]
        with torch.no_grad():
            for name in ("A", "W", "S", "P", "Q"):
                if hasattr(self, name):
                    getattr(self, name).uniform_(-1 / n, 1 / n, generator=generator)
            if hasattr(self, "P"):  # A = P Q^T: scale the factors to the same row norms
                self.P.mul_(math.sqrt(n / self.P.shape[1]))
                self.Q.mul_(math.sqrt(n / self.P.shape[1]))
            for weight, bias_ in ((self.B, self.b), (self.C, self.c), (self.D, None)):
                if weight is None:
                    continue
                bound = 1 / math.sqrt(weight.shape[1])
                weight.uniform_(-bound, bound, generator=generator)
                if bias_ is not None:
                    bias_.uniform_(-bound, bound, generator=generator)
        self.enforce_well_posedness()

    def matrix_A(self):
        """The (structured) matrix :math:`A`."""
        if self.well_posedness == "monotone":
            A = monotone_matrix(self.W, self.S, self.margin)
        elif self.structure == "low_rank":
            A = self.P @ self.Q.T
        else:
            A = self.A
        return A * self.mask if self.structure == "upper" else A

    @torch.no_grad()
    def enforce_well_posedness(self):
        """Put :math:`A` back into the well-posed set after an optimiser step."""
        if self.well_posedness != "inf_norm":
            return
        radius = self.kappa / self.lipschitz
        if self.structure == "low_rank":
            norms = (self.P @ self.Q.T).abs().sum(dim=1)
            self.P.mul_((radius / norms.clamp_min(radius))[:, None])
        elif self.structure == "upper":
            self.A.copy_(project_rows_l1(self.A * self.mask, radius))
        else:
            self.A.copy_(project_rows_l1(self.A, radius))

    def a_inf_norm(self):
        with torch.no_grad():
            return inf_norm(self.matrix_A())

    def l1_norm(self):
        """Sum of absolute entries of :math:`A, B, C, D` (the sparsity penalty)."""
        total = self.matrix_A().abs().sum() + self.B.abs().sum() + self.C.abs().sum()
        return total + (self.D.abs().sum() if self.D is not None else 0)

    # ------------------------------------------------------------------ forward
    def _monotone_step(self, A):
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        return self.margin / float(torch.linalg.matrix_norm(eye - A, ord=2)) ** 2

    def equilibrium(self, A, injected, z0=None):
        """Solve :math:`z = \\phi(z A^\\top + \\text{injected})` without autograd."""
        z0 = torch.zeros_like(injected) if z0 is None else z0
        phi, At = self.phi, A.T
        with torch.no_grad():
            if self.well_posedness == "monotone":
                step = self._monotone_step(A)
                damped = (1 - step) * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
                damped = damped + step * At

                def f(z, inj):  # forward-backward splitting step
                    return phi(torch.addmm(inj, z, damped, beta=step))

                z, stats = picard(f, z0, context=(injected,), max_iter=self.max_iter,
                                  tol=self._tol() * step, independent=not self.training)
                stats.max_residual /= step
                return z, stats

            def f(z, inj):
                return phi(torch.addmm(inj, z, At))

            return SOLVERS[self.solver](f, z0, context=(injected,), max_iter=self.max_iter,
                                        tol=self._tol(), independent=not self.training)

    def forward(self, U, z0=None):
        """Outputs for inputs ``U``; ``z0`` optionally warm-starts the forward solve.

        The equilibrium found is stored in ``self.last_equilibrium``.
        """
        A = self.matrix_A()
        injected = U @ self.B.T
        if self.b is not None:
            injected = injected + self.b
        z_star, stats = self.equilibrium(A.detach(), injected.detach(), z0)
        self._solved("forward", stats)
        self.last_equilibrium = z_star
        pre = z_star @ A.T + injected
        z = self.phi(pre)
        if torch.is_grad_enabled() and z.requires_grad:
            z = self._attach_backward(z, pre, A, injected)
        out = z @ self.C.T
        if self.D is not None:
            out = out + U @ self.D.T
        return out + self.c if self.c is not None else out

    def _attach_backward(self, z, pre, A, injected):
        mode = self.backward_mode
        if mode == "phantom":
            for _ in range(self.backward_steps - 1):
                z = self.phi(z @ A.T + injected)
            return z
        if mode == "implicit" and self.well_posedness == "monotone":
            mode = "exact"  # Picard on the adjoint needs ||A||_inf < 1, which monotone lacks
        slope = self.dphi(pre.detach())
        A_fixed = A.detach()

        def adjoint(grad):
            if grad is None:  # an undefined incoming gradient (torch passes None) stays so
                return None
            if mode == "exact":
                eye = torch.eye(A_fixed.shape[0], dtype=grad.dtype, device=grad.device)
                system = eye - slope[:, :, None] * A_fixed  # I - diag(phi') A, per sample
                return torch.linalg.solve(system.transpose(1, 2), grad[:, :, None])[:, :, 0]

            def g(w, grad_rows, slope_rows):
                return torch.addmm(grad_rows, w * slope_rows, A_fixed)

            w, stats = SOLVERS[self.solver](g, grad, context=(grad, slope),
                                            max_iter=self.max_iter, tol=self._tol(),
                                            independent=False)
            self._solved("backward", stats)
            return w

        z.register_hook(adjoint)
        return z
