"""The estimators at their defaults, against known optima (issue #13).

Small instances of the problem families of ``benchmarks/bench_defaults.py``: the RIM
against the closed-form posterior mean, the IMNN against the analytic Fisher
information; plus the invariances the defaults are built on.
"""

import warnings

import numpy as np
import pytest
import torch

from skinverse.datasets import gaussian_mean_problem, gaussian_mean_variance_problem
from skinverse.datasets._fisher_problems import laplace_location_problem, linear_model_problem
from skinverse.datasets._signals import make_linear_gaussian_problem
from skinverse.imnn import IMNNTransformer
from skinverse.imnn._data import summary_derivatives
from skinverse.imnn._fisher import fisher_statistics
from skinverse.imnn._networks import ElementwiseSum, element_knots, looks_iid
from skinverse.operators import Blur, MatrixOperator, gaussian_kernel
from skinverse.rim import RIMRegressor
from skinverse.rim._physics import wiener_filter


def _fit_quietly(estimator, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(*args)


# ---------------------------------------------------------------------------- RIM
@pytest.mark.parametrize("kind, kwargs", [
    ("blur", dict(relative_noise=0.01)),
    ("compressed", dict(n_obs=8, relative_noise=0.05)),
])
def test_rim_defaults_reach_posterior_mean(kind, kwargs):
    problem = make_linear_gaussian_problem(kind, 16, signal_scale=30.0, signal_mean=5.0,
                                           random_state=0, **kwargs)
    X, x = problem.sample(800, random_state=1)
    X_test, x_test = problem.sample(2000, random_state=2)
    rim = RIMRegressor(operator=problem.operator, noise_std=problem.noise_std,
                       random_state=0, max_epochs=30)
    _fit_quietly(rim, X, x)
    mse = np.mean((rim.predict(X_test) - x_test) ** 2)
    optimal = np.mean((problem.posterior_mean(X_test) - x_test) ** 2)
    assert mse / optimal < 1.10


def test_rim_defaults_are_scale_invariant():
    """x -> 100 x and A -> 10 A (so X -> 1000 X, sigma -> 1000 sigma): the same fit."""
    rng = np.random.RandomState(0)
    n = 12
    kernel = torch.as_tensor(gaussian_kernel(5, 1.5))
    x = np.cumsum(rng.normal(size=(300, n)), axis=1) / 3
    blur = Blur(kernel, input_shape=(n,))
    X = blur(torch.as_tensor(x)).numpy() + 0.05 * rng.normal(size=x.shape)
    X_test = X[:50] + 0.05 * rng.normal(size=(50, n))
    kwargs = dict(random_state=0, max_epochs=4, dtype="float64")
    small = _fit_quietly(RIMRegressor(operator=blur, noise_std=0.05, **kwargs), X, x)
    big = _fit_quietly(RIMRegressor(operator=Blur(10 * kernel, input_shape=(n,)),
                                    noise_std=50.0, **kwargs), 1000 * X, 100 * x)
    reference = small.predict(X_test)
    scaled = big.predict(1000 * X_test) / 100
    np.testing.assert_allclose(scaled, reference, rtol=1e-4,
                               atol=1e-4 * np.abs(reference).max())


def test_rim_wiener_init_is_the_posterior_mean_of_gaussian_signals():
    """The default initial estimate is the Wiener filter of the training signals (the
    posterior mean up to the estimated covariance), and the RIM's updates start at zero:
    an untrained RIM (learning rate ~0) returns it at every step."""
    problem = make_linear_gaussian_problem("matrix", 10, condition=1e3,
                                           relative_noise=0.01, random_state=0)
    X, x = problem.sample(5000, random_state=1)
    gain, offset = wiener_filter(problem.operator, problem.noise_std, [x])
    expected = problem.posterior_mean(X[:200])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(X[:200] @ gain.T + offset, expected, atol=0.05 * scale)
    rim = _fit_quietly(RIMRegressor(operator=problem.operator, noise_std=problem.noise_std,
                                    max_epochs=1, learning_rate=1e-12, dtype="float64",
                                    random_state=0), X, x)
    trajectory = rim.predict(X[:200], return_trajectory=True)
    for step in range(trajectory.shape[1]):
        np.testing.assert_allclose(trajectory[:, step], X[:200] @ gain.T + offset,
                                   atol=1e-6 * scale)


def test_rim_explicit_init_without_gaussian_physics_raises():
    def score_fn(x, y):
        return y - x

    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 4))
    with pytest.raises(ValueError, match="Gaussian"):
        _fit_quietly(RIMRegressor(score_fn=score_fn, init="tikhonov", max_epochs=1), X, X)


