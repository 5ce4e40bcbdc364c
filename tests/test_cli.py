"""The command line: ``info``, ``demo``, ``config``, ``fit``, ``predict``, ``evaluate``."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from skinverse.__main__ import default_threads, main
from skinverse._cli_data import load_data
from skinverse._cli_run import fit_estimator
from skinverse._config import ConfigError, check_picklable, estimator_from_config

TINY = {
    "RIMRegressor": (
        {"n_steps": 2, "hidden_size": 8, "max_epochs": 1, "random_state": 0},
        {"generator": "rim_deblurring", "n_samples": 24, "n_features": 8, "kernel_size": 3,
         "random_state": 0}),
    "RIMRegressor-inpainting": (
        {"n_steps": 2, "width": 4, "depth": 1, "max_epochs": 1, "random_state": 0},
        {"generator": "rim_inpainting", "n_images": 8, "size": 8, "random_state": 0}),
    "IMNNTransformer": (
        {"n_s": 20, "n_d": 20, "hidden_layer_sizes": [8], "max_epochs": 2, "random_state": 0},
        {"generator": "gaussian_mean_problem", "n_samples": 30, "n_data": 4,
         "random_state": 0}),
    "ImplicitClassifier": (
        {"hidden_size": 8, "max_epochs": 1, "random_state": 0},
        {"generator": "load_digits", "n_class": 3}),
    "ImplicitRegressor": (
        {"hidden_size": 8, "max_epochs": 1, "random_state": 0},
        {"generator": "make_regression", "n_samples": 30, "n_features": 3, "random_state": 0}),
    "UnrolledRegressor": (
        {"method": "pgd", "n_unrolls": 2, "width": 4, "depth": 1, "max_epochs": 1,
         "random_state": 0},
        {"generator": "make_mri_data", "n_images": 4, "size": 8, "n_coils": 2,
         "random_state": 0}),
}


def _write(path, config):
    path.write_text(json.dumps(config))
    return str(path)


def _error(capsys):
    """The one stderr line of a failed command (warnings aside)."""
    lines = [line for line in capsys.readouterr().err.splitlines()
             if not line.startswith("skinverse: warning:")]
    assert len(lines) == 1 and lines[0].startswith("skinverse: error: "), lines
    return lines[0]


# ---------------------------------------------------------------- info, demo, help
def test_info_prints_versions_and_device(capsys):
    assert main(["info", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch threads" in out and "device='auto' picks" in out and "scikit-learn" in out
    assert "torch threads        1" in out


def test_demo_quick_prints_a_table_and_progress(capsys):
    assert main(["demo", "--quick", "--only", "ImplicitClassifier", "RIMRegressor"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].split()[:3] == ["estimator", "data", "metric"]
    assert [line.split()[0] for line in lines[1:]] == ["ImplicitClassifier", "RIMRegressor"]
    assert "[demo] RIMRegressor: done in" in captured.err
    assert "    epoch 2/2  loss" in captured.err  # the compact progress lines


def test_demo_rejects_unknown_estimator(capsys):
    assert main(["demo", "--only", "NoSuchEstimator"]) == 2
    assert "unknown estimator" in _error(capsys)


def test_help_of_the_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "skinverse", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("usage: python -m skinverse") and "exit codes:" in out


@pytest.mark.parametrize("command", ["info", "demo", "config", "fit", "predict", "evaluate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m skinverse {command}") and "--threads N" in out


def test_threads_are_set_for_the_command_and_restored(capsys):
    before = torch.get_num_threads()
    assert main(["info", "--threads", "3"]) == 0
    assert "torch threads        3" in capsys.readouterr().out
    assert torch.get_num_threads() == before
    assert main(["info", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in _error(capsys)
    assert 1 <= default_threads() <= 4


# ---------------------------------------------------------------- fit, predict, evaluate
def _reference(config):
    """The estimator fitted in-process on the config's data, with the CLI's threads."""
    data = load_data(config["data"])
    estimator = estimator_from_config(config, data.params)
    threads = torch.get_num_threads()
    torch.set_num_threads(default_threads())
    try:
        return fit_estimator(estimator, data), data
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", sorted(TINY))
def test_fit_predict_evaluate_every_estimator(case, tmp_path, capsys):
    params, data = TINY[case]
    config = {"estimator": case.split("-")[0], "params": params, "data": data}
    path, out = _write(tmp_path / "config.json", config), tmp_path / "out"
    model = str(out / "model.joblib")
    assert main(["fit", "--config", path, "--output-dir", str(out)]) == 0
    assert main(["predict", "--config", path, "--model", model, "--output-dir", str(out)]) == 0
    assert main(["evaluate", "--config", path, "--model", model, "--output-dir", str(out)]) == 0
    assert "saved to" in capsys.readouterr().out
    reference, data = _reference(config)
    method = getattr(reference, "predict", None) or reference.transform
    kwargs = {k: v for k, v in data.side.items() if k in ("maps", "masks")}
    expected = method(data.X, **kwargs)
    np.testing.assert_allclose(np.load(out / "predictions.npy"), expected, rtol=1e-5, atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    score = next(value for key, value in metrics.items() if key.startswith("score"))
    assert score == pytest.approx(reference.score(data.X, data.y, **kwargs), rel=1e-5,
                                  abs=1e-6)
    if config["estimator"] in ("RIMRegressor", "UnrolledRegressor"):
        assert {"PSNR dB", "SSIM", "NMSE"} <= set(metrics)


def test_imnn_simulator_mode_reports_the_analytic_fisher(tmp_path, capsys):
    params, data = TINY["IMNNTransformer"]
    path = _write(tmp_path / "c.json", {"estimator": "IMNNTransformer", "params": params,
                                        "data": data})
    assert main(["fit", "--config", path, "--output", str(tmp_path / "m.joblib")]) == 0
    assert main(["evaluate", "--config", path, "--model", str(tmp_path / "m.joblib")]) == 0
    out = capsys.readouterr().out
    analytic = float(out.split("ln det F analytic")[1].split()[0])
    assert analytic == pytest.approx(np.log(4.0), rel=1e-5)  # n_data / sigma^2 = 4
    import joblib

    fitted = joblib.load(tmp_path / "m.joblib")
    assert fitted.simulator is not None and fitted.theta_fid_.tolist() == [0.0]


def test_template_config_round_trips(tmp_path, capsys):
    target = tmp_path / "rim.json"
    assert main(["config", "RIMRegressor", "--output", str(target)]) == 0
    config = json.loads(target.read_text())
    assert config["data"]["generator"] == "rim_deblurring" and config["output"] == "model.joblib"
    estimator = estimator_from_config(config)
    assert estimator.get_params()["n_steps"] == 8
    assert main(["config", "RIMRegressor", "--output", str(target)]) == 2  # no overwrite
    assert "--force" in _error(capsys)


# ---------------------------------------------------------------- data files
def _regression_npz(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3))
    y = X @ [1.0, -2.0, 0.5]
    np.savez(tmp_path / "d.npz", features=X, target=y)
    return X, y


def test_npz_config_and_data_file(tmp_path, capsys):
    X, y = _regression_npz(tmp_path)
    config = {"estimator": "ImplicitRegressor",
              "params": {"hidden_size": 8, "max_epochs": 1, "random_state": 0},
              "data": {"file": "d.npz", "X": "features", "y": "target"}, "output": "r.joblib"}
    path = _write(tmp_path / "c.json", config)  # relative files: from the config's folder
    assert main(["fit", "--config", path, "--output-dir", str(tmp_path)]) == 0
    np.savez(tmp_path / "test.npz", X=X[:5], y=y[:5])
    np.save(tmp_path / "X.npy", X[:5])
    model = str(tmp_path / "r.joblib")
    for data in ("test.npz", "X.npy"):
        assert main(["predict", "--data", str(tmp_path / data), "--model", model,
                     "--output-dir", str(tmp_path), "--name", data + ".pred.npy"]) == 0
    first = np.load(tmp_path / "test.npz.pred.npy")
    np.testing.assert_array_equal(first, np.load(tmp_path / "X.npy.pred.npy"))
    import joblib

    np.testing.assert_array_equal(first, joblib.load(model).predict(X[:5]))
    assert main(["evaluate", "--data", str(tmp_path / "test.npz"), "--model", model]) == 0
    assert "score (R^2)" in capsys.readouterr().out


def test_unrolled_and_imnn_side_data_from_npz(tmp_path, capsys):
    from skinverse.datasets import make_mri_data, make_phantoms

    X, y, maps, masks = make_mri_data(make_phantoms(4, 8, random_state=0), n_coils=2,
                                      random_state=0)
    np.savez(tmp_path / "mri.npz", kspace=X, images=y, maps=maps, masks=masks)
    rng = np.random.RandomState(0)
    np.savez(tmp_path / "fid.npz", X=rng.normal(size=(20, 4)), derivatives=np.ones((20, 4, 1)))
    configs = [
        {"estimator": "UnrolledRegressor", "params": TINY["UnrolledRegressor"][0],
         "data": {"file": "mri.npz", "X": "kspace", "y": "images", "maps": "maps",
                  "masks": "masks"}},
        {"estimator": "IMNNTransformer", "params": {"theta_fid": [0.0], "max_epochs": 2,
                                                    "hidden_layer_sizes": [4]},
         "data": "fid.npz"},  # a bare path: the arrays by their own names
    ]
    for config in configs:
        path = _write(tmp_path / "c.json", config)
        model = str(tmp_path / "model.joblib")
        assert main(["fit", "--config", path, "--output-dir", str(tmp_path)]) == 0
        assert main(["evaluate", "--config", path, "--model", model, "--output-dir",
                     str(tmp_path)]) == 0
        fitted, data = __import__("joblib").load(model), load_data(config["data"], tmp_path)
        expected = fitted.score(data.X, data.y, **data.side)
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert next(iter(metrics.values())) == pytest.approx(expected, rel=1e-5)


def test_npy_paths_and_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    X, y = _regression_npz(tmp_path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = load_data({"X": "X.npy", "y": "y.npy"}, tmp_path)
    np.testing.assert_array_equal(data.X, X)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["group/X"], handle["y"] = X, y
        handle["soft"] = h5py.SoftLink("/group")
    data = load_data({"file": "d.h5", "X": "soft/X", "y": "y"}, tmp_path)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    with h5py.File(tmp_path / "plain.h5", "w") as handle:
        handle["X"], handle["masks"] = X, np.ones((30, 2, 2))
    data = load_data(str(tmp_path / "plain.h5"))  # --data FILE: arrays by their own names
    assert data.y is None and data.side["masks"].shape == (30, 2, 2)


def test_hdf5_external_links_are_refused(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    X, y = _regression_npz(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["X"] = X
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["y"] = y
        handle["X"] = h5py.ExternalLink("other.h5", "/X")
        handle["via"] = h5py.SoftLink("/X")
    for key in ("X", "via"):
        config = {"estimator": "ImplicitRegressor", "params": {"max_epochs": 1},
                  "data": {"file": "d.h5", "X": key, "y": "y"}}
        path = _write(tmp_path / "c.json", config)
        assert main(["fit", "--config", path, "--output-dir", str(tmp_path)]) == 3
        assert "external link" in _error(capsys)
    assert not (tmp_path / "model.joblib").exists()


def test_toml_config(tmp_path, capsys):
    pytest.importorskip("tomllib")
    _regression_npz(tmp_path)
    (tmp_path / "c.toml").write_text(
        'estimator = "ImplicitRegressor"\noutput = "t.joblib"\n[params]\nhidden_size = 4\n'
        'max_epochs = 1\n[data]\nfile = "d.npz"\nX = "features"\ny = "target"\n')
    assert main(["fit", "--config", str(tmp_path / "c.toml"), "--output-dir",
                 str(tmp_path)]) == 0
    assert (tmp_path / "t.joblib").exists()


# ---------------------------------------------------------------- mistakes
_GOOD = {"estimator": "ImplicitRegressor", "params": {"hidden_size": 4, "max_epochs": 1},
         "data": {"generator": "make_regression", "n_samples": 20, "n_features": 2}}


@pytest.mark.parametrize("change, code, message", [
    ({"estimator": "NoSuchRegressor"}, 2, "config 'estimator' must be one of"),
    ({"params": {"max_epochs": -1}}, 2, "'max_epochs' parameter of ImplicitRegressor"),
    ({"params": {"no_such_key": 1}}, 2, "unknown config key(s) ['no_such_key']"),
    ({"params": {"activation": {"callable": "no_such_module:f"}}}, 2, "cannot import"),
    ({"output": "../escaped.joblib"}, 2, "no absolute path, no '..'"),
    ({"output": "/tmp/absolute.joblib"}, 2, "no absolute path, no '..'"),
    ({"extra": 1}, 2, "unknown top-level config key(s) ['extra']"),
    ({"data": {"file": "missing.npz"}}, 3, "missing.npz' not found"),
    ({"data": {"file": "d.npz", "X": "nope"}}, 3, "has no array(s) ['nope']"),
    ({"data": {"generator": "make_regression", "n_rows": 3}}, 3, "unknown argument(s)"),
    ({"data": {"generator": "no_such_generator"}}, 3, "unknown data generator"),
    ({"data": {"file": "d.npz", "X": "features"}}, 3, "needs targets"),
])
def test_bad_configs_give_one_line_and_exit_code(change, code, message, tmp_path, capsys):
    _regression_npz(tmp_path)
    out = tmp_path / "out"
    path = _write(tmp_path / "c.json", {**_GOOD, **change})
    assert main(["fit", "--config", path, "--output-dir", str(out)]) == code
    line = _error(capsys)
    assert message in line and "Traceback" not in line
    assert not list(tmp_path.parent.glob("escaped.joblib")) and not (out / "model.joblib").exists()


def test_bad_files_and_outputs(tmp_path, capsys):
    assert main(["fit", "--config", str(tmp_path / "none.json")]) == 2
    assert "not found" in _error(capsys)
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["fit", "--config", str(tmp_path / "bad.json")]) == 2
    assert "is not valid JSON" in _error(capsys)
    assert main(["evaluate", "--data", str(tmp_path / "d.npz"), "--model",
                 str(tmp_path / "none.joblib")]) == 3
    assert "not found" in _error(capsys)
    path = _write(tmp_path / "c.json", _GOOD)
    assert main(["predict", "--config", path, "--model", "m", "--name", "../p.npy"]) == 2
    assert "no absolute path" in _error(capsys)
    with pytest.raises(SystemExit) as usage:
        main(["fit"])  # argparse: --config is required
    assert usage.value.code == 2


def test_abbreviated_options_and_files_that_are_not_models(tmp_path, capsys):
    """--output is not taken for --output-dir (predict writes into a folder); a config or
    a pickled array given as --model says what it is not."""
    path = _write(tmp_path / "c.json", _GOOD)
    with pytest.raises(SystemExit) as usage:
        main(["predict", "--config", path, "--model", "m", "--output", "p.npy"])
    assert usage.value.code == 2 and not (tmp_path / "p.npy").exists()
    assert "unrecognized arguments: --output" in capsys.readouterr().err
    import joblib
    joblib.dump(np.arange(3), tmp_path / "array.joblib")
    for model in (path, str(tmp_path / "array.joblib")):
        assert main(["predict", "--config", path, "--model", model]) == 3
        assert "is not a model file written by" in _error(capsys)


def test_output_paths_stay_inside_the_output_directory(tmp_path):
    from skinverse._config import output_path

    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    assert output_path(tmp_path / "out", "a/b.npy") == (tmp_path / "out" / "a" / "b.npy").resolve()
    for name in ("../x.npy", "a/../../x.npy", str(tmp_path / "x.npy"), "link/x.npy", ""):
        with pytest.raises(ConfigError):
            output_path(tmp_path / "out", name)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not found"):
        main(["fit", "--debug", "--config", str(tmp_path / "none.json")])
    monkeypatch.setenv("SKINVERSE_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["fit", "--config", str(tmp_path / "none.json")])


def test_training_failure_exits_1(tmp_path, capsys):
    config = {**_GOOD, "data": {"generator": "make_regression", "n_samples": 1,
                                "n_features": 2}}
    assert main(["fit", "--config", _write(tmp_path / "c.json", config), "--output-dir",
                 str(tmp_path)]) == 1
    assert "fitting ImplicitRegressor failed" in _error(capsys)


# ---------------------------------------------------------------- pickling
def test_lambda_simulator_gives_the_pickling_message(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_simulators.py").write_text(
        "import torch\n"
        "simulate = lambda theta, generator: theta + torch.randn(theta.shape[0], 4, "
        "generator=generator, dtype=theta.dtype)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"estimator": "IMNNTransformer",
              "params": {"simulator": {"callable": "my_simulators:simulate"},
                         "theta_fid": [0.0], "max_epochs": 1},
              "data": {"generator": "gaussian_mean_problem", "n_samples": 10}}
    path = _write(tmp_path / "c.json", config)
    assert main(["fit", "--config", path, "--output-dir", str(tmp_path)]) == 2
    line = _error(capsys)
    assert "parameter 'simulator' is a lambda" in line and "module level" in line
    assert not (tmp_path / "model.joblib").exists()


def test_check_picklable_on_a_fitted_estimator():
    from skinverse.imnn import IMNNTransformer

    def local_simulator(theta, generator):
        return theta + torch.randn(theta.shape[0], 3, generator=generator, dtype=theta.dtype)

    estimator = IMNNTransformer(simulator=local_simulator, theta_fid=[0.0], n_s=10, n_d=10,
                                hidden_layer_sizes=(4,), max_epochs=1, random_state=0).fit()
    with pytest.raises(ConfigError, match="'simulator' is a lambda or local function"):
        check_picklable(estimator)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # what joblib.dump shows
        pickle.dumps(estimator)
