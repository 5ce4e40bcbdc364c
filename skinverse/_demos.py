"""What ``python -m skinverse demo`` runs: one entry per estimator, each fitting on data
that ships offline and returning ``(data, metric, score, baseline)``."""

import warnings

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


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


def _base_mlp(quick):
    """The shared base on its own: a small MLP beside sklearn's MLPClassifier."""
    from skinverse.utils._testing import TorchMLPClassifier

    epochs = 5 if quick else 30
    return _beside_mlp(TorchMLPClassifier(hidden_layer_sizes=(100,), max_epochs=epochs,
                                          batch_size=100, random_state=0), epochs)


def _implicit(quick):
    """ImplicitClassifier on digits beside sklearn's MLPClassifier with the same budget."""
    from skinverse.implicit import ImplicitClassifier

    epochs = 3 if quick else 20
    return _beside_mlp(ImplicitClassifier(hidden_size=100, max_epochs=epochs, batch_size=100,
                                          learning_rate=3e-3, random_state=0), epochs)


def _rim(quick):
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim = RIMRegressor(operator=Blur(gaussian_kernel(7, 2.0), input_shape=(n,)),
                           noise_std=noise, n_steps=6, hidden_size=96, batch_size=100,
                           max_epochs=2 if quick else 25, learning_rate=2e-3,
                           random_state=0).fit(y[:3000], x[:3000])
    mse_rim = np.mean((rim.predict(y[3000:]) - x[3000:]) ** 2)
    mse_opt = np.mean((y[3000:] @ gain.T - x[3000:]) ** 2)
    return "1-D deblurring", "MSE / optimal", mse_rim / mse_opt, "posterior mean 1.0000"


def _imnn(quick):
    """IMNNTransformer on the Gaussian mean-and-variance problem (analytic det F = 50)."""
    import numpy as np

    from skinverse.datasets import gaussian_mean_variance_problem
    from skinverse.imnn import IMNNTransformer

    problem = gaussian_mean_variance_problem(n_data=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                               n_s=200, n_d=200, hidden_layer_sizes=(64, 64),
                               max_epochs=50 if quick else 2500, lr_schedule="cosine",
                               n_iter_no_change=10**9, random_state=0).fit()
    det = np.linalg.det(imnn.fisher_information(n_simulations=2000, random_state=1))
    return "Gaussian mean+variance", "det F / analytic", det / 50.0, "optimal 1.0000"


def _unrolled(quick):
    """MoDL on 4x 8-coil MRI of phantoms, beside CG-SENSE (PSNR, dB)."""
    from skinverse.datasets import make_mri_data, make_phantoms
    from skinverse.unrolled import UnrolledRegressor

    X, y, maps, masks = make_mri_data(make_phantoms(110, 32, random_state=0), n_coils=8,
                                      acceleration=4, noise_std=0.01, random_state=0)
    train, test = slice(0, 90), slice(90, 110)
    fit = dict(maps=maps[train], masks=masks[train])
    held_out = dict(maps=maps[test], masks=masks[test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sense = UnrolledRegressor(method="cg-sense", lam=0.01, cg_max_iter=30, max_epochs=1,
                                  random_state=0).fit(X[train], y[train], **fit)
        modl = UnrolledRegressor(method="modl", n_unrolls=3, width=16, depth=2, cg_max_iter=6,
                                 lam=0.01, max_epochs=1 if quick else 6, batch_size=8,
                                 random_state=0).fit(X[train], y[train], **fit)
    return ("4x 8-coil MRI", "PSNR dB", modl.score(X[test], y[test], **held_out),
            f"CG-SENSE {sense.score(X[test], y[test], **held_out):.2f}")


DEMOS = [
    ("BaseTorchEstimator (MLP)", _base_mlp),
    ("ImplicitClassifier", _implicit),
    ("RIMRegressor", _rim),
    ("IMNNTransformer", _imnn),
    ("UnrolledRegressor", _unrolled),
]
