r"""The implicit model as a ``torch.nn.Module``: equilibrium forward, implicit backward.

.. math::

    z = \phi(A z + B u + b), \qquad \hat y = C z + D u + c.

The forward solve runs without autograd and its result :math:`z^\star` is the model's
state. One autograd node (:class:`_ImplicitLayer`) stands for the whole model: given
the incoming gradient :math:`g_z` of the state it finds the solution :math:`w` of the
adjoint fixed point :math:`w = g_z + J^\top w` with :math:`J = \operatorname{diag}(
\phi'(A z^\star + B u + b)) A` (implicit differentiation), or takes :math:`w = g_z`
(the Jacobian-free, one-step 'phantom' gradient), or solves :math:`(I - J)^\top w =
g_z` densely ('exact'), and forms every parameter's gradient from :math:`v = \phi'
\odot w` and :math:`z^\star`. No extra application of the map is made, differentiable
or not. 'phantom' with ``backward_steps`` :math:`k > 1` back-propagates through
:math:`k` applications of the map from :math:`z^\star`.
"""

import math

import torch
from torch import nn

from ._projection import inf_norm, monotone_matrix, project_rows_l1_
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


def _tanh_slope_from_output(z):
    return 1 - z * z


def _sigmoid_slope_from_output(z):
    return z * (1 - z)


#: phi -> phi'(pre) written with the output phi(pre) only, for the built-in activations
#: whose derivative is a function of their value (ReLU-type: phi(x) > 0 iff x > 0). The
#: backward then needs no extra application of the map; other activations compute it.
_SLOPE_FROM_OUTPUT = {
    torch.relu: torch.sign,  # ReLU outputs are >= 0: their sign is the slope, one kernel
    _leaky_relu: _leaky_relu_grad,
    torch.tanh: _tanh_slope_from_output,
    torch.sigmoid: _sigmoid_slope_from_output,
}

#: phi -> its in-place version, used inside the solvers (no autograd there).
_IN_PLACE = {torch.relu: torch.relu_, torch.tanh: torch.tanh_, torch.sigmoid: torch.sigmoid_}