def test_rim_noise_std_in_data_units_physics_in_standardised_units():
    rng = np.random.RandomState(0)
    x = 50 * rng.normal(size=(200, 4))
    op = MatrixOperator(np.eye(4))
    rim = _fit_quietly(RIMRegressor(operator=op, noise_std=5.0, max_epochs=1), x, x)
    scale = rim._standardization_[2]
    assert scale == pytest.approx(50, rel=0.1)
    assert rim.noise_std_ == pytest.approx(5.0)
    assert rim.physics_.noise_std == pytest.approx(5.0 / scale)


# ---------------------------------------------------------------------------- IMNN
def _det_ratio(imnn, problem):
    fisher = imnn.fisher_information(n_simulations=5000, random_state=123)
    return np.linalg.det(fisher) / np.linalg.det(problem.fisher)


@pytest.mark.parametrize("problem", [
    gaussian_mean_problem(5, sigma=0.01),  # det F = 5e4: large information
    linear_model_problem(8, 2, noise_std=0.5),
])
def test_imnn_defaults_reach_analytic_fisher(problem):
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           random_state=0, n_s=500, n_d=500)
    _fit_quietly(imnn)
    assert _det_ratio(imnn, problem) > 0.9


def test_imnn_input_standardization_from_fiducial_simulations():
    problem = gaussian_mean_problem(6, sigma=0.01, theta_fid=100.0)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           max_epochs=1, random_state=0)
    _fit_quietly(imnn)
    mean, scale = imnn.input_standardization_
    np.testing.assert_allclose(mean, 100.0, atol=0.005)
    np.testing.assert_allclose(scale, 0.01, rtol=0.15)
    # Unstandardised, summaries of inputs 100 +- 0.01 are constant to float32 precision.
    off = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                          max_epochs=1, standardize=False, random_state=0)
    with pytest.raises(ValueError, match="singular"):
        _fit_quietly(off)
    unit = gaussian_mean_problem(6)
    off = IMNNTransformer(simulator=unit.simulator, theta_fid=unit.theta_fid,
                          max_epochs=1, standardize=False, random_state=0)
    assert _fit_quietly(off).input_standardization_ is None


def test_imnn_auto_width_scales_with_the_problem():
    small = gaussian_mean_problem(5)
    large = gaussian_mean_variance_problem(100)
    widths = []
    for problem in (small, large):
        imnn = _fit_quietly(IMNNTransformer(simulator=problem.simulator,
                                            theta_fid=problem.theta_fid, max_epochs=1,
                                            n_s=50, n_d=50, architecture="mlp",
                                            random_state=0))
        widths.append(imnn.module_[0].out_features)
    assert widths[0] < widths[1]


@pytest.mark.parametrize("problem, bound", [
    (gaussian_mean_variance_problem(30, theta_fid=(2.0, 0.5)), 0.9),  # det F = 3600
    # optimal summary sum sign(x - theta), not smooth: the MLP default reached 0.5
    (laplace_location_problem(20, scale=3.0), 0.8),
])
def test_imnn_deepsets_default_reaches_analytic_fisher(problem, bound):
    """iid data points: 'auto' picks the per-point network; a short fit (150 steps)
    nears the analytic det F on fresh simulations (full default fits: see
    benchmarks/bench_defaults.py)."""
    imnn = _fit_quietly(IMNNTransformer(simulator=problem.simulator,
                                        theta_fid=problem.theta_fid, n_s=500, n_d=500,
                                        max_epochs=150, random_state=0))
    assert imnn.architecture_ == "deepsets"
    assert _det_ratio(imnn, problem) > bound


def test_imnn_auto_architecture_follows_the_simulations():
    """iid points -> 'deepsets'; points with different derivatives (a linear model),
    correlated points, or a local design (fit(X, y)) -> 'mlp'."""
    def architecture(problem, **kwargs):
        imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                               max_epochs=1, n_s=200, n_d=200, random_state=0, **kwargs)
        return _fit_quietly(imnn).architecture_

    assert architecture(gaussian_mean_problem(12)) == "deepsets"
    assert architecture(linear_model_problem(12, 2)) == "mlp"
    assert architecture(gaussian_mean_problem(12), architecture="mlp") == "mlp"
    rng = np.random.RandomState(0)
    iid = rng.normal(size=(1000, 20))
    assert looks_iid(iid)
    assert not looks_iid(iid + 0.3 * iid[:, :1])  # a common component: correlated
    assert not looks_iid(iid * np.linspace(1, 2, 20))  # different scales
    X = rng.normal(size=(200, 6))
    y = X.mean(axis=1) + 0.01 * rng.normal(size=200)
    assert _fit_quietly(IMNNTransformer(max_epochs=1, random_state=0), X, y).architecture_ \
        == "mlp"


