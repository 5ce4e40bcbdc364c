"""The training lifecycle, walked through with every estimator: interrupt and resume,
one checkpoint directory for several fits, searches with checkpoints, damaged files,
two processes, warm starts with new hyperparameters, divergence. Every test compares
the model (its predictions) with a reference fit, not only that nothing raised."""

import re
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skinverse.callbacks import Callback
from skinverse.datasets import gaussian_mean_problem, make_mri_data, make_phantoms
from skinverse.exceptions import (
    CheckpointError,
    DivergenceWarning,
    TrainingDivergedError,
    TrainingInterruptedWarning,
)
from skinverse.implicit import ImplicitClassifier, ImplicitRegressor
from skinverse.imnn import IMNNTransformer
from skinverse.operators import Blur, MatrixOperator, gaussian_kernel
from skinverse.rim import RIMRegressor
from skinverse.unrolled import UnrolledRegressor
from skinverse.utils._testing import RaiseAt, TorchMLPRegressor

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning",
    "ignore::skinverse.exceptions.TrainingInterruptedWarning",
)


# ---------------------------------------------------------------------- the estimators
def _regression(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n, 4))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]


def _classification(n=120, seed=0):
    X, y = _regression(n, seed)
    return X, (y > np.median(y)).astype(int)


_BLUR = Blur(gaussian_kernel(5, 1.5), input_shape=(8,))


def _deblurring(n=60, seed=0):
    rng = np.random.RandomState(seed)
    signals = np.cumsum(rng.normal(size=(n, 8)), axis=1) / 4
    observed = _BLUR(torch.as_tensor(signals)).numpy()
    return observed + 0.05 * rng.normal(size=observed.shape), signals


_GAUSS = gaussian_mean_problem(n_data=6)


def _design(n=120, seed=0):
    y = np.random.RandomState(seed).uniform(-0.5, 0.5, size=n)
    X = _GAUSS.simulator(torch.as_tensor(y[:, None]), torch.Generator().manual_seed(seed))
    return X.numpy(), y


def _mri(seed=0):
    images = make_phantoms(12, 8, random_state=seed)
    X, y, maps, masks = make_mri_data(images, n_coils=2, acceleration=2, noise_std=0.01,
                                      random_state=seed)
    return X, y, {"maps": maps, "masks": masks}


@dataclass
class Case:
    name: str
    make: Callable  # params -> unfitted estimator
    data: Callable  # seed -> (X, y, fit_kwargs)
    output: Callable = None  # (estimator, X, fit_kwargs) -> array
    cv: bool = True  # scored by cross_val_score without metadata routing
    options: dict = field(default_factory=dict)  # "every option on" for resume tests

    def out(self, est, X, kwargs):
        if self.output is not None:
            return self.output(est, X, kwargs)
        return est.predict(X, **kwargs)


def _xy(fn):
    return lambda seed=0: (*fn(seed=seed), {})


CASES = [
    Case("mlp", lambda **p: TorchMLPRegressor(hidden_layer_sizes=(8,), batch_size=40, **p),
         _xy(_regression), options={"lr_schedule": "cosine", "grad_clip": 5.0}),
    Case("implicit-classifier",
         lambda **p: ImplicitClassifier(hidden_size=6, batch_size=40, **p),
         _xy(_classification), output=lambda e, X, k: e.predict_proba(X),
         options={"lr_schedule": "plateau"}),
    Case("implicit-regressor",
         lambda **p: ImplicitRegressor(hidden_size=6, batch_size=40, **p), _xy(_regression)),
    Case("rim", lambda **p: RIMRegressor(operator=_BLUR, noise_std=0.05, n_steps=2,
                                         hidden_size=8, batch_size=20, **p),
         _xy(_deblurring), options={"ema_decay": 0.8, "warmup_steps": 4,
                                    "lr_schedule": "step"}),
    Case("imnn", lambda **p: IMNNTransformer(hidden_layer_sizes=(8,), **p), _xy(_design),
         output=lambda e, X, k: e.transform(X)),
    Case("unrolled", lambda **p: UnrolledRegressor(method="modl", n_unrolls=1, width=2,
                                                   depth=1, batch_size=4, **p),
         lambda seed=0: _mri(seed), cv=False),
]
IDS = [case.name for case in CASES]


