"""IMNNTransformer against the analytic Fisher information of two Gaussian problems.

N=10 draws per data set, theta_fid=(0, 1), n_s=n_d=1000 fresh simulations per step.
Reported: det F of the trained summaries on 20 fresh simulation sets (mean, sd), divided
by the analytic value (50 for mean and variance, 5 for the variance alone), and the fit
wall time. The ratio of the optimal summaries themselves is ~1.00 with sd ~0.07 at
n_s=1000 (the estimate's own scatter).

    python benchmarks/bench_imnn.py [--epochs 4000] [--threads 2]

Targets: >= 0.97 (mean and variance) and >= 0.98 (variance).
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import gaussian_mean_variance_problem, gaussian_variance_problem
from skinverse.imnn import IMNNTransformer


def run(problem, epochs, n_sets):
    imnn = IMNNTransformer(
        simulator=problem.simulator, theta_fid=problem.theta_fid, n_s=1000, n_d=1000,
        hidden_layer_sizes=(128, 128), max_epochs=epochs, lr_schedule="cosine",
        n_iter_no_change=10**9, random_state=0, device="cpu",
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imnn.fit()
    seconds = time.perf_counter() - start
    analytic = float(np.linalg.det(problem.fisher))
    dets = np.array([np.linalg.det(imnn.fisher_information(random_state=1000 + s))
                     for s in range(n_sets)])
    return {"problem": problem.name, "analytic_detF": analytic, "detF_mean": dets.mean(),
            "detF_sd": dets.std(), "ratio_mean": dets.mean() / analytic,
            "ratio_sd": dets.std() / analytic, "fit_seconds": seconds, "epochs": epochs,
            "best_training_detF": max(imnn.history_["detF"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4000)
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [run(gaussian_mean_variance_problem(10), args.epochs, args.sets),
               run(gaussian_variance_problem(10), args.epochs, args.sets)]
    print_table([{
        "problem": r["problem"], "analytic det F": f"{r['analytic_detF']:g}",
        "det F (fresh sets)": f"{r['detF_mean']:.2f} +- {r['detF_sd']:.2f}",
        "ratio": f"{r['ratio_mean']:.3f} +- {r['ratio_sd']:.3f}",
        "fit s": f"{r['fit_seconds']:.0f}",
    } for r in results], ["problem", "analytic det F", "det F (fresh sets)", "ratio", "fit s"])
    print("targets: ratio >= 0.97 (mean and variance), >= 0.98 (variance)")
    write_json("bench_imnn", {"results": results}, args.output)


if __name__ == "__main__":
    main()