def test_elementwise_sum_knots_interpolate_the_direct_network():
    """Tabulated on knots, the per-point network and its derivative agree with the
    direct evaluation to interpolation accuracy."""
    torch.manual_seed(0)
    x = torch.randn(200, 7, dtype=torch.float64)
    tabulated = ElementwiseSum(2, (16,), element_knots(x.numpy())).double()
    direct = ElementwiseSum(2, (16,)).double()
    direct.load_state_dict({k: v for k, v in tabulated.state_dict().items()
                            if k != "knots"}, strict=False)
    tangent = torch.ones_like(x)
    t1, d1 = torch.func.jvp(tabulated, (x,), (tangent,))
    t2, d2 = torch.func.jvp(direct, (x,), (tangent,))
    torch.testing.assert_close(t1, t2, atol=1e-3, rtol=1e-3)
    # secant slopes: per data set within 0.1, on average (what enters F) within 1 %
    torch.testing.assert_close(d1, d2, atol=0.1, rtol=0.0)
    torch.testing.assert_close(d1.mean(dim=0), d2.mean(dim=0), atol=0.0, rtol=1e-2)


@pytest.mark.parametrize("mode", ["gradient", "pairs"])
def test_imnn_batched_derivatives_match_per_parameter_loop(mode):
    """The one-pass derivatives of all parameters equal the per-parameter reference."""
    problem = linear_model_problem(6, 3)
    kwargs = dict(simulator=problem.simulator, theta_fid=problem.theta_fid, max_epochs=1,
                  n_s=40, n_d=40, random_state=0, dtype="float64")
    if mode == "pairs":
        kwargs["delta_theta"] = 0.1
    imnn = _fit_quietly(IMNNTransformer(**kwargs))
    data = imnn._simulate(torch.Generator().manual_seed(3))
    source = data.get("X_d", data["X"])[: len(data["derivatives"])]
    batched = imnn._derivatives(source, data["derivatives"], data["mode"])
    reference = summary_derivatives(imnn._net, source, data["derivatives"], data["mode"],
                                    imnn._delta)
    torch.testing.assert_close(batched, reference)


def test_fisher_statistics_cholesky_path_matches_inverse():
    rng = np.random.RandomState(0)
    t = torch.as_tensor(rng.normal(size=(500, 3)) @ rng.normal(size=(3, 3)))
    dt = torch.as_tensor(rng.normal(size=(200, 3, 2)))
    stats = fisher_statistics(t, dt)
    cov = torch.cov(t.T)
    dmu = dt.mean(dim=0)
    expected = dmu.T @ torch.linalg.inv(cov) @ dmu
    torch.testing.assert_close(stats["fisher"], expected)
    torch.testing.assert_close(stats["inverse_covariance"], torch.linalg.inv(cov))


# ----------------------------------------------------------------------- Unrolled
def test_unrolled_defaults_approach_the_posterior_mean_of_gaussian_images():
    """MoDL with its default training recipe (lam='auto' from ||A||, learning rate,
    early stopping on validation, plateau schedule) on 6x6 Gaussian images blurred in
    2-D: for Gaussian signals the posterior mean is the optimum, and the learned
    reconstruction comes within 30 % of its MSE (CG-SENSE, lambda learned for 20 epochs:
    3.3x). A narrow denoiser keeps this fast."""
    from skinverse.unrolled import UnrolledRegressor

    problem = make_linear_gaussian_problem("blur", shape=(6, 6), relative_noise=0.05,
                                           random_state=0)
    X, x = problem.sample(300, random_state=0)
    X_test, x_test = problem.sample(200, random_state=100)
    optimum = np.mean((problem.posterior_mean(X_test) - x_test) ** 2)
    modl = _fit_quietly(UnrolledRegressor(operator=problem.operator, loss="mse", width=8,
                                          depth=2, n_unrolls=3, random_state=0,
                                          device="cpu"), X, x)
    ratio = np.mean((modl.predict(X_test) - x_test) ** 2) / optimum
    assert 1.0 - 0.05 < ratio < 1.3
