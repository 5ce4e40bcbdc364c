"""Every registered operator against the same references: the adjoint identity, shapes,
dtypes, devices, composition, the score against autograd, CG against a dense solve."""

import copy

import numpy as np
import pytest
import torch

from skinverse.operators import (
    Blur,
    Identity,
    Inpainting,
    LinearOperator,
    MatrixOperator,
    adjoint_test,
    gaussian_kernel,
)
from skinverse.operators._registry import registered_operators

OPERATORS = registered_operators()


def _operator(name):
    """A fresh copy: ``Module.to`` works in place, so tests must not share instances."""
    return copy.deepcopy(OPERATORS[name])

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _signal(op, dtype=torch.float64, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *op.input_shape), generator=g, dtype=dtype)
    if getattr(op, "complex_input", False):
        x = torch.complex(x, torch.randn(x.shape, generator=g, dtype=dtype))
    return x


def _dense(op):
    """The operator as a dense matrix, column by column (float64)."""
    n = int(np.prod(op.input_shape))
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *op.input_shape)
    if getattr(op, "complex_input", False):
        eye = eye.to(torch.complex128)
    return op.forward(eye).reshape(n, -1).T


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("device", DEVICES)
def test_adjointness(name, device):
    op = _operator(name).to(device=device, dtype=torch.float64)
    assert adjoint_test(op, generator=torch.Generator().manual_seed(1), device=device) < 1e-12


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(name, dtype):
    op = _operator(name).to(dtype=dtype)
    x = _signal(op, dtype)
    y = op.forward(x)
    assert tuple(y.shape) == (3, *op.output_shape)
    assert tuple(op.adjoint(y).shape) == (3, *op.input_shape)
    assert y.real.dtype == dtype
    assert tuple(op.normal(x).shape) == tuple(x.shape)


@pytest.mark.parametrize("name", OPERATORS)
def test_score_is_the_gradient_of_the_log_likelihood(name):
    # For complex x, torch's gradient of a real loss is the steepest-ascent direction
    # (twice the conjugate Wirtinger derivative), which is the score here too.
    op = _operator(name).to(dtype=torch.float64)
    x = _signal(op).requires_grad_(True)
    y = op.forward(_signal(op, seed=5)).detach()
    op.log_likelihood(x, y, 0.3).sum().backward()
    torch.testing.assert_close(op.score(x.detach(), y, 0.3), x.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", OPERATORS)
def test_conjugate_gradient_matches_a_dense_solve(name):
    op = _operator(name).to(dtype=torch.float64)
    A = _dense(op)
    b = _signal(op)
    lam = 0.1
    x, n_iter = op.solve_normal(b, lam=lam, max_iter=500, tol=1e-12)
    system = A.conj().T @ A + lam * torch.eye(A.shape[1], dtype=A.dtype)
    expected = torch.linalg.solve(system, b.reshape(3, -1).T.to(A.dtype)).T
    torch.testing.assert_close(x.reshape(3, -1).to(expected.dtype), expected, rtol=1e-8, atol=1e-9)
    assert n_iter <= A.shape[1] + 5


@pytest.mark.parametrize("name", OPERATORS)
def test_operator_norm_matches_the_largest_singular_value(name):
    op = _operator(name)
    expected = float(torch.linalg.matrix_norm(_dense(op.to(dtype=torch.float64)), ord=2))
    got = op.norm(n_iter=500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert got == pytest.approx(expected, rel=1e-4)


def test_composition_is_the_matrix_product():
    blur = Blur(gaussian_kernel(5, 1.0), input_shape=(11,)).to(dtype=torch.float64)
    mask = Inpainting((np.arange(11) % 3 > 0).astype(float)).to(dtype=torch.float64)
    torch.testing.assert_close(_dense(mask @ blur), _dense(mask) @ _dense(blur))
    with pytest.raises(ValueError, match="cannot compose"):
        Blur(gaussian_kernel(3, 1.0), input_shape=(4,)) @ blur


def test_blur_is_a_convolution():
    kernel = np.array([1.0, 2.0, 4.0])
    x = np.array([0.0, 1.0, 0.0, 0.0, 3.0])
    got = Blur(kernel, input_shape=(5,)).to(dtype=torch.float64).forward(torch.from_numpy(x[None]))
    np.testing.assert_allclose(got[0].numpy(), np.convolve(x, kernel, mode="same"))


def test_bad_operator_arguments():
    with pytest.raises(ValueError, match="odd sizes"):
        Blur(np.ones(4), input_shape=(8,))
    with pytest.raises(ValueError, match="observes nothing"):
        Inpainting(np.zeros(5))
    with pytest.raises(ValueError, match="only 0 and 1"):
        Inpainting([0.5, 1.0])
    with pytest.raises(ValueError, match="2-D"):
        MatrixOperator(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        MatrixOperator([[np.nan, 1.0]])
    with pytest.raises(NotImplementedError, match="no adjoint"):
        LinearOperator((2,), (2,)).adjoint(torch.ones(1, 2))


def test_bad_shapes_and_kernels_are_input_errors():
    blur = Blur(gaussian_kernel(5, 1.5), input_shape=(16,))
    with pytest.raises(ValueError, match=r"batch of shape \(batch, \*\(16,\)\), got \(2, 15\)"):
        blur(torch.ones(2, 15))
    assert blur(torch.ones(2, 16)).shape == (2, 16)
    for size, sigma in [(5, 0), (5, -1.0), (5, float("nan")), (-3, 1.0), (0, 1.0), (4, 1.0)]:
        with pytest.raises(ValueError, match="size must be|sigma must be"):
            gaussian_kernel(size, sigma)
    with pytest.raises(ValueError, match="positive sizes"):
        Identity((-2,))
