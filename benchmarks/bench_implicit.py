"""ImplicitClassifier against sklearn's MLPClassifier on load_digits, same budget.

75/25 stratified split, StandardScaler, hidden_size=100, 20 epochs, Adam, batch 100, five
seeds; mean test accuracy and fit time of both in the same run, and the time ratio.

    python benchmarks/bench_implicit.py [--seeds 5] [--threads 1] [--solver-tol 1e-4]

Targets: accuracy >= 0.975; fit time <= 2x the MLP's.
"""

import argparse
import statistics
import time
import warnings

import torch
from _common import print_table, write_json
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from skinverse.implicit import ImplicitClassifier


def run(make, X_train, y_train, X_test, y_test):
    est = make()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return est.score(X_test, y_test), seconds, est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--solver-tol", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    data = (X_train, y_train, X_test, y_test)

    makers = {
        "sklearn MLPClassifier(100,)": lambda seed: MLPClassifier(
            (100,), max_iter=20, batch_size=100, random_state=seed),
    }
    for tol in args.solver_tol:
        makers[f"ImplicitClassifier(tol={tol:g})"] = lambda seed, tol=tol: ImplicitClassifier(
            hidden_size=100, max_epochs=20, batch_size=100, solver_tol=tol,
            random_state=seed, device="cpu")
    run(lambda: makers[list(makers)[1]](0), *data)  # warm-up (torch start-up costs)
    results = {name: {"accuracy": [], "seconds": [], "forward_iterations": []} for name in makers}
    for seed in range(args.seeds):
        for name, make in makers.items():
            accuracy, seconds, est = run(lambda: make(seed), *data)
            results[name]["accuracy"].append(accuracy)
            results[name]["seconds"].append(seconds)
            if hasattr(est, "forward_iterations_"):
                results[name]["forward_iterations"].append(est.forward_iterations_[-1])
    mlp_time = statistics.mean(results["sklearn MLPClassifier(100,)"]["seconds"])
    rows = []
    for name, res in results.items():
        res["mean_accuracy"] = statistics.mean(res["accuracy"])
        res["mean_seconds"] = statistics.mean(res["seconds"])
        res["time_ratio_to_mlp"] = res["mean_seconds"] / mlp_time
        iters = res["forward_iterations"]
        rows.append({
            "model": name,
            "accuracy": f"{res['mean_accuracy']:.4f}",
            "fit s": f"{res['mean_seconds']:.3f}",
            "x MLP time": f"{res['time_ratio_to_mlp']:.2f}",
            "fwd iters (last epoch)": f"{statistics.mean(iters):.1f}" if iters else "-",
        })
    print_table(rows, ["model", "accuracy", "fit s", "x MLP time", "fwd iters (last epoch)"])
    print("targets: accuracy >= 0.975, time <= 2x MLP")
    write_json("bench_implicit", {"seeds": args.seeds, "results": results}, args.output)


if __name__ == "__main__":
    main()
