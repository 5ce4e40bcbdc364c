"""RIMRegressor against the optimal estimator (1-D) and a tuned Tikhonov baseline (2-D).

1-D: x ~ N(0, Sigma) with a squared-exponential covariance (n=32), y = A x + 0.1 e with a
Gaussian blur A. The posterior mean x_hat = Sigma A^T (A Sigma A^T + s^2 I)^-1 y is the
optimal (minimum-MSE) estimator, in closed form. Reported: test MSE of the RIM / test MSE
of the posterior mean, on the same test set. Target: ratio <= 1.03.

2-D: 16x16 grey patches of scikit-learn's sample images, 5x5 Gaussian blur (sigma 1.2),
noise 0.02. PSNR of the RIM (U-Net backbone) against Tikhonov deconvolution
argmin ||Ax - y||^2 + lam ||x||^2 (the Wiener filter of a white prior) with lam chosen
on the training patches.

    python benchmarks/bench_rim.py [--epochs 60] [--epochs-2d 8] [--threads 2] [--device cuda]
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import load_sample_patches, squared_exponential_covariance
from skinverse.metrics import psnr
from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor

N, NOISE = 32, 0.1


def problem(length_scale=3.0):
    cov = squared_exponential_covariance(N, length_scale)
    blur = Blur(gaussian_kernel(7, 2.0), input_shape=(N,)).to(dtype=torch.float64)
    A = blur.forward(torch.eye(N, dtype=torch.float64)).numpy().T  # A[:, j] = A e_j
    return cov, np.linalg.cholesky(cov), blur, A


def sample(chol, A, n, rng):
    x = rng.normal(size=(n, N)) @ chol.T
    return x @ A.T + NOISE * rng.normal(size=(n, N)), x


def deblurring_2d(epochs, device, size=16, noise=0.02):
    """PSNR of the RIM and of the best Tikhonov deconvolution on held-out patches."""
    patches = load_sample_patches(size, 3500, random_state=0)
    kernel = gaussian_kernel(5, 1.2, ndim=2)
    blur64 = Blur(kernel, input_shape=(size, size)).to(dtype=torch.float64)
    rng = np.random.RandomState(0)
    clean = torch.as_tensor(patches.reshape(-1, size, size))
    observed = blur64(clean).reshape(len(patches), -1).numpy()
    observed += noise * rng.normal(size=observed.shape)
    X_train, X_test = observed[:3000], observed[3000:]
    y_train, y_test = patches[:3000], patches[3000:]

    def tikhonov(X, lam):
        rhs = blur64.adjoint(torch.as_tensor(X.reshape(-1, size, size)))
        x, _ = blur64.solve_normal(rhs, lam=lam, max_iter=300, tol=1e-8)
        return x.reshape(len(X), -1).numpy()

    lams = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    best_lam = max(lams, key=lambda lam: psnr(y_train[:1000], tikhonov(X_train[:1000], lam),
                                              data_range=1.0))
    rim = RIMRegressor(operator=Blur(kernel, input_shape=(size, size)), noise_std=noise,
                       input_shape=(size, size), width=16, depth=2, n_steps=4,
                       max_epochs=epochs, batch_size=32, random_state=0, device=device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "psnr_rim": psnr(y_test, rim.predict(X_test), data_range=1.0),
        "psnr_tikhonov": psnr(y_test, tikhonov(X_test, best_lam), data_range=1.0),
        "psnr_observed": psnr(y_test, X_test, data_range=1.0),
        "tikhonov_lambda": best_lam,
        "fit_seconds": seconds,
        "epochs": epochs,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--epochs-2d", type=int, default=8, help="0 skips the 2-D part")
    parser.add_argument("--simulations", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cov, chol, blur, A = problem()
    chol_t = torch.as_tensor(chol, dtype=torch.float32)

    def prior(n, generator):
        return torch.randn((n, N), generator=generator) @ chol_t.T

    rng = np.random.RandomState(1)
    y_test, x_test = sample(chol, A, 5000, rng)
    gain = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + NOISE**2 * np.eye(N))
    mse_optimal = np.mean((y_test @ gain.T - x_test) ** 2)
    mse_analytic = np.trace(cov - gain @ A @ cov) / N

    rim = RIMRegressor(
        operator=blur, noise_std=NOISE, prior_sampler=prior, n_simulations=args.simulations,
        n_steps=8, hidden_size=128, step_weights="increasing", max_epochs=args.epochs,
        batch_size=100, learning_rate=2e-3, lr_schedule="cosine", n_iter_no_change=10**6,
        random_state=0, device=args.device,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim.fit(None)
    seconds = time.perf_counter() - start
    mse_rim = np.mean((rim.predict(y_test) - x_test) ** 2)
    mse_adjoint = np.mean((y_test - x_test) ** 2)
    rows = [
        {"estimator": "posterior mean (optimal)", "test MSE": f"{mse_optimal:.5f}",
         "ratio": "1.000"},
        {"estimator": "RIMRegressor", "test MSE": f"{mse_rim:.5f}",
         "ratio": f"{mse_rim / mse_optimal:.3f}"},
        {"estimator": "observation as estimate", "test MSE": f"{mse_adjoint:.5f}",
         "ratio": f"{mse_adjoint / mse_optimal:.3f}"},
    ]
    print_table(rows, ["estimator", "test MSE", "ratio"])
    print(f"analytic optimal MSE {mse_analytic:.5f}; RIM fit {seconds:.1f} s, best step "
          f"{rim.best_step_}; target ratio <= 1.03")
    result = {"device": args.device, "one_d": {
        "mse_rim": mse_rim, "mse_optimal": mse_optimal, "mse_analytic": mse_analytic,
        "ratio": mse_rim / mse_optimal, "fit_seconds": seconds, "epochs": args.epochs,
        "simulations_per_epoch": args.simulations, "best_step": rim.best_step_,
    }}
    if args.epochs_2d:
        two = deblurring_2d(args.epochs_2d, args.device)
        print()
        print_table([
            {"2-D deblurring (16x16 patches)": "RIMRegressor (U-Net)",
             "test PSNR dB": f"{two['psnr_rim']:.2f}"},
            {"2-D deblurring (16x16 patches)": f"Tikhonov (lam={two['tikhonov_lambda']:g})",
             "test PSNR dB": f"{two['psnr_tikhonov']:.2f}"},
            {"2-D deblurring (16x16 patches)": "blurred observation",
             "test PSNR dB": f"{two['psnr_observed']:.2f}"},
        ], ["2-D deblurring (16x16 patches)", "test PSNR dB"])
        print(f"RIM - Tikhonov: {two['psnr_rim'] - two['psnr_tikhonov']:+.2f} dB "
              f"(RIM fit {two['fit_seconds']:.0f} s)")
        result["two_d"] = two
    write_json("bench_rim", result, args.output)


if __name__ == "__main__":
    main()
