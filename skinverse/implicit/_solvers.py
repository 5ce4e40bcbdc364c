r"""Fixed-point solvers for the equilibrium :math:`z = f(z)`, as pure functions.

Each forward solver takes a batched map ``f`` (rows are samples), an initial point, and
returns ``(z, stats)``: the lowest-residual iterate of every sample and a
:class:`SolverStats`. The residual of a sample is the relative sup-norm
:math:`\|f(z) - z\|_\infty / \max(1, \|z\|_\infty)`.
"""

from dataclasses import dataclass

import torch


@dataclass
class SolverStats:
    """What a solve did: iterations, worst final residual, fraction of samples converged."""

    iterations: int
    max_residual: float
    fraction_converged: float


def _residual(fz, z):
    diff = (fz - z).abs().amax(dim=1)
    return diff / fz.abs().amax(dim=1).clamp_min(1.0)


def picard(f, z0, *, context=(), max_iter, tol, check_every=2):
    r"""Picard iteration :math:`z_{k+1} = f(z_k)` with per-sample convergence.

    Each sample stops at the first iterate whose residual is below ``tol`` (its result
    does not depend on the rest of the batch) and leaves the active set with its rows of
    ``context``, so later iterations evaluate ``f`` on the moving rows only. For a
    contraction the residual decreases, so the last iterate of each sample is also its
    best.

    Parameters
    ----------
    f : callable
        ``f(z, *context)`` returns the map applied to the rows ``z``.
    z0 : Tensor of shape (batch, n)
        Starting point.
    context : tuple of Tensor, default=()
        Per-sample tensors ``f`` needs (first dimension ``batch``), compacted with ``z``.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Tolerance on the relative sup-norm residual.
    check_every : int, default=2
        Test convergence every this many iterations (and at ``max_iter``): the test costs
        about as much as an iteration of a small model.

    Returns
    -------
    z : Tensor of shape (batch, n)
    stats : SolverStats
    """
    batch = z0.shape[0]
    out = z0.clone()
    residual = torch.full((batch,), float("inf"), device=z0.device, dtype=z0.dtype)
    rows = torch.arange(batch, device=z0.device)  # the samples still iterating
    z, iterations = z0, 0
    for iterations in range(1, max_iter + 1):
        fz = f(z, *context)
        if iterations % check_every and iterations < max_iter:
            z = fz
            continue
        # Relative sup-norm residual, as in _residual, with few small-tensor operations:
        # this test runs every check_every iterations of every solve.
        res = (fz - z).abs_().amax(dim=1).div_(fz.abs().amax(dim=1).clamp_min_(1.0))
        z = fz
        done = res <= tol
        n_done = int(done.sum()) if iterations < max_iter else len(rows)
        if n_done == 0:
            continue
        if n_done == len(rows):  # every remaining sample stops here
            out.index_copy_(0, rows, z)
            residual.index_copy_(0, rows, res)
            break
        # Record each sample at the iteration it converged, so that its result never
        # depends on which other samples share the batch; the others continue alone.
        # (Index tensors and index_copy_/index_select: boolean masks cost 2-4x more here.)
        stop, keep = done.nonzero().squeeze(1), (~done).nonzero().squeeze(1)
        out.index_copy_(0, rows.index_select(0, stop), z.index_select(0, stop))
        residual.index_copy_(0, rows.index_select(0, stop), res.index_select(0, stop))
        z, rows = z.index_select(0, keep), rows.index_select(0, keep)
        context = tuple(c.index_select(0, keep) for c in context)
    converged = residual <= tol
    return out, SolverStats(iterations, float(residual.max()), float(converged.float().mean()))


def anderson(f, z0, *, context=(), max_iter, tol, memory=5, regularization=1e-4,
             beta=1.0):
    r"""Anderson acceleration (type II) of :math:`z = f(z)`, batched over samples.

    The next iterate mixes the last ``memory`` evaluations with weights :math:`\alpha` that
    minimise :math:`\|\sum_i \alpha_i (f(z_i) - z_i)\|_2` subject to
    :math:`\sum_i \alpha_i = 1` (Walker & Ni, 2011). The residual is not monotone, so the
    lowest-residual iterate of each sample is kept. It stops when every sample converged.

    Parameters
    ----------
    f : callable
        ``f(z, *context)`` as for :func:`picard`.
    z0 : Tensor of shape (batch, n)
    context : tuple of Tensor, default=()
        Per-sample tensors ``f`` needs.
    max_iter, tol : int, float
        As for :func:`picard`.
    memory : int, default=5
        Number of past iterates mixed.
    regularization : float, default=1e-4
        Tikhonov term of the small least-squares problem.
    beta : float, default=1.0
        Mixing parameter (1 uses the images ``f(z_i)`` only).

    Returns
    -------
    z : Tensor of shape (batch, n)
    stats : SolverStats
    """
    batch, n = z0.shape
    X = z0.new_zeros(batch, memory, n)
    F = z0.new_zeros(batch, memory, n)
    X[:, 0], F[:, 0] = z0, f(z0, *context)
    best = F[:, 0].clone()
    best_res = _residual(F[:, 0], z0)
    if max_iter < 2 or bool((best_res <= tol).all()):
        return best, SolverStats(1, float(best_res.max()), float((best_res <= tol).float().mean()))
    X[:, 1], F[:, 1] = F[:, 0], f(F[:, 0], *context)
    H = z0.new_zeros(batch, memory + 1, memory + 1)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    rhs = z0.new_zeros(batch, memory + 1, 1)
    rhs[:, 0] = 1
    iterations = 2
    for k in range(2, max_iter + 1):
        m = min(k, memory)
        G = F[:, :m] - X[:, :m]
        eye = torch.eye(m, dtype=z0.dtype, device=z0.device)
        H[:, 1 : m + 1, 1 : m + 1] = G @ G.transpose(1, 2) + regularization * eye
        alpha = torch.linalg.solve(H[:, : m + 1, : m + 1], rhs[:, : m + 1])[:, 1 : m + 1, 0]
        mixed = (alpha[:, None] @ F[:, :m])[:, 0]
        if beta != 1.0:
            mixed = beta * mixed + (1 - beta) * (alpha[:, None] @ X[:, :m])[:, 0]
        slot = k % memory
        X[:, slot] = mixed
        F[:, slot] = f(mixed, *context)
        res = _residual(F[:, slot], X[:, slot])
        better = res < best_res
        best[better] = F[:, slot][better]
        best_res = torch.where(better, res, best_res)
        iterations = k
        if bool((best_res <= tol).all()):
            break
    converged = best_res <= tol
    return best, SolverStats(iterations, float(best_res.max()), float(converged.float().mean()))


SOLVERS = {"picard": picard, "anderson": anderson}
