"""RIMRegressor against references: the posterior mean of a linear-Gaussian problem, the
least-squares forward model, autograd of an energy, the EMA formula."""

import pickle

import warnings

import numpy as np
import pytest
import torch

from skinverse.callbacks import Callback
from skinverse.operators import (
    Blur,
    Identity,
    Inpainting,
    LinearOperator,
    MatrixOperator,
    gaussian_kernel,
)
from skinverse.rim import RIMRegressor
from skinverse.rim._physics import Physics

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _deblurring(n_samples=300, n=16, noise=0.05, seed=0):
    rng = np.random.RandomState(seed)
    signals = np.cumsum(rng.normal(size=(n_samples, n)), axis=1) / 4
    blur = Blur(gaussian_kernel(5, 1.5), input_shape=(n,))
    observed = blur(torch.as_tensor(signals, dtype=torch.float32)).numpy().astype(np.float64)
    return observed + noise * rng.normal(size=observed.shape), signals, blur


def test_rim_approaches_the_posterior_mean_of_a_gaussian_problem():
    n, noise = 8, 0.1
    grid = np.arange(n)
    cov = np.exp(-0.5 * ((grid[:, None] - grid) / 2.0) ** 2) + 1e-6 * np.eye(n)
    chol = torch.as_tensor(np.linalg.cholesky(cov), dtype=torch.float32)
    blur = Blur(gaussian_kernel(3, 1.0), input_shape=(n,))
    A = blur.to(dtype=torch.float64).forward(torch.eye(n, dtype=torch.float64)).numpy().T
    rng = np.random.RandomState(1)
    x_test = rng.normal(size=(2000, n)) @ chol.double().numpy().T
    y_test = x_test @ A.T + noise * rng.normal(size=x_test.shape)
    gain = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + noise**2 * np.eye(n))
    optimal = np.mean((y_test @ gain.T - x_test) ** 2)

    rim = RIMRegressor(
        operator=Blur(gaussian_kernel(3, 1.0), input_shape=(n,)), noise_std=noise,
        prior_sampler=lambda k, g: torch.randn((k, n), generator=g) @ chol.T,
        n_simulations=2000, n_steps=5, hidden_size=64, max_epochs=15, batch_size=100,
        learning_rate=3e-3, n_iter_no_change=100, random_state=0,
    ).fit(None)
    ratio = np.mean((rim.predict(y_test) - x_test) ** 2) / optimal
    assert 1.0 <= ratio < 1.15  # the posterior mean is optimal; the RIM gets close


def test_learned_linear_model_recovers_the_forward_matrix():
    rng = np.random.RandomState(0)
    true = rng.normal(size=(6, 4))
    signals = rng.normal(size=(400, 4))
    observed = signals @ true.T + 0.01 * rng.normal(size=(400, 6))
    rim = RIMRegressor(n_steps=2, max_epochs=1, random_state=0).fit(observed, signals)
    learned = rim.operator_.matrix.double().cpu().numpy()
    expected = np.linalg.lstsq(signals, observed, rcond=None)[0].T
    np.testing.assert_allclose(learned, expected, rtol=1e-5, atol=1e-6)
    assert rim.noise_std_ == pytest.approx(0.01, rel=0.15)


def test_energy_score_equals_the_operator_score():
    op = MatrixOperator(np.random.RandomState(0).normal(size=(5, 3))).to(dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 5, dtype=torch.float64)
    energy = Physics(energy_fn=lambda x, y: -op.log_likelihood(x, y, 0.2))
    torch.testing.assert_close(energy.score(x, y), op.score(x, y, 0.2))


def test_sign_slips_are_caught_at_fit():
    observed, signals, blur = _deblurring(100)

    def wrong_score(x, y):
        return -blur.score(x, y, 0.05)

    with pytest.raises(ValueError, match="sign flipped"):
        RIMRegressor(operator=blur, score_fn=wrong_score, max_epochs=1).fit(observed, signals)
    with pytest.raises(ValueError, match="sign flipped"):
        RIMRegressor(operator=blur, energy_fn=lambda x, y: blur.log_likelihood(x, y, 0.05),
                     max_epochs=1).fit(observed, signals)
    rim = RIMRegressor(operator=blur, score_fn=lambda x, y: blur.score(x, y, 0.05), n_steps=2,
                       max_epochs=2, random_state=0).fit(observed, signals)
    assert rim.score(observed, signals) > 0


