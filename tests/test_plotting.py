"""The figures of skinverse.plotting: what each one draws, checked against the data."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skinverse.datasets import gaussian_mean_problem  # noqa: E402
from skinverse.imnn import IMNNTransformer  # noqa: E402
from skinverse.implicit import ImplicitClassifier, ImplicitRegressor  # noqa: E402
from skinverse.plotting import (  # noqa: E402
    _credible_levels,
    plot_corner,
    plot_imnn_history,
    plot_implicit_structure,
    plot_loss_curves,
    plot_reconstructions,
    plot_rim_trajectory,
)
from skinverse.rim import RIMRegressor  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _hand_psnr(truth, estimate, peak):
    return 10 * np.log10(peak**2 / np.mean((truth - estimate) ** 2))


def test_plot_reconstructions_images_titles_hold_the_psnr():
    rng = np.random.RandomState(0)
    truth = rng.uniform(size=(5, 12))
    recon = {"baseline": truth + 0.2 * rng.normal(size=truth.shape),
             "model": truth + 0.05 * rng.normal(size=truth.shape)}
    axes = plot_reconstructions(truth, recon, image_shape=(3, 4), indices=[1, 4],
                                data_range=1.0)
    assert axes.shape == (2, 3)
    for row, i in zip(axes, [1, 4]):
        assert row[0].get_title() == "ground truth"
        np.testing.assert_allclose(row[0].images[0].get_array(), truth[i].reshape(3, 4))
        for ax, (name, value) in zip(row[1:], recon.items()):
            assert len(ax.images) == 1
            np.testing.assert_allclose(ax.images[0].get_array(), value[i].reshape(3, 4))
            assert ax.images[0].get_clim() == (truth[i].min(), truth[i].max())
            expected = _hand_psnr(truth[i], value[i], 1.0)
            assert ax.get_title() == f"{name}\nPSNR {expected:.2f} dB"


def test_plot_reconstructions_magnitudes_signals_and_given_axes():
    rng = np.random.RandomState(1)
    parts = rng.normal(size=(2, 2, 9))  # real and imaginary parts of 3 x 3 images
    truth, recon = parts.reshape(2, -1), parts.reshape(2, -1) * 0.9
    axes = plot_reconstructions(truth, recon, image_shape=(3, 3), magnitude=True)
    magnitude = np.hypot(parts[:, 0], parts[:, 1])
    np.testing.assert_allclose(axes[1, 0].images[0].get_array(), magnitude[1].reshape(3, 3))
    assert f"{_hand_psnr(magnitude[0], 0.9 * magnitude[0], np.ptp(magnitude[0])):.2f}" in (
        axes[0, 1].get_title())

    _, given = plt.subplots(2, 1)
    signals = rng.normal(size=(4, 20))
    axes = plot_reconstructions(signals, {"a": signals + 0.1, "b": signals}, n_images=2,
                                axes=given)
    assert axes[0, 0] is given[0]
    assert len(given[1].lines) == 3
    np.testing.assert_allclose(given[1].lines[1].get_ydata(), signals[1] + 0.1)
    labels = [t.get_text() for t in given[0].get_legend().get_texts()]
    expected = _hand_psnr(signals[0], signals[0] + 0.1, np.ptp(signals[0]))
    assert labels[1] == f"a, PSNR {expected:.2f} dB"
    with pytest.raises(ValueError, match="shape"):
        plot_reconstructions(signals, signals[:, :5])


@pytest.fixture(scope="module")
def rim_and_data():
    rng = np.random.RandomState(0)
    y = np.cumsum(rng.normal(size=(60, 8)), axis=1) / 3
    X = y + 0.2 * rng.normal(size=y.shape)
    rim = RIMRegressor(n_steps=3, max_epochs=3, random_state=0).fit(X, y)
    return rim, X, y


def test_plot_rim_trajectory_curves_and_error_per_step(rim_and_data):
    rim, X, y = rim_and_data
    trajectory = rim.predict(X, return_trajectory=True)
    axes = plot_rim_trajectory(rim, X, y, index=2)
    assert len(axes) == 2
    for step in range(3):
        np.testing.assert_allclose(axes[0].lines[step].get_ydata(), trajectory[2, step])
    np.testing.assert_allclose(axes[0].lines[3].get_ydata(), y[2])
    errors = ((trajectory - y[:, None]) ** 2).mean(axis=(0, 2))
    np.testing.assert_allclose(axes[1].lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), errors)
    assert axes[1].lines[1].get_xdata()[0] == rim.best_step_  # the marked step
    assert len(plot_rim_trajectory(rim, X)) == 1  # without y: the estimates only


def test_plot_rim_trajectory_images(rim_and_data):
    rim, X, y = rim_and_data
    trajectory = rim.predict(X, return_trajectory=True)
    axes = plot_rim_trajectory(rim, X, y, image_shape=(2, 4), steps=[1, 3])
    assert len(axes) == 4  # steps 1 and 3, the truth, the error per step
    np.testing.assert_allclose(axes[1].images[0].get_array(), trajectory[0, 2].reshape(2, 4))
    np.testing.assert_allclose(axes[2].images[0].get_array(), y[0].reshape(2, 4))
    assert [ax.get_title() for ax in axes[:3]] == ["step 1", "step 3", "ground truth"]


@pytest.fixture(scope="module")
def embedded_mlp():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3))
    mlp = MLPRegressor(hidden_layer_sizes=(4, 2), max_iter=20, random_state=0)
    mlp.fit(X, X[:, 0])
    return mlp, ImplicitRegressor.from_mlp(mlp, dtype="float64")


def test_plot_implicit_structure_heatmap_is_the_models_block_matrix(embedded_mlp):
    mlp, model = embedded_mlp
    ax = plot_implicit_structure(model)
    shown = np.ma.filled(ax.images[0].get_array(), np.nan)
    # State (x_2, x_1): A holds W_2 above the diagonal, B holds W_1, C the output layer.
    W1, W2, W3 = (w.T for w in mlp.coefs_)
    np.testing.assert_allclose(shown[0:2, 2:6], np.abs(W2), rtol=1e-6)
    np.testing.assert_allclose(shown[2:6, 6:9], np.abs(W1), rtol=1e-6)
    np.testing.assert_allclose(shown[6:7, 0:2], np.abs(W3), rtol=1e-6)
    assert np.all(np.isnan(shown[6:, 6:]))  # D = 0 is not drawn on the log scale


def test_plot_implicit_structure_spy_counts_non_zeros(embedded_mlp):
    mlp, model = embedded_mlp
    axes = plot_implicit_structure(model, kind="spy")
    assert axes.shape == (2, 2)
    W1, W2, W3 = (w.T for w in mlp.coefs_)
    expected = {"A": (6, 6, np.count_nonzero(W2)), "B": (6, 3, np.count_nonzero(W1)),
                "C": (1, 6, np.count_nonzero(W3)), "D": (1, 3, 0)}
    for ax, (name, (rows, cols, nnz)) in zip(axes.ravel(), expected.items()):
        assert len(ax.lines[0].get_xdata()) == nnz
        assert ax.get_title() == (f"{name} ({rows} x {cols}), "
                                  f"{100 * nnz / (rows * cols):.0f}% non-zero")
    with pytest.raises(ValueError, match="kind"):
        plot_implicit_structure(model, kind="bars")


def test_plot_implicit_structure_takes_a_pipeline(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), ImplicitClassifier(
        hidden_size=8, max_epochs=1, random_state=0)).fit(X[:200], y[:200])
    ax = plot_implicit_structure(pipe)
    assert ax.images[0].get_array().shape == (8 + 10, 8 + 64)


def test_plot_loss_curves_draws_loss_and_validation_scores(regression_data):
    X, y = regression_data
    implicit = ImplicitRegressor(hidden_size=8, max_epochs=4, early_stopping=True,
                                 n_iter_no_change=10, random_state=0).fit(X, y)
    mlp = MLPClassifier(hidden_layer_sizes=(5,), max_iter=6, early_stopping=True,
                        random_state=0).fit(X, y > 0)
    ax, val_ax = plot_loss_curves({"implicit": implicit, "MLP": mlp})
    np.testing.assert_allclose(ax.lines[0].get_ydata(), implicit.loss_curve_)
    np.testing.assert_allclose(ax.lines[0].get_xdata(),
                               np.arange(1, len(implicit.loss_curve_) + 1))
    np.testing.assert_allclose(ax.lines[1].get_ydata(), mlp.loss_curve_)
    np.testing.assert_allclose(val_ax.lines[0].get_ydata(), implicit.validation_scores_)
    np.testing.assert_allclose(val_ax.lines[1].get_ydata(), mlp.validation_scores_)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "implicit loss", "MLP loss", "implicit validation", "MLP validation"]
    given = plt.subplots()[1]
    ax, val_ax = plot_loss_curves([implicit], log=False, ax=given)
    assert ax is given and ax.get_yscale() == "linear"


@pytest.fixture(scope="module")
def imnn():
    problem = gaussian_mean_problem(n_data=10)
    return IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=50,
                           n_d=50, hidden_layer_sizes=(8,), max_epochs=6,
                           early_stopping=True, random_state=0).fit()


def test_plot_imnn_history_and_loss_curves_of_an_imnn(imnn):
    axes = plot_imnn_history(imnn, expected_detF=10.0)
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), imnn.history_["detF"])
    np.testing.assert_allclose(axes[0].lines[1].get_ydata(), imnn.history_["val_detF"])
    assert axes[0].lines[2].get_ydata()[0] == 10.0
    np.testing.assert_allclose(axes[1].lines[1].get_ydata(), imnn.history_["detinvC"])
    ax, _ = plot_loss_curves(imnn)  # IMNN losses are -ln det F + ...: may be negative
    np.testing.assert_allclose(ax.lines[0].get_ydata(), imnn.loss_curve_)
    expected = "log" if np.all(np.asarray(imnn.loss_curve_) > 0) else "linear"
    assert ax.get_yscale() == expected


def test_credible_levels_by_hand():
    density = np.array([[4.0, 3.0], [2.0, 1.0]])  # masses 0.4, 0.3, 0.2, 0.1
    assert _credible_levels(density, (0.68, 0.95)) == [1.0, 3.0]
    assert _credible_levels(density, (0.4,)) == [4.0]


def test_plot_corner_histograms_contours_and_truth():
    rng = np.random.RandomState(0)
    samples = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5]
    axes = plot_corner(samples, labels=["a", "b", "c"], truth=[0, 0, 0], bins=20)
    assert axes.shape == (3, 3)
    assert len(axes[1, 1].patches) == 20
    heights = np.array([p.get_height() for p in axes[1, 1].patches])
    widths = np.array([p.get_width() for p in axes[1, 1].patches])
    assert np.sum(heights * widths) == pytest.approx(1.0)  # a density
    assert not axes[0, 2].axison  # upper triangle off
    pair = axes[2, 0]
    np.testing.assert_allclose(pair.collections[0].get_offsets(), samples[:, [0, 2]])
    n_with_contours = len(pair.collections)
    assert pair.lines[0].get_xdata()[0] == 0 and pair.get_xlabel() == "a"
    assert axes[2, 0].get_ylabel() == "c" and axes[2, 2].get_xlabel() == "c"
    plain = plot_corner(samples, weights=np.ones(4000), contours=False, bins=20)
    assert len(plain[2, 0].collections) == 1  # the points only
    assert n_with_contours > 1


def test_plot_implicit_structure_spy_precision_is_relative(embedded_mlp):
    mlp, model = embedded_mlp
    W1, W2, W3 = (w.T for w in mlp.coefs_)
    largest = max(np.abs(w).max() for w in (W1, W2, W3))
    axes = plot_implicit_structure(model, kind="spy", precision=0.5)
    expected = np.count_nonzero(np.abs(W1) > 0.5 * largest)
    assert len(axes[0, 1].lines[0].get_xdata()) == expected


def test_image_grey_scales(rim_and_data):
    truth = np.linspace(0.2, 0.6, 16)[None]
    axes = plot_reconstructions(truth, {"r": truth}, image_shape=(4, 4), clim=(0, 1))
    assert axes[0, 0].images[0].get_clim() == (0, 1) == axes[0, 1].images[0].get_clim()
    rim, X, y = rim_and_data
    axes = plot_rim_trajectory(rim, X, y, image_shape=(2, 4), index=1)
    expected = (y[1].min(), y[1].max())  # the truth's range by default
    assert all(ax.images[0].get_clim() == pytest.approx(expected) for ax in axes[:-1])
    trajectory = rim.predict(X, return_trajectory=True)[1]
    axes = plot_rim_trajectory(rim, X, image_shape=(2, 4), index=1)
    assert axes[0].images[0].get_clim() == pytest.approx((trajectory.min(), trajectory.max()))
