"""What ``python -m skinverse demo`` runs: one entry per estimator, each fitting on data
that ships offline and returning ``(data, metric, score, baseline)``; with
``progress=True`` each fit prints a compact progress line (on stderr) about every tenth of
its epochs."""

import sys
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skinverse.callbacks import Callback


class _Progress(Callback):
    """Prints ``epoch k/n  loss ...  t s`` about every tenth of ``max_epochs`` (module
    level, so estimators holding it still pickle)."""

    def __init__(self, max_epochs):
        self.max_epochs = max_epochs

    def on_train_begin(self, estimator):
        self._start = time.perf_counter()

    def on_epoch_end(self, estimator, logs):
        epoch, every = logs["epoch"], max(1, self.max_epochs // 10)
        if epoch % every == 0 or epoch == self.max_epochs or logs.get("stop"):
            seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
            print(f"    epoch {epoch}/{self.max_epochs}  loss {logs['loss']:.4g}  "
                  f"{seconds:.1f} s", file=sys.stderr, flush=True)


def _callbacks(progress, max_epochs):
    """``[progress printer]`` or None."""
    return [_Progress(max_epochs)] if progress else None


def _digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def _beside_mlp(estimator, epochs):
    """Fit ``estimator`` and sklearn's MLPClassifier (same budget) on scaled digits."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    X_train, X_test, y_train, y_test = _digits_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = make_pipeline(StandardScaler(), estimator).fit(X_train, y_train)
        peer = make_pipeline(StandardScaler(), MLPClassifier(
            (100,), max_iter=epochs, batch_size=100, random_state=0)).fit(X_train, y_train)
    return ("digits", "accuracy", ours.score(X_test, y_test),
            f"sklearn MLP {peer.score(X_test, y_test):.4f}")


def _base_mlp(quick, progress=False):
    """The shared base on its own: a small MLP beside sklearn's MLPClassifier."""
    from skinverse.utils._testing import TorchMLPClassifier

    epochs = 5 if quick else 30
    return _beside_mlp(TorchMLPClassifier(hidden_layer_sizes=(100,), max_epochs=epochs,
                                          batch_size=100, random_state=0,
                                          callbacks=_callbacks(progress, epochs)), epochs)


def _implicit(quick, progress=False):
    """ImplicitClassifier on digits beside sklearn's MLPClassifier with the same budget."""
    from skinverse.implicit import ImplicitClassifier

    epochs = 3 if quick else 20
    return _beside_mlp(ImplicitClassifier(hidden_size=100, max_epochs=epochs, batch_size=100,
                                          learning_rate=3e-3, random_state=0,
                                          callbacks=_callbacks(progress, epochs)), epochs)


def _rim(quick, progress=False):
    """RIMRegressor on 1-D Gaussian-process deblurring against the optimal posterior mean."""
    import numpy as np
    import torch

    from skinverse.datasets import make_gaussian_signals
    from skinverse.operators import Blur, gaussian_kernel
    from skinverse.rim import RIMRegressor

    n, noise = 32, 0.1
    blur = Blur(gaussian_kernel(7, 2.0), input_shape=(n,))
    A = blur.to(dtype=torch.float64).forward(torch.eye(n, dtype=torch.float64)).numpy().T
    rng = np.random.RandomState(0)
    x, cov = make_gaussian_signals(4000, n, random_state=1)  # noise below uses seed 0
    y = x @ A.T + noise * rng.normal(size=x.shape)
    gain = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + noise**2 * np.eye(n))
    epochs = 2 if quick else 25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim = RIMRegressor(operator=Blur(gaussian_kernel(7, 2.0), input_shape=(n,)),
                           noise_std=noise, n_steps=6, hidden_size=96, batch_size=100,
                           max_epochs=epochs, learning_rate=2e-3, random_state=0,
                           callbacks=_callbacks(progress, epochs)).fit(y[:3000], x[:3000])
    mse_rim = np.mean((rim.predict(y[3000:]) - x[3000:]) ** 2)
    mse_opt = np.mean((y[3000:] @ gain.T - x[3000:]) ** 2)
    return "1-D deblurring", "MSE / optimal", mse_rim / mse_opt, "posterior mean 1.0000"


def _imnn(quick, progress=False):
    """IMNNTransformer on the Gaussian mean-and-variance problem (analytic det F = 50)."""
    import numpy as np

    from skinverse.datasets import gaussian_mean_variance_problem
    from skinverse.imnn import IMNNTransformer

    problem, epochs = gaussian_mean_variance_problem(n_data=10), 50 if quick else 2500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                               n_s=200, n_d=200, hidden_layer_sizes=(64, 64),
                               max_epochs=epochs, lr_schedule="cosine",
                               n_iter_no_change=10**9, random_state=0,
                               callbacks=_callbacks(progress, epochs)).fit()
    det = np.linalg.det(imnn.fisher_information(n_simulations=2000, random_state=1))
    return "Gaussian mean+variance", "det F / analytic", det / 50.0, "optimal 1.0000"


def _unrolled(quick, progress=False):
    """MoDL on 4x 8-coil MRI of phantoms, beside CG-SENSE (PSNR, dB)."""
    from skinverse.datasets import make_mri_data, make_phantoms
    from skinverse.unrolled import UnrolledRegressor

    X, y, maps, masks = make_mri_data(make_phantoms(110, 32, random_state=0), n_coils=8,
                                      acceleration=4, noise_std=0.01, random_state=0)
    train, test = slice(0, 90), slice(90, 110)
    fit = {"maps": maps[train], "masks": masks[train]}
    held_out = {"maps": maps[test], "masks": masks[test]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sense = UnrolledRegressor(method="cg-sense", lam=0.01, cg_max_iter=30, max_epochs=1,
                                  random_state=0).fit(X[train], y[train], **fit)
        epochs = 1 if quick else 6
        modl = UnrolledRegressor(method="modl", n_unrolls=3, width=16, depth=2, cg_max_iter=6,
                                 lam=0.01, max_epochs=epochs, batch_size=8, random_state=0,
                                 callbacks=_callbacks(progress, epochs)).fit(X[train], y[train],
                                                                            **fit)
    return ("4x 8-coil MRI", "PSNR dB", modl.score(X[test], y[test], **held_out),
            f"CG-SENSE {sense.score(X[test], y[test], **held_out):.2f}")


DEMOS = [
    ("BaseTorchEstimator (MLP)", _base_mlp),
    ("ImplicitClassifier", _implicit),
    ("RIMRegressor", _rim),
    ("IMNNTransformer", _imnn),
    ("UnrolledRegressor", _unrolled),
]
