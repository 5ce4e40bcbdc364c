"""The CUDA path against the CPU path: same model, same numbers, and a model fitted on the
GPU loads and predicts on a machine without one.

These tests need a CUDA GPU and are skipped without one (CI has none). They were run on an
H100 (see benchmarks/RESULTS.md); run them with ``pytest tests/test_gpu.py`` on a GPU box.
"""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from skinverse.datasets import gaussian_mean_problem, make_mri_data, make_phantoms
from skinverse.imnn import IMNNTransformer
from skinverse.implicit import ImplicitClassifier, ImplicitRegressor
from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor
from skinverse.unrolled import UnrolledRegressor
from skinverse.utils._testing import TorchMLPClassifier

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


def _classification():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X[:400] / 16.0, y[:400]), {}


def _regression():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(200, 4))
    return (X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2), {}


def _deblurring():
    rng = np.random.RandomState(0)
    signals = np.cumsum(rng.normal(size=(200, 16)), axis=1) / 4
    blur = Blur(gaussian_kernel(5, 1.5), input_shape=(16,)).to(dtype=torch.float64)
    observed = blur(torch.as_tensor(signals)).numpy() + 0.05 * rng.normal(size=(200, 16))
    return (observed, signals), {}


def _mri():
    images = make_phantoms(16, 12, random_state=0)
    X, y, maps, masks = make_mri_data(images, n_coils=4, acceleration=2, noise_std=0.01,
                                      random_state=0)
    return (X, y), {"maps": maps, "masks": masks}


def _rim(device):
    return RIMRegressor(operator=Blur(gaussian_kernel(5, 1.5), input_shape=(16,)),
                        noise_std=0.05, n_steps=3, hidden_size=16, max_epochs=3,
                        dtype="float64", random_state=0, device=device)


# (estimator factory, data factory): float64 so that CPU and GPU differ by rounding only.
CASES = {
    "mlp": (lambda d: TorchMLPClassifier(max_epochs=3, dtype="float64", random_state=0,
                                         device=d), _classification),
    "implicit-classifier": (lambda d: ImplicitClassifier(
        hidden_size=20, max_epochs=3, dtype="float64", random_state=0, device=d),
        _classification),
    "implicit-anderson": (lambda d: ImplicitRegressor(
        hidden_size=20, solver="anderson", max_epochs=3, dtype="float64", random_state=0,
        device=d), _regression),
    "implicit-phantom": (lambda d: ImplicitRegressor(
        hidden_size=20, backward="phantom", max_epochs=3, dtype="float64", random_state=0,
        device=d), _regression),
    "rim": (_rim, _deblurring),
    "imnn": (lambda d: IMNNTransformer(hidden_layer_sizes=(16,), max_epochs=20,
                                       dtype="float64", random_state=0, device=d),
             _regression),
    "unrolled-modl": (lambda d: UnrolledRegressor(
        n_unrolls=2, width=4, depth=1, max_epochs=2, dtype="float64", random_state=0,
        device=d), _mri),
    "unrolled-dbp": (lambda d: UnrolledRegressor(
        method="dbp", n_unrolls=2, width=4, depth=1, max_epochs=2, dtype="float64",
        random_state=0, device=d), _mri),
}


