"""RIMRegressor at its defaults on signals that are not Gaussian, against the Wiener filter.

On Gaussian signals the Wiener filter (the linear minimum-MSE estimator of the training
signals' mean and covariance) is the posterior mean, and ``bench_defaults.py`` checks that
the RIM reaches it. What a learned optimiser is for is what a linear estimator cannot do:
sparse spikes, piecewise-constant signals, bounded signals. This script draws such
families (1-D, Gaussian blur or random compressed sensing, Gaussian noise), fits the RIM
with only ``operator``, ``noise_std`` and ``random_state`` on 2000 pairs, and prints its
test MSE over the Wiener filter's on 500 fresh pairs (below 1: it learned the prior), the
epochs, the chosen step and the CPU seconds.

    python benchmarks/bench_rim_priors.py [--seeds 0 1] [--n-train 2000] [--threads 1]
                                          [--set KEY=VALUE ...] [--output PATH]

``--set`` passes other RIM parameters (e.g. ``--set resample_noise=false``) to compare.
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.operators import Blur, MatrixOperator, gaussian_kernel
from skinverse.rim import RIMRegressor
from skinverse.rim._physics import wiener_filter

N = 32


def sparse(m, rng):
    out = np.zeros((m, N))
    for row in out:
        row[rng.choice(N, 3, replace=False)] = 2 * rng.normal(size=3)
    return out


def piecewise_constant(m, rng):
    out = np.zeros((m, N))
    for row in out:
        k = rng.randint(2, 6)
        cuts = np.sort(rng.choice(np.arange(1, N), k, replace=False))
        row[:] = np.repeat(rng.normal(size=k + 1), np.diff(np.r_[0, cuts, N]))
    return out


def bounded(m, rng):
    """Smooth signals squashed into [0, 1] (images, concentrations): a sigmoid of a
    random walk."""
    return 1 / (1 + np.exp(-np.cumsum(rng.normal(size=(m, N)), axis=1) / 2))


FAMILIES = [
    ("sparse, blur", sparse, "blur", 0.05),
    ("piecewise constant, blur", piecewise_constant, "blur", 0.05),
    ("bounded, blur", bounded, "blur", 0.02),
    ("sparse, CS 16 of 32", sparse, "cs", 0.02),
]


def operator(kind, rng):
    if kind == "blur":
        return Blur(gaussian_kernel(5, 1.5), input_shape=(N,))
    return MatrixOperator(rng.normal(size=(16, N)) / 4)


def run(family, seed, n_train, params):
    name, draw, kind, noise = family
    rng = np.random.RandomState(seed)
    op = operator(kind, rng)

    def sample(m):
        x = draw(m, rng)
        clean = op(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
        return clean + noise * rng.normal(size=clean.shape), x

    X, y = sample(n_train)
    X_test, y_test = sample(500)
    gain, offset = wiener_filter(op, noise, [y])
    wiener = X_test @ np.asarray(gain).T + np.asarray(offset)
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim = RIMRegressor(operator=op, noise_std=noise, random_state=seed, **params).fit(X, y)
    seconds = time.process_time() - start
    mse = np.mean((rim.predict(X_test) - y_test) ** 2)
    ratio = mse / np.mean((wiener - y_test) ** 2)
    return {"family": name, "seed": seed, "rim / wiener": round(float(ratio), 3),
            "epochs": rim.n_iter_, "best step": rim.best_step_, "cpu s": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = []
    for seed in args.seeds:
        for family in FAMILIES:
            rows.append(run(family, seed, args.n_train, params))
            print(rows[-1], flush=True)
    print_table(rows, ["family", "seed", "rim / wiener", "epochs", "best step", "cpu s"])
    ratios = [r["rim / wiener"] for r in rows]
    print(f"RIM / Wiener: median {np.median(ratios):.3f}, worst {max(ratios):.3f} over "
          f"{len(rows)} fits (below 1: better than the best linear estimator)")
    write_json("bench_rim_priors", {"params": params, "rows": rows}, args.output)


if __name__ == "__main__":
    main()