class _ImplicitLayer(torch.autograd.Function):
    r"""The whole model :math:`u \mapsto C z^\star + D u + c` as one autograd node.

    ``forward(U, A, B, b, C, c, D, module, z0)`` solves for the equilibrium with
    ``module`` (no autograd inside) and returns the outputs; ``backward`` takes the
    incoming gradient :math:`g` of the outputs to :math:`g_z = g C`, asks ``module``
    for the adjoint :math:`w` of :math:`g_z` and, with :math:`v = \phi' \odot w`,
    returns :math:`\partial C = g^\top z^\star`, :math:`\partial c = \sum g`,
    :math:`\partial D = g^\top U`, :math:`\partial A = v^\top z^\star`,
    :math:`\partial B = v^\top U`, :math:`\partial b = \sum v` and
    :math:`\partial U = v B + g D`. One node and a few products instead of a graph of
    five: on a CPU step of a 100-unit model the autograd engine's work per node is
    worth as much as the products.
    """

    @staticmethod
    def forward(ctx, U, A, B, b, C, c, D, module, z0):
        injected = U @ B.T if b is None else torch.addmm(b, U, B.T)
        z_star, _ = module.equilibrium(A, injected, z0)
        module.last_equilibrium = z_star
        out = z_star @ C.T if c is None else torch.addmm(c, z_star, C.T)
        if D is not None:
            out = torch.addmm(out, U, D.T)
        ctx.module = module
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(U, A, B, C, D, z_star, module._slope(z_star, A, injected))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        U, A, B, C, D, z_star, slope = ctx.saved_tensors
        need_U, need_A, need_B, need_b, need_C, need_c, need_D = ctx.needs_input_grad[:7]
        v = ctx.module._adjoint(g @ C, slope, A).mul_(slope)
        grad_U = None
        if need_U:
            grad_U = v @ B if D is None else torch.addmm(v @ B, g, D)
        return (grad_U, v.T @ z_star if need_A else None, v.T @ U if need_B else None,
                v.sum(0) if need_b else None, g.T @ z_star if need_C else None,
                g.sum(0) if need_c else None, g.T @ U if need_D else None, None, None)


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

    #: Tolerance of the training solves, as a multiple of ``solver_tol``, when no
    #: schedule is attached (``reuse_equilibria=False``; prediction solves always use
    #: ``solver_tol``). A training step only needs the equilibrium to the accuracy of a
    #: stochastic gradient. Class attributes, so that modules pickled before them load.
    training_tol_factor = 10.0
    #: With a schedule (see :meth:`schedule_tolerance`): the loosest training tolerance,
    #: times ``solver_tol``, and the fraction of the equilibria's movement per epoch that
    #: the training solves resolve.
    training_tol_cap = 100.0
    training_tol_fraction = 0.1
    #: Training-time solver schedule shared with the estimator's training state
    #: (``None`` outside ``fit``): ``"tol"``, the training tolerance, and per solve kind
    #: (``"forward"``, ``"backward"``) the iteration of its next first convergence test.
    schedule = None

    def _tol(self):
        if not self.training:
            return self.solver_tol
        schedule = self.schedule
        if schedule is not None and "tol" in schedule:
            return schedule["tol"]
        return self.solver_tol * self.training_tol_factor

    def schedule_tolerance(self, movement):
        r"""Set the training tolerance from the equilibria's movement over an epoch.

        .. math::

            \text{tol} = \min\bigl(c\,\epsilon,\; \max(\epsilon,\; \eta\, m)\bigr)

        with :math:`\epsilon` = ``solver_tol``, :math:`c` = ``training_tol_cap`` (100),
        :math:`\eta` = ``training_tol_fraction`` (0.1) and :math:`m` the median over the
        training samples (the first 256) of the relative sup-norm change of their
        equilibrium between two consecutive epochs. Solving a training equilibrium much more accurately than
        the next epoch's parameters move it is wasted work; as training converges the
        equilibria stop moving and the tolerance tightens to ``solver_tol``.

        Parameters
        ----------
        movement : float or None
            :math:`m`; ``None`` (first epoch: no previous equilibria) gives the cap.
        """
        cap = self.solver_tol * self.training_tol_cap
        tol = cap if movement is None else self.training_tol_fraction * movement
        self.schedule["tol"] = min(cap, max(self.solver_tol, tol))

    def _solver_name(self):
        """The solver of the next solve. 'auto' is Picard for the scheduled (warm-started)
        training solves, which stop after 3-6 iterations, where Anderson saves half an
        iteration for more work per iteration (5-10% slower fits on digits), and
        Anderson for the others: predictions and cold starts, where it needs half of
        Picard's iterations in 0.75x its time."""
        if self.solver != "auto":
            return self.solver
        return "picard" if self.training and self.schedule is not None else "anderson"

    def _solve_options(self, kind):
        """``first_check`` and ``check_every`` of a solve: in training with a schedule,
        the first test where the previous solve of this kind converged (one iteration
        earlier if that solve converged at its own first test, to follow a falling
        count), then a test every iteration; the solvers' defaults otherwise."""
        schedule = self.schedule
        if not self.training or schedule is None:
            return {}
        return {"first_check": schedule.get(kind, 2), "check_every": 1}

    def _solved(self, kind, stats, options=None):
        """Record ``stats``, its residual relative to the tolerance in force times
        ``solver_tol`` (so that the estimator's test ``max_residual > solver_tol`` means
        "did not converge" in training too), and the next first test of this kind."""
        if options:
            first = options["first_check"]
            self.schedule[kind] = (max(1, first - 1) if stats.iterations <= first
                                   else stats.iterations)
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
        else:
            if self.structure == "upper":
                self.A.mul_(self.mask)
            project_rows_l1_(self.A, radius)  # in place, only when a row is outside

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
        """Solve :math:`z = \\phi(z A^\\top + \\text{injected})` without autograd and
        record the solve's statistics; returns ``(z, stats)``."""
        z0 = torch.zeros_like(injected) if z0 is None else z0
        phi, At = _IN_PLACE.get(self.phi, self.phi), A.T
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
                self._solved("forward", stats)
                return z, stats

            def f(z, inj):
                return phi(torch.addmm(inj, z, At))

            options = self._solve_options("forward")
            z, stats = SOLVERS[self._solver_name()](f, z0, context=(injected,),
                                            max_iter=self.max_iter, tol=self._tol(),
                                            independent=not self.training, **options)
            self._solved("forward", stats, options)
            return z, stats

    def forward(self, U, z0=None):
        """Outputs for inputs ``U``; ``z0`` optionally warm-starts the forward solve.

        The equilibrium found is stored in ``self.last_equilibrium``.
        """
        A = self.matrix_A()
        if self.backward_mode == "phantom" and self.backward_steps > 1:
            return self._unrolled_forward(U, A, z0)
        return _ImplicitLayer.apply(U, A, self.B, self.b, self.C, self.c, self.D, self, z0)

    def _unrolled_forward(self, U, A, z0):
        """The 'phantom' gradient of ``backward_steps`` > 1 applications of the map from
        the equilibrium, by autograd through them."""
        injected = U @ self.B.T if self.b is None else torch.addmm(self.b, U, self.B.T)
        z, _ = self.equilibrium(A.detach(), injected.detach(), z0)
        self.last_equilibrium = z
        if torch.is_grad_enabled():
            for _ in range(self.backward_steps):
                z = self.phi(torch.addmm(injected, z, A.T))
        out = z @ self.C.T if self.c is None else torch.addmm(self.c, z, self.C.T)
        return out if self.D is None else torch.addmm(out, U, self.D.T)

    def _slope(self, z_star, A, injected):
        """:math:`\\phi'(A z^\\star + \\text{injected})`, from :math:`z^\\star` when the
        activation allows (no product with :math:`A`)."""
        from_output = _SLOPE_FROM_OUTPUT.get(self.phi)
        if from_output is not None:
            return from_output(z_star)
        return self.dphi(torch.addmm(injected, z_star, A.T))

    def _adjoint(self, grad, slope, A):
        """:math:`w` from the incoming gradient :math:`g` of the state, by the rule of
        ``backward``: the adjoint solve ('implicit'; a dense solve for 'monotone', whose
        adjoint Picard iteration needs :math:`\\|A\\|_\\infty < 1`), :math:`w = g`
        ('phantom', one step) or the dense solve ('exact'). A new tensor."""
        mode = self.backward_mode
        if mode == "phantom":
            return grad.clone()
        if mode == "exact" or self.well_posedness == "monotone":
            return _dense_adjoint(grad, slope, A)
        return self._adjoint_solve(grad, slope, A)

    def _adjoint_solve(self, grad, slope, A):
        """Solve :math:`w = g + (w \\odot \\phi') A` with the forward solver."""
        def g(w, grad_rows, slope_rows):
            return torch.addmm(grad_rows, w * slope_rows, A)

        options = self._solve_options("backward")
        w, stats = SOLVERS[self._solver_name()](g, grad, context=(grad, slope),
                                        max_iter=self.max_iter, tol=self._tol(),
                                        independent=False, **options)
        self._solved("backward", stats, options)
        return w


def _dense_adjoint(grad, slope, A):
    """:math:`(I - \\operatorname{diag}(\\phi') A)^\\top w = g`, one dense solve per sample."""
    eye = torch.eye(A.shape[0], dtype=grad.dtype, device=grad.device)
    system = eye - slope[:, :, None] * A
    return torch.linalg.solve(system.transpose(1, 2), grad[:, :, None])[:, :, 0]