def _outputs(est, X, extra):
    method = est.transform if hasattr(est, "transform") else est.predict
    out = [method(X, **extra)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_fit_matches_the_cpu_fit(name):
    factory, data = CASES[name]
    (X, y), extra = data()
    on_cpu = factory("cpu").fit(X, y, **extra)
    on_gpu = factory("cuda").fit(X, y, **extra)
    assert on_gpu.device_.type == "cuda"
    assert all(p.is_cuda for p in on_gpu.module_.parameters())
    # The initial weights and the batch order come from one CPU generator, so the two fits
    # take the same path; float64 rounding in different kernels is all that separates them.
    for got, expected in zip(_outputs(on_gpu, X, extra), _outputs(on_cpu, X, extra)):
        assert isinstance(got, np.ndarray) and np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(on_gpu.loss_curve_, on_cpu.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_model_loads_and_predicts_where_there_is_no_gpu(name, tmp_path):
    factory, data = CASES[name]
    (X, y), extra = data()
    est = factory("cuda").fit(X, y, **extra)
    expected = _outputs(est, X, extra)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X)
    np.savez(tmp_path / "extra.npz", **extra)
    script = f"""
import pickle, warnings, numpy as np, torch
assert not torch.cuda.is_available()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    est = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, "rb").read())
assert any("loaded on the CPU" in str(w.message) for w in caught), caught
assert est.device_.type == "cpu"
assert all(not p.is_cuda for p in est.module_.parameters())
X = np.load({str(tmp_path / 'X.npy')!r})
extra = dict(np.load({str(tmp_path / 'extra.npz')!r}))
method = est.transform if hasattr(est, "transform") else est.predict
outs = [method(X, **extra)] + ([est.predict_proba(X)] if hasattr(est, "predict_proba") else [])
np.savez({str(tmp_path / 'out.npz')!r}, *outs)
"""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    got = np.load(tmp_path / "out.npz")
    for i, value in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], value, rtol=1e-9, atol=1e-12)


def test_gpu_pickle_round_trip_stays_on_the_gpu():
    (X, y), _ = _classification()
    est = ImplicitClassifier(hidden_size=20, max_epochs=2, random_state=0,
                             device="cuda").fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.device_.type == "cuda"
    assert next(loaded.module_.parameters()).is_cuda
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    loaded.set_params(warm_start=True, max_epochs=1).fit(X, y)  # restored optimiser works


def test_cuda_fit_leaves_the_global_rngs_alone():
    (X, y), _ = _classification()
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    ImplicitClassifier(hidden_size=10, max_epochs=1, random_state=0, device="cuda").fit(X, y)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


def test_rim_simulator_training_on_cuda():
    chol = torch.linalg.cholesky(torch.eye(8) * 0.5 + 0.5)
    rim = RIMRegressor(
        operator=Blur(gaussian_kernel(3, 1.0), input_shape=(8,)), noise_std=0.1,
        prior_sampler=lambda k, g: torch.randn((k, 8), generator=g) @ chol.T,
        n_simulations=200, n_steps=2, hidden_size=8, max_epochs=2, random_state=0,
        device="cuda").fit(None)
    assert rim.device_.type == "cuda" and np.all(np.isfinite(rim.loss_curve_))


def test_imnn_simulator_mode_on_cuda():
    problem = gaussian_mean_problem(n_data=10)
    kwargs = dict(simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=200, n_d=200,
                  hidden_layer_sizes=(8,), max_epochs=30, dtype="float64", random_state=0)
    on_gpu = IMNNTransformer(device="cuda", **kwargs).fit()
    on_cpu = IMNNTransformer(device="cpu", **kwargs).fit()
    np.testing.assert_allclose(on_gpu.history_["detF"], on_cpu.history_["detF"], rtol=1e-6)
    F = on_gpu.fisher_information(random_state=0)
    assert F.shape == (1, 1) and np.isfinite(F).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_tracks_float32(precision):
    (X, y), extra = _mri()
    params = dict(n_unrolls=2, width=4, depth=1, max_epochs=2, random_state=0, device="cuda")
    full = UnrolledRegressor(**params).fit(X, y, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        half = UnrolledRegressor(mixed_precision=precision, **params).fit(X, y, **extra)
    assert next(half.module_.parameters()).dtype == torch.float32  # autocast, not a cast
    np.testing.assert_allclose(half.predict(X, **extra), full.predict(X, **extra), atol=0.05)
    assert half.score(X, y, **extra) == pytest.approx(full.score(X, y, **extra), abs=0.5)

    (X1, y1), _ = _deblurring()
    rim_params = dict(operator=Blur(gaussian_kernel(5, 1.5), input_shape=(16,)),
                      noise_std=0.05, n_steps=3, hidden_size=16, max_epochs=3,
                      random_state=0, device="cuda")
    rim_full = RIMRegressor(**rim_params).fit(X1, y1)
    rim_half = RIMRegressor(mixed_precision=precision, **rim_params).fit(X1, y1)
    assert np.all(np.isfinite(rim_half.predict(X1)))
    assert rim_half.score(X1, y1) == pytest.approx(rim_full.score(X1, y1), abs=0.05)