def _fit(case, seed=0, **params):
    X, y, kwargs = case.data(seed)
    params = {"random_state": 0, **params}
    return case.make(**params).fit(X, y, **kwargs)


def _same_model(case, a, b, seed=0, atol=1e-6):
    X, _, kwargs = case.data(seed)
    np.testing.assert_allclose(case.out(a, X, kwargs), case.out(b, X, kwargs), rtol=0,
                               atol=atol)


def _files(directory):
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file())


# ---------------------------------------------------------------------- resume
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_interrupted_then_resumed_equals_uninterrupted(case, tmp_path):
    params = dict(max_epochs=6, early_stopping=True, validation_fraction=0.2,
                  n_iter_no_change=100, **case.options)
    reference = _fit(case, **params)
    stop = int(np.random.RandomState(len(case.name)).randint(1, 6))  # a "random" epoch
    with pytest.warns(TrainingInterruptedWarning):
        _fit(case, checkpoint_dir=tmp_path, callbacks=[RaiseAt(stop)], **params)
    resumed = _fit(case, checkpoint_dir=tmp_path, **params)
    assert resumed.n_iter_ == reference.n_iter_ == 6
    np.testing.assert_array_equal(resumed.loss_curve_, reference.loss_curve_)
    np.testing.assert_array_equal(resumed.validation_scores_, reference.validation_scores_)
    _same_model(case, resumed, reference, atol=0)
    again = _fit(case, checkpoint_dir=tmp_path, **params)  # finished: loads, trains nothing
    assert again.n_iter_ == 6
    _same_model(case, again, reference, atol=0)


def test_simulator_training_resumes_exactly(tmp_path):
    params = dict(simulator=_GAUSS.simulator, theta_fid=_GAUSS.theta_fid, n_s=64, n_d=64,
                  hidden_layer_sizes=(8,), max_epochs=8, early_stopping=True,
                  random_state=3)
    reference = IMNNTransformer(**params).fit()
    with pytest.warns(TrainingInterruptedWarning):
        IMNNTransformer(checkpoint_dir=tmp_path, callbacks=[RaiseAt(5)], **params).fit()
    resumed = IMNNTransformer(checkpoint_dir=tmp_path, **params).fit()
    np.testing.assert_array_equal(resumed.history_["detF"], reference.history_["detF"])
    np.testing.assert_array_equal(resumed.fisher_, reference.fisher_)


def test_raising_max_epochs_continues_a_finished_fit(tmp_path):
    case = CASES[0]
    _fit(case, max_epochs=4, checkpoint_dir=tmp_path)
    longer = _fit(case, max_epochs=8, checkpoint_dir=tmp_path)
    reference = _fit(case, max_epochs=8)
    assert longer.n_iter_ == 8
    _same_model(case, longer, reference, atol=0)


def test_a_schedule_tied_to_max_epochs_gets_its_own_checkpoint(tmp_path):
    case = CASES[0]
    _fit(case, max_epochs=4, lr_schedule="cosine", checkpoint_dir=tmp_path)
    longer = _fit(case, max_epochs=8, lr_schedule="cosine", checkpoint_dir=tmp_path)
    _same_model(case, longer, _fit(case, max_epochs=8, lr_schedule="cosine"), atol=0)
    assert len(_files(tmp_path)) == 2


# ---------------------------------------------------------------------- one directory
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fit_on_other_data_in_the_same_directory_trains_afresh(case, tmp_path):
    _fit(case, seed=0, max_epochs=2, checkpoint_dir=tmp_path)
    second = _fit(case, seed=1, max_epochs=2, checkpoint_dir=tmp_path)
    _same_model(case, second, _fit(case, seed=1, max_epochs=2), seed=1, atol=0)
    other_params = _fit(case, seed=1, max_epochs=2, checkpoint_dir=tmp_path, random_state=5)
    _same_model(case, other_params, _fit(case, seed=1, max_epochs=2, random_state=5), seed=1,
                atol=0)
    assert len(_files(tmp_path)) == 3  # one sub-directory per (configuration, data)


def test_partial_fit_with_a_checkpoint_dir_keeps_training(tmp_path):
    X, y = _regression()
    est = TorchMLPRegressor(random_state=0, checkpoint_dir=tmp_path)
    for _ in range(3):
        est.partial_fit(X, y)
    reference = TorchMLPRegressor(random_state=0)
    for _ in range(3):
        reference.partial_fit(X, y)
    assert est.n_iter_ == 3
    np.testing.assert_array_equal(est.predict(X), reference.predict(X))


