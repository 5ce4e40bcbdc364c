r"""The linear-operator interface shared by every forward model.

An operator maps a batch of signals ``x`` of shape ``(batch, *input_shape)`` to
measurements of shape ``(batch, *output_shape)``. Subclasses implement ``forward`` and
``adjoint``; everything else -- the normal operator, the Gaussian log-likelihood and its
score, the operator norm, a conjugate-gradient solve, composition -- is derived here.
"""

import math

import torch


def _inner(a, b):
    """Per-sample real inner product :math:`\\operatorname{Re}\\langle a, b\\rangle`."""
    return (a.conj() * b).real.reshape(a.shape[0], -1).sum(dim=1)


class LinearOperator:
    r"""A linear forward model :math:`A` with its adjoint :math:`A^H`.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one signal.
    output_shape : tuple of int
        Shape of one measurement.

    Notes
    -----
    Tensors held by an operator (matrices, kernels, masks) are listed in ``_tensors`` so
    that :meth:`to` moves them. The Gaussian model is :math:`y = A x + \sigma \epsilon`,
    :math:`\epsilon \sim \mathcal N(0, I)`, whose log-likelihood score is
    :math:`\nabla_x \log p(y \mid x) = A^H (y - A x) / \sigma^2`.
    """

    _tensors = ()

    def __init__(self, input_shape, output_shape):
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        for name, shape in (("input_shape", self.input_shape),
                            ("output_shape", self.output_shape)):
            if any(s < 1 for s in shape):
                raise ValueError(f"{name} must hold positive sizes, got {shape}.")

    # -------------------------------------------------------------- to implement
    def forward(self, x):
        """:math:`A x` for a batch ``x`` of shape ``(batch, *input_shape)``."""
        raise NotImplementedError

    def adjoint(self, y):
        """:math:`A^H y` for a batch ``y`` of shape ``(batch, *output_shape)``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no adjoint; the likelihood score needs one."
        )

    # -------------------------------------------------------------- derived
    def __call__(self, x):
        """:meth:`forward`, after checking that ``x`` is a batch of ``input_shape``."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} takes a batch of shape (batch, "
                             f"*{self.input_shape}), got {tuple(x.shape)}.")
        return self.forward(x)

    def normal(self, x, **params):
        """:math:`A^H A x` (``params``: per-sample arguments such as MRI maps and masks)."""
        return self.adjoint(self.forward(x, **params), **params)

    def __matmul__(self, other):
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Composition(self, other)

    def to(self, device=None, dtype=None):
        """Move the operator's tensors (in place) and return it."""
        for name in self._tensors:
            value = getattr(self, name)
            if value is None:
                continue
            target = dtype
            if dtype is not None and value.is_complex():
                target = torch.complex128 if dtype == torch.float64 else torch.complex64
            setattr(self, name, value.to(device=device, dtype=target))
        return self

    def log_likelihood(self, x, y, noise_std):
        r"""Gaussian log-likelihood per sample, up to the constant:
        :math:`-\|y - A x\|^2 / (2 \sigma^2)`."""
        residual = y - self.forward(x)
        return -_inner(residual, residual) / (2 * noise_std**2)

    def score(self, x, y, noise_std):
        r"""Likelihood score :math:`A^H (y - A x) / \sigma^2`."""
        return self.adjoint(y - self.forward(x)) / noise_std**2

    def norm(self, n_iter=100, generator=None, device=None, dtype=torch.float32):
        r"""Operator 2-norm :math:`\|A\|_2` by power iteration on :math:`A^H A`.

        Without a ``generator`` the start vector comes from a fixed seed (the global RNG
        is never touched) and the value is computed once and cached on the operator.
        """
        key = (int(n_iter), str(dtype))
        cache = self.__dict__.setdefault("_cached_norms", {})
        if generator is None and key in cache:
            return cache[key]
        draw = generator if generator is not None else torch.Generator().manual_seed(0)
        x = torch.randn((1, *self.input_shape), generator=draw, dtype=dtype)
        if getattr(self, "complex_input", False):
            imag = torch.randn((1, *self.input_shape), generator=draw, dtype=dtype)
            x = torch.complex(x, imag)
        if device is None:  # where the operator's tensors live
            held = [getattr(self, name) for name in self._tensors]
            device = next((t.device for t in held if isinstance(t, torch.Tensor)), None)
        x = x.to(device)
        value = 0.0
        with torch.no_grad():
            for _ in range(n_iter):
                x = x / x.norm()
                x = self.normal(x)
                value = float(x.norm())
        if generator is None:
            cache[key] = math.sqrt(value)
        return math.sqrt(value)

    def solve_normal(self, b, lam=0.0, x0=None, max_iter=50, tol=1e-6, *,
                     differentiate="unrolled", backward_tol=None, **params):
        r"""Conjugate gradients for :math:`(A^H A + \lambda I) x = b`, batched.

        ``lam`` may be a tensor (learnable, broadcast per sample). Returns
        ``(x, n_iter)``; each sample stops moving once its relative residual is below
        ``tol``.

        ``differentiate`` chooses the gradient: 'unrolled' lets autograd differentiate
        through the iterations (memory grows with ``max_iter``); 'implicit' differentiates
        the solution :math:`x = M^{-1} b`, :math:`M = A^H A + \lambda I`, with a second CG
        solve of the same system in the backward pass (memory flat in ``max_iter``, see
        :func:`conjugate_gradient_implicit`), which stops at ``backward_tol`` (``None``:
        ``tol``).
        """
        if differentiate == "implicit":
            return conjugate_gradient_implicit(lambda v: self.normal(v, **params), b, lam, x0,
                                               max_iter, tol, backward_tol)
        if differentiate != "unrolled":
            raise ValueError(
                f"differentiate must be 'unrolled' or 'implicit', got {differentiate!r}.")
        return conjugate_gradient(lambda v: self.normal(v, **params) + lam * v, b, x0,
                                  max_iter, tol)


