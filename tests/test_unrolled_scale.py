"""Operator-derived defaults of UnrolledRegressor (issue #13): lam='auto' is 0.05 ||A||^2
(the norm against a dense SVD), the conjugate gradients stop on a relative residual, and
scaling the operator and the measurements by c leaves the reconstruction unchanged."""

import numpy as np
import pytest
import torch

from skinverse.datasets import make_mri_data, make_phantoms, make_textured_images
from skinverse.operators import Blur, MultiCoilMRI, gaussian_kernel
from skinverse.operators._base import conjugate_gradient
from skinverse.unrolled import UnrolledRegressor
from skinverse.unrolled._scale import LAM_AUTO, cg_tolerance

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = {"width": 4, "depth": 1, "n_unrolls": 2, "max_epochs": 2, "batch_size": 4,
         "dtype": "float64", "random_state": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def blurred():
    images = make_textured_images(8, 8, random_state=0).reshape(8, -1)
    kernel = gaussian_kernel(5, 1.0, ndim=2)
    A = Blur(kernel, (8, 8)).to(dtype=torch.float64)
    clean = A.forward(torch.as_tensor(images).reshape(8, 8, 8)).reshape(8, -1).numpy()
    return kernel, images, clean + 0.01 * np.random.RandomState(0).normal(size=clean.shape)


@pytest.fixture(scope="module")
def mri():
    images = make_phantoms(8, 10, random_state=0)
    return make_mri_data(images, n_coils=3, acceleration=2, noise_std=0.01, random_state=0,
                         dtype="float64")


def _dense_norm_squared(op, **params):
    n = int(np.prod(op.input_shape))
    eye = torch.eye(n, dtype=torch.complex128).reshape(n, *op.input_shape)
    params = {k: v.expand(n, *v.shape[1:]) for k, v in params.items()}
    A = op.forward(eye, **params).reshape(n, -1).T.numpy()
    return np.linalg.norm(A, 2) ** 2


def test_auto_lambda_of_a_given_operator_is_its_norm_squared(blurred):
    kernel, images, X = blurred
    c = 7.0
    est = UnrolledRegressor(operator=Blur(c * kernel, (8, 8)), method="cg-sense",
                            learn_lam=False, max_epochs=1).fit(c * X, images)
    A = Blur(c * kernel, (8, 8)).to(dtype=torch.float64)
    n = 64
    dense = A.forward(torch.eye(n, dtype=torch.float64).reshape(n, 8, 8)).reshape(n, n).numpy()
    expected = np.linalg.norm(dense, 2) ** 2
    assert est.operator_norm_**2 == pytest.approx(expected, rel=1e-3)
    assert est.lam_ == pytest.approx(LAM_AUTO * expected, rel=1e-3)


def test_auto_lambda_of_mri_is_the_median_norm_over_samples(mri):
    X, y, maps, masks = mri
    est = UnrolledRegressor(method="cg-sense", learn_lam=False, max_epochs=1).fit(
        X, y, maps=2 * maps, masks=masks)  # maps twice as large: ||A||^2 four times
    op = MultiCoilMRI(image_shape=(10, 10), n_coils=3).to(dtype=torch.float64)
    norms = [_dense_norm_squared(op, maps=torch.as_tensor(2 * m[0] + 2j * m[1])[None],
                                 mask=torch.as_tensor(k)[None])
             for m, k in zip(maps, masks)]
    assert 3.5 < np.median(norms) <= 4.0 + 1e-9  # sum |S|^2 = 1: ||A|| about 1 unscaled
    # 50 power iterations on a spectrum clustered near its top: within 1 %, from below
    assert est.operator_norm_**2 == pytest.approx(np.median(norms), rel=1e-2)
    assert est.operator_norm_**2 <= np.median(norms) * (1 + 1e-9)
    assert est.lam_ == pytest.approx(LAM_AUTO * est.operator_norm_**2)


@pytest.mark.parametrize("method", ["modl", "pgd", "dbp"])
def test_scaling_a_given_operator_leaves_the_reconstruction_unchanged(blurred, method):
    kernel, images, X = blurred
    preds = {}
    for c in (1.0, 30.0):
        est = UnrolledRegressor(operator=Blur(c * kernel, (8, 8)), method=method, **SMALL)
        preds[c] = est.fit(c * X, images).predict(c * X)
    np.testing.assert_allclose(preds[30.0], preds[1.0], rtol=1e-6, atol=1e-7)
    if method == "modl":  # a fixed lambda is not scale-free: the test can tell
        fixed = UnrolledRegressor(operator=Blur(30 * kernel, (8, 8)), lam=0.05, **SMALL)
        gap = np.abs(fixed.fit(30 * X, images).predict(30 * X) - preds[1.0]).max()
        assert gap > 1e-3


def test_scaling_coil_maps_leaves_the_mri_reconstruction_unchanged(mri):
    X, y, maps, masks = mri
    preds = [UnrolledRegressor(**SMALL).fit(c * X, y, maps=c * maps, masks=masks).predict(
        c * X, maps=c * maps, masks=masks) for c in (1.0, 0.1)]
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["modl", "resnet", "pgd", "dbp"])
def test_images_in_other_units_give_the_same_reconstruction_in_those_units(blurred, method):
    # measurements and images times c (k-space of 1e-5 is common in MRI): the denoiser
    # sees x / signal_scale_, so the fit is the unit-scale one, scaled
    kernel, images, X = blurred
    preds = {}
    for c in (1.0, 1e-4, 1e3):
        est = UnrolledRegressor(operator=Blur(kernel, (8, 8)), method=method, **SMALL)
        preds[c] = est.fit(c * X, c * images).predict(c * X) / c
        assert est.signal_scale_ == pytest.approx(c * np.median(images.max(axis=1)))
    for c in (1e-4, 1e3):
        np.testing.assert_allclose(preds[c], preds[1.0], rtol=1e-6, atol=1e-8)
    assert np.abs(preds[1.0] - X).max() > 1e-3  # not the identity: the test can tell