@pytest.mark.parametrize("case", [c for c in CASES if c.cv], ids=[c.name for c in CASES if c.cv])
def test_cross_validation_with_a_checkpoint_dir_equals_without(case, tmp_path):
    X, y, _ = case.data(0)
    est = case.make(max_epochs=2, random_state=0)
    plain = cross_val_score(est, X, y, cv=KFold(3))
    with_dir = cross_val_score(est.set_params(checkpoint_dir=tmp_path), X, y, cv=KFold(3))
    np.testing.assert_allclose(with_dir, plain, rtol=0, atol=1e-6)
    assert len(_files(tmp_path)) == 3  # folds never share a checkpoint
    again = cross_val_score(est, X, y, cv=KFold(3))  # every fold resumes its own
    np.testing.assert_allclose(again, plain, rtol=0, atol=1e-6)


def test_grid_search_with_a_checkpoint_dir_equals_without(tmp_path):
    X, y = _regression()
    grid = {"learning_rate": [1e-3, 1e-2]}
    est = TorchMLPRegressor(hidden_layer_sizes=(8,), max_epochs=3, random_state=0)
    plain = GridSearchCV(est, grid, cv=2).fit(X, y)
    with_dir = GridSearchCV(est.set_params(checkpoint_dir=tmp_path), grid, cv=2).fit(X, y)
    np.testing.assert_allclose(with_dir.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(with_dir.predict(X), plain.predict(X))


def test_unrolled_cross_validation_with_routed_maps_and_a_checkpoint_dir(tmp_path):
    case = CASES[-1]
    X, y, kwargs = case.data(0)
    with sklearn.config_context(enable_metadata_routing=True):
        est = case.make(max_epochs=1, random_state=0)
        est.set_fit_request(maps=True, masks=True, sample_weight=False)
        est.set_score_request(maps=True, masks=True, sample_weight=False)
        plain = cross_val_score(est, X, y, cv=KFold(3), params=kwargs)
        est.set_params(checkpoint_dir=tmp_path)
        with_dir = cross_val_score(est, X, y, cv=KFold(3), params=kwargs)
    np.testing.assert_allclose(with_dir, plain, rtol=0, atol=1e-6)
    assert len(_files(tmp_path)) == 3


# ---------------------------------------------------------------------- damaged files
def _one_checkpoint(tmp_path):
    case = CASES[0]
    _fit(case, max_epochs=2, checkpoint_dir=tmp_path)
    (path,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    return case, path


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    case, path = _one_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{path.name}.*damaged"):
        _fit(case, max_epochs=2, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("where", [0.0, 0.3, 0.9])
def test_bit_flipped_checkpoint_is_a_clear_error(tmp_path, where):
    case, path = _one_checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[int(where * (len(raw) - 1))] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=path.name):
        _fit(case, max_epochs=2, checkpoint_dir=tmp_path)


def test_checkpoint_moved_to_another_fit_is_refused(tmp_path):
    case, path = _one_checkpoint(tmp_path)
    _fit(case, seed=1, max_epochs=2, checkpoint_dir=tmp_path)
    other = next(p for p in tmp_path.rglob("*.safetensors") if p != path)
    other.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="another configuration or other data"):
        _fit(case, seed=1, max_epochs=2, checkpoint_dir=tmp_path)


def test_lambda_parameters_are_refused_with_a_checkpoint_dir(tmp_path):
    X, y = _deblurring()
    est = RIMRegressor(score_fn=lambda x, y: y - x, n_steps=2, max_epochs=1,
                       checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="lambda"):
        est.fit(X, y)
    assert _files(tmp_path) == []  # nothing half-written


def test_two_operators_give_two_checkpoints(tmp_path):
    X, y = _regression(40)
    rng = np.random.RandomState(0)
    fits = []
    for _ in range(2):
        op = MatrixOperator(rng.normal(size=(4, 4)))
        est = RIMRegressor(operator=op, noise_std=0.1, n_steps=2, hidden_size=4,
                           max_epochs=1, random_state=0, checkpoint_dir=tmp_path)
        fits.append(est.fit(X @ op.matrix.numpy().T, X))
    assert len(_files(tmp_path)) == 2


_WORKER = """
import sys, numpy as np
from skinverse.utils._testing import RaiseAt, TorchMLPRegressor
rng = np.random.RandomState(0)
X = rng.uniform(-1, 1, size=(400, 4)); y = np.sin(2 * X[:, 0])
est = TorchMLPRegressor(hidden_layer_sizes=(16,), max_epochs=15, random_state=0,
                        checkpoint_dir=sys.argv[1]).fit(X, y)
np.save(sys.argv[2], est.predict(X))
"""


def test_two_processes_on_one_directory(tmp_path):
    directory = tmp_path / "ckpt"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(directory),
                               str(tmp_path / f"pred{i}.npy")]) for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    files = _files(directory)
    assert len(files) == 1 and files[0].endswith("state.safetensors")  # no temporary left
    a, b = np.load(tmp_path / "pred0.npy"), np.load(tmp_path / "pred1.npy")
    np.testing.assert_array_equal(a, b)
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(400, 4))
    y = np.sin(2 * X[:, 0])
    loaded = TorchMLPRegressor(hidden_layer_sizes=(16,), max_epochs=15, random_state=0,
                               checkpoint_dir=directory).fit(X, y)
    np.testing.assert_array_equal(loaded.predict(X), a)


