"""RIMRegressor against the optimal estimator on 1-D deblurring with a Gaussian prior.

x ~ N(0, Sigma) with a squared-exponential covariance (n=32), y = A x + 0.1 e with a
Gaussian blur A. The posterior mean x_hat = Sigma A^T (A Sigma A^T + s^2 I)^-1 y is the
optimal (minimum-MSE) estimator, in closed form. Reported: test MSE of the RIM / test MSE
of the posterior mean, on the same test set.

    python benchmarks/bench_rim.py [--epochs 60] [--threads 2]

Target: ratio <= 1.03.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor

N, NOISE = 32, 0.1


def problem(length_scale=3.0):
    grid = np.arange(N)
    cov = np.exp(-0.5 * ((grid[:, None] - grid[None]) / length_scale) ** 2) + 1e-6 * np.eye(N)
    blur = Blur(gaussian_kernel(7, 2.0), input_shape=(N,)).to(dtype=torch.float64)
    A = blur.forward(torch.eye(N, dtype=torch.float64)).numpy().T  # A[:, j] = A e_j
    return cov, np.linalg.cholesky(cov), blur, A


def sample(chol, A, n, rng):
    x = rng.normal(size=(n, N)) @ chol.T
    return x @ A.T + NOISE * rng.normal(size=(n, N)), x


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--simulations", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
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
        random_state=0, device="cpu",
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim.fit(None)
    seconds = time.perf_counter() - start
    mse_rim = np.mean((rim.predict(y_test) - x_test) ** 2)
    mse_adjoint = np.mean((y_test - x_test) ** 2)
    rows = [
        {"estimator": "posterior mean (optimal)", "test MSE": f"{mse_optimal:.5f}", "ratio": "1.000"},
        {"estimator": "RIMRegressor", "test MSE": f"{mse_rim:.5f}",
         "ratio": f"{mse_rim / mse_optimal:.3f}"},
        {"estimator": "observation as estimate", "test MSE": f"{mse_adjoint:.5f}",
         "ratio": f"{mse_adjoint / mse_optimal:.3f}"},
    ]
    print_table(rows, ["estimator", "test MSE", "ratio"])
    print(f"analytic optimal MSE {mse_analytic:.5f}; RIM fit {seconds:.1f} s, best step "
          f"{rim.best_step_}; target ratio <= 1.03")
    write_json("bench_rim", {
        "mse_rim": mse_rim, "mse_optimal": mse_optimal, "mse_analytic": mse_analytic,
        "ratio": mse_rim / mse_optimal, "fit_seconds": seconds, "epochs": args.epochs,
        "simulations_per_epoch": args.simulations, "best_step": rim.best_step_,
    }, args.output)


if __name__ == "__main__":
    main()
