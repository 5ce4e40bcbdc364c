"""MRI data in the shapes users have (MultiCoilData) through the model-selection tools,
and UnrolledRegressor.score against hand computations."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skinverse.datasets import MultiCoilData, make_mri_data, make_phantoms
from skinverse.unrolled import UnrolledRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def acquisitions():
    return make_mri_data(make_phantoms(12, 12, random_state=0), n_coils=2, acceleration=2,
                         noise_std=0.01, random_state=0, as_container=True, dtype="float64")


def _sense(**params):
    return UnrolledRegressor(method="cg-sense", cg_max_iter=20, max_epochs=2, random_state=0,
                             **params)


def test_container_round_trips_the_flat_layout(acquisitions):
    data, images = acquisitions
    flat = make_mri_data(make_phantoms(12, 12, random_state=0), n_coils=2, acceleration=2,
                         noise_std=0.01, random_state=0, dtype="float64")
    X, maps, masks = data.flat()
    np.testing.assert_allclose(X, flat[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(maps, flat[2], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(masks, flat[3])
    back = MultiCoilData.from_flat(X, maps, masks)
    np.testing.assert_array_equal(back.kspace, data.kspace)
    assert data[[1, 3]].shape == (2, 2, 12, 12) and len(data[2:5]) == 3
    np.testing.assert_array_equal(data[np.array([4, 0]), ...].masks, data.masks[[4, 0]])


def test_single_precision_is_the_double_precision_data_rounded(monkeypatch):
    """The float32 default holds the float64 simulation rounded (the same random stream,
    chunk by chunk: a chunk size of 3 gives the same values as one chunk of all)."""
    from skinverse.datasets import _mri

    images = make_phantoms(7, 12, random_state=1)
    double = make_mri_data(images, n_coils=3, random_state=0, dtype="float64")
    monkeypatch.setattr(_mri, "CHUNK", 3)
    single = make_mri_data(images, n_coils=3, random_state=0)
    for a, b in zip(single, double):
        assert a.dtype == np.float32 and b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * np.abs(b).max())
    with pytest.raises(ValueError, match="dtype must be"):
        make_mri_data(images, dtype="int8")


def test_predictions_keep_the_precision_of_the_kspace(acquisitions):
    """complex64 in, complex64 out (was complex128); complex128 stays complex128."""
    data, images = acquisitions
    single = MultiCoilData(data.kspace.astype(np.complex64), data.maps.astype(np.complex64),
                           data.masks)
    est = _sense().fit(data, images)
    pred64, pred32 = est.predict(data), est.predict(single)
    assert pred64.dtype == np.complex128 and pred32.dtype == np.complex64
    np.testing.assert_allclose(pred32, pred64, rtol=0, atol=1e-4 * np.abs(pred64).max())


def test_container_fits_like_the_flat_layout(acquisitions):
    data, images = acquisitions
    X, maps, masks = data.flat()
    from skinverse.datasets._container import images_to_flat

    flat = _sense().fit(X, images_to_flat(images), maps=maps, masks=masks)
    boxed = _sense().fit(data, images)
    pred = boxed.predict(data)
    assert pred.shape == images.shape and np.iscomplexobj(pred)
    np.testing.assert_allclose(pred.real, flat.predict(X, maps=maps, masks=masks)[:, :144]
                               .reshape(12, 12, 12), rtol=1e-6, atol=1e-7)


def test_cross_val_score_with_a_container_equals_a_manual_loop(acquisitions):
    data, images = acquisitions
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(_sense(), data, images, cv=cv)
    manual = [_sense().fit(data[train], images[train]).score(data[test], images[test])
              for train, test in cv.split(images)]
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, manual, rtol=1e-12)


def test_grid_search_and_pipeline_take_a_container(acquisitions):
    data, images = acquisitions
    search = GridSearchCV(_sense(learn_lam=False), {"lam": [1e-3, 10.0]}, cv=3)
    search.fit(data, images)
    assert search.best_params_ == {"lam": 1e-3}  # less regularisation: noise-light data
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    pipe = make_pipeline(_sense()).fit(data, images)
    np.testing.assert_array_equal(pipe.predict(data), _sense().fit(data, images).predict(data))


def test_maps_twice_and_no_forward_model_are_clear_errors(acquisitions):
    data, images = acquisitions
    X, maps, masks = data.flat()
    with pytest.raises(ValueError, match="carries its own maps"):
        _sense().fit(data, images, maps=maps)
    with pytest.raises(ValueError, match="needs a forward model"):
        _sense().fit(X, images.reshape(12, -1).real)
    with pytest.raises(ValueError, match="NaN"):
        MultiCoilData(data.kspace, np.where(data.maps == data.maps[0, 0, 0, 0], np.nan,
                                            data.maps), data.masks)


def test_score_is_the_documented_psnr(acquisitions):
    data, images = acquisitions
    est = _sense().fit(data, images)
    pred = est.predict(data)
    truth, guess = np.abs(images).reshape(12, -1), np.abs(pred).reshape(12, -1)
    per_image = 10 * np.log10(truth.max(axis=1) ** 2 / ((guess - truth) ** 2).mean(axis=1))
    assert est.score(data, images) == pytest.approx(per_image.mean(), rel=1e-9)
    weights = np.r_[3.0, 1.0, np.zeros(10)]
    assert est.score(data, images, sample_weight=weights) == pytest.approx(
        (3 * per_image[0] + per_image[1]) / 4, rel=1e-9)
    assert 15 < per_image.mean() < 60  # a decent reconstruction scores like one


def test_real_data_score_uses_the_range_of_y():
    rng = np.random.RandomState(0)
    y = rng.normal(size=(80, 3))
    A = rng.normal(size=(5, 3))
    X = y @ A.T + 0.01 * rng.normal(size=(80, 5))
    est = UnrolledRegressor(operator="lstsq", method="cg-sense", max_epochs=1,
                            random_state=0).fit(X, y)
    mse = ((est.predict(X) - y) ** 2).mean(axis=1)  # per sample, one range for all
    expected = np.mean(10 * np.log10((y.max() - y.min()) ** 2 / mse))
    assert est.score(X, y) == pytest.approx(expected, rel=1e-9)


def _median_local_std(images):
    """Median over pixels of the 3x3 standard deviation: 0 for piecewise-constant images
    (whose variation is only at edges), positive where there is texture or shading."""
    from scipy.ndimage import uniform_filter

    mean = uniform_filter(images, size=(1, 3, 3))
    var = uniform_filter(images**2, size=(1, 3, 3)) - mean**2
    return float(np.median(np.sqrt(np.clip(var, 0, None))))


def test_textured_images_carry_texture_and_shading_that_phantoms_lack():
    from skinverse.datasets import make_textured_images

    textured = make_textured_images(40, 32, contrast=1.0, random_state=0)
    phantoms = make_phantoms(40, 32, random_state=0)
    assert textured.min() == 0.0 and textured.max() == 1.0
    np.testing.assert_array_equal(
        textured, make_textured_images(40, 32, contrast=1.0, random_state=0))
    # texture: local variation inside regions, where phantoms are flat
    assert _median_local_std(phantoms) < 1e-6 < 0.005 < _median_local_std(textured)
    # shading: far more distinct grey levels than a handful of constant regions
    levels = np.mean([len(np.unique(np.round(im, 3))) for im in textured])
    assert levels > 10 * np.mean([len(np.unique(np.round(im, 3))) for im in phantoms])


def test_textured_images_spread_their_contrast_log_uniformly():
    from skinverse.datasets import make_textured_images

    images = make_textured_images(400, 16, random_state=0).reshape(400, -1)
    lo, hi = images.min(axis=1), images.max(axis=1)
    span = hi - lo
    assert lo.min() >= 0 and hi.max() <= 1
    assert span.min() >= 1 / 32 - 1e-12 and span.max() <= 1 + 1e-12
    # log-uniform on [1/32, 1]: log2 of the span is uniform on [-5, 0]
    counts = np.histogram(np.log2(span), bins=5, range=(-5, 0))[0]
    assert counts.min() > 50 and counts.max() < 110  # 80 expected per bin
    # each image is the full-range one, scaled and shifted
    full = make_textured_images(1, 16, contrast=1.0, random_state=3).ravel()
    one = make_textured_images(1, 16, random_state=3).ravel()
    np.testing.assert_allclose((one - one.min()) / (one.max() - one.min()), full, atol=1e-12)
    with pytest.raises(ValueError, match="contrast"):
        make_textured_images(2, 8, contrast=(0.5, 2.0))


def _largest_step(images):
    """Largest difference of neighbouring pixels relative to the image's span."""
    span = images.max(axis=(1, 2)) - images.min(axis=(1, 2))
    steps = [np.abs(np.diff(images, axis=a)).max(axis=(1, 2)) for a in (1, 2)]
    return np.maximum(*steps) / span


def test_a_fraction_of_textured_images_is_smooth_shading():
    from skinverse.datasets import make_textured_images

    # shading only: no step above 0.34 of the span at 16 px, where every image with
    # regions has one above 0.52 (edges)
    smooth = _largest_step(make_textured_images(200, 16, smooth_fraction=1.0, random_state=1))
    busy = _largest_step(make_textured_images(200, 16, smooth_fraction=0.0, random_state=1))
    assert smooth.max() < 0.45 < busy.min()
    mixed = _largest_step(make_textured_images(400, 16, random_state=2))
    assert abs(np.mean(mixed < 0.45) - 0.5) < 0.075  # binomial: 3 standard deviations
    with pytest.raises(ValueError, match="smooth_fraction"):
        make_textured_images(2, 8, smooth_fraction=1.5)