# ---------------------------------------------------------------------- warm start
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_warm_start_applies_a_new_learning_rate(case):
    class Rates(Callback):
        def __init__(self):
            self.rates = []

        def on_epoch_end(self, estimator, logs):
            self.rates.append(logs["learning_rate"])

    rates = Rates()
    est = _fit(case, max_epochs=2, warm_start=True, learning_rate=1e-3, callbacks=[rates])
    est.set_params(learning_rate=3e-2, alpha=1e-4)
    X, y, kwargs = case.data(0)
    est.fit(X, y, **kwargs)
    assert rates.rates[-2:] == [3e-2, 3e-2]
    groups = est.optimizer_.param_groups
    assert all(g["lr"] == 3e-2 and g["weight_decay"] == 1e-4 for g in groups)


_ARCHITECTURE = {"mlp": {"hidden_layer_sizes": (4,)}, "implicit-classifier": {"hidden_size": 4},
                 "implicit-regressor": {"hidden_size": 4}, "rim": {"n_steps": 3},
                 "imnn": {"hidden_layer_sizes": (5,)}, "unrolled": {"width": 3}}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_warm_start_refuses_a_changed_model_definition(case):
    """A changed architecture or dtype cannot be continued: a clear error naming it,
    and the fitted model left as it was (it was ignored, or failed inside torch)."""
    X, y, kwargs = case.data(0)
    for change in [{"dtype": "float64"}, *(
            {k: v} for k, v in _ARCHITECTURE[case.name].items())]:
        est = _fit(case, max_epochs=2, warm_start=True)
        before = case.out(est, X, kwargs)
        est.set_params(**change)
        with pytest.raises(ValueError, match=re.escape(f"was built: {list(change)}")):
            est.fit(X, y, **kwargs)
        np.testing.assert_array_equal(case.out(est.set_params(**{
            k: case.make().get_params()[k] for k in change}), X, kwargs), before)
        est.set_params(**change, warm_start=False).fit(X, y, **kwargs)  # a new model


def test_partial_fit_refuses_a_changed_architecture():
    X, y = _regression()
    est = TorchMLPRegressor(hidden_layer_sizes=(8,), random_state=0).partial_fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.set_params(hidden_layer_sizes=(3,)).partial_fit(X, y)


def test_warm_start_with_a_new_rate_equals_a_manual_continuation():
    X, y = _regression()
    params = dict(hidden_layer_sizes=(8,), random_state=0, tol=0, n_iter_no_change=99)
    est = TorchMLPRegressor(max_epochs=2, warm_start=True, **params).fit(X, y)
    manual = TorchMLPRegressor(max_epochs=2, **params).fit(X, y)
    est.set_params(learning_rate=1e-2).fit(X, y)
    for group in manual.optimizer_.param_groups:  # what "the new rate" means, by hand
        group["lr"] = 1e-2
    manual.set_params(warm_start=True, learning_rate=1e-3)
    manual.training_state_.hyper = manual._hyperparameters()  # nothing else to apply
    manual.fit(X, y)
    np.testing.assert_array_equal(est.predict(X), manual.predict(X))


