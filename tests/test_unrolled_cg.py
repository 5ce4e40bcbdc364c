"""Implicit differentiation of the CG data-consistency solve against autograd through the
iterations, finite differences (gradcheck) and the memory autograd keeps."""

import numpy as np
import pytest
import torch
from torch import nn

from skinverse.datasets import make_cartesian_mask, make_coil_maps
from skinverse.operators import MultiCoilMRI
from skinverse.operators._base import conjugate_gradient, conjugate_gradient_implicit
from skinverse.unrolled._module import UnrolledModule


def _mri(size=8, coils=3):
    maps = make_coil_maps(coils, (size, size), random_state=0)
    mask = make_cartesian_mask((size, size), 2, random_state=0)
    return MultiCoilMRI(maps, mask).to(dtype=torch.float64)


def _complex(shape, seed):
    rng = np.random.RandomState(seed)
    return torch.as_tensor(rng.normal(size=shape) + 1j * rng.normal(size=shape))


def _loss(x, weights):
    return (weights.conj() * x).real.sum() + 0.5 * x.abs().pow(2).sum()


@pytest.mark.parametrize("lam_shape", [(), (2, 1, 1)])
def test_implicit_gradient_equals_autograd_through_converged_cg(lam_shape):
    op = _mri()
    b = _complex((2, 8, 8), 0).requires_grad_()
    lam = torch.full(lam_shape, 0.3, dtype=torch.float64, requires_grad=True)
    weights = _complex((2, 8, 8), 1)
    grads = {}
    for how in ("unrolled", "implicit"):
        x, _ = op.solve_normal(b, lam, max_iter=200, tol=1e-14, differentiate=how)
        grads[how] = torch.autograd.grad(_loss(x, weights), (b, lam))
    for got, expected in zip(grads["implicit"], grads["unrolled"]):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_implicit_cg_passes_gradcheck():
    op = _mri(size=4, coils=2)
    b = _complex((2, 4, 4), 2).requires_grad_()
    lam = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)

    def solve(b, lam):
        return conjugate_gradient_implicit(op.normal, b, lam, None, 200, 1e-14)[0]

    assert torch.autograd.gradcheck(solve, (b, lam), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_forward_solution_and_iterations_are_those_of_plain_cg():
    op = _mri()
    b, x0 = _complex((2, 8, 8), 3), _complex((2, 8, 8), 4)
    expected, n_expected = conjugate_gradient(lambda v: op.normal(v) + 0.1 * v, b, x0, 7, 1e-9)
    x, n_iter = conjugate_gradient_implicit(op.normal, b, 0.1, x0, 7, 1e-9)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert n_iter == n_expected == 7


def _saved_bytes(fn):
    """Bytes of the tensors autograd saves for backward while ``fn`` runs."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def test_implicit_cg_memory_does_not_grow_with_the_iterations():
    op = _mri()
    b = _complex((2, 8, 8), 5).requires_grad_()
    lam = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    saved = {(how, n): _saved_bytes(lambda: op.solve_normal(
        b, lam, max_iter=n, tol=0.0, differentiate=how)) for how in ("unrolled", "implicit")
        for n in (5, 20)}
    assert saved["implicit", 5] == saved["implicit", 20] <= 2 * b.numel() * 16
    assert saved["unrolled", 20] > 3 * saved["unrolled", 5] > 10 * saved["implicit", 5]


def test_solve_normal_rejects_an_unknown_gradient_rule():
    op = _mri()
    with pytest.raises(ValueError, match="differentiate"):
        op.solve_normal(_complex((1, 8, 8), 6), 0.1, differentiate="magic")


def test_modl_parameter_gradients_match_the_unrolled_reference():
    op = _mri()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 3, padding=1))
    module = UnrolledModule("modl", nn.ModuleList([net]), n_unrolls=3, lam=0.1,
                            learn_lam=True, cg_max_iter=300, cg_tol=1e-14).double()
    y = op.forward(_complex((2, 8, 8), 7))
    target = _complex((2, 8, 8), 8)
    assert module.cg_backward == "implicit"
    grads = {}
    for how in ("implicit", "unrolled"):
        module.cg_backward = how
        module.zero_grad()
        (module(y, op, {}) - target).abs().pow(2).sum().backward()
        grads[how] = [p.grad.clone() for p in module.parameters()]
    for got, expected in zip(grads["implicit"], grads["unrolled"]):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backward_tol", [None, 0.1])
def test_backward_solve_is_plain_cg_at_backward_tol(backward_tol):
    """The implicit backward pass is CG on the incoming gradient, stopped at
    ``backward_tol`` (``tol`` when None); with 0.1 it is within a few per cent of the
    exact vector-Jacobian product and needs fewer iterations."""
    op = _mri()
    b = _complex((2, 8, 8), 5).requires_grad_()
    weights = _complex((2, 8, 8), 6)
    x, _ = conjugate_gradient_implicit(op.normal, b, 0.1, None, 50, 1e-12, backward_tol)
    (grad,) = torch.autograd.grad(_loss(x, weights), b)
    incoming = weights + x.detach()  # d loss / d x, complex convention of autograd
    apply = lambda v: op.normal(v) + 0.1 * v  # noqa: E731
    expected, _ = conjugate_gradient(apply, incoming, None, 50, backward_tol or 1e-12)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    exact = torch.linalg.solve(_dense_normal(op, 0.1), incoming.reshape(2, -1).T).T
    error = float((grad.reshape(2, -1) - exact).norm() / exact.norm())
    assert error < (1e-10 if backward_tol is None else 0.1)
    if backward_tol is not None:
        assert error > 1e-6  # the looser solve is used, not the exact one
        _, n_loose = conjugate_gradient(apply, incoming, None, 50, backward_tol)
        _, n_tight = conjugate_gradient(apply, incoming, None, 50, 1e-12)
        assert n_loose < n_tight


def _dense_normal(op, lam):
    n = int(np.prod(op.input_shape))
    eye = torch.eye(n, dtype=torch.complex128).reshape(n, *op.input_shape)
    return op.normal(eye).reshape(n, n).T + lam * torch.eye(n, dtype=torch.complex128)


def test_estimator_cg_tolerances_follow_the_denoiser_precision():
    from skinverse.datasets import make_mri_data, make_phantoms
    from skinverse.unrolled import UnrolledRegressor
    from skinverse.unrolled._scale import cg_tolerance

    assert cg_tolerance("auto", torch.float32) == pytest.approx(2.0**-11.5)
    assert cg_tolerance("auto", torch.float32, torch.bfloat16) == 2.0**-7 / 8
    assert cg_tolerance("auto", torch.float32, torch.float16) == pytest.approx(2.0**-11.5)
    assert cg_tolerance(1e-5, torch.float32, torch.bfloat16) == 1e-5
    X, y, maps, masks = make_mri_data(make_phantoms(4, 8, random_state=0), 2, 2, 0.01,
                                      random_state=0)
    for precision, method, tol in [("bf16", "modl", 2.0**-10), (None, "modl", 2.0**-11.5),
                                   ("bf16", "cg-sense", 2.0**-11.5)]:
        est = UnrolledRegressor(method=method, mixed_precision=precision, n_unrolls=1,
                                width=4, depth=1, max_epochs=1, random_state=0)
        module = est.fit(X, y, maps=maps, masks=masks).module_
        assert module.cg_tol == pytest.approx(tol)
        assert module.cg_backward_tol == 0.1


@pytest.mark.parametrize("lines", ["rows", "columns", "scattered"])
@pytest.mark.parametrize("shape", [(8, 6), (7, 6)])
def test_normal_operator_is_the_dense_adjoint_times_forward(lines, shape):
    """``normal`` (1-D transforms for masks of whole k-space lines, 2-D otherwise, A^H A
    for odd sizes) against the dense matrix of ``forward``: A^H A = M^H M."""
    H, W = shape
    rng = np.random.RandomState(3)
    keep = {"rows": (rng.uniform(size=(2, H, 1)) < 0.5) * np.ones((1, 1, W)),
            "columns": (rng.uniform(size=(2, 1, W)) < 0.5) * np.ones((1, H, 1)),
            "scattered": rng.uniform(size=(2, H, W)) < 0.5}[lines]
    mask = torch.as_tensor(keep, dtype=torch.float64)
    maps = _complex((2, 3, H, W), 4)
    op = MultiCoilMRI(n_coils=3, image_shape=(H, W))
    eye = torch.eye(H * W, dtype=torch.complex128).reshape(-1, H, W)
    for b in range(2):
        dense = op.forward(eye, maps=maps[b:b + 1], mask=mask[b:b + 1])
        dense = dense.reshape(H * W, -1).T  # (coils * H * W, H * W)
        x = _complex((1, H, W), 5 + b)
        expected = (dense.conj().T @ (dense @ x.reshape(-1))).reshape(1, H, W)
        got = op.normal(x, maps=maps[b:b + 1], mask=mask[b:b + 1])
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-12)


def test_normal_operator_follows_a_mask_changed_in_place():
    """The line test is remembered per mask tensor: an in-place change (a new version)
    is tested again, so that a mask of lines made scattered is not treated as lines."""
    H, W = 6, 6
    mask = torch.zeros(1, H, W, dtype=torch.float64)
    mask[:, ::2] = 1  # whole rows
    maps, x = _complex((1, 2, H, W), 7), _complex((1, H, W), 8)
    op = MultiCoilMRI(n_coils=2, image_shape=(H, W))
    for _ in range(2):
        np.testing.assert_allclose(
            op.normal(x, maps=maps, mask=mask).numpy(),
            op.adjoint(op.forward(x, maps=maps, mask=mask), maps=maps, mask=mask).numpy(),
            atol=1e-12)
        mask[0, 1, 2] = 1  # no longer whole rows
