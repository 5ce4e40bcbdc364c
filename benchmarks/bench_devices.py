"""Training throughput of every estimator on the CPU and on CUDA, in the same run.

Each estimator fits the same data with the same settings on both devices; the table gives
seconds per epoch (after a one-epoch warm-up fit on each device, so CUDA's start-up and
cuDNN's autotuning are not counted) and the ratio CPU / CUDA. Sizes are those a user would
move to a GPU for; the implicit model on digits is included to show where a GPU does not
pay (batches of 100 rows of 64 features are launch-bound).

    python benchmarks/bench_devices.py [--epochs 2] [--threads N]

Needs a CUDA GPU; without one it prints the CPU column alone and says so.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import (
    gaussian_mean_variance_problem,
    load_sample_patches,
    make_mri_data,
    make_phantoms,
)
from skinverse.imnn import IMNNTransformer
from skinverse.implicit import ImplicitClassifier
from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor
from skinverse.unrolled import UnrolledRegressor


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return (StandardScaler().fit_transform(X), y), {}


def _patches(size=32, n=1000):
    patches = load_sample_patches(size, n, random_state=0)
    blur = Blur(gaussian_kernel(5, 1.2, ndim=2), input_shape=(size, size))
    observed = blur(torch.as_tensor(patches.reshape(-1, size, size), dtype=torch.float32))
    rng = np.random.RandomState(0)
    observed = observed.reshape(n, -1).numpy() + 0.02 * rng.normal(size=(n, size * size))
    return (observed, patches), {}


def _mri(n=64, size=64):
    X, y, maps, masks = make_mri_data(make_phantoms(n, size, random_state=0), n_coils=8,
                                      acceleration=4, noise_std=0.01, random_state=0)
    return (X, y), {"maps": maps, "masks": masks}


def _no_data():
    return (None,), {}


CASES = {
    "ImplicitClassifier (digits, n=100, batch 100)": (
        lambda d, e: ImplicitClassifier(hidden_size=100, max_epochs=e, batch_size=100,
                                        random_state=0, device=d), _digits),
    "RIMRegressor (U-Net width 16, 32x32, batch 32)": (
        lambda d, e: RIMRegressor(
            operator=Blur(gaussian_kernel(5, 1.2, ndim=2), input_shape=(32, 32)),
            noise_std=0.02, input_shape=(32, 32), width=16, depth=3, n_steps=4,
            max_epochs=e, batch_size=32, random_state=0, device=d), _patches),
    "UnrolledRegressor (MoDL, 64x64, 8 coils, batch 8)": (
        lambda d, e: UnrolledRegressor(method="modl", n_unrolls=4, cg_max_iter=8, width=32,
                                       depth=4, max_epochs=e, batch_size=8, random_state=0,
                                       device=d), _mri),
    "IMNNTransformer (simulator, n_s=n_d=1000)": (
        lambda d, e: IMNNTransformer(
            simulator=gaussian_mean_variance_problem().simulator, theta_fid=(0.0, 1.0),
            n_s=1000, n_d=1000, hidden_layer_sizes=(128, 128), max_epochs=10 * e,
            random_state=0, device=d), _no_data),
}


def _seconds_per_epoch(factory, data, device, epochs):
    args, extra = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        factory(device, 1).fit(*args, **extra)  # warm-up: CUDA context, cuDNN autotuning
        if device == "cuda":
            torch.cuda.synchronize()
        est = factory(device, epochs)
        start = time.perf_counter()
        est.fit(*args, **extra)
        if device == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / est.n_iter_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, results = [], {}
    for name, (factory, make_data) in CASES.items():
        data = make_data()
        timing = {d: _seconds_per_epoch(factory, data, d, args.epochs) for d in devices}
        row = {"estimator": name, "CPU s/epoch": f"{timing['cpu']:.3f}"}
        if "cuda" in timing:
            row["CUDA s/epoch"] = f"{timing['cuda']:.3f}"
            row["CPU / CUDA"] = f"{timing['cpu'] / timing['cuda']:.1f}x"
        rows.append(row)
        results[name] = timing
        print(f"done: {name}", flush=True)
    columns = ["estimator", "CPU s/epoch"] + (["CUDA s/epoch", "CPU / CUDA"]
                                               if "cuda" in devices else [])
    print_table(rows, columns)
    if "cuda" not in devices:
        print("no CUDA device here: CPU column only")
    print(f"(IMNN: one epoch = one full-batch step; {torch.get_num_threads()} CPU threads)")
    write_json("bench_devices", {"seconds_per_epoch": results, "epochs": args.epochs},
               args.output)


if __name__ == "__main__":
    main()
