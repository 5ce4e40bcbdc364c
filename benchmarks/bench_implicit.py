"""ImplicitClassifier against sklearn's MLPClassifier on load_digits, same budget.

75/25 stratified split, StandardScaler, hidden_size=100, 20 epochs, Adam, batch 100, five
seeds; mean test accuracy and fit time of each in the same run, and the time ratio.

Rows:

- both models at their default learning rate and penalty;
- both models with learning rate and L2 penalty chosen by 3-fold cross-validation on the
  training split (GridSearchCV over the same grid for both; the test split is never
  looked at), which is how a user would tune them;
- a hand-written PyTorch training loop of the same implicit model (Picard to the same
  relative tolerance, the whole batch until its slowest sample converges, the implicit
  adjoint gradient, fused Adam, the exact l1-ball projection in numpy): the cost of the
  algorithm itself in eager PyTorch, without the estimator's machinery. Its time ratio
  to the MLP is the floor the estimator can approach on this machine.

    python benchmarks/bench_implicit.py [--seeds 5] [--threads 1] [--solver-tol 1e-4 1e-3]
                                        [--solvers auto anderson picard]

Each ImplicitClassifier row reports the forward and adjoint solver iterations per training
step (mean over the epochs). Peers (torchidl, torchdeq, skorch) are compared in
``bench_peers.py``.

Targets: accuracy >= 0.975; fit time <= 2x the MLP's.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _common import print_table, write_json
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from skinverse.implicit import ImplicitClassifier
from skinverse.implicit._projection import project_rows_l1

GRID = {"learning_rate": [1e-3, 3e-3], "alpha": [1e-4, 1e-3]}
HIDDEN, EPOCHS, BATCH, KAPPA = 100, 20, 100, 0.95


def run(make, X_train, y_train, X_test, y_test):
    est = make()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return est.score(X_test, y_test), seconds, est


def _picard(A_t, injected, z, tol, max_iter=300):
    """Whole-batch Picard with the estimator's relative sup-norm residual."""
    for _ in range(max_iter):
        fz = torch.addmm(injected, z, A_t).relu_()
        done = (fz - z).abs().amax(1) <= tol * fz.abs().amax(1).clamp_min(1.0)
        z = fz
        if bool(done.all()):
            break
    return z


