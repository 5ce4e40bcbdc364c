"""ImplicitClassifier against peer libraries on load_digits, in one process, interleaved.

Same data and budget for every row: 75/25 stratified split, StandardScaler, hidden size
100, 20 epochs, Adam at learning rate 1e-3, batch 100, solver tolerance 1e-4,
kappa 0.95, one thread (torch's and numpy's BLAS); each seed runs every row before the
next seed starts, each seed starting at another row, and the table reports median fit
times and mean test accuracies over the seeds. Ratios use the process CPU time of the
fit (``time.process_time``), which a machine shared with other jobs disturbs far less
than the wall time, also reported, and are paired: the median over seeds of a row's time
over the peer's time in the same seed.

Rows:

- skinverse ImplicitClassifier at its defaults (``solver='auto'``: Picard for the
  warm-started training solves), with torch's ``optimizer.step()`` in place of the loop's
  lean fused step (the same updates), with ``solver='anderson'`` and ``'picard'``, with the
  Jacobian-free gradient, without warm starts, with the solvers and settings of the
  previous release (``picard_reference``, training solves at ``solver_tol``, no
  schedule) and with one map application per step (the floor of the loop): forward
  and adjoint iterations per training step;
- torchidl's ``ImplicitModel`` (Picard forward and adjoint, row scaling of A), the
  reference implementation of El Ghaoui et al.;
- torchdeq's Anderson solver (``anderson_solver``, its defaults m=6, lam=1e-4) driving
  the same implicit model, forward and adjoint, in a hand-written loop;
- sklearn's MLPClassifier (one hidden layer of 100);
- a one-hidden-layer MLP trained by a raw PyTorch loop and by skorch: what a torch
  training loop costs by itself.

Peers are imported when importable and skipped with a message otherwise; the script
installs nothing. Run it in an environment that has them (not a skinverse dependency):

    PYTHONPATH=. /path/to/peers-venv/bin/python benchmarks/bench_peers.py [--seeds 5]

Targets (issue #16): ImplicitClassifier at equal or better accuracy >= 3x faster than
torchidl and <= 3x sklearn's MLP fit time, at the defaults.
"""

import argparse
import contextlib
import importlib
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _common import print_table, write_json
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinverse._base import _fused as fused_module
from skinverse._base import _loop as loop_module
from skinverse.implicit import ImplicitClassifier
from skinverse.implicit import _module as implicit_module
from skinverse.implicit._projection import project_rows_l1
from skinverse.implicit._solvers import REFERENCE_SOLVERS

HIDDEN, EPOCHS, BATCH, LR, TOL, KAPPA = 100, 20, 100, 1e-3, 1e-4, 0.95


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        print(f"skipping {name}: not importable ({exc})")
        return None


@contextlib.contextmanager
def _previous_release():
    """The solvers and training tolerance skinverse used before issue #16: the reference
    solvers (a test every iteration or two, per-sample compaction), training solves at
    ``solver_tol``, no solver schedule."""
    module = implicit_module.ImplicitModule
    saved = dict(implicit_module.SOLVERS), module._tol, module._solve_options
    implicit_module.SOLVERS.update(REFERENCE_SOLVERS)
    module._tol = lambda self: self.solver_tol
    module._solve_options = lambda self, kind: {}
    try:
        yield
    finally:
        implicit_module.SOLVERS.update(saved[0])
        module._tol, module._solve_options = saved[1], saved[2]


@contextlib.contextmanager
def _torch_optimizer_step():
    """The loop's optimiser step as torch's ``step()`` and ``zero_grad()`` (the same
    updates as the lean fused step the loop makes, with torch's per-call bookkeeping)."""
    saved = loop_module.optimizer_step, fused_module._LeanStep.zero_grad
    loop_module.optimizer_step = lambda optimizer: optimizer.step()
    fused_module._LeanStep.zero_grad = torch.optim.Optimizer.zero_grad
    try:
        yield
    finally:
        loop_module.optimizer_step, fused_module._LeanStep.zero_grad = saved