def test_best_step_and_trajectory():
    observed, signals, blur = _deblurring(200)
    rim = RIMRegressor(operator=blur, noise_std=0.05, n_steps=4, max_epochs=10,
                       learning_rate=3e-3, early_stopping=False,  # errors on all the data
                       random_state=0).fit(observed, signals)
    trajectory = rim.predict(observed, return_trajectory=True)
    assert trajectory.shape == (200, 4, 16)
    assert rim.best_step_ == int(np.argmin(rim.step_errors_)) + 1
    np.testing.assert_array_equal(rim.predict(observed), trajectory[:, rim.best_step_ - 1])
    errors = ((trajectory - signals[:, None]) ** 2).mean(axis=(0, 2))
    np.testing.assert_allclose(errors, rim.step_errors_, rtol=1e-4)


@pytest.mark.parametrize("backbone", ["unet", "hourglass"])
def test_convolutional_backbones_take_odd_2d_shapes_and_channels(backbone):
    rng = np.random.RandomState(0)
    shape = (2, 7, 5)
    mask = (rng.uniform(size=shape) > 0.3).astype(float)
    signals = rng.normal(size=(60, int(np.prod(shape))))
    observed = signals * mask.ravel()
    rim = RIMRegressor(operator=Inpainting(mask), noise_std=0.1, input_shape=(7, 5),
                       channels=2, backbone=backbone, width=4, depth=2, n_steps=2,
                       max_epochs=2, random_state=0).fit(observed, signals)
    assert rim.predict(observed).shape == signals.shape
    # A reshape that mixed samples, channels or the odd spatial axes would make a sample's
    # reconstruction depend on its batch: each sample alone must give the same result.
    alone = np.vstack([rim.predict(observed[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(rim.predict(observed[:5]), alone, rtol=1e-5, atol=1e-6)


def test_3d_signals():
    rng = np.random.RandomState(0)
    signals = rng.normal(size=(20, 3 * 4 * 5))
    blur = Blur(gaussian_kernel(3, 1.0, ndim=3), input_shape=(3, 4, 5))
    observed = blur(torch.as_tensor(signals.reshape(20, 3, 4, 5), dtype=torch.float32))
    observed = observed.reshape(20, -1).numpy()
    rim = RIMRegressor(operator=blur, noise_std=0.1, input_shape=(3, 4, 5), width=2,
                       n_steps=2, max_epochs=1, random_state=0).fit(observed, signals)
    assert rim.predict(observed).shape == (20, 60)
    alone = np.vstack([rim.predict(observed[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(rim.predict(observed[:4]), alone, rtol=1e-5, atol=1e-6)


def test_softplus_link_gives_positive_signals():
    observed, signals, blur = _deblurring(100)
    signals = np.abs(signals) + 0.1
    observed = blur(torch.as_tensor(signals, dtype=torch.float32)).numpy()
    rim = RIMRegressor(operator=blur, noise_std=0.05, link="softplus", init="zeros",
                       n_steps=3, max_epochs=3, random_state=0).fit(observed, signals)
    assert np.all(rim.predict(observed) > 0)


def test_ema_weights_follow_the_formula():
    observed, signals, blur = _deblurring(40)

    class Weights(Callback):
        def __init__(self):
            self.states = []

        def on_batch_end(self, estimator, batch_index, loss):
            self.states.append({k: v.clone() for k, v in estimator.module_.state_dict().items()})

    params = dict(operator=blur, noise_std=0.05, n_steps=2, max_epochs=1, batch_size=20,
                  random_state=0, early_stopping=False)  # (the trained weights, not the start)
    recorder = Weights()
    RIMRegressor(callbacks=[recorder], **params).fit(observed, signals)
    ema = RIMRegressor(ema_decay=0.75, **params).fit(observed, signals)
    first, second = recorder.states
    for key, value in ema.module_.state_dict().items():
        torch.testing.assert_close(value, 0.75 * first[key] + 0.25 * second[key])


def test_warmup_starts_from_a_zero_learning_rate():
    observed, signals, blur = _deblurring(40)
    params = dict(operator=blur, noise_std=0.05, n_steps=2, max_epochs=1, random_state=0)
    start = RIMRegressor(max_epochs=1, **{k: v for k, v in params.items() if k != "max_epochs"})
    start.set_params(learning_rate=1e-12).fit(observed, signals)
    warm = RIMRegressor(warmup_steps=10**9, **params).fit(observed, signals)
    for key, value in warm.module_.state_dict().items():
        torch.testing.assert_close(value, start.module_.state_dict()[key], rtol=1e-6, atol=1e-7)


def test_simulator_draws_fresh_pairs_every_epoch():
    calls = []

    def prior(n, generator):
        calls.append(n)
        return torch.randn((n, 8), generator=generator)

    rim = RIMRegressor(operator=Blur(gaussian_kernel(3, 1.0), input_shape=(8,)), noise_std=0.1,
                       prior_sampler=prior, n_simulations=50, n_steps=2, max_epochs=3,
                       n_iter_no_change=99, random_state=0).fit(None)
    assert rim.n_features_in_ == 8 and len(calls) == 1 + 3  # the first set, then one per epoch
    with pytest.raises(ValueError, match="prior_sampler"):
        RIMRegressor().fit(None)


def test_pickle_round_trip():
    observed, signals, blur = _deblurring(60)
    rim = RIMRegressor(operator=blur, noise_std=0.05, n_steps=2, max_epochs=2,
                       random_state=0).fit(observed, signals)
    loaded = pickle.loads(pickle.dumps(rim))
    np.testing.assert_array_equal(loaded.predict(observed), rim.predict(observed))


def test_user_operator_is_not_modified():
    observed, signals, blur = _deblurring(30)
    kernel = blur.kernel.clone()
    RIMRegressor(operator=blur, noise_std=0.05, dtype="float64", n_steps=2,
                 max_epochs=1).fit(observed, signals)
    assert blur.kernel.dtype == torch.float32 and torch.equal(blur.kernel, kernel)


def test_bad_inputs_get_clear_errors():
    observed, signals, blur = _deblurring(30)
    with pytest.raises(ValueError, match="output_shape"):
        RIMRegressor(operator=blur, max_epochs=1).fit(observed[:, :10], signals)
    with pytest.raises(ValueError, match="input_shape"):
        RIMRegressor(operator=blur, max_epochs=1).fit(observed, signals[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        bad = observed.copy()
        bad[0, 0] = np.nan
        RIMRegressor(operator=blur, max_epochs=1).fit(bad, signals)

    class NoAdjoint(LinearOperator):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="no adjoint"):
        RIMRegressor(operator=NoAdjoint((16,), (16,)), max_epochs=1).fit(observed, signals)
    with pytest.raises(ValueError, match="step_weights"):
        RIMRegressor(operator=blur, n_steps=3, step_weights=[1.0, 2.0],
                     max_epochs=1).fit(observed, signals)
    with pytest.raises(ValueError, match="input_shape"):
        RIMRegressor(operator=blur, input_shape=(5, 5), max_epochs=1).fit(observed, signals)


def test_per_sample_arguments_reach_the_score_function():
    """A per-sample noise level: the score of each sample uses its own sigma."""
    observed, signals, blur = _deblurring(120)
    sigmas = np.where(np.arange(120) % 2, 0.05, 0.2)
    seen = []

    def score(x, y, sigma):
        seen.append(tuple(sigma.shape))
        return blur.score(x, y, 1.0) / sigma[:, None] ** 2

    rim = RIMRegressor(operator=blur, score_fn=score, n_steps=2, max_epochs=2, batch_size=40,
                       random_state=0).fit(observed, signals, sigma=sigmas)
    assert (40,) in seen
    pred = rim.predict(observed[:10], sigma=sigmas[:10])
    assert pred.shape == (10, 16)
    assert rim.score(observed, signals, sigma=sigmas) > 0
    with pytest.raises(ValueError, match="one row per sample"):
        rim.predict(observed[:10], sigma=sigmas)
    with pytest.raises(ValueError, match="only score_fn or energy_fn"):
        RIMRegressor(operator=blur, noise_std=0.1, max_epochs=1).fit(observed, signals,
                                                                    sigma=sigmas)


def test_bf16_backbone_tracks_the_float32_one():
    rng = np.random.RandomState(0)
    signals = rng.uniform(size=(64, 64))
    blur = Blur(gaussian_kernel(3, 1.0, ndim=2), input_shape=(8, 8))
    observed = blur(torch.as_tensor(signals.reshape(-1, 8, 8), dtype=torch.float32))
    observed = observed.reshape(64, -1).numpy()
    params = dict(operator=blur, noise_std=0.05, input_shape=(8, 8), width=4, n_steps=2,
                  max_epochs=3, random_state=0)
    full = RIMRegressor(**params).fit(observed, signals)
    half = RIMRegressor(mixed_precision="bf16", **params).fit(observed, signals)
    assert next(half.module_.parameters()).dtype == torch.float32  # autocast, not a cast
    pred_full, pred_half = full.predict(observed), half.predict(observed)
    assert np.all(np.isfinite(pred_half))
    # bf16 keeps 8 bits of mantissa: the two runs agree to a few 1e-2.
    np.testing.assert_allclose(pred_half, pred_full, atol=0.1)
    assert half.score(observed, signals) == pytest.approx(full.score(observed, signals), abs=0.05)


def test_physics_params_route_through_grid_search():
    import sklearn
    from sklearn.model_selection import GridSearchCV

    observed, signals, blur = _deblurring(90)
    sigmas = np.where(np.arange(90) % 2, 0.05, 0.2)
    seen = []

    def score(x, y, sigma):
        seen.append(len(sigma))
        return blur.score(x, y, 1.0) / sigma[:, None] ** 2

    physics = np.zeros(90, dtype=[("sigma", float)])
    physics["sigma"] = sigmas
    with sklearn.config_context(enable_metadata_routing=True):
        rim = RIMRegressor(operator=blur, score_fn=score, n_steps=2, max_epochs=1,
                           batch_size=30, random_state=0)
        rim.set_fit_request(physics_params=True, sample_weight=False)
        rim.set_score_request(physics_params=True, sample_weight=False)
        search = GridSearchCV(rim, {"n_steps": [1, 2]}, cv=3).fit(
            observed, signals, physics_params=physics)
    assert search.best_params_["n_steps"] in (1, 2)
    assert 60 in seen and 30 in seen  # split with the folds: 60 to fit, 30 to score


# ---------------------------------------------------------------- guard rails
def test_a_scaler_before_the_rim_is_flagged():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skinverse.exceptions import PhysicsMismatchWarning

    observed, signals, blur = _deblurring(60)
    params = dict(operator=blur, noise_std=0.05, n_steps=2, max_epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhysicsMismatchWarning)
        RIMRegressor(**params).fit(observed, signals)  # X in the operator's units: silent
    with pytest.warns(PhysicsMismatchWarning, match="StandardScaler"):
        make_pipeline(StandardScaler(), RIMRegressor(**params)).fit(observed, signals)


def test_operator_shapes_must_agree_with_input_shape():
    rng = np.random.RandomState(0)
    mask = (rng.uniform(size=(6, 5)) > 0.3).astype(float)
    signals = rng.normal(size=(20, 30))
    observed = signals * mask.ravel()
    op = Inpainting(mask)
    auto = RIMRegressor(operator=op, noise_std=0.1, n_steps=2, max_epochs=1,
                        random_state=0).fit(observed, signals)  # images: the U-Net
    assert type(auto.module_.net).__name__ == "RecurrentConvNet"
    assert auto.predict(observed).shape == signals.shape
    volume = Inpainting(np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"pass input_shape=\(3, 5\)"):
        RIMRegressor(operator=volume, noise_std=0.1, max_epochs=1).fit(observed, signals)
    with pytest.raises(ValueError, match="disagrees with the operator"):
        RIMRegressor(operator=op, noise_std=0.1, input_shape=(5, 6), max_epochs=1).fit(
            observed, signals)
    gru = RIMRegressor(operator=op, noise_std=0.1, backbone="gru", n_steps=2, max_epochs=1,
                       random_state=0).fit(observed, signals)  # asked for: flat vectors
    assert gru.predict(observed).shape == signals.shape


@pytest.mark.parametrize("with_operator", [True, False])
def test_rim_is_invariant_to_tiny_signal_units(with_operator):
    """Signals of size 1e-15 (strain data, nanometres in metres) are not constant: the
    same model as in unit units, with or without an operator (was R^2 = -1e15)."""
    rng = np.random.RandomState(0)
    signals = rng.normal(size=(60, 8))
    observed = signals + 0.1 * rng.normal(size=signals.shape)
    preds = []
    for scale in (1.0, 1e-15):
        rim = RIMRegressor(operator=Identity((8,)) if with_operator else None,
                           noise_std=0.1 * scale if with_operator else None, n_steps=2,
                           hidden_size=8, max_epochs=2, early_stopping=False,
                           random_state=0, dtype="float64")
        rim.fit(observed * scale, signals * scale)
        preds.append(rim.predict(observed * scale) / scale)
        assert rim.score(observed * scale, signals * scale) > 0.5
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-8)


def _blur_data(n=40, positive=False):
    rng = np.random.RandomState(0)
    signals = np.cumsum(rng.normal(size=(n, 8)), axis=1) / 4
    if positive:
        signals = 1 / (1 + np.exp(-signals))
    blur = Blur(gaussian_kernel(5, 1.5), input_shape=(8,))
    observed = blur(torch.as_tensor(signals)).numpy() + 0.05 * rng.normal(size=signals.shape)
    return blur, observed, signals


def test_conflicting_or_broken_likelihoods_are_input_errors():
    blur, observed, signals = _blur_data()
    small = dict(n_steps=2, hidden_size=8, max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="score_fn or energy_fn, not both"):
        RIMRegressor(operator=blur, score_fn=_gaussian_score,
                     energy_fn=_gaussian_energy, **small).fit(observed, signals)
    with pytest.raises(ValueError, match="score_fn returned NaN"):
        RIMRegressor(operator=blur, score_fn=_nan_score, **small).fit(observed, signals)


@pytest.mark.parametrize("link, shift, bad", [("sigmoid", 0.0, False), ("sigmoid", 0.5, True),
                                              ("softplus", 0.0, False),
                                              ("softplus", -0.6, True)])
def test_signals_outside_the_links_range_are_an_input_error(link, shift, bad):
    blur, observed, signals = _blur_data(positive=True)
    rim = RIMRegressor(operator=blur, noise_std=0.05, link=link, n_steps=2, hidden_size=8,
                       max_epochs=1, random_state=0)
    if bad:
        with pytest.raises(ValueError, match=f"link='{link}' reconstructs signals in"):
            rim.fit(observed, signals + shift)
    else:
        pred = rim.fit(observed, signals + shift).predict(observed)
        assert pred.min() >= 0 and (link == "softplus" or pred.max() <= 1)


def _gaussian_score(x, X):
    return X - x


def _gaussian_energy(x, X):
    return 0.5 * ((X - x) ** 2).sum(dim=1)


def _nan_score(x, X):
    return (X - x) * float("nan")


def test_resampled_noise_is_the_next_pairs_residual():
    """The training loss on a batch equals the loss, without resampling, on observations
    rebuilt by hand: A y_i + (X_j - A y_j), j the next sample (a permutation of the
    residuals: no random draw, the noise keeps its distribution)."""
    blur, observed, signals = _blur_data()
    rim = RIMRegressor(operator=blur, noise_std=0.05, n_steps=2, hidden_size=8,
                       max_epochs=1, random_state=0, dtype="float64").fit(observed, signals)
    assert rim._resamples_noise()
    data = rim._to_tensors(rim._validate_fit_data(observed, signals, reset=False))
    clean = blur(data["y"].reshape(-1, 8)).reshape(len(data["y"]), -1)
    by_hand = {**data, "X": clean + torch.roll(data["X"] - clean, 1, dims=0)}
    resampled = float(rim._compute_loss(data).detach())
    rim.set_params(resample_noise=False)
    assert float(rim._compute_loss(by_hand).detach()) == pytest.approx(resampled, rel=1e-12)
    assert float(rim._compute_loss(data).detach()) != pytest.approx(resampled, rel=1e-6)
    with pytest.raises(ValueError, match="resample_noise=True needs an operator"):
        RIMRegressor(resample_noise=True, n_steps=2, hidden_size=8,
                     max_epochs=1).fit(observed, signals)


def test_validation_score_is_the_best_steps_r2():
    """Early stopping watches the step predict uses (the best), not the last one."""
    from sklearn.metrics import r2_score

    blur, observed, signals = _blur_data()
    rim = RIMRegressor(operator=blur, noise_std=0.05, n_steps=3, hidden_size=8,
                       max_epochs=2, random_state=0, dtype="float64").fit(observed, signals)
    data = rim._to_tensors(rim._validate_fit_data(observed, signals, reset=False))
    trajectory = rim.predict(observed, return_trajectory=True)
    mean, _, scale = rim._standardization_
    by_hand = max(r2_score((signals - mean) / scale, (trajectory[:, k] - mean) / scale,
                           multioutput="variance_weighted") for k in range(3))
    assert rim._validation_score(data) == pytest.approx(by_hand, rel=1e-10)


def test_a_fit_that_never_beats_its_start_returns_the_start():
    """The Wiener start is scored as epoch 0: when no trained epoch beats it on validation
    (a learning rate that only hurts), fit returns it exactly, not epoch 1's worse weights."""
    blur, observed, signals = _blur_data(n=200)
    params = dict(operator=blur, noise_std=0.05, n_steps=2, hidden_size=8, random_state=0,
                  n_iter_no_change=3, max_epochs=6, dtype="float64")
    start = RIMRegressor(**params, learning_rate=1e-300).fit(observed, signals)
    hurt = RIMRegressor(**params, learning_rate=0.3, optimizer="sgd").fit(observed, signals)
    assert hurt.training_state_.component("best").epoch == 0
    assert hurt.best_validation_score_ == max(hurt.validation_scores_ + [
        hurt.best_validation_score_])
    np.testing.assert_allclose(hurt.predict(observed), start.predict(observed), rtol=0,
                               atol=1e-12)