def test_mri_in_other_units_gives_the_same_reconstruction_in_those_units(mri):
    X, y, maps, masks = mri
    preds = [UnrolledRegressor(**SMALL).fit(c * X, c * y, maps=maps, masks=masks).predict(
        c * X, maps=maps, masks=masks) / c for c in (1.0, 1e-5)]
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-8)


def test_conjugate_gradients_stop_on_a_relative_residual():
    generator = torch.Generator().manual_seed(0)
    B = torch.randn(20, 20, generator=generator, dtype=torch.float64)
    M = B @ B.T / 20 + torch.eye(20, dtype=torch.float64)
    b = torch.randn(1, 20, generator=generator, dtype=torch.float64)
    runs = [conjugate_gradient(lambda v, c=c: c * v @ M, c * b, max_iter=100, tol=1e-5)
            for c in (1.0, 1e4)]
    assert runs[0][1] == runs[1][1] < 20  # the same number of iterations at any scale
    torch.testing.assert_close(runs[1][0], runs[0][0])
    residual = (b - runs[0][0] @ M).norm() / b.norm()
    assert residual <= 1e-5


def test_auto_cg_tolerance_is_the_square_root_of_the_dtype_epsilon():
    assert cg_tolerance("auto", torch.float32) == pytest.approx(np.sqrt(np.finfo("f4").eps))
    assert cg_tolerance("auto", torch.float64) == pytest.approx(np.sqrt(np.finfo("f8").eps))
    assert cg_tolerance(1e-3, torch.float32) == 1e-3


def test_auto_early_stopping_validates_on_at_least_ten_samples():
    images = make_textured_images(100, 6, random_state=0).reshape(100, -1)
    blur = Blur(gaussian_kernel(3, 1.0, ndim=2), (6, 6))
    X = blur.forward(torch.as_tensor(images, dtype=torch.float32).reshape(-1, 6, 6))
    X = X.reshape(100, -1).numpy()
    params = {"operator": blur, "width": 2, "depth": 1, "n_unrolls": 1, "max_epochs": 1,
              "random_state": 0, "device": "cpu"}
    big = UnrolledRegressor(**params).fit(X, images)  # 10 % of 100: validates
    small = UnrolledRegressor(**params).fit(X[:99], images[:99])  # 10 % of 99 rounds to 10
    smaller = UnrolledRegressor(**params).fit(X[:94], images[:94])  # 9: does not
    assert len(big.validation_scores_) == 1 and len(small.validation_scores_) == 1
    assert smaller.validation_scores_ is None
    forced = UnrolledRegressor(early_stopping=False, **params).fit(X, images)
    assert forced.validation_scores_ is None

