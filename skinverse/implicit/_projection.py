r"""Well-posedness of :math:`z = \phi(A z + B u + b)`: projections and parametrisations."""

import numpy as np
import torch


def _project_rows_cpu(A, radius, out):
    """:func:`project_rows_l1` of a CPU tensor, written to ``out`` (may be ``A``).

    Returns False, writing nothing, when every row is inside the ball. This runs after
    every optimiser step. For a 100 x 100 matrix ``torch.sort`` costs ~350 us on one
    core where ``np.sort`` costs ~13 us, so the test and the sort use numpy (on the
    shared memory) and the rest stays in torch. No row is selected by a mask: a row
    inside the ball gets the threshold 0, which leaves it unchanged, and the condition
    of Duchi et al. holds on a prefix of each sorted row, so its last index is a count.
    ~65 us in all against ~95 us with masks and numpy throughout.
    """
    absolute = np.abs(A.numpy())
    if not absolute.sum(axis=1).max(initial=0.0) > radius:  # (NaN: left to the guard)
        return False
    absolute.sort(axis=1)
    decreasing = torch.from_numpy(absolute).flip(1)
    cumulative = decreasing.cumsum(1).sub_(radius)
    ks = torch.arange(1, A.shape[1] + 1, dtype=A.dtype)
    # >= 1 when radius > 0 and the row is finite (a diverged row stays non-finite)
    count = (decreasing * ks > cumulative).sum(1, keepdim=True).clamp_min_(1)
    theta = cumulative.gather(1, count - 1).div_(count).clamp_min_(0)
    # soft thresholding by theta: a - clip(a, -theta, theta)
    torch.sub(A, torch.minimum(torch.maximum(A, -theta), theta), out=out)
    return True


def project_rows_l1(A, radius):
    r"""Euclidean projection of every row of ``A`` onto the l1 ball of ``radius``.

    Rows already inside are unchanged; the others get
    :math:`a_j \leftarrow \operatorname{sign}(a_j)\max(|a_j| - \theta, 0)` with the threshold
    :math:`\theta` of Duchi et al. (2008, Fig. 1), so that
    :math:`\|A\|_\infty = \max_i \|a_i\|_1 \le` ``radius`` exactly.

    Parameters
    ----------
    A : Tensor of shape (n, m)
    radius : float

    Returns
    -------
    Tensor of shape (n, m)
        The projection (a new tensor).

    References
    ----------
    J. Duchi, S. Shalev-Shwartz, Y. Singer, T. Chandra, "Efficient projections onto the
    l1-ball for learning in high dimensions", ICML 2008.
    """
    A = A.detach()
    if A.device.type == "cpu":
        out = torch.empty_like(A)
        return out if _project_rows_cpu(A, radius, out) else A.clone()
    return _project_rows_torch(A, radius)


@torch.no_grad()
def project_rows_l1_(A, radius):
    """:func:`project_rows_l1` in place, only when a row is outside the ball.

    Parameters
    ----------
    A : Tensor of shape (n, m)
        Projected in place (a parameter may be given: no autograd records it).
    radius : float

    Returns
    -------
    projected : bool
        Whether some row was outside (and ``A`` changed).
    """
    A = A.detach()
    if A.device.type == "cpu" and A.is_contiguous():
        return _project_rows_cpu(A, radius, A)
    if inf_norm(A) <= radius:
        return False
    A.copy_(_project_rows_torch(A, radius))
    return True


def _project_rows_torch(A, radius):
    """:func:`project_rows_l1` in torch (any device)."""
    absolute = A.abs()
    outside = absolute.sum(dim=1) > radius
    if not bool(outside.any()):
        return A.clone()
    rows = absolute[outside]
    sorted_rows = torch.sort(rows, dim=1, descending=True).values
    cumulative = sorted_rows.cumsum(dim=1) - radius
    ks = torch.arange(1, A.shape[1] + 1, device=A.device, dtype=A.dtype)
    positive = sorted_rows - cumulative / ks > 0
    rho = positive.to(A.dtype).mul(ks).argmax(dim=1)  # last index where positive holds
    theta = cumulative.gather(1, rho[:, None]) / (rho[:, None] + 1).to(A.dtype)
    out = A.clone()
    out[outside] = torch.sign(A[outside]) * (rows - theta).clamp_min(0)
    return out


def inf_norm(A):
    r""":math:`\|A\|_\infty`, the largest row l1 norm."""
    return float(A.abs().sum(dim=1).max()) if A.numel() else 0.0


def monotone_matrix(W, S, margin):
    r"""The monotone parametrisation :math:`A = (1 - m) I - W^\top W + S - S^\top`.

    Then :math:`I - A \succeq m I` for every :math:`W, S`, so the equilibrium with ReLU is
    unique and forward-backward splitting converges (Winston & Kolter, 2020).
    """
    n = W.shape[1]
    eye = torch.eye(n, dtype=W.dtype, device=W.device)
    return (1 - margin) * eye - W.T @ W + S - S.T
