"""Per-epoch cost of skinverse's shared training loop against a hand-written torch loop.

Both train the same MLP 64-128-10 with Adam on load_digits (standardised), with the same
batch size, the same per-epoch shuffling by a torch.Generator and the same batches; the
only difference is the loop around them. Three pairings, measured the way users run
them: the raw loop with fused Adam (what the estimator uses), with torch's default Adam,
and both with early stopping (10 % held out, a validation pass and a copy of the best
weights each epoch). One more row runs skinverse's loop with torch's ``optimizer.step()``
and ``zero_grad()`` instead of its lean fused step (the same updates): what that saves. Repeats interleave all loops; the table gives medians of the
process CPU time per epoch (one thread: the work done, robust to a busy machine).

    python benchmarks/bench_overhead.py [--epochs 50] [--repeats 7] [--threads 1]

Target: ratio (skinverse / raw) <= 1.10 in every pairing.
"""

import argparse
import contextlib
import statistics
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from skinverse._base import _fused, _loop
from skinverse.utils._testing import TorchMLPClassifier, make_mlp

BATCH = 200


def raw_loop(X, y, epochs, seed, fused=True, early_stopping=False):
    """What a user would write by hand: tensors, randperm, index, step (and, with early
    stopping, a held-out split, a validation pass and the best weights kept)."""
    generator = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    if early_stopping:
        order = torch.randperm(len(Xt), generator=generator)
        n_val = len(Xt) // 10
        Xv, yv = Xt[order[:n_val]], yt[order[:n_val]]
        Xt, yt = Xt[order[n_val:]], yt[order[n_val:]]
    model = make_mlp(64, (128,), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    n, best, best_state = len(Xt), -np.inf, None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if early_stopping:
            model.eval()
            with torch.no_grad():
                score = float((model(Xv).argmax(1) == yv).float().mean())
            if score > best:
                best = score
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return model


def skinverse_loop(X, y, epochs, seed, early_stopping=False):
    est = TorchMLPClassifier(
        hidden_layer_sizes=(128,), max_epochs=epochs, batch_size=BATCH, tol=0,
        n_iter_no_change=10**6, random_state=seed, device="cpu",
        early_stopping=early_stopping,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@contextlib.contextmanager
def torch_optimizer_step():
    """The loop as before its lean optimiser step: torch's ``step()`` and ``zero_grad()``
    (the same updates, with torch's per-call bookkeeping)."""
    saved = _loop.optimizer_step, _fused._LeanStep.zero_grad
    _loop.optimizer_step = lambda optimizer: optimizer.step()
    _fused._LeanStep.zero_grad = torch.optim.Optimizer.zero_grad
    try:
        yield
    finally:
        _loop.optimizer_step, _fused._LeanStep.zero_grad = saved


def skinverse_torch_step(X, y, epochs, seed):
    with torch_optimizer_step():
        return skinverse_loop(X, y, epochs, seed)


def timed(fn, *args):
    """CPU seconds of the process (every loop runs on one thread, so this is the work it
    does, and far less sensitive to other processes on the machine than wall time)."""
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    loops = {
        "raw, fused Adam": lambda rep: raw_loop(X, y, args.epochs, rep),
        "raw, default Adam": lambda rep: raw_loop(X, y, args.epochs, rep, fused=False),
        "skinverse": lambda rep: skinverse_loop(X, y, args.epochs, rep),
        "skinverse with torch's optimizer step": lambda rep: skinverse_torch_step(
            X, y, args.epochs, rep),
        "raw, fused Adam, early stopping": lambda rep: raw_loop(X, y, args.epochs, rep,
                                                                 early_stopping=True),
        "skinverse, early stopping": lambda rep: skinverse_loop(X, y, args.epochs, rep,
                                                                early_stopping=True),
    }
    for loop in loops.values():  # warm-up
        loop(0)
    times = {name: [] for name in loops}
    for rep in range(args.repeats):  # interleaved: a load change hits every loop alike
        for name, loop in loops.items():
            times[name].append(timed(loop, rep) / args.epochs)
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"loop": name, "CPU ms/epoch (median)": f"{1e3 * median[name]:.3f}",
             "CPU ms/epoch (min)": f"{1e3 * min(times[name]):.3f}"} for name in loops]
    ratios = {
        "vs fused Adam": median["skinverse"] / median["raw, fused Adam"],
        "vs default Adam": median["skinverse"] / median["raw, default Adam"],
        "early stopping vs fused Adam": (median["skinverse, early stopping"]
                                         / median["raw, fused Adam, early stopping"]),
    }
    lean = median["skinverse"] / median["skinverse with torch's optimizer step"]
    print_table(rows, ["loop", "CPU ms/epoch (median)", "CPU ms/epoch (min)"])
    for name, ratio in ratios.items():
        print(f"ratio skinverse / raw, {name}: {ratio:.3f}  (target <= 1.10)")
    print(f"skinverse's lean optimiser step / torch's step() in the same loop: {lean:.3f}")
    write_json(
        "bench_overhead",
        {"epochs": args.epochs, "repeats": args.repeats, "batch_size": BATCH,
         "seconds_per_epoch": times, "ratios": ratios, "lean_step_ratio": lean},
        args.output,
    )
    return ratios


if __name__ == "__main__":
    main()
