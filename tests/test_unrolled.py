"""Unrolled reconstruction and MRI against references: the unitary centred FFT, least
squares, iterated Tikhonov, and the metadata-routing round trip through a search."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV

from skinverse.datasets import (
    make_cartesian_mask,
    make_coil_maps,
    make_mri_data,
    make_phantoms,
    make_poisson_disc_mask,
)
from skinverse.operators import MatrixOperator, MultiCoilMRI, fft2c, ifft2c
from skinverse.unrolled import UnrolledRegressor
from skinverse.unrolled._module import UnrolledModule

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def mri():
    images = make_phantoms(24, 12, random_state=0)
    return make_mri_data(images, n_coils=4, acceleration=2, noise_std=0.01, random_state=0)


def _dense(op, **params):
    n = int(np.prod(op.input_shape))
    eye = torch.eye(n, dtype=torch.complex128).reshape(n, *op.input_shape)
    if params:
        params = {k: v.expand(n, *v.shape[1:]) for k, v in params.items()}
    return op.forward(eye, **params).reshape(n, -1).T


@pytest.mark.parametrize("shape", [(8, 8), (7, 5)])
def test_centred_fft_is_unitary_and_centred(shape):
    x = torch.randn(3, *shape, dtype=torch.complex128)
    torch.testing.assert_close(ifft2c(fft2c(x)), x)
    torch.testing.assert_close(fft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum())
    spectrum = fft2c(torch.ones(1, *shape, dtype=torch.complex128))[0].abs()
    assert spectrum.argmax() == (shape[0] // 2) * shape[1] + shape[1] // 2


def test_cg_sense_equals_least_squares():
    rng = np.random.RandomState(0)
    maps = torch.as_tensor(make_coil_maps(4, (6, 6), random_state=0))
    mask = torch.as_tensor(make_cartesian_mask((6, 6), 2, random_state=0))
    op = MultiCoilMRI(maps, mask).to(dtype=torch.float64)
    x_true = torch.as_tensor(rng.normal(size=(1, 6, 6)) + 1j * rng.normal(size=(1, 6, 6)))
    y = op.forward(x_true) + 0.01 * torch.randn(1, 4, 6, 6, dtype=torch.complex128)
    x, _ = op.solve_normal(op.adjoint(y), lam=1e-12, max_iter=500, tol=1e-14)
    A = _dense(op).numpy()
    expected = np.linalg.lstsq(A, y.reshape(-1).numpy(), rcond=None)[0]
    nrmse = np.linalg.norm(x.reshape(-1).numpy() - expected) / np.linalg.norm(expected)
    assert nrmse < 1e-5


def test_modl_with_identity_denoiser_is_iterated_tikhonov():
    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    rng = np.random.RandomState(1)
    maps = torch.as_tensor(make_coil_maps(3, (5, 5), random_state=0))
    mask = torch.as_tensor(make_cartesian_mask((5, 5), 2, random_state=0))
    op = MultiCoilMRI(maps, mask).to(dtype=torch.float64)
    y = torch.as_tensor(rng.normal(size=(1, 3, 5, 5)) + 1j * rng.normal(size=(1, 3, 5, 5)))
    module = UnrolledModule("modl", torch.nn.ModuleList([Identity()]), n_unrolls=4, lam=0.3,
                            learn_lam=False, cg_max_iter=200, cg_tol=1e-14).double()
    got = module(y * mask, op, {}).reshape(-1).numpy()
    A = _dense(op).numpy()
    Ahy = A.conj().T @ (y * mask).reshape(-1).numpy()
    x = Ahy
    for _ in range(4):  # x <- (A^H A + lam I)^-1 (A^H y + lam x)
        x = np.linalg.solve(A.conj().T @ A + 0.3 * np.eye(25), Ahy + 0.3 * x)
    np.testing.assert_allclose(got, x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["modl", "cg-sense", "dbp", "pgd", "resnet"])
def test_methods_fit_predict_and_learn(mri, method):
    X, y, maps, masks = mri
    est = UnrolledRegressor(method=method, n_unrolls=2, width=4, depth=1, max_epochs=4,
                            learning_rate=1e-2, random_state=0)
    est.fit(X, y, maps=maps, masks=masks)
    pred = est.predict(X, maps=maps, masks=masks)
    assert pred.shape == y.shape and np.all(np.isfinite(pred))
    assert est.lam_ > 0 and len(est.cg_iters_) == est.n_iter_
    if method != "resnet":  # data consistency alone already beats the zero-filled image
        zero_filled = UnrolledRegressor(method="cg-sense", learn_lam=False, lam=1e3,
                                        max_epochs=1).fit(X, y, maps=maps, masks=masks)
        assert est.score(X, y, maps=maps, masks=masks) > zero_filled.score(
            X, y, maps=maps, masks=masks)


def test_one_model_serves_other_masks(mri):
    X, y, maps, masks = mri
    est = UnrolledRegressor(n_unrolls=2, width=4, depth=1, max_epochs=2,
                            random_state=0).fit(X, y, maps=maps, masks=masks)
    images = make_phantoms(3, 12, random_state=5)
    X4, y4, maps4, masks4 = make_mri_data(images, n_coils=4, acceleration=4, mask="poisson",
                                          random_state=1)
    assert est.predict(X4, maps=maps4, masks=masks4).shape == y4.shape


def test_metadata_routing_through_grid_search(mri):
    X, y, maps, masks = mri
    with sklearn.config_context(enable_metadata_routing=True):
        est = UnrolledRegressor(method="cg-sense", max_epochs=1, random_state=0)
        est.set_fit_request(maps=True, masks=True, sample_weight=False)
        est.set_score_request(maps=True, masks=True, sample_weight=False)
        search = GridSearchCV(est, {"lam": [0.01, 10.0]}, cv=2)
        search.fit(X, y, maps=maps, masks=masks)
    assert search.best_params_ == {"lam": 0.01}  # less regularisation fits noise-light data


def test_pickle_and_fixed_lambda(mri):
    X, y, maps, masks = mri
    est = UnrolledRegressor(method="cg-sense", learn_lam=False, max_epochs=1).fit(
        X, y, maps=maps, masks=masks)
    assert est.optimizer_ is None and 0.9 < est.operator_norm_ <= 1 + 1e-6  # sum |S|^2 = 1
    assert est.lam_ == pytest.approx(0.05 * est.operator_norm_**2)  # lam="auto"
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X, maps=maps, masks=masks),
                                  est.predict(X, maps=maps, masks=masks))


def test_tensorboard_panels(tmp_path, mri):
    pytest.importorskip("tensorboard")
    X, y, maps, masks = mri
    UnrolledRegressor(n_unrolls=1, width=2, depth=1, max_epochs=1, log_dir=tmp_path,
                      random_state=0).fit(X, y, maps=maps, masks=masks)
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_masks_and_phantoms():
    mask = make_cartesian_mask((32, 32), 4, random_state=0)
    assert mask[:, 16].all() and mask.mean() == pytest.approx(0.25)
    disc = make_poisson_disc_mask((32, 32), 4, random_state=0)
    assert disc[16, 16] == 1 and 0.2 < disc.mean() < 0.3
    images = make_phantoms(3, (15, 17), random_state=0)
    assert images.shape == (3, 15, 17) and images.min() >= 0 and images.max() <= 1


def test_bad_inputs_get_clear_errors(mri):
    X, y, maps, masks = mri
    est = UnrolledRegressor(max_epochs=1)
    with pytest.raises(ValueError, match="maps must have shape"):
        est.fit(X, y, maps=maps[:, :1], masks=masks)
    with pytest.raises(ValueError, match="image shape"):
        est.fit(X, y, maps=maps, masks=masks[:, :5])
    empty = masks.copy()
    empty[3] = 0
    with pytest.raises(ValueError, match="no samples"):
        est.fit(X, y, maps=maps, masks=empty)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, y, maps=maps, masks=masks)
    with pytest.raises(ValueError, match="needs maps"):
        est.fit(X, y, maps=maps)


def test_a_real_operator_names_the_array_of_the_wrong_size():
    from skinverse.operators import Blur, gaussian_kernel

    blur = Blur(gaussian_kernel(3, 1.0), input_shape=(8,))
    X, y = np.zeros((12, 8)), np.zeros((12, 8))
    est = UnrolledRegressor(operator=blur, max_epochs=1)
    for bad_y in (y[:, :5], y[:, 0], np.zeros((12, 16 + 1))):
        with pytest.raises(ValueError, match="^y has .* input_shape"):
            est.fit(X, bad_y)
    with pytest.raises(ValueError, match="^X has 5 features but the operator's output_shape"):
        est.fit(X[:, :5], y)


def test_lstsq_operator_of_low_rank_signals_warns():
    """Training signals that span fewer dimensions than they have leave the least-squares
    operator blind to the rest (constant y: rank 1 of 4): fit says so; full-rank signals
    fit quietly, and the learned operator is the least-squares one."""
    import warnings

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 6))
    with pytest.warns(UserWarning, match="span 1 of their 4 dimensions"):
        UnrolledRegressor(operator="lstsq", max_epochs=1, width=4, depth=1, n_unrolls=1,
                          random_state=0, device="cpu").fit(X, np.ones((40, 4)))
    y = rng.normal(size=(40, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        est = UnrolledRegressor(operator="lstsq", max_epochs=1, width=4, depth=1,
                                n_unrolls=1, random_state=0, device="cpu").fit(X, y)
    expected = np.linalg.lstsq(y, X, rcond=None)[0].T
    np.testing.assert_allclose(est.operator_.matrix.cpu().numpy(), expected, rtol=1e-4,
                               atol=1e-5)


# ---------------------------------------------------------------- configs and files
def test_config_round_trip_and_cli_fit(tmp_path, capsys):
    import json

    from skinverse.__main__ import main
    from skinverse._config import config_from_estimator, estimator_from_config

    est = UnrolledRegressor(method="pgd", n_unrolls=2, width=4, depth=1, max_epochs=1,
                            random_state=0)
    config = config_from_estimator(est, data={"generator": "mri", "n_images": 6, "size": 8,
                                              "n_coils": 2, "random_state": 0})
    rebuilt = estimator_from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_params() == est.get_params()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["fit", "--config", str(path), "--output", str(tmp_path / "m.joblib")]) == 0
    assert "saved to" in capsys.readouterr().out and (tmp_path / "m.joblib").exists()
    config["params"]["no_such_key"] = 1
    path.write_text(json.dumps(config))
    assert main(["fit", "--config", str(path)]) == 2
    assert "unknown config key(s) ['no_such_key']" in capsys.readouterr().err
    assert main(["config", "UnrolledRegressor"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["method"] == "modl"


def test_deepinpy_h5_loader(tmp_path, mri):
    h5py = pytest.importorskip("h5py")
    from skinverse.datasets import load_deepinpy_h5

    X, y, maps, masks = mri
    n, C, H, W = len(X), maps.shape[2], 12, 12
    ksp = X.reshape(n, 2, C, H, W)
    with h5py.File(tmp_path / "data.h5", "w") as handle:
        handle["imgs"] = (y.reshape(n, 2, H, W)[:, 0] + 1j * y.reshape(n, 2, H, W)[:, 1])
        handle["maps"] = maps[:, 0] + 1j * maps[:, 1]
        handle["masks"] = masks
        handle["ksp"] = ksp[:, 0] + 1j * ksp[:, 1]
    loaded = load_deepinpy_h5(tmp_path / "data.h5")
    for got, expected in zip(loaded, (X, y, maps, masks)):
        np.testing.assert_allclose(got, expected)


def test_bf16_denoiser_tracks_float32(mri):
    X, y, maps, masks = mri
    params = dict(n_unrolls=2, width=4, depth=1, max_epochs=2, random_state=0)
    full = UnrolledRegressor(mixed_precision=None, **params).fit(X, y, maps=maps, masks=masks)
    half = UnrolledRegressor(mixed_precision="bf16", **params).fit(X, y, maps=maps, masks=masks)
    args = dict(maps=maps, masks=masks)
    np.testing.assert_allclose(half.predict(X, **args), full.predict(X, **args), atol=0.05)
    assert half.score(X, y, **args) == pytest.approx(full.score(X, y, **args), abs=0.5)


def test_pgd_step_follows_the_operator_norm():
    """A step of 1 diverges once ||A|| > sqrt(2); the default step is 1/||A||^2."""
    rng = np.random.RandomState(0)
    matrix = 17 * np.linalg.qr(rng.normal(size=(12, 8)))[0]  # ||A|| = 17
    images = rng.normal(size=(40, 8)) + 1j * rng.normal(size=(40, 8))
    kspace = images @ matrix.T + 0.01 * rng.normal(size=(40, 12))
    X = np.c_[kspace.real, kspace.imag]
    y = np.c_[images.real, images.imag]
    est = UnrolledRegressor(operator=MatrixOperator(matrix), method="pgd", n_unrolls=3,
                            width=4, depth=1, max_epochs=3, random_state=0).fit(X, y)
    step = torch.nn.functional.softplus(est.module_.raw_step.detach())
    step = step / est.module_.norm_squared  # learned in units of 1/||A||^2
    assert est.operator_norm_ == pytest.approx(17, rel=1e-3)
    assert float(step) == pytest.approx(1 / 17**2, rel=0.05)  # initial value, then learned
    assert np.all(np.isfinite(est.loss_curve_)) and est.score(X, y) > 10


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 4, 6, 10), (2, 7, 9), (2, 6, 5)])
def test_centred_fft_equals_the_shifted_definition(shape):
    """Even sizes use checkerboard modulations instead of rolls: the same numbers."""
    x = torch.randn(*shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    axes = (-2, -1)
    for fast, transform in ((fft2c, torch.fft.fft2), (ifft2c, torch.fft.ifft2)):
        ref = torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=axes), norm="ortho"),
                                 dim=axes)
        torch.testing.assert_close(fast(x), ref, rtol=0, atol=1e-14)


def test_a_real_operator_on_real_images_is_tikhonov_deblurring():
    """X and y of the operator's own sizes (no imaginary parts): CG-SENSE with a fixed
    lambda is (A^T A + lambda I)^-1 A^T y, computed densely; MoDL trains on real images."""
    from skinverse.datasets import make_textured_images
    from skinverse.operators import Blur, gaussian_kernel

    images = make_textured_images(12, 8, random_state=0).reshape(12, -1)
    blur = Blur(gaussian_kernel(5, 1.0, ndim=2), (8, 8))
    A = _dense(blur.to(dtype=torch.float64)).numpy().real
    X = images @ A.T + 0.01 * np.random.RandomState(0).normal(size=images.shape)
    lam = 0.05
    sense = UnrolledRegressor(operator=blur, method="cg-sense", lam=lam, learn_lam=False,
                              cg_max_iter=300, cg_tol=1e-14, dtype="float64", max_epochs=1,
                              device="cpu").fit(X, images)
    expected = np.linalg.solve(A.T @ A + lam * np.eye(64), A.T @ X.T).T
    np.testing.assert_allclose(sense.predict(X), expected, rtol=1e-6, atol=1e-7)
    modl = UnrolledRegressor(operator=blur, width=4, depth=1, n_unrolls=2, max_epochs=2,
                             loss="ssim+l1", random_state=0, device="cpu").fit(X, images)
    assert modl.predict(X).shape == images.shape and modl.image_shape_ == (8, 8)
    # the score of real images: per-image PSNRs against the range of y as a set, averaged
    from skinverse.metrics import psnr

    span = images.max() - images.min()
    expected = psnr(images, sense.predict(X), data_range=span)
    assert sense.score(X, images) == pytest.approx(expected, rel=1e-9)
    low = 0.5 + 0.02 * (images - 0.5)  # a low-contrast set: its own, smaller range
    span_low = low.max() - low.min()
    assert sense.score(X, low) == pytest.approx(
        psnr(low, sense.predict(X), data_range=span_low), rel=1e-9)
    per_row = 10 * np.log10(span**2 / ((sense.predict(X) - images) ** 2).mean(axis=1))
    assert sense.score(X, images) == pytest.approx(per_row.mean(), rel=1e-9)


@pytest.mark.parametrize("shape", [(8, 8), (6, 10), (8, 6), (7, 5)])
def test_multicoil_normal_equals_adjoint_of_forward(shape):
    """The fused normal operator (centring modulations folded) against A^H(A x)."""
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, *shape, generator=generator, dtype=torch.complex128)
    mask = (torch.rand(2, *shape, generator=generator) > 0.5).double()
    x = torch.randn(2, *shape, generator=generator, dtype=torch.complex128)
    op = MultiCoilMRI(image_shape=shape, n_coils=3)
    torch.testing.assert_close(op.normal(x, maps=maps, mask=mask),
                               op.adjoint(op.forward(x, maps=maps, mask=mask), maps=maps,
                                          mask=mask), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tol, gain", [("auto", 0.02), (0.3, 0.3)])
def test_stopping_and_plateau_count_gains_of_tol_db(mri, tol, gain):
    """tol='auto' is 0.02 dB of validation PSNR for the stopping rule and the plateau
    schedule alike; replaying the rule on the recorded scores gives the stopping epoch."""
    X, y, maps, masks = mri
    est = UnrolledRegressor(n_unrolls=1, width=4, depth=1, early_stopping=True, tol=tol,
                            n_iter_no_change=3, max_epochs=25, learning_rate=3e-3,
                            random_state=0).fit(X, y, maps=maps, masks=masks)
    best, count, stop = -np.inf, 0, None
    for epoch, score in enumerate(est.validation_scores_, 1):
        count = 0 if score >= best + gain else count + 1
        best = max(best, score)
        if count >= 3:
            stop = epoch
            break
    assert est.n_iter_ == (stop or 25)
    assert est.training_state_.stop_reason == ("converged" if stop else "max_epochs")
    assert (est.scheduler_.threshold, est.scheduler_.threshold_mode) == (gain, "abs")
    assert est._stopping_tol(False) == (1e-4 if tol == "auto" else tol)
    # the scores the rule follows: each epoch's validation PSNR (its own metric, the
    # score) averaged exponentially with weight VALIDATION_SMOOTHING; best weights at
    # their maximum
    from skinverse.unrolled._scale import VALIDATION_SMOOTHING

    raw = est.validation_psnr_
    assert len(raw) == est.n_iter_ and np.ptp(raw) > 0.1
    average = [raw[0]]
    for value in raw[1:]:
        average.append(average[-1] + VALIDATION_SMOOTHING * (value - average[-1]))
    np.testing.assert_allclose(est.validation_scores_, average, rtol=1e-12)
    assert est.best_validation_score_ == pytest.approx(max(average))
    # the plateau schedule multiplies the rate by PLATEAU_FACTOR (0.5, not torch's 0.1)
    # after more than n_iter_no_change // 2 epochs of the average without a gain of tol
    from skinverse.unrolled._scale import PLATEAU_FACTOR

    assert est.scheduler_.factor == PLATEAU_FACTOR == 0.5
    rate, best, stalled = 3e-3, -np.inf, 0
    for score in average:
        best, stalled = (score, 0) if score > best + gain else (best, stalled + 1)
        if stalled > 1:
            rate, stalled = rate * PLATEAU_FACTOR, 0
    assert rate < 3e-3  # the schedule acted
    assert est.optimizer_.param_groups[0]["lr"] == pytest.approx(rate, rel=1e-12)
