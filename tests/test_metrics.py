"""PSNR, SSIM and NMSE against their closed forms, and their scorers."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

from skinverse.metrics import make_ssim_scorer, nmse, nmse_scorer, psnr, psnr_scorer, ssim


def test_psnr_closed_form():
    x = np.array([[0.0, 1.0, 0.5, 0.25]])
    err = np.array([[0.1, -0.1, 0.0, 0.0]])
    expected = 10 * np.log10(1.0 / np.mean(err**2))
    assert psnr(x, x + err) == pytest.approx(expected)
    assert psnr(x, x + err, data_range=2.0) == pytest.approx(expected + 20 * np.log10(2))


def test_nmse_closed_form():
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    y = np.array([[3.0, 3.0], [0.0, 0.0]])
    assert nmse(x, y) == pytest.approx((1 / 25 + 1) / 2)


def test_ssim_identity_and_constant_images():
    rng = np.random.RandomState(0)
    x = rng.uniform(size=(3, 100))
    assert ssim(x, x, image_shape=(10, 10)) == pytest.approx(1.0)
    a, b, r = 0.3, 0.6, 1.0
    c1 = (0.01 * r) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # only the luminance term is left
    got = ssim(np.full((1, 64), a), np.full((1, 64), b), image_shape=(8, 8), data_range=r)
    assert got == pytest.approx(expected)
    assert ssim(x, x + 0.3 * rng.normal(size=x.shape), image_shape=(10, 10)) < 0.9


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="image_shape"):
        ssim(np.ones((2, 9)), np.ones((2, 9)), image_shape=(2, 2))
    with pytest.raises(ValueError, match="finite"):
        nmse(np.ones((1, 2)), np.array([[np.nan, 1.0]]))


def test_scorers_work_in_cross_validation():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 5))
    Y = X @ rng.normal(size=(5, 16)) + 0.01 * rng.normal(size=(60, 16))
    for scorer in (psnr_scorer, nmse_scorer, make_ssim_scorer(image_shape=(4, 4))):
        scores = cross_val_score(Ridge(alpha=1e-3), X, Y, cv=3, scoring=scorer)
        assert np.all(np.isfinite(scores))
    assert cross_val_score(Ridge(alpha=1e-3), X, Y, cv=3, scoring=psnr_scorer).mean() > 30