class SkinverseRow:
    def __init__(self, seed, previous=False, torch_step=False, **params):
        self.previous, self.torch_step = previous, torch_step
        self.est = ImplicitClassifier(hidden_size=HIDDEN, max_epochs=EPOCHS, batch_size=BATCH,
                                      learning_rate=LR, solver_tol=TOL, kappa=KAPPA,
                                      random_state=seed, device="cpu", **params)

    def fit(self, X, y):
        with contextlib.ExitStack() as stack:
            if self.previous:
                stack.enter_context(_previous_release())
            if self.torch_step:
                stack.enter_context(_torch_optimizer_step())
            self.est.fit(X, y)
        self.iterations = (statistics.mean(self.est.forward_iterations_),
                           statistics.mean(self.est.backward_iterations_))
        return self

    def score(self, X, y):
        return self.est.score(X, y)


class _TorchRow:
    """Adam over ``self.params`` on the cross-entropy of ``self.logits(U)``."""

    iterations = None

    def fit(self, X, y):
        torch.manual_seed(self.seed)
        U, Y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
        self.build(U.shape[1], 10)
        opt = torch.optim.Adam(self.params, lr=LR)
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(EPOCHS):
            for idx in torch.randperm(len(U), generator=g).split(BATCH):
                loss = F.cross_entropy(self.logits(U[idx]), Y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.after_step()
        return self

    def after_step(self):
        pass

    def score(self, X, y):
        with torch.no_grad():
            out = self.logits(torch.as_tensor(X, dtype=torch.float32))
        return float((out.argmax(1).numpy() == y).mean())


class TorchidlRow(_TorchRow):
    def __init__(self, seed, torchidl):
        self.seed, self.torchidl = seed, torchidl

    def build(self, p, q):
        base = self.torchidl.implicit_function.ImplicitFunctionInf
        counter = self.counter = {"forward": 0, "steps": 0}

        class Counting(base):  # counts forward Picard iterations (one phi per iteration)
            @staticmethod
            def phi(X):
                counter["forward"] += 1
                return torch.clamp(X, min=0)

        self.model = self.torchidl.ImplicitModel(p, q, HIDDEN, f=Counting, bias=True,
                                                 tol=TOL, grad_tol=TOL, kappa=KAPPA)
        self.params = list(self.model.parameters())

    def logits(self, U):
        if self.model.training and torch.is_grad_enabled():
            self.counter["steps"] += 1
        return self.model(U)

    def fit(self, X, y):
        super().fit(X, y)
        self.iterations = (self.counter["forward"] / max(self.counter["steps"], 1), None)
        self.model.eval()
        return self


class TorchdeqRow(_TorchRow):
    """The skinverse model (ReLU, exact l1 projection) solved by torchdeq's Anderson."""

    def __init__(self, seed, solver):
        self.seed, self.solver = seed, solver
        self.calls = {"forward": 0, "backward": 0, "steps": 0}

    def build(self, p, q):
        def uniform(*shape, bound):
            return torch.nn.Parameter(torch.empty(shape).uniform_(-bound, bound))

        self.A = uniform(HIDDEN, HIDDEN, bound=1 / HIDDEN)
        self.B, self.b = uniform(HIDDEN, p, bound=p**-0.5), uniform(HIDDEN, bound=p**-0.5)
        self.C, self.c = uniform(q, HIDDEN, bound=HIDDEN**-0.5), uniform(q, bound=HIDDEN**-0.5)
        self.D = uniform(q, p, bound=p**-0.5)
        self.params = [self.A, self.B, self.b, self.C, self.c, self.D]

    def _solve(self, f, z0, kind):
        def counted(z):
            self.calls[kind] += 1
            return f(z)

        z, _, _ = self.solver(counted, z0, max_iter=50, tol=TOL, stop_mode="rel")
        return z

    def logits(self, U):
        injected = torch.addmm(self.b, U, self.B.T)
        A_t = self.A.T.detach()
        with torch.no_grad():
            z = self._solve(lambda z: torch.relu(torch.addmm(injected, z, A_t)),
                            torch.zeros_like(injected), "forward")
        pre = torch.addmm(injected, z, self.A.T)
        state = pre.relu()
        if state.requires_grad:
            self.calls["steps"] += 1
            slope, A_fixed = (pre.detach() > 0).float(), self.A.detach()

            def adjoint(grad):
                return self._solve(lambda w: torch.addmm(grad, w * slope, A_fixed), grad,
                                   "backward")

            state.register_hook(adjoint)
        return torch.addmm(self.c, state, self.C.T) + U @ self.D.T

    def after_step(self):
        with torch.no_grad():
            self.A.copy_(project_rows_l1(self.A, KAPPA))

    def fit(self, X, y):
        super().fit(X, y)
        steps = max(self.calls["steps"], 1)
        self.iterations = (self.calls["forward"] / steps, self.calls["backward"] / steps)
        return self


class RawTorchMLP(_TorchRow):
    def __init__(self, seed):
        self.seed = seed

    def build(self, p, q):
        self.net = torch.nn.Sequential(torch.nn.Linear(p, HIDDEN), torch.nn.ReLU(),
                                       torch.nn.Linear(HIDDEN, q))
        self.params = list(self.net.parameters())

    def logits(self, U):
        return self.net(U)


class SkorchMLP:
    iterations = None

    def __init__(self, seed, skorch):
        torch.manual_seed(seed)
        module = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(),
                                     torch.nn.Linear(HIDDEN, 10))
        self.net = skorch.NeuralNetClassifier(
            module, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LR,
            max_epochs=EPOCHS, batch_size=BATCH, train_split=None, verbose=0,
            iterator_train__shuffle=True)

    def fit(self, X, y):
        self.net.fit(X.astype(np.float32), y.astype(np.int64))
        return self

    def score(self, X, y):
        return float((self.net.predict(X.astype(np.float32)) == y).mean())


