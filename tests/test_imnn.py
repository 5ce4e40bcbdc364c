"""IMNNTransformer against references: the loss formula, numpy statistics, the analytic
Fisher information of toy problems, the unchunked gradient, the sample-mean MLE."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skinverse.datasets import (
    gaussian_mean_problem,
    gaussian_mean_variance_problem,
    gaussian_variance_problem,
    line_slope_problem,
)
from skinverse.imnn import IMNNTransformer
from skinverse.imnn._fisher import fisher_statistics, imnn_loss, regularisation_rate
from skinverse.imnn._simulate import simulate_derivatives, simulate_fiducial

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _dataset(problem, n_s=500, n_d=500, seed=0, delta_theta=None):
    g = torch.Generator().manual_seed(seed)
    theta = torch.as_tensor(problem.theta_fid, dtype=torch.float64)[None]
    X = simulate_fiducial(problem.simulator, theta, n_s, g).numpy()
    _, D = simulate_derivatives(problem.simulator, theta, n_d, g, delta_theta)
    return X, D.numpy()


# ---------------------------------------------------------------- the maths
def test_loss_matches_the_direct_formula():
    rng = np.random.RandomState(0)
    t = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 3))
    dt = rng.normal(size=(150, 3, 2))
    stats = fisher_statistics(torch.as_tensor(t), torch.as_tensor(dt))
    loss, record = imnn_loss(stats, lam=10.0, epsilon=0.1)

    C = np.cov(t, rowvar=False)
    Cinv = np.linalg.inv(C)
    dmu = dt.mean(axis=0)
    F = dmu.T @ Cinv @ dmu
    lambda2 = np.linalg.norm(C - np.eye(3)) + np.linalg.norm(Cinv - np.eye(3))
    alpha = -np.log(0.1 * 9 + 0.01 / 1.1) / 0.1
    r = 10 * lambda2 / (lambda2 + np.exp(-alpha * lambda2))
    np.testing.assert_allclose(stats["covariance"].numpy(), C, rtol=1e-12)
    np.testing.assert_allclose(stats["fisher"].numpy(), F, rtol=1e-10)
    assert regularisation_rate(10.0, 0.1) == pytest.approx(alpha)
    assert float(loss) == pytest.approx(-np.log(np.linalg.det(F)) + r * lambda2, rel=1e-10)
    assert record["Lambda2"] == pytest.approx(lambda2) and record["r"] == pytest.approx(r)
    assert record["detF"] == pytest.approx(np.linalg.det(F), rel=1e-10)


# ---------------------------------------------------------------- analytic Fisher
@pytest.mark.parametrize("delta_theta", [None, 0.1])
def test_simulator_mode_reaches_the_analytic_fisher_information(delta_theta):
    problem = gaussian_mean_problem(n_data=10)  # F = 10
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=400,
                           n_d=400, delta_theta=delta_theta, hidden_layer_sizes=(16,),
                           max_epochs=1000, n_iter_no_change=10**6,
                           random_state=0).fit()
    dets = [imnn.fisher_information(random_state=s)[0, 0] for s in range(5)]
    # An estimate from 400 simulations scatters by ~7%; the optimum is 10.
    assert 0.9 * 10 < np.mean(dets) < 1.1 * 10
    assert len(imnn.history_["detF"]) == imnn.n_iter_ == 1000


@pytest.mark.parametrize("delta_theta", [None, 0.05])
def test_dataset_modes_find_the_information_of_the_mean(delta_theta):
    problem = gaussian_mean_problem(n_data=10)  # F = 10, the mean is sufficient
    X, D = _dataset(problem, delta_theta=delta_theta)
    imnn = IMNNTransformer(theta_fid=problem.theta_fid, delta_theta=delta_theta,
                           hidden_layer_sizes=(16,), max_epochs=1000,
                           random_state=0).fit(X, derivatives=D)
    X_test, D_test = _dataset(problem, n_s=2000, n_d=2000, seed=9, delta_theta=delta_theta)
    score = imnn.score(X_test, derivatives=D_test)
    assert np.log(10) - 0.15 < score < np.log(10) + 0.15


def test_design_mode_and_the_sample_mean_estimate():
    problem = gaussian_mean_problem(n_data=10)
    rng = np.random.RandomState(0)
    y = rng.uniform(-0.5, 0.5, size=600)
    g = torch.Generator().manual_seed(0)
    X = problem.simulator(torch.as_tensor(y[:, None]), g).numpy()
    imnn = IMNNTransformer(hidden_layer_sizes=(16,), max_epochs=1000, random_state=0).fit(X, y)
    assert imnn.theta_fid_ == pytest.approx([y.mean()])
    # On held-out simulations det F is an honest estimate: at most the analytic 10 (up to
    # the sampling error of 600 simulations), and most of it. The in-sample figure is
    # biased upwards (the network was fitted on it), so it is not the reference.
    y_test = np.random.RandomState(1).uniform(-0.5, 0.5, size=600)
    X_test = problem.simulator(torch.as_tensor(y_test[:, None]),
                               torch.Generator().manual_seed(1)).numpy()
    assert np.log(10) - 0.25 < imnn.score(X_test, y_test) < np.log(10) + 0.1
    estimate = imnn.transform(X)[:, 0]
    # The MLE of a Gaussian mean is the sample mean (variance 1/F = 0.1); an unbiased
    # estimate of efficiency e differs from it with variance 1/(eF) - 1/F. e >= 0.8:
    assert np.std(estimate - X.mean(axis=1)) < np.sqrt(1 / 8 - 1 / 10)
    assert abs(np.mean(estimate - X.mean(axis=1))) < 0.05


def test_line_slope_information():
    problem = line_slope_problem(n_data=11)
    X, D = _dataset(problem)
    imnn = IMNNTransformer(theta_fid=problem.theta_fid, hidden_layer_sizes=(16,),
                           max_epochs=1000, random_state=0).fit(X, derivatives=D)
    assert imnn.fisher_[0, 0] == pytest.approx(problem.fisher[0, 0], rel=0.15)


# ---------------------------------------------------------------- mechanics
def test_chunked_gradient_equals_the_full_batch_gradient():
    problem = gaussian_mean_variance_problem(n_data=10)
    X, D = _dataset(problem, n_s=120, n_d=90)
    grads = []
    for batch_size in ["auto", 25]:
        imnn = IMNNTransformer(theta_fid=problem.theta_fid, hidden_layer_sizes=(8,),
                               batch_size=batch_size, max_epochs=1, random_state=0,
                               dtype="float64").fit(X, derivatives=D)
        grads.append([p.grad.clone() for p in imnn.module_.parameters()])
    for full, chunked in zip(*grads):
        torch.testing.assert_close(chunked, full, rtol=1e-9, atol=1e-12)


def _jvp_reference(net, x, dx):
    """Summaries and derivatives by forward-mode autograd, one parameter at a time."""
    columns = [torch.func.jvp(net, (x,), (dx[..., k],))[1] for k in range(dx.shape[-1])]
    return net(x), torch.stack(columns, dim=-1)


@pytest.mark.parametrize("network", ["silu", "tanh", "relu", "deepsets"])
def test_hand_written_tangents_equal_forward_mode_autograd(network):
    """The default networks' chain rule (summaries with their derivatives, derivatives of
    the first rows only) against torch.func.jvp: values and gradients in the weights."""
    from skinverse.imnn._networks import ElementwiseSum, element_knots
    from skinverse.imnn._tangents import prepare, supports_tangents, with_tangents
    from skinverse.nn import MLP

    torch.manual_seed(0)
    x = torch.randn(40, 6, dtype=torch.float64)
    dx = torch.randn(25, 6, 2, dtype=torch.float64)
    if network == "deepsets":
        net = ElementwiseSum(3, (8,), element_knots(x.numpy(), n_knots=64)).double()
    else:
        net = MLP(6, (7, 5), 3, activation=network).double()
    assert supports_tangents(net)
    results = []
    for hand in (True, False):
        net.zero_grad()
        if hand:
            t, dt = with_tangents(net, prepare(net, x), dx)
        else:
            t, dt = _jvp_reference(net, x, torch.cat([dx, torch.zeros(15, 6, 2).double()]))
            dt = dt[:25]
        ((t**2).sum() + (dt**3).sum()).backward()
        results.append([t, dt] + [p.grad.clone() for p in net.parameters()])
    for hand, reference in zip(*results):
        torch.testing.assert_close(hand, reference, rtol=1e-10, atol=1e-12)


def test_fit_summaries_by_hand_equal_forward_mode_autograd():
    """The fitted estimator's summaries of fresh simulations (derivatives on the first n_d
    of them), cached for a fixed set or not, against the generic forward-mode path."""
    problem = gaussian_mean_variance_problem(n_data=6)
    for architecture in ("mlp", "deepsets"):
        imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                               n_s=60, n_d=40, architecture=architecture, max_epochs=3,
                               random_state=0, dtype="float64").fit()
        data = imnn._simulate(torch.Generator().manual_seed(1))
        assert data["X"].shape == (60, 6) and data["derivatives"].shape == (40, 6, 2)
        cached = dict(data)
        hand = imnn._summaries(data)
        imnn._summaries(cached, cache=True)
        again = imnn._summaries(cached, cache=True)
        imnn._tangents_by_hand = lambda: False
        reference = imnn._summaries(data)
        for a, b, c in zip(hand, again, reference):
            torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(b, c, rtol=1e-10, atol=1e-12)


def test_feature_names_pandas_output_and_pipeline():
    pd = pytest.importorskip("pandas")
    problem = gaussian_mean_variance_problem(n_data=10)
    rng = np.random.RandomState(0)
    y = np.c_[rng.uniform(-0.3, 0.3, 300), rng.uniform(0.7, 1.3, 300)]
    X = problem.simulator(torch.as_tensor(y), torch.Generator().manual_seed(0)).numpy()
    imnn = IMNNTransformer(hidden_layer_sizes=(16,), max_epochs=30, random_state=0).fit(X, y)
    assert list(imnn.get_feature_names_out()) == ["theta_hat0", "theta_hat1"]
    frame = imnn.set_output(transform="pandas").transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["theta_hat0", "theta_hat1"]
    pipe = make_pipeline(IMNNTransformer(hidden_layer_sizes=(16,), max_epochs=30,
                                         random_state=0), Ridge()).fit(X, y[:, 0])
    assert pipe.predict(X).shape == (300,)
    summaries = IMNNTransformer(output="summaries", n_summaries=3, hidden_layer_sizes=(8,),
                                max_epochs=5, random_state=0).fit(X, y)
    assert summaries.transform(X).shape == (300, 3)


def test_early_stopping_records_validation_history():
    problem = gaussian_mean_problem(n_data=10)
    X, D = _dataset(problem, n_s=300, n_d=300)
    imnn = IMNNTransformer(theta_fid=problem.theta_fid, hidden_layer_sizes=(8,),
                           early_stopping=True, n_iter_no_change=5, max_epochs=400,
                           learning_rate=3e-2, random_state=0).fit(X, derivatives=D)
    assert len(imnn.history_["val_detF"]) == imnn.n_iter_
    # the score stopping follows: ln det F averaged exponentially, weight 0.05 per step
    raw = np.log(imnn.history_["val_detF"])
    average = [raw[0]]
    for value in raw[1:]:
        average.append(average[-1] + 0.05 * (value - average[-1]))
    assert imnn.validation_scores_ == pytest.approx(average, rel=1e-12)
    assert imnn.best_validation_score_ == pytest.approx(max(average), rel=1e-12)
    assert max(average) < max(raw)  # the average is not the noisy maximum


def test_refit_at_moves_the_fiducial_point_and_pickles():
    problem = gaussian_variance_problem(n_data=10)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=100,
                           n_d=100, hidden_layer_sizes=(8,), max_epochs=20,
                           random_state=0).fit()
    imnn.refit_at([2.0])
    assert imnn.theta_fid_ == pytest.approx([2.0]) and imnn.n_iter_ > 20
    X = problem.simulator(torch.full((50, 1), 2.0), torch.Generator().manual_seed(1)).numpy()
    loaded = pickle.loads(pickle.dumps(imnn))
    np.testing.assert_array_equal(loaded.transform(X), imnn.transform(X))


def test_subset_transform_agrees_to_float32_precision():
    problem = gaussian_mean_problem(n_data=10)
    X, D = _dataset(problem, n_s=200, n_d=200)
    imnn = IMNNTransformer(theta_fid=problem.theta_fid, max_epochs=5,
                           random_state=0).fit(X, derivatives=D)
    parts = np.concatenate([imnn.transform(X[i : i + 7]) for i in range(0, 200, 7)])
    np.testing.assert_allclose(parts, imnn.transform(X), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_get_clear_errors():
    problem = gaussian_mean_problem(n_data=10)
    X, D = _dataset(problem, n_s=50, n_d=50)
    with pytest.raises(ValueError, match=r"\(n_d, 10, n_params\)"):
        IMNNTransformer(theta_fid=[0.0]).fit(X, derivatives=D[:, :5])
    with pytest.raises(ValueError, match="n_d <= n_s"):
        IMNNTransformer(theta_fid=[0.0]).fit(X[:20], derivatives=D)
    with pytest.raises(ValueError, match="n_d <= n_s"):
        IMNNTransformer(simulator=problem.simulator, theta_fid=[0.0], n_s=10, n_d=20).fit()
    with pytest.raises(ValueError, match="singular"):
        IMNNTransformer(theta_fid=[0.0], max_epochs=1).fit(np.zeros_like(X), derivatives=D)
    with pytest.raises(ValueError, match="delta_theta"):
        _, pairs = _dataset(problem, n_s=50, n_d=50, delta_theta=0.1)
        IMNNTransformer(theta_fid=[0.0], max_epochs=1).fit(X, derivatives=pairs)

    def wrong_shape(theta, generator):
        return torch.zeros(3, 4)

    with pytest.raises(ValueError, match="expected shape"):
        IMNNTransformer(simulator=wrong_shape, theta_fid=[0.0], max_epochs=1).fit()

    def nan_simulator(theta, generator):
        return torch.full((theta.shape[0], 4), float("nan"))

    with pytest.raises(ValueError, match="NaN"):
        IMNNTransformer(simulator=nan_simulator, theta_fid=[0.0], max_epochs=1).fit()
    with pytest.raises(ValueError, match="requires y"):
        IMNNTransformer().fit(X)


# ---------------------------------------------------------------- likelihood-free inference
@pytest.fixture(scope="module")
def mean_imnn():
    problem = gaussian_mean_problem(n_data=10)
    # The samplers are checked against N(sample mean, 1/N) at 0.3 from the fiducial
    # point, which needs summaries linear in the data that far out: the MLP's are close
    # to linear; the per-point network ('auto' here) is optimal at the fiducial point
    # but its steep units make the estimate drift by ~0.05 at 0.3 (see refit_at).
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=[0.0], n_s=400, n_d=400,
                           hidden_layer_sizes=(16,), architecture="mlp", max_epochs=1000,
                           random_state=0).fit()
    observed = problem.simulator(torch.tensor([[0.3]]), torch.Generator().manual_seed(3))
    return imnn, observed.numpy()


def test_lfi_recovers_the_analytic_posterior(mean_imnn):
    """Flat prior, Gaussian mean: the posterior is N(sample mean, 1/N)."""
    from skinverse.imnn import (
        ApproximateBayesianComputation,
        GaussianApproximation,
        PopulationMonteCarlo,
    )

    imnn, observed = mean_imnn
    xbar, sd = observed.mean(), 1 / np.sqrt(10)
    grids, densities = GaussianApproximation(imnn, -2, 2).marginals(observed)
    ga_mean = np.sum(grids[0] * densities[0][0]) * (grids[0][1] - grids[0][0])
    assert ga_mean == pytest.approx(imnn.transform(observed)[0, 0], abs=1e-3)
    assert abs(ga_mean - xbar) < 0.05
    samples, _ = ApproximateBayesianComputation(imnn, -2, 2, random_state=0).run(
        observed, n_simulations=20000, accept_fraction=0.02)
    assert abs(samples.mean() - xbar) < 0.08 and samples.std() == pytest.approx(sd, rel=0.2)
    particles, weights, _ = PopulationMonteCarlo(imnn, -2, 2, random_state=0).run(
        observed, n_particles=500)
    mean = np.sum(weights * particles[:, 0])
    spread = np.sqrt(np.sum(weights * (particles[:, 0] - mean) ** 2))
    assert abs(mean - xbar) < 0.08 and spread == pytest.approx(sd, rel=0.25)
    assert weights.sum() == pytest.approx(1.0)


def test_grid_search_over_a_pipeline():
    from sklearn.model_selection import GridSearchCV

    problem = gaussian_mean_problem(n_data=10)
    rng = np.random.RandomState(0)
    y = rng.uniform(-0.5, 0.5, size=240)
    X = problem.simulator(torch.as_tensor(y[:, None]), torch.Generator().manual_seed(0)).numpy()
    pipe = make_pipeline(IMNNTransformer(hidden_layer_sizes=(8,), max_epochs=200,
                                         random_state=0), Ridge())
    search = GridSearchCV(pipe, {"imnntransformer__max_epochs": [1, 200]}, cv=3).fit(X, y)
    assert search.best_params_ == {"imnntransformer__max_epochs": 200}  # training helps
    assert search.best_score_ > 0.05  # the optimum R^2 here is 0.45 (prior var 1/12, noise 1/10)


@pytest.mark.parametrize("architecture", ["mlp", "deepsets"])
def test_closed_form_readout_is_the_fisher_optimal_whitened_layer(architecture):
    """The last layer solved on a set of simulations reaches, on that set, the Fisher
    information of the ridge-regularised optimal combination of the features,
    W = (C_h + r I)^-1 dmu_h, with unit covariance; the polish after fit never lowers the
    validation det F."""
    problem = gaussian_mean_variance_problem(n_data=6)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           n_s=300, n_d=300, architecture=architecture, max_epochs=5,
                           random_state=0, dtype="float64").fit()
    data = imnn._simulate(torch.Generator().manual_seed(2))
    h, dh = imnn._features(data)
    cov = torch.cov(h.T)
    ridge = 1e-6 * torch.trace(cov) / len(cov) * torch.eye(len(cov), dtype=cov.dtype)
    weight = torch.linalg.solve(cov + ridge, dh)  # (width, n_params)
    best = (weight.T @ dh).T @ torch.linalg.solve(weight.T @ cov @ weight, weight.T @ dh)
    imnn._init_readout(data, ridge=1e-6)
    stats = imnn._statistics(*imnn._summaries(data), data)
    torch.testing.assert_close(stats["fisher"], best, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(stats["covariance"], torch.eye(2, dtype=torch.float64),
                               rtol=1e-6, atol=1e-8)
    val = imnn._simulate(torch.Generator().manual_seed(3))
    before = imnn._validation_logdet(val)
    imnn._polish_readout(val)
    assert imnn._validation_logdet(val) >= before


def test_fit_transform_without_data_says_there_is_nothing_to_transform():
    problem = gaussian_mean_problem(n_data=4)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=20,
                           n_d=20, hidden_layer_sizes=(4,), max_epochs=2, random_state=0)
    with pytest.raises(ValueError, match="transform needs data X"):
        imnn.fit_transform(None)


def test_referee_keeps_the_weights_with_more_information_on_fresh_simulations():
    """After a simulator fit the restored (best-validation) weights and the last ones are
    scored again on 10 n_s fresh simulations: whichever order they come in, the weights
    kept are those with the higher ln det F there; with no other candidate nothing
    changes."""
    problem = gaussian_mean_variance_problem(n_data=6)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           n_s=200, n_d=200, hidden_layer_sizes=(8,), max_epochs=300,
                           random_state=0, dtype="float64").fit()
    trained = {k: v.clone() for k, v in imnn.module_.state_dict().items()}
    untrained = {k: v.clone() for k, v in IMNNTransformer(
        simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=200, n_d=200,
        hidden_layer_sizes=(8,), max_epochs=1, learning_rate=1e-6, random_state=1,
        dtype="float64").fit().module_.state_dict().items()}
    referee = imnn._many_simulations(4)
    scores = {}
    for name, weights in [("trained", trained), ("untrained", untrained)]:
        imnn.module_.load_state_dict(weights)
        scores[name] = imnn._validation_logdet(referee)
    assert scores["trained"] > scores["untrained"]
    for restored, last in [(trained, untrained), (untrained, trained)]:
        imnn.module_.load_state_dict(restored)
        imnn._last_weights = last
        imnn._referee()
        assert imnn._validation_logdet(referee) == pytest.approx(scores["trained"])
        assert imnn._last_weights is None
    imnn.module_.load_state_dict(untrained)
    imnn._referee()  # no last weights: the restored ones stay
    assert imnn._validation_logdet(referee) == pytest.approx(scores["untrained"])