# ---------------------------------------------------------------------- divergence
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_divergence_after_a_good_start_returns_the_vouched_weights(case):
    start = _fit(case, max_epochs=2, warm_start=True, optimizer="sgd", learning_rate=1e-3)
    X, y, kwargs = case.data(0)
    reference = case.out(start, X, kwargs)
    start.set_params(learning_rate=1e30)
    with pytest.warns(DivergenceWarning, match="weights of epoch 2 were restored"):
        start.fit(X, y, **kwargs)
    np.testing.assert_array_equal(case.out(start, X, kwargs), reference)
    assert all(torch.isfinite(p).all() for p in start.module_.parameters())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_divergence_without_a_good_epoch_is_an_error(case):
    X, y, kwargs = case.data(0)
    est = case.make(max_epochs=5, optimizer="sgd", learning_rate=1e30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TrainingDivergedError, match="no model to return"):
            est.fit(X, y, **kwargs)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        case.out(est, X, kwargs)


def test_no_exploded_weights_after_a_late_divergence():
    class Explode(TorchMLPRegressor):
        """Weights blow up (finite) during epoch 3, the loss goes NaN in epoch 4."""

        def _run_epoch(self, train, batch_hooks):
            loss = super()._run_epoch(train, batch_hooks)
            if self.training_state_.n_iter == 2:
                with torch.no_grad():
                    for p in self.module_.parameters():
                        p.mul_(1e30)
            if self.training_state_.n_iter >= 3:
                return float("nan")
            return loss

    X, y = _regression()
    with pytest.warns(DivergenceWarning):
        est = Explode(max_epochs=10, random_state=0, tol=0).fit(X, y)
    biggest = max(float(p.detach().abs().max()) for p in est.module_.parameters())
    assert biggest < 1e3
    np.testing.assert_array_equal(
        est.predict(X), TorchMLPRegressor(max_epochs=2, random_state=0, tol=0).fit(X, y)
        .predict(X))


# ---------------------------------------------------------------------- input
def test_values_that_overflow_float32_are_an_input_error():
    X, y = _regression()
    X = X.copy()
    X[5, 2] = 1e39
    with pytest.raises(ValueError, match=r"sample 5, column 2.*float32"):
        TorchMLPRegressor(max_epochs=1).fit(X, y)
    TorchMLPRegressor(max_epochs=1, dtype="float64").fit(X, y)  # fits in float64
    est = TorchMLPRegressor(max_epochs=1).fit(*_regression())
    with pytest.raises(ValueError, match="sample 5, column 2"):
        est.predict(X)


def test_nan_in_coil_maps_is_an_input_error():
    X, y, kwargs = _mri()
    maps = kwargs["maps"].copy()
    maps[3, 0, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="maps"):
        UnrolledRegressor(method="cg-sense", max_epochs=1).fit(X, y, maps=maps,
                                                               masks=kwargs["masks"])


# ---------------------------------------------------------------------- physics and modules
def test_a_float64_fit_uses_float64_operators():
    X, y = _deblurring()
    rim = RIMRegressor(operator=_BLUR, noise_std=0.05, n_steps=2, hidden_size=4, max_epochs=1,
                       dtype="float64", random_state=0).fit(X, y)
    assert all(getattr(rim.operator_, n).dtype == torch.float64 for n in rim.operator_._tensors)
    assert _BLUR.kernel.dtype == torch.float32  # the user's operator is left as it was
    X, y, kwargs = _mri()
    unrolled = UnrolledRegressor(method="modl", n_unrolls=1, width=2, depth=1, max_epochs=1,
                                 dtype="float64", random_state=0).fit(X, y, **kwargs)
    held = [getattr(unrolled.operator_, n) for n in unrolled.operator_._tensors]
    assert all(t.dtype in (torch.float64, torch.complex128) for t in held if t is not None)


def test_pinv_initialisation_is_deterministic_and_leaves_the_global_rng_alone():
    X, y = _deblurring()
    rim = RIMRegressor(operator=_BLUR, noise_std=0.05, n_steps=2, hidden_size=4, init="pinv",
                       max_epochs=1, random_state=0).fit(X, y)
    state = torch.get_rng_state()
    first = rim.predict(X)
    torch.manual_seed(123)  # another global state must not change predictions
    np.testing.assert_array_equal(rim.predict(X), first)
    torch.set_rng_state(state)
    np.testing.assert_array_equal(rim.predict(X), first)


