"""Per-epoch cost of skinverse's shared training loop against a hand-written torch loop.

Both train the same MLP 64-128-10 with (fused) Adam on load_digits (standardised), with the same
batch size, the same per-epoch shuffling by a torch.Generator and the same batches; the
only difference is the loop around them. Several repeats, alternating the two, median.

    python benchmarks/bench_overhead.py [--epochs 50] [--repeats 7] [--threads 1]

Target: ratio (skinverse / raw) <= 1.10.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from skinverse.utils._testing import TorchMLPClassifier, make_mlp

BATCH = 200


def raw_loop(X, y, epochs, seed):
    """What a user would write by hand: tensors, randperm, index, step."""
    generator = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    model = make_mlp(64, (128,), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    n = len(Xt)
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
    return model


def skinverse_loop(X, y, epochs, seed):
    est = TorchMLPClassifier(
        hidden_layer_sizes=(128,), max_epochs=epochs, batch_size=BATCH, tol=0,
        n_iter_no_change=10**6, random_state=seed, device="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


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
    timed(raw_loop, X, y, 2, 0), timed(skinverse_loop, X, y, 2, 0)  # warm-up
    raw, ours = [], []
    for rep in range(args.repeats):
        raw.append(timed(raw_loop, X, y, args.epochs, rep) / args.epochs)
        ours.append(timed(skinverse_loop, X, y, args.epochs, rep) / args.epochs)
    rows = [
        {"loop": "raw torch", "ms/epoch (median)": f"{1e3 * statistics.median(raw):.3f}",
         "ms/epoch (min)": f"{1e3 * min(raw):.3f}"},
        {"loop": "skinverse", "ms/epoch (median)": f"{1e3 * statistics.median(ours):.3f}",
         "ms/epoch (min)": f"{1e3 * min(ours):.3f}"},
    ]
    ratio = statistics.median(ours) / statistics.median(raw)
    print_table(rows, ["loop", "ms/epoch (median)", "ms/epoch (min)"])
    print(f"ratio skinverse / raw (median per-epoch time): {ratio:.3f}  (target <= 1.10)")
    write_json(
        "bench_overhead",
        {"epochs": args.epochs, "repeats": args.repeats, "batch_size": BATCH,
         "raw_seconds_per_epoch": raw, "skinverse_seconds_per_epoch": ours, "ratio": ratio},
        args.output,
    )
    return ratio


if __name__ == "__main__":
    main()