class HandWrittenImplicit:
    """The implicit model trained by a plain PyTorch loop (the reference row)."""

    def __init__(self, seed, learning_rate, alpha, tol):
        self.seed, self.learning_rate, self.alpha, self.tol = seed, learning_rate, alpha, tol

    def fit(self, X, y):
        g = torch.Generator().manual_seed(self.seed)
        U = torch.as_tensor(X, dtype=torch.float32)
        classes, Y = np.unique(y, return_inverse=True)
        Y = torch.as_tensor(Y)
        n, p, q = HIDDEN, U.shape[1], len(classes)

        def uniform(*shape, bound):
            return torch.nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=g))

        self.A = uniform(n, n, bound=1 / n)
        self.B, self.b = uniform(n, p, bound=p**-0.5), uniform(n, bound=p**-0.5)
        self.C, self.c = uniform(q, n, bound=n**-0.5), uniform(q, bound=n**-0.5)
        self.D = uniform(q, p, bound=p**-0.5)
        params = [self.A, self.B, self.b, self.C, self.c, self.D]
        opt = torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.alpha,
                               fused=True)  # alpha as the estimator uses it
        starts = torch.zeros(len(U), n)
        for _ in range(EPOCHS):
            for idx in torch.randperm(len(U), generator=g).split(BATCH):
                u = U[idx]
                injected = torch.addmm(self.b, u, self.B.T)
                with torch.no_grad():
                    z = _picard(self.A.T, injected, starts[idx], self.tol)
                    starts[idx] = z
                pre = torch.addmm(injected, z, self.A.T)
                state = pre.relu()
                slope, A_fixed = (pre.detach() > 0).float(), self.A.detach()

                def adjoint(grad, slope=slope, A_fixed=A_fixed):
                    return _picard_adjoint(grad, slope, A_fixed, self.tol)

                state.register_hook(adjoint)
                out = torch.addmm(self.c, state, self.C.T) + u @ self.D.T
                loss = F.cross_entropy(out, Y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    self.A.copy_(project_rows_l1(self.A, KAPPA))
        self.classes_ = classes
        return self

    def score(self, X, y):
        with torch.no_grad():
            U = torch.as_tensor(X, dtype=torch.float32)
            injected = torch.addmm(self.b, U, self.B.T)
            z = _picard(self.A.T, injected, torch.zeros(len(U), HIDDEN), self.tol)
            out = torch.addmm(self.c, z, self.C.T) + U @ self.D.T
        return float(np.mean(self.classes_[out.argmax(1).numpy()] == y))


def _picard_adjoint(grad, slope, A, tol, max_iter=300):
    """w = grad + (w * phi') A, the adjoint fixed point of the implicit gradient."""
    w = grad
    for _ in range(max_iter):
        new = torch.addmm(grad, w * slope, A)
        done = (new - w).abs().amax(1) <= tol * new.abs().amax(1).clamp_min(1.0)
        w = new
        if bool(done.all()):
            break
    return w


def _tune(estimator, grid, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    return search.best_params_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--solver-tol", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--solvers", nargs="+", default=["auto", "anderson", "picard"],
                        help="rows at the defaults for each solver (the first is the default)")
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

    def mlp(seed, learning_rate=1e-3, alpha=1e-4):
        return MLPClassifier((HIDDEN,), max_iter=EPOCHS, batch_size=BATCH, alpha=alpha,
                             learning_rate_init=learning_rate, random_state=seed)

    def implicit(seed, learning_rate=1e-3, alpha=0.0, solver_tol=1e-4, solver="auto"):
        return ImplicitClassifier(hidden_size=HIDDEN, max_epochs=EPOCHS, batch_size=BATCH,
                                  learning_rate=learning_rate, alpha=alpha, solver=solver,
                                  solver_tol=solver_tol, random_state=seed, device="cpu")

    mlp_grid = {"learning_rate_init": GRID["learning_rate"], "alpha": GRID["alpha"]}
    mlp_best = _tune(mlp(0), mlp_grid, X_train, y_train)
    mlp_best = {"learning_rate": mlp_best["learning_rate_init"], "alpha": mlp_best["alpha"]}
    imp_best = _tune(implicit(0), GRID, X_train, y_train)
    print(f"chosen by 3-fold CV on the training split: MLP {mlp_best}, implicit {imp_best}")

    makers = {
        "sklearn MLPClassifier (defaults)": lambda seed: mlp(seed),
        "sklearn MLPClassifier (CV-tuned)": lambda seed: mlp(seed, **mlp_best),
    }
    for tol in args.solver_tol:
        for solver in args.solvers:
            makers[f"ImplicitClassifier {solver} tol={tol:g} (defaults)"] = (
                lambda seed, tol=tol, solver=solver: implicit(seed, solver_tol=tol,
                                                              solver=solver))
        makers[f"ImplicitClassifier tol={tol:g} (CV-tuned)"] = (
            lambda seed, tol=tol: implicit(seed, solver_tol=tol, **imp_best))
        makers[f"hand-written torch loop tol={tol:g} (CV-tuned)"] = (
            lambda seed, tol=tol: HandWrittenImplicit(seed, tol=tol, **imp_best))
    run(lambda: implicit(0), *data)  # warm-up (torch start-up costs)
    results = {name: {"accuracy": [], "seconds": [], "forward_iterations": [],
                      "adjoint_iterations": []} for name in makers}
    for seed in range(args.seeds):
        for name, make in makers.items():
            accuracy, seconds, est = run(lambda: make(seed), *data)
            results[name]["accuracy"].append(accuracy)
            results[name]["seconds"].append(seconds)
            if hasattr(est, "forward_iterations_"):  # per training step, over the epochs
                results[name]["forward_iterations"].append(
                    statistics.mean(est.forward_iterations_))
                results[name]["adjoint_iterations"].append(
                    statistics.mean(est.backward_iterations_))
    mlp_time = statistics.mean(results["sklearn MLPClassifier (defaults)"]["seconds"])
    rows = []
    for name, res in results.items():
        res["mean_accuracy"] = statistics.mean(res["accuracy"])
        res["mean_seconds"] = statistics.mean(res["seconds"])
        res["time_ratio_to_mlp"] = res["mean_seconds"] / mlp_time
        iters, adjoint = res["forward_iterations"], res["adjoint_iterations"]
        rows.append({
            "model": name,
            "accuracy": f"{res['mean_accuracy']:.4f}",
            "fit s": f"{res['mean_seconds']:.3f}",
            "x MLP time": f"{res['time_ratio_to_mlp']:.2f}",
            "fwd it/step": f"{statistics.mean(iters):.1f}" if iters else "-",
            "adj it/step": f"{statistics.mean(adjoint):.1f}" if adjoint else "-",
        })
    print_table(rows, ["model", "accuracy", "fit s", "x MLP time", "fwd it/step",
                       "adj it/step"])
    for tol in args.solver_tol:
        ours = results[f"ImplicitClassifier tol={tol:g} (CV-tuned)"]["mean_seconds"]
        hand = results[f"hand-written torch loop tol={tol:g} (CV-tuned)"]["mean_seconds"]
        print(f"tol={tol:g}: estimator / hand-written loop time = {ours / hand:.2f}")
    print("targets: accuracy >= 0.975, time <= 2x MLP (x MLP time is against the default MLP)")
    write_json("bench_implicit", {"seeds": args.seeds, "grid": GRID, "mlp_cv": mlp_best,
                                  "implicit_cv": imp_best, "results": results}, args.output)


if __name__ == "__main__":
    main()
