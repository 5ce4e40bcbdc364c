"""The shared training loop, proved on the test-only MLPs against references: a fit of
the same length, the argmax of the recorded validation scores, an exact reweighting."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.class_weight import compute_sample_weight

from skinverse.callbacks import Callback
from skinverse.exceptions import DivergenceWarning, TrainingInterruptedWarning
from skinverse.utils._testing import RaiseAt, TorchMLPClassifier, TorchMLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _weights(est):
    return {k: v.detach().clone() for k, v in est.module_.state_dict().items()}


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0)


class Recorder(Callback):
    """Keeps the weights and logs of every epoch."""

    def __init__(self):
        self.states, self.logs = [], []

    def on_epoch_end(self, estimator, logs):
        self.states.append(_weights(estimator))
        self.logs.append(dict(logs))


# ---------------------------------------------------------------- determinism
def test_same_random_state_gives_identical_model(digits):
    X, y = digits
    a = TorchMLPClassifier(max_epochs=3, random_state=7).fit(X, y)
    b = TorchMLPClassifier(max_epochs=3, random_state=7).fit(X, y)
    c = TorchMLPClassifier(max_epochs=3, random_state=8).fit(X, y)
    _assert_same_weights(a, b)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_fit_leaves_global_rng_untouched(regression_data):
    X, y = regression_data
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    TorchMLPRegressor(max_epochs=2, random_state=0, early_stopping=True).fit(X, y)
    TorchMLPRegressor(max_epochs=2, random_state=None).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state[1])


# ---------------------------------------------------------------- continuing training
def test_partial_fit_continues_like_one_longer_fit(regression_data):
    X, y = regression_data
    inc = TorchMLPRegressor(random_state=0)
    for _ in range(3):
        inc.partial_fit(X, y)
    full = TorchMLPRegressor(max_epochs=3, random_state=0, tol=0, n_iter_no_change=99).fit(X, y)
    assert inc.n_iter_ == 3 and len(inc.loss_curve_) == 3
    assert inc.loss_curve_[2] < inc.loss_curve_[0]
    _assert_same_weights(inc, full)


def test_warm_start_continues_rather_than_restarts(regression_data):
    X, y = regression_data
    params = dict(random_state=0, tol=0, n_iter_no_change=99)
    est = TorchMLPRegressor(max_epochs=2, warm_start=True, **params).fit(X, y)
    est.set_params(max_epochs=3).fit(X, y)
    full = TorchMLPRegressor(max_epochs=5, **params).fit(X, y)
    assert est.n_iter_ == 5
    np.testing.assert_array_equal(est.loss_curve_, full.loss_curve_)
    _assert_same_weights(est, full)


def test_fit_without_warm_start_restarts(regression_data):
    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=2, random_state=0, tol=0).fit(X, y)
    first = _weights(est)
    est.fit(X, y)
    assert est.n_iter_ == 2
    for key, value in _weights(est).items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)


# ---------------------------------------------------------------- stopping
def test_early_stopping_restores_best_weights():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 10))
    y = X[:, 0] + rng.normal(scale=2.0, size=120)  # noisy: a wide MLP overfits quickly
    recorder = Recorder()
    est = TorchMLPRegressor(
        hidden_layer_sizes=(256,), learning_rate=1e-2, early_stopping=True, tol=0,
        n_iter_no_change=5, max_epochs=200, random_state=0, callbacks=[recorder],
    ).fit(X, y)
    scores = est.validation_scores_
    best = int(np.argmax(scores))
    assert est.n_iter_ < 200, "early stopping should have ended training"
    assert best < est.n_iter_ - 1, "the best epoch should not be the last here"
    assert est.best_validation_score_ == scores[best]
    for key, value in _weights(est).items():
        torch.testing.assert_close(value, recorder.states[best][key], rtol=0, atol=0)


def test_training_loss_plateau_stops_without_validation(regression_data):
    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=500, tol=10.0, n_iter_no_change=3, random_state=0).fit(X, y)
    assert est.n_iter_ == 4  # epoch 1 improves on inf, the next 3 cannot improve by 10
    assert est.validation_scores_ is None


def test_max_epochs_reached_warns(regression_data):
    X, y = regression_data
    with pytest.warns(ConvergenceWarning, match="Maximum number of epochs"):
        TorchMLPRegressor(max_epochs=2, random_state=0).fit(X, y)


class NaNAfter(TorchMLPRegressor):
    """Returns a NaN loss from epoch ``n_iter_ >= 3`` on."""

    def _compute_loss(self, batch):
        loss = super()._compute_loss(batch)
        return loss * float("nan") if self.n_iter_ >= 3 else loss


def test_nan_loss_stops_warns_and_restores_last_vouched_weights(regression_data):
    X, y = regression_data
    with pytest.warns(DivergenceWarning, match="weights of epoch 2 were restored"):
        est = NaNAfter(max_epochs=10, random_state=0, tol=0).fit(X, y)
    # Epoch 3's loss was finite and a new low, so the weights epoch 3 started from (those
    # of epoch 2) are vouched for; epoch 3's own weights met only the NaN of epoch 4.
    reference = TorchMLPRegressor(max_epochs=2, random_state=0, tol=0).fit(X, y)
    assert est.n_iter_ == 3
    pred = est.predict(X)
    assert np.all(np.isfinite(pred))
    np.testing.assert_array_equal(pred, reference.predict(X))


def test_keyboard_interrupt_keeps_a_usable_estimator(regression_data):
    X, y = regression_data
    with pytest.warns(TrainingInterruptedWarning, match="interrupted after 3 epoch"):
        est = TorchMLPRegressor(
            max_epochs=10, random_state=0, tol=0, callbacks=[RaiseAt(3)]
        ).fit(X, y)
    reference = TorchMLPRegressor(max_epochs=3, random_state=0, tol=0).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), reference.predict(X))


def test_callback_can_stop_training(regression_data):
    class StopAt2(Callback):
        def on_epoch_end(self, estimator, logs):
            logs["stop"] = logs["epoch"] == 2

    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=10, callbacks=[StopAt2()], random_state=0).fit(X, y)
    assert est.n_iter_ == 2


# ---------------------------------------------------------------- options
def test_grad_clip_bounds_the_gradient_norm(regression_data):
    class GradNorm(Callback):
        norms = []

        def on_batch_end(self, estimator, batch_index, loss):
            grads = [p.grad.norm() for p in estimator.module_.parameters()]
            self.norms.append(float(torch.stack(grads).norm()))

    X, y = regression_data
    TorchMLPRegressor(max_epochs=2, grad_clip=1e-3, callbacks=[GradNorm()], random_state=0).fit(
        X, y * 100
    )
    assert max(GradNorm.norms) <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("step", [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]),
        ("cosine", [1e-3 * 0.5 * (1 + np.cos(np.pi * t / 6)) for t in range(6)]),
        (None, [1e-3] * 6),
    ],
)
def test_lr_schedules(regression_data, schedule, expected):
    X, y = regression_data
    recorder = Recorder()
    TorchMLPRegressor(
        max_epochs=6, lr_schedule=schedule, tol=0, n_iter_no_change=99, random_state=0,
        callbacks=[recorder],
    ).fit(X, y)
    used = [logs["learning_rate"] for logs in recorder.logs]
    np.testing.assert_allclose(used, expected, rtol=1e-12)


def test_class_weight_equals_the_equivalent_sample_weight(digits):
    X, y = digits
    X, y = X[:400], y[:400] % 3
    a = TorchMLPClassifier(max_epochs=3, class_weight="balanced", random_state=0).fit(X, y)
    b = TorchMLPClassifier(max_epochs=3, random_state=0).fit(
        X, y, sample_weight=compute_sample_weight("balanced", y)
    )
    _assert_same_weights(a, b)


def test_verbose_prints_one_line_per_epoch(regression_data, capsys):
    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=4, verbose=1, early_stopping=True, random_state=0)
    est.fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == est.n_iter_ == 4
    assert "loss" in lines[0] and "validation score" in lines[0] and lines[0].endswith("s")


def test_dtype_float64_and_output_dtype(regression_data):
    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=2, dtype="float64", random_state=0).fit(X, y)
    assert next(est.module_.parameters()).dtype == torch.float64
    assert est.predict(X).dtype == np.float64
    assert est.predict(X.astype(np.float32)).dtype == np.float32


# ---------------------------------------------------------------- persistence
def test_pickle_round_trip_in_a_fresh_process(tmp_path, digits):
    X, y = digits
    est = TorchMLPClassifier(max_epochs=3, random_state=0).fit(X, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import pickle, sys, numpy as np\n"
        f"est = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        f"np.save({str(tmp_path / 'proba.npy')!r}, est.predict_proba(X))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), est.predict_proba(X))


def test_joblib_round_trip_keeps_training_state(tmp_path, regression_data):
    import joblib

    X, y = regression_data
    params = dict(random_state=0, tol=0, n_iter_no_change=99, lr_schedule="cosine", max_epochs=4)
    est = TorchMLPRegressor(warm_start=True, **params).fit(X, y)
    joblib.dump(est, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    est.fit(X, y)
    loaded.fit(X, y)  # continues from the restored optimiser, scheduler and generator
    _assert_same_weights(est, loaded)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_resume_matches_uninterrupted_fit(tmp_path, regression_data):
    X, y = regression_data
    params = dict(max_epochs=6, random_state=0, tol=0, n_iter_no_change=99,
                  checkpoint_dir=str(tmp_path))
    with pytest.warns(TrainingInterruptedWarning):
        TorchMLPRegressor(**params, callbacks=[RaiseAt(4)]).fit(X, y)  # "preempted"
    resumed = TorchMLPRegressor(**params).fit(X, y)
    reference = TorchMLPRegressor(**{**params, "checkpoint_dir": None}).fit(X, y)
    assert resumed.n_iter_ == 6
    np.testing.assert_array_equal(resumed.loss_curve_, reference.loss_curve_)
    _assert_same_weights(resumed, reference)


# ---------------------------------------------------------------- logging
def test_tensorboard_writes_event_files(tmp_path, regression_data):
    pytest.importorskip("tensorboard", reason="the 'logging' extra is not installed")
    X, y = regression_data
    TorchMLPRegressor(max_epochs=2, log_dir=tmp_path, random_state=0).fit(X, y)
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_missing_tensorboard_gives_a_clear_error(monkeypatch, tmp_path, regression_data):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    X, y = regression_data
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TorchMLPRegressor(max_epochs=1, log_dir=tmp_path).fit(X, y)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad, match",
    [(np.nan, "NaN"), (np.inf, "infinity")],
)
def test_non_finite_X_is_rejected(regression_data, bad, match):
    X, y = regression_data
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match=match):
        TorchMLPRegressor(max_epochs=1).fit(X, y)


def test_wrong_feature_count_at_predict(regression_data):
    X, y = regression_data
    est = TorchMLPRegressor(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="4 features"):
        est.predict(X[:, :3])


def test_empty_and_unfitted(regression_data):
    X, y = regression_data
    with pytest.raises(ValueError, match="0 sample"):
        TorchMLPRegressor().fit(X[:0], y[:0])
    with pytest.raises(NotFittedError):
        TorchMLPRegressor().predict(X)


def test_unavailable_device_is_a_clear_error(regression_data):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path cannot be reached")
    X, y = regression_data
    with pytest.raises(ValueError, match="CUDA is not available"):
        TorchMLPRegressor(device="cuda", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="device must be"):
        TorchMLPRegressor(device="gpu", max_epochs=1).fit(X, y)
    assert TorchMLPRegressor(max_epochs=1).fit(X, y).device_.type == "cpu"


def test_bad_callback_is_a_type_error(regression_data):
    X, y = regression_data
    with pytest.raises(TypeError, match="Callback instances"):
        TorchMLPRegressor(max_epochs=1, callbacks=[print]).fit(X, y)


def test_warning_points_at_the_caller(regression_data):
    X, y = regression_data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TorchMLPRegressor(max_epochs=1).fit(X, y)
    assert caught and caught[0].filename == __file__


def test_integer_regression_targets_train_as_floats(regression_data):
    X, _ = regression_data
    y = np.arange(len(X)) % 5  # integers, as sklearn's check_fit_score_takes_y passes
    est = TorchMLPRegressor(max_epochs=2, random_state=0)
    data = est._validate_fit_data(X, y, reset=True)
    assert data["y"].dtype == np.float64  # CUDA's backward refuses a float-vs-long loss
    as_int = TorchMLPRegressor(max_epochs=2, random_state=0).fit(X, y)
    as_float = TorchMLPRegressor(max_epochs=2, random_state=0).fit(X, y.astype(float))
    np.testing.assert_array_equal(as_int.predict(X), as_float.predict(X))


def test_progress_without_tqdm_still_shows(monkeypatch, regression_data, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    X, y = regression_data
    TorchMLPRegressor(max_epochs=2, batch_size=30, verbose=2, random_state=0).fit(X, y)
    err = capsys.readouterr().err.splitlines()
    # 300 samples in batches of 30: 10 batches, a line each, per epoch
    assert [line.strip() for line in err if "batch" in line][:3] == [
        "epoch 1: batch 1/10", "epoch 1: batch 2/10", "epoch 1: batch 3/10"]
    assert sum("batch" in line for line in err) == 20


def test_one_step_epochs_print_about_fifty_lines(capsys):
    from skinverse.datasets import gaussian_mean_problem
    from skinverse.imnn import IMNNTransformer

    problem = gaussian_mean_problem(n_data=4)
    IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=32, n_d=32,
                    hidden_layer_sizes=(4,), max_epochs=200, n_iter_no_change=10**6,
                    verbose=1, random_state=0).fit()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert [int(ln.split()[1]) for ln in lines] == [1] + list(range(4, 201, 4))


def test_importing_skinverse_first_makes_idle_threads_wait_passively():
    code = "import os, skinverse; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's choice stands
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "ACTIVE"


def test_validation_scores_equal_scikit_learns_metrics():
    from sklearn.metrics import accuracy_score, r2_score

    from skinverse._base._heads import r2_tensor

    rng = np.random.RandomState(0)
    y, w = rng.normal(size=(50, 3)), rng.uniform(size=50)
    pred = y + 0.3 * rng.normal(size=(50, 3))
    y[:, 1] = pred[:, 1] = 2.0  # a constant output predicted exactly
    assert r2_tensor(torch.tensor(y), torch.tensor(pred), torch.tensor(w)) == pytest.approx(
        r2_score(y, pred, sample_weight=w), rel=1e-12)
    X, labels = rng.normal(size=(120, 4)), rng.randint(0, 3, size=120)
    est = TorchMLPClassifier(max_epochs=2, random_state=0).fit(X, labels)
    val = est._to_tensors(est._validate_fit_data(X, labels, reset=False))
    assert est._validation_score(val) == pytest.approx(accuracy_score(labels, est.predict(X)))


def test_partial_fit_with_other_classes_than_the_first_call_is_an_error():
    """As scikit-learn's partial_fit: classes given again must be the same."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(30, 3)), np.repeat([0, 1, 2], 10)
    est = TorchMLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    est.partial_fit(X, y, classes=[2, 1, 0])  # the same set
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2, 3\] is not the same"):
        est.partial_fit(X, y, classes=[0, 1, 2, 3])