def conjugate_gradient(apply, b, x0=None, max_iter=50, tol=1e-6):
    r"""Batched conjugate gradients for a Hermitian positive-definite ``apply``.

    Parameters
    ----------
    apply : callable
        The linear map, on tensors shaped like ``b``.
    b : Tensor of shape (batch, ...)
        Right-hand sides.
    x0 : Tensor or None
        Starting point (zeros when ``None``).
    max_iter : int
        Maximum iterations.
    tol : float
        Stop when every sample's residual norm is below ``tol * ||b||``.

    Returns
    -------
    x : Tensor
        The solution.
    n_iter : int
        Iterations run.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = _inner(r, r)
    target = (tol**2) * _inner(b, b).clamp_min(torch.finfo(rs.dtype).tiny)
    shape = (-1,) + (1,) * (b.dim() - 1)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if bool((rs <= target).all()):
            n_iter -= 1
            break
        Ap = apply(p)
        denom = _inner(p, Ap)
        active = rs > target
        alpha = torch.where(active, rs / denom.clamp_min(torch.finfo(rs.dtype).tiny),
                            torch.zeros_like(rs))
        x = x + alpha.reshape(shape) * p
        r = r - alpha.reshape(shape) * Ap
        rs_new = _inner(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(torch.finfo(rs.dtype).tiny),
                           torch.zeros_like(rs))
        p = r + beta.reshape(shape) * p
        rs = rs_new
    return x, n_iter


class _ImplicitNormalSolve(torch.autograd.Function):
    """:math:`x = (N + \\lambda I)^{-1} b` by CG, differentiated by a second CG solve."""

    @staticmethod
    def forward(ctx, b, lam, x0, normal, max_iter, tol, backward_tol, counts):
        def apply(v):
            return normal(v) + lam * v

        x, n_iter = conjugate_gradient(apply, b, x0, max_iter, tol)
        ctx.save_for_backward(x, lam)
        ctx.normal, ctx.max_iter = normal, max_iter
        ctx.tol = tol if backward_tol is None else backward_tol
        counts.append(n_iter)
        return x

    @staticmethod
    def backward(ctx, grad):
        x, lam = ctx.saved_tensors
        # M is Hermitian, so the adjoint solve is a solve with M itself.
        w, _ = conjugate_gradient(lambda v: ctx.normal(v) + lam * v, grad, None,
                                  ctx.max_iter, ctx.tol)
        grad_lam = None
        if ctx.needs_input_grad[1]:  # dx/dlam = -M^{-1} x
            per_sample = -_inner(w, x)
            grad_lam = (per_sample.sum().reshape(lam.shape) if lam.numel() == 1
                        else per_sample.reshape(lam.shape))
        return (w if ctx.needs_input_grad[0] else None, grad_lam, None, None, None, None,
                None, None)


def conjugate_gradient_implicit(normal, b, lam=0.0, x0=None, max_iter=50, tol=1e-6,
                                backward_tol=None):
    r"""Conjugate gradients for :math:`M x = b`, :math:`M = N + \lambda I`, with an
    implicit (memory-flat) gradient.

    The forward solve runs without autograd. With :math:`M` Hermitian positive definite,
    the solution :math:`x = M^{-1} b` has the vector-Jacobian products

    .. math::

        \bar b = M^{-1} \bar x, \qquad
        \bar\lambda = -\operatorname{Re} \langle \bar b, x \rangle,

    so the backward pass is one more CG solve of the same system, and nothing of the
    iterations is kept: the memory is that of :math:`x`, whatever ``max_iter``. Both are
    exact for the exact solution; with a truncated solve they differ from the gradient of
    the truncated iterations (what autograd through :func:`conjugate_gradient` gives) by
    about the solves' residual. ``x0`` only warm-starts the solve and receives no
    gradient; tensors that ``normal`` closes over (coil maps, masks) receive none either.

    Parameters
    ----------
    normal : callable
        :math:`v \mapsto N v`, Hermitian positive semi-definite, on tensors shaped like
        ``b``.
    b : Tensor of shape (batch, ...)
        Right-hand sides.
    lam : float or Tensor, default=0.0
        :math:`\lambda`: a scalar or a per-sample tensor broadcasting against ``b``;
        differentiable.
    x0 : Tensor or None, default=None
        Starting point of the forward solve.
    max_iter, tol : int, float
        As for :func:`conjugate_gradient`, for both solves.
    backward_tol : float or None, default=None
        The backward solve's ``tol`` instead (``None``: ``tol``). A gradient for
        stochastic optimisation needs less accuracy than the solution: its error is about
        the residual times the condition number of :math:`M`.

    Returns
    -------
    x : Tensor
        The solution.
    n_iter : int
        Iterations of the forward solve.
    """
    if not torch.is_tensor(lam):
        lam = torch.tensor(float(lam), dtype=b.real.dtype, device=b.device)
    counts = []
    x0 = None if x0 is None else x0.detach()
    x = _ImplicitNormalSolve.apply(b, lam, x0, normal, max_iter, tol, backward_tol, counts)
    return x, counts[0]


def adjoint_test(operator, batch=2, generator=None, dtype=torch.float64, device=None):
    r"""Relative error of :math:`\langle A x, y\rangle = \langle x, A^H y\rangle` on random
    ``x, y`` (close to machine precision for a correct adjoint)."""
    complex_in = getattr(operator, "complex_input", False)
    complex_out = getattr(operator, "complex_output", False)

    def draw(shape, is_complex):
        real = torch.randn((batch, *shape), generator=generator, dtype=dtype)
        if is_complex:
            imag = torch.randn((batch, *shape), generator=generator, dtype=dtype)
            return torch.complex(real, imag).to(device)
        return real.to(device)

    x = draw(operator.input_shape, complex_in)
    y = draw(operator.output_shape, complex_out)
    lhs = _inner(operator.forward(x), y)
    rhs = _inner(x, operator.adjoint(y))
    return float(((lhs - rhs).abs() / lhs.abs().clamp_min(1e-30)).max())


class Composition(LinearOperator):
    """The product :math:`A B` of two operators (``A @ B``)."""

    def __init__(self, outer, inner):
        if tuple(inner.output_shape) != tuple(outer.input_shape):
            raise ValueError(
                f"cannot compose: the inner operator outputs {inner.output_shape} but the "
                f"outer one takes {outer.input_shape}."
            )
        super().__init__(inner.input_shape, outer.output_shape)
        self.outer, self.inner = outer, inner
        self.complex_input = getattr(inner, "complex_input", False)
        self.complex_output = getattr(outer, "complex_output", False)

    def forward(self, x):
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y):
        return self.inner.adjoint(self.outer.adjoint(y))

    def to(self, device=None, dtype=None):
        self.outer.to(device, dtype)
        self.inner.to(device, dtype)
        return self

    def __repr__(self):
        return f"({self.outer!r} @ {self.inner!r})"