def _gaussian_energy(x, y):
    """-log p(y | x) of the blur with noise 0.05: the energy of the operator model."""
    return -_BLUR.log_likelihood(x, y, 0.05)


def _gaussian_score(x, y):
    return _BLUR.score(x, y, 0.05)


def test_energy_fn_trains_like_the_score_it_implies():
    X, y = _deblurring()
    params = dict(n_steps=2, hidden_size=4, max_epochs=2, dtype="float64", random_state=0)
    by_score = RIMRegressor(score_fn=_gaussian_score, **params).fit(X, y)
    by_energy = RIMRegressor(energy_fn=_gaussian_energy, **params).fit(X, y)
    # The same score, so the same gradients -- also through the score, which needs the
    # energy's graph kept (a detached autograd score trains another model).
    np.testing.assert_allclose(by_energy.loss_curve_, by_score.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(by_energy.predict(X), by_score.predict(X), rtol=1e-9,
                               atol=1e-12)


def test_a_users_module_keeps_its_initialisation():
    from torch import nn

    class FirstWeights(Callback):
        def on_train_begin(self, estimator):
            self.weights = {k: v.clone() for k, v in estimator.module_.state_dict().items()}

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.fill_(0.01)
    seen = FirstWeights()
    X, y = _design()
    IMNNTransformer(model=model, max_epochs=1, callbacks=[seen], random_state=0).fit(X, y)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(seen.weights[key], value, rtol=0, atol=0)


def test_ema_with_early_stopping_returns_the_best_averaged_weights():
    class Candidates(Callback):
        def __init__(self):
            self.weights = []

        def on_epoch_end(self, estimator, logs):
            self.weights.append({k: v.clone() for k, v in
                                 estimator.training_state_.candidate().items()})

    seen = Candidates()
    X, y = _deblurring()
    rim = RIMRegressor(operator=_BLUR, noise_std=0.05, n_steps=2, hidden_size=8,
                       batch_size=20, ema_decay=0.7, early_stopping=True, init="zeros",
                       n_iter_no_change=100, max_epochs=5, learning_rate=0.1,
                       random_state=0, callbacks=[seen]).fit(X, y)
    # (from zeros, unlike the Wiener start, the epochs beat the start the RIM scores as
    # epoch 0, so the choice is among the averaged weights)
    assert rim.training_state_.component("best").epoch >= 1
    best = int(np.argmax(rim.validation_scores_))
    for key, value in rim.module_.state_dict().items():  # the EMA shadow of the best epoch
        torch.testing.assert_close(value, seen.weights[best][key], rtol=0, atol=0)
    assert best < rim.n_iter_ - 1  # so the rule is seen choosing: not the last shadow


def test_a_link_at_the_checkpoint_path_is_replaced_not_followed(tmp_path):
    from skinverse._base._checkpoint import Checkpointer

    X, y = _regression()
    est = TorchMLPRegressor(max_epochs=1, random_state=0, checkpoint_dir=tmp_path / "ckpt")
    path = Checkpointer(tmp_path / "ckpt", est, est._validate_fit_data(X, y, reset=True)).path
    path.parent.mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    path.symlink_to(outside)
    with pytest.raises(CheckpointError):  # the link's target is not a checkpoint
        est.fit(X, y)
    path.unlink()
    (path.parent / "state.safetensors.tmp").symlink_to(outside)  # the old fixed name
    est.fit(X, y)
    assert outside.read_text() == "keep me" and not path.is_symlink()


class CountingCallback(Callback):
    """Counts epochs; its count is part of the checkpoint."""

    def __init__(self):
        self.count = 0

    def on_epoch_end(self, estimator, logs):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_callbacks_state_is_saved_and_resumed(tmp_path):
    X, y = _regression()
    params = dict(max_epochs=6, random_state=0, tol=0, checkpoint_dir=tmp_path)
    with pytest.warns(TrainingInterruptedWarning):
        TorchMLPRegressor(callbacks=[CountingCallback(), RaiseAt(4)], **params).fit(X, y)
    counter = CountingCallback()
    TorchMLPRegressor(callbacks=[counter], **params).fit(X, y)
    assert counter.count == 6  # 3 saved (epoch 4's checkpoint was never written) + 3 more
