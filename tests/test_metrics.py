"""PSNR, SSIM and NMSE against hand computations, and their scorers in model selection."""

import numpy as np
import pytest
import sklearn
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate

from skinverse.metrics import (
    make_psnr_scorer,
    make_ssim_scorer,
    nmse,
    nmse_scorer,
    psnr,
    psnr_scorer,
    ssim,
)


def test_psnr_closed_form():
    x = np.array([[0.0, 1.0, 0.5, 0.25]])
    err = np.array([[0.1, -0.1, 0.0, 0.0]])
    expected = 10 * np.log10(1.0 / np.mean(err**2))
    assert psnr(x, x + err) == pytest.approx(expected)
    assert psnr(x, x + err, data_range=2.0) == pytest.approx(expected + 20 * np.log10(2))


def test_psnr_default_range_is_each_samples_max_minus_min():
    rng = np.random.RandomState(0)
    x = rng.uniform(size=(3, 50))
    y = x + 0.05 * rng.normal(size=x.shape)
    per_sample = [10 * np.log10(np.ptp(a) ** 2 / np.mean((a - b) ** 2)) for a, b in zip(x, y)]
    assert psnr(x, y) == pytest.approx(np.mean(per_sample))
    # Invariant to units: shift and scale both arrays together.
    assert psnr(255 * x - 40, 255 * y - 40) == pytest.approx(psnr(x, y))
    # A dark patch is judged on its own range, not on a brighter neighbour's.
    dark = np.vstack([0.1 * x[:1], x[1:2]])
    noisy = dark + 0.01
    assert psnr(dark[:1], noisy[:1]) == pytest.approx(
        10 * np.log10(np.ptp(dark[0]) ** 2 / 1e-4))
    # Signed, zero-centred data: the peak-to-peak amplitude (twice the amplitude).
    sine = np.sin(np.linspace(0, 2 * np.pi, 101))[None]
    assert psnr(sine, sine + 0.1) == pytest.approx(10 * np.log10(2.0**2 / 0.01))


def test_psnr_range_fallbacks_and_explicit_values():
    const, zero = np.full((1, 4), -3.0), np.zeros((1, 4))
    assert psnr(const, const + 0.3) == pytest.approx(10 * np.log10(9 / 0.09))
    assert psnr(zero, zero + 0.1) == pytest.approx(10 * np.log10(1 / 0.01))
    x = np.array([[0.0, 1.0], [0.0, 1.0]])
    y = x + np.array([[0.1, 0.1], [0.2, 0.2]])
    expected = np.mean([10 * np.log10(4 / 0.01), 10 * np.log10(9 / 0.04)])
    assert psnr(x, y, data_range=[2.0, 3.0]) == pytest.approx(expected)
    assert psnr(x, x) == 1000.0  # exact reconstructions are capped, not infinite
    for bad in (0.0, -1.0, [1.0, 2.0, 3.0], np.nan, "auto"):
        with pytest.raises(ValueError, match="data_range"):
            psnr(x, y, data_range=bad)


def test_sample_weight_is_a_weighted_mean_over_samples():
    rng = np.random.RandomState(1)
    x = rng.uniform(size=(4, 36))
    y = x + rng.normal(scale=[[0.01], [0.05], [0.1], [0.2]], size=x.shape)
    w = np.array([1.0, 0.0, 2.0, 3.0])
    for metric, kwargs in ((psnr, {}), (nmse, {}), (ssim, {"image_shape": (6, 6)})):
        each = [metric(x[i : i + 1], y[i : i + 1], **kwargs) for i in range(4)]
        assert metric(x, y, sample_weight=w, **kwargs) == pytest.approx(
            np.average(each, weights=w))
        # Integer weights repeat samples.
        repeated = np.repeat(np.arange(4), [1, 0, 2, 3])
        assert metric(x, y, sample_weight=w, **kwargs) == pytest.approx(
            metric(x[repeated], y[repeated], **kwargs))
    for bad in ([1.0, 1.0], [-1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="sample_weight"):
            psnr(x, y, sample_weight=bad)


def test_nmse_closed_form():
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    y = np.array([[3.0, 3.0], [0.0, 0.0]])
    assert nmse(x, y) == pytest.approx((1 / 25 + 1) / 2)
    assert nmse(7 * x, 7 * y) == pytest.approx(nmse(x, y))


def _ssim_reference(x, y, shape, r, sigma=1.5):
    """One image, written out as in Wang et al. (2004) with scipy's Gaussian filter."""
    x, y = x.reshape(shape), y.reshape(shape)
    mu_x = gaussian_filter(x, sigma, truncate=3.5, mode="reflect")
    mu_y = gaussian_filter(y, sigma, truncate=3.5, mode="reflect")
    var_x = gaussian_filter(x * x, sigma, truncate=3.5, mode="reflect") - mu_x**2
    var_y = gaussian_filter(y * y, sigma, truncate=3.5, mode="reflect") - mu_y**2
    cov = gaussian_filter(x * y, sigma, truncate=3.5, mode="reflect") - mu_x * mu_y
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    return np.mean((2 * mu_x * mu_y + c1) * (2 * cov + c2)
                   / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)))