class SklearnMLP:
    iterations = None

    def __init__(self, seed):
        self.est = MLPClassifier((HIDDEN,), max_iter=EPOCHS, batch_size=BATCH,
                                 learning_rate_init=LR, random_state=seed)

    def fit(self, X, y):
        self.est.fit(X, y)
        return self

    def score(self, X, y):
        return self.est.score(X, y)


def _rows(torchidl, torchdeq_solver, skorch):
    rows = {
        "skinverse ImplicitClassifier (defaults: solver='auto')": lambda s: SkinverseRow(s),
        "skinverse defaults, torch's optimizer step()":
            lambda s: SkinverseRow(s, torch_step=True),
        "skinverse ImplicitClassifier solver='anderson'":
            lambda s: SkinverseRow(s, solver="anderson"),
        "skinverse ImplicitClassifier solver='picard'": lambda s: SkinverseRow(s, solver="picard"),
        "skinverse defaults, backward='phantom' (JFB)":
            lambda s: SkinverseRow(s, backward="phantom", backward_steps=1),
        "skinverse, previous release (reference Picard, training tol 1x)":
            lambda s: SkinverseRow(s, previous=True, solver="picard"),
        "skinverse defaults, reuse_equilibria=False":
            lambda s: SkinverseRow(s, reuse_equilibria=False),
        "skinverse floor: one map application, no solve (max_iter=1, JFB)":
            lambda s: SkinverseRow(s, max_iter=1, backward="phantom", backward_steps=1),
    }
    if torchidl is not None:
        rows["torchidl ImplicitModel (Picard)"] = lambda s: TorchidlRow(s, torchidl)
    if torchdeq_solver is not None:
        rows["torchdeq anderson_solver, same model"] = lambda s: TorchdeqRow(s, torchdeq_solver)
    rows["sklearn MLPClassifier"] = SklearnMLP
    rows["raw torch loop, MLP 64-100-10"] = RawTorchMLP
    if skorch is not None:
        rows["skorch NeuralNetClassifier, same MLP"] = lambda s: SkorchMLP(s, skorch)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="also profile one default fit: where the time goes")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too (sklearn's MLP): every row on one thread
    torchidl, skorch = _optional("torchidl"), _optional("skorch")
    deq = _optional("torchdeq.solver")
    rows = _rows(torchidl, deq.get_solver("anderson") if deq else None, skorch)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    results = {name: {"accuracy": [], "seconds": [], "cpu_seconds": [], "iterations": []}
               for name in rows}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make in rows.values():  # warm-up: imports, allocator, first-call costs
            make(0).fit(X_train[:200], y_train[:200])
        names = list(rows)
        for seed in range(args.seeds):
            # each seed starts at another row, so that no row always runs first after
            # the others (the first fit after a switch of model runs cold caches)
            shift = seed % len(names)
            for name in names[shift:] + names[:shift]:
                model = rows[name](seed)
                start, cpu = time.perf_counter(), time.process_time()
                model.fit(X_train, y_train)
                results[name]["cpu_seconds"].append(time.process_time() - cpu)
                results[name]["seconds"].append(time.perf_counter() - start)
                results[name]["accuracy"].append(model.score(X_test, y_test))
                results[name]["iterations"].append(model.iterations)
    _report(results, args)
    if args.profile:
        _profile(X_train, y_train)


# (label, function names whose cumulative time counts): the parts of a default fit
_PARTS = (
    ("fit (total)", ("fit",)),
    ("forward equilibrium solves", ("equilibrium",)),
    ("adjoint solves", ("_adjoint_solve",)),
    ("autograd backward (adjoint solves included)",
     ("<method 'run_backward' of 'torch._C._EngineBase' objects>",)),
    ("optimizer step (Adam)", ("step",)),
    ("l1-ball projection of A", ("enforce_well_posedness",)),
)


def _profile(X, y):
    """Where the time of one default fit goes (cProfile, cumulative seconds)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiler.enable()
        SkinverseRow(0).fit(X, y)
        profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = max(v[3] for v in stats.values())
    rows = []
    for label, names in _PARTS:
        seconds = max((v[3] for k, v in stats.items() if k[2] in names), default=0.0)
        rows.append({"part": label, "seconds": f"{seconds:.3f}",
                     "share": f"{seconds / total:.0%}"})
    print("\nprofile of one default fit (cProfile, inflated by its own overhead):")
    print_table(rows, ["part", "seconds", "share"])


def _report(results, args):
    # ratios are paired: the median over seeds of this row's time over the peer's time
    # of the same seed (run next to it), which machine noise disturbs less than the
    # ratio of the two medians (kept in the JSON as well)
    base = {key: results[name]["cpu_seconds"] for key, name in
            (("mlp", "sklearn MLPClassifier"), ("idl", "torchidl ImplicitModel (Picard)"))
            if name in results}
    table = []
    for name, res in results.items():
        res["median_seconds"] = statistics.median(res["cpu_seconds"])
        res["median_wall_seconds"] = statistics.median(res["seconds"])
        res["mean_accuracy"] = statistics.mean(res["accuracy"])
        its = [i for i in res["iterations"] if i is not None]
        fwd = statistics.mean(i[0] for i in its) if its else None
        bwd = [i[1] for i in its if i[1] is not None]
        res["forward_iterations_per_step"] = fwd
        res["adjoint_iterations_per_step"] = statistics.mean(bwd) if bwd else None
        for key, peer in base.items():
            res[f"time_ratio_to_{key}"] = statistics.median(
                mine / theirs for mine, theirs in zip(res["cpu_seconds"], peer))
            res[f"ratio_of_medians_to_{key}"] = res["median_seconds"] / statistics.median(peer)
        table.append({
            "model": name, "accuracy": f"{res['mean_accuracy']:.4f}",
            "fit CPU s": f"{res['median_seconds']:.3f}",
            "wall s": f"{res['median_wall_seconds']:.3f}",
            "fwd it/step": f"{fwd:.1f}" if fwd is not None else "-",
            "adj it/step": f"{statistics.mean(bwd):.1f}" if bwd else "-",
            "x MLP": f"{res.get('time_ratio_to_mlp', float('nan')):.2f}",
            "/ torchidl": (f"{1 / res['time_ratio_to_idl']:.2f}" if "idl" in base else "-"),
        })
    print_table(table, ["model", "accuracy", "fit CPU s", "wall s", "fwd it/step",
                        "adj it/step", "x MLP", "/ torchidl"])
    print("x MLP: fit CPU time / sklearn MLP's; / torchidl: torchidl's fit CPU time / this "
          "row's (speed-up); each the median over seeds of the ratio within a seed. Targets: defaults row >= 3 in '/ torchidl', <= 3 in 'x MLP'.")
    write_json("bench_peers", {"seeds": args.seeds, "settings": {
        "hidden": HIDDEN, "epochs": EPOCHS, "batch": BATCH, "learning_rate": LR, "tol": TOL,
        "kappa": KAPPA}, "results": results}, args.output)


if __name__ == "__main__":
    main()
