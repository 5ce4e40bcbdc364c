"""RIMRegressor and IMNNTransformer at their defaults on a zoo of problems.

Each problem is drawn from a family with a seed (problem parameters, data and the
estimator's random_state all follow it); defaults are judged on draws they were not
tuned on, so run several seeds.

RIM (fitted with only ``operator``, ``noise_std``, ``random_state``): linear-Gaussian
problems -- identity, 1-D and 2-D blur, random matrices of condition number up to 1e4,
compressed sensing (under-determined), inpainting masks, over-determined random
measurements -- with noise from 1e-3 to 10 relative to the noiseless observations,
signal scales 1e-2 to 1e2 (with an offset), operator scales 0.1 to 10. Metric: test MSE
over the MSE of the closed-form posterior mean on the same test set (the optimum).
Targets: worst <= 1.10, median <= 1.03.

IMNN (fitted with only ``simulator``, ``theta_fid``, ``random_state``): Gaussian mean,
variance, mean and variance, linear models with 1-3 parameters, exponential rate,
Laplace location, log-normal location; 5 to 100 data points, noise levels putting det F
between 1e-1 and 1e6. Metric: det F of the fitted summaries on fresh simulations
(``fisher_information``, mean of 3 sets of 5000) over the analytic det F; and the same
on 2 sets of 50,000 ("ratio 50k"): where the optimal summary is steep (Laplace location)
one set of 5000 scatters by 2-4 %, so the worst of many 5000-set means is pulled down by
the yardstick's own noise.
Targets: worst >= 0.95, median >= 0.98, each fit under 2 minutes on 2 CPU cores. The
table gives per fit the steps, wall and process CPU seconds and the network that
``architecture='auto'`` built; more draws of the family: more ``--seeds``.

    python benchmarks/bench_defaults.py [--seeds 0 1] [--quick] [--only rim|imnn] [--families ...]
                                        [--threads 2] [--output PATH]
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import _fisher_problems as fp
from skinverse.datasets._signals import make_linear_gaussian_problem
from skinverse.imnn import IMNNTransformer
from skinverse.rim import RIMRegressor

# name, make_linear_gaussian_problem arguments, log10 range of the relative noise
RIM_FAMILIES = [
    ("denoise, high noise", dict(kind="identity"), (0.0, 1.0)),
    ("denoise, low noise", dict(kind="identity"), (-3.0, -2.0)),
    ("blur 1-D, low noise", dict(kind="blur"), (-3.0, -2.0)),
    ("blur 1-D, high noise", dict(kind="blur"), (-1.3, -0.3)),
    ("blur 2-D 6x6", dict(kind="blur", shape=(6, 6)), (-2.0, -1.0)),
    ("matrix cond 1e4, 48x32", dict(kind="matrix", n_obs=48, condition=1e4), (-3.0, -2.0)),
    ("matrix cond 1e2", dict(kind="matrix", condition=1e2), (-1.0, 0.0)),
    ("CS 16 of 32", dict(kind="compressed", n_obs=16), (-2.0, -1.0)),
    ("CS 24 of 48", dict(kind="compressed", n_features=48, n_obs=24), (-2.0, -1.0)),
    ("inpainting half", dict(kind="inpainting"), (-2.0, -1.0)),
    ("inpainting 2-D 6x6", dict(kind="inpainting", shape=(6, 6)), (-3.0, -1.5)),
    ("over-determined 64x32", dict(kind="compressed", n_obs=64), (0.0, 1.0)),
]
RIM_QUICK = (1, 2, 5, 7, 9)


def rim_problem(family, rng):
    name, kwargs, (lo, hi) = family
    kwargs = dict(kwargs)
    kwargs.setdefault("n_features", 32)
    scale = 10 ** rng.uniform(-2, 2)
    problem = make_linear_gaussian_problem(
        **kwargs, relative_noise=10 ** rng.uniform(lo, hi), signal_scale=scale,
        signal_mean=scale * rng.uniform(-2, 2), operator_scale=10 ** rng.uniform(-1, 1),
        length_scale=rng.uniform(2.0, 5.0), random_state=rng)
    return name, problem


def run_rim(family, seed, n_train):
    rng = np.random.RandomState([seed, RIM_FAMILIES.index(family)])
    name, problem = rim_problem(family, rng)
    X, x = problem.sample(n_train, random_state=rng)
    X_test, x_test = problem.sample(4000, random_state=rng)
    optimal = np.mean((problem.posterior_mean(X_test) - x_test) ** 2)
    rim = RIMRegressor(operator=problem.operator, noise_std=problem.noise_std,
                       random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rim.fit(X, x)
    seconds = time.perf_counter() - start
    mse = np.mean((rim.predict(X_test) - x_test) ** 2)
    return {"estimator": "RIMRegressor", "problem": name, "seed": seed,
            "relative_noise": problem.noise_std / np.sqrt(np.trace(
                problem.matrix @ problem.covariance @ problem.matrix.T) / len(problem.matrix)),
            "noise_std": problem.noise_std, "signal_scale": float(np.sqrt(
                np.trace(problem.covariance) / len(problem.covariance))),
            "mse": mse, "mse_optimal": optimal, "ratio": mse / optimal,
            "epochs": rim.n_iter_, "best_step": rim.best_step_, "seconds": seconds}


def _log_uniform(rng, lo, hi):
    return 10 ** rng.uniform(np.log10(lo), np.log10(hi))


def imnn_problem(kind, rng):
    """A Fisher problem of the family ``kind`` with det F log-uniform in [0.1, 1e6]."""
    n_data = int(round(_log_uniform(rng, 5, 100)))
    det = _log_uniform(rng, 0.1, 1e6)
    if kind == "mean":
        return fp.gaussian_mean_problem(n_data, sigma=np.sqrt(n_data / det))
    if kind == "variance":
        return fp.gaussian_variance_problem(n_data, theta_fid=np.sqrt(n_data / (2 * det)))
    if kind == "mean_variance":
        var = (n_data**2 / (2 * det)) ** (1 / 3)
        return fp.gaussian_mean_variance_problem(n_data, theta_fid=(rng.normal(), var))
    if kind.startswith("linear"):
        n_params = int(kind[-1])
        n_data = max(n_data, 3 * n_params)
        unit = fp.linear_model_problem(n_data, n_params, 1.0)
        sigma = (np.linalg.det(unit.fisher) / det) ** (1 / (2 * n_params))
        return fp.linear_model_problem(n_data, n_params, sigma,
                                       theta_fid=rng.normal(size=n_params))
    if kind == "exponential":
        return fp.exponential_rate_problem(n_data, theta_fid=np.sqrt(n_data / det))
    if kind == "laplace":
        return fp.laplace_location_problem(n_data, scale=np.sqrt(n_data / det))
    if kind == "lognormal":
        return fp.lognormal_problem(n_data, sigma=min(np.sqrt(n_data / det), 1.0))
    raise ValueError(kind)


IMNN_FAMILIES = ["mean", "variance", "mean_variance", "linear1", "linear2", "linear3",
                 "exponential", "laplace", "lognormal"]
IMNN_QUICK = ("mean", "mean_variance", "linear2", "exponential")


def run_imnn(kind, seed, n_sets=3):
    rng = np.random.RandomState([1000 + seed, IMNN_FAMILIES.index(kind)])
    problem = imnn_problem(kind, rng)
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           random_state=seed)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imnn.fit()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    analytic = float(np.linalg.det(problem.fisher))
    dets = [np.linalg.det(imnn.fisher_information(n_simulations=5000,
                                                  random_state=10_000 + seed * 10 + s))
            for s in range(n_sets)]
    large = [np.linalg.det(imnn.fisher_information(n_simulations=50_000,
                                                   random_state=20_000 + seed * 10 + s))
             for s in range(2)]
    return {"estimator": "IMNNTransformer", "problem": f"{problem.name} ({kind})",
            "seed": seed, "n_data": problem.simulator.n_data, "analytic_detF": analytic,
            "ratio_50k": float(np.mean(large)) / analytic,
            "detF": float(np.mean(dets)), "ratio": float(np.mean(dets)) / analytic,
            "ratio_sd": float(np.std(dets)) / analytic, "epochs": imnn.n_iter_,
            "architecture": imnn.architecture_, "seconds": seconds, "cpu_seconds": cpu}


def summarise(rows, better, key="ratio"):
    ratios = np.array([r[key] for r in rows])
    worst = ratios.max() if better == "low" else ratios.min()
    return {"worst": float(worst), "median": float(np.median(ratios)), "n": len(rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="a subset of each zoo")
    parser.add_argument("--only", choices=["rim", "imnn"], default=None)
    parser.add_argument("--families", nargs="+", default=None,
                        help="IMNN families to run (default: all, or the quick subset)")
    parser.add_argument("--n-train", type=int, default=2000, help="RIM training pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"seeds": args.seeds, "quick": args.quick}
    if args.only in (None, "rim"):
        families = [RIM_FAMILIES[i] for i in RIM_QUICK] if args.quick else RIM_FAMILIES
        rows = []
        for seed in args.seeds:
            for family in families:
                rows.append(run_rim(family, seed, args.n_train))
                row = rows[-1]
                print(f"RIM  {row['problem']:<24} seed {seed}  ratio {row['ratio']:.3f}  "
                      f"{row['epochs']} epochs  {row['seconds']:.0f} s", flush=True)
        result["rim"] = {"rows": rows, **summarise(rows, "low")}
    if args.only in (None, "imnn"):
        kinds = IMNN_QUICK if args.quick else IMNN_FAMILIES
        kinds = args.families or kinds
        rows = []
        for seed in args.seeds:
            for kind in kinds:
                rows.append(run_imnn(kind, seed))
                row = rows[-1]
                print(f"IMNN {row['problem']:<40} seed {seed}  N {row['n_data']}  det F "
                      f"{row['analytic_detF']:.3g}  ratio {row['ratio']:.3f} "
                      f"(50k: {row['ratio_50k']:.3f})  "
                      f"{row['epochs']} steps  {row['seconds']:.0f} s ({row['cpu_seconds']:.0f} "
                      f"s CPU)  {row['architecture']}", flush=True)
        result["imnn"] = {"rows": rows, **summarise(rows, "high")}
        result["imnn_50k"] = summarise(rows, "high", "ratio_50k")
    print()
    for key, target in (("rim", "worst <= 1.10, median <= 1.03"),
                        ("imnn", "worst >= 0.95, median >= 0.98, fit < 120 s")):
        if key not in result:
            continue
        table = [{"problem": r["problem"], "seed": r["seed"], "ratio": f"{r['ratio']:.3f}",
                  "steps": r["epochs"], "fit s": f"{r['seconds']:.0f}",
                  "cpu s": f"{r.get('cpu_seconds', float('nan')):.0f}",
                  "ratio 50k": f"{r['ratio_50k']:.3f}" if "ratio_50k" in r else "",
                  "network": r.get("architecture", "")}
                 for r in result[key]["rows"]]
        print_table(table, ["problem", "seed", "ratio", "ratio 50k", "steps", "fit s", "cpu s",
                            "network"])
        print(f"{key}: worst {result[key]['worst']:.3f}, median {result[key]['median']:.3f} "
              f"over {result[key]['n']} fits; targets {target}")
        if key == "imnn":
            large = result["imnn_50k"]
            print(f"imnn on 2 x 50,000 fresh simulations: worst {large['worst']:.3f}, "
                  f"median {large['median']:.3f}")
        print()
    write_json("bench_defaults", result, args.output)


if __name__ == "__main__":
    main()