def test_ssim_identity_constant_images_and_reference():
    rng = np.random.RandomState(0)
    x = rng.uniform(size=(3, 100))
    assert ssim(x, x, image_shape=(10, 10)) == pytest.approx(1.0)
    a, b, r = 0.3, 0.6, 1.0
    c1 = (0.01 * r) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # only the luminance term is left
    got = ssim(np.full((1, 64), a), np.full((1, 64), b), image_shape=(8, 8), data_range=r)
    assert got == pytest.approx(expected)
    y = x + 0.3 * rng.normal(size=x.shape)
    assert ssim(x, y, image_shape=(10, 10)) < 0.9
    expected = np.mean([_ssim_reference(a, b, (10, 10), np.ptp(a)) for a, b in zip(x, y)])
    assert ssim(x, y, image_shape=(10, 10)) == pytest.approx(expected)
    assert ssim(x, y, image_shape=(4, 25), data_range=2.0) == pytest.approx(
        np.mean([_ssim_reference(a, b, (4, 25), 2.0) for a, b in zip(x, y)]))


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="image_shape"):
        ssim(np.ones((2, 9)), np.ones((2, 9)), image_shape=(2, 2))
    with pytest.raises(ValueError, match="finite"):
        nmse(np.ones((1, 2)), np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="sigma"):
        ssim(np.ones((1, 4)), np.ones((1, 4)), sigma=0)


def _regression_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 5))
    Y = X @ rng.normal(size=(5, 16)) + 0.3 * rng.normal(size=(60, 16))
    return X, Y


def test_scorers_in_grid_search_equal_the_metric_on_each_fold():
    X, Y = _regression_data()
    cv = KFold(3, shuffle=True, random_state=0)
    alphas = [1e-3, 10.0, 300.0]
    scorers = {"psnr": psnr_scorer, "psnr1": make_psnr_scorer(1.0), "nmse": nmse_scorer,
               "ssim": make_ssim_scorer(image_shape=(4, 4))}
    search = GridSearchCV(Ridge(), {"alpha": alphas}, cv=cv, scoring=scorers, refit="psnr")
    search.fit(X, Y)
    metrics = {"psnr": lambda a, b: psnr(a, b), "psnr1": lambda a, b: psnr(a, b, data_range=1),
               "nmse": lambda a, b: -nmse(a, b),  # negated: greater is better
               "ssim": lambda a, b: ssim(a, b, image_shape=(4, 4))}
    for k, alpha in enumerate(alphas):
        for fold, (train, test) in enumerate(cv.split(X)):
            pred = Ridge(alpha=alpha).fit(X[train], Y[train]).predict(X[test])
            for name, metric in metrics.items():
                got = search.cv_results_[f"split{fold}_test_{name}"][k]
                assert got == pytest.approx(metric(Y[test], pred))
    assert search.best_params_ == {"alpha": alphas[int(np.argmax(
        search.cv_results_["mean_test_psnr"]))]}
    assert cross_val_score(Ridge(alpha=1e-3), X, Y, cv=3, scoring=psnr_scorer).mean() > 10


def test_scorer_receives_sample_weight_through_metadata_routing():
    X, Y = _regression_data()
    w = np.random.RandomState(2).uniform(0.1, 3.0, size=len(X))
    cv = KFold(3)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_psnr_scorer().set_score_request(sample_weight=True)
        model = Ridge().set_fit_request(sample_weight=False)
        result = cross_validate(model, X, Y, cv=cv, scoring=scorer,
                                params={"sample_weight": w})
    for fold, (train, test) in enumerate(cv.split(X)):
        pred = Ridge().fit(X[train], Y[train]).predict(X[test])
        assert result["test_score"][fold] == pytest.approx(
            psnr(Y[test], pred, sample_weight=w[test]))
        assert result["test_score"][fold] != pytest.approx(psnr(Y[test], pred))
