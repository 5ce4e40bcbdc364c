"""How accurate MoDL's gradient needs to be: the implicit backward CG against the exact one.

A MoDL model (the defaults, float32 denoiser so that only the CG differs) is trained for a
few epochs on 64x64 8-coil phantoms, then the gradient of the training loss of one
mini-batch with respect to every parameter is taken with the implicit backward CG
stopped at several relative residuals (``backward_tol``) or iteration counts, and
compared with a reference solved to 1e-7 in up to 100 iterations. The yardstick for
"accurate enough" is the scatter of the exact gradient between mini-batches (what
stochastic optimisation lives with anyway): the mean distance of each mini-batch's
gradient from their mean, relative to the mean's norm. The forward solve is the
estimator's throughout. Last, the forward solves of one batch with a bf16 denoiser at the
two forward tolerances (``cg_tol='auto'`` is 1e-3 with bf16): iterations per unroll and
how much the output moves.

    python benchmarks/bench_unrolled_gradient.py [--train 48] [--epochs 3] [--batches 4]
"""

import argparse
import warnings

import numpy as np
import torch
from _common import print_table, write_json

import skinverse.operators._base as cg
from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.unrolled import UnrolledRegressor


def gradient(est, batch, max_iter, tol):
    """Flat parameter gradient of the batch's loss with the backward CG at
    ``(max_iter, tol)``; returns it and the backward iterations per solve."""
    counts, original = [], cg.conjugate_gradient

    def backward_cg(apply, b, x0=None, max_iter_=50, tol_=1e-6):
        if x0 is not None:  # MoDL's forward solves start from the previous iterate
            return original(apply, b, x0, max_iter_, tol_)
        x, n = original(apply, b, None, max_iter, tol)
        counts.append(n)
        return x, n

    module = est.module_
    module.train()
    module.zero_grad()
    loss = est._compute_loss(batch)
    cg.conjugate_gradient = backward_cg
    try:
        loss.backward()
    finally:
        cg.conjugate_gradient = original
    flat = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
    return flat, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.train + 8 * args.batches
    X, y, maps, masks = make_mri_data(make_phantoms(n, 64, random_state=0), 8, 4, 0.01,
                                      random_state=0)
    est = UnrolledRegressor(mixed_precision=None, max_epochs=args.epochs, early_stopping=False,
                            random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:args.train], y[:args.train], maps=maps[:args.train],
                masks=masks[:args.train])

    def batch(i):
        rows = slice(args.train + 8 * i, args.train + 8 * i + 8)
        return {"X": torch.as_tensor(X[rows]), "y": torch.as_tensor(y[rows]),
                "maps": torch.as_tensor(maps[rows]), "masks": torch.as_tensor(masks[rows])}

    exact = [gradient(est, batch(i), 100, 1e-7)[0] for i in range(args.batches)]
    mean = torch.stack(exact).mean(dim=0)
    scatter = float(torch.stack([(g - mean).norm() for g in exact]).mean() / mean.norm())
    rows = []
    for label, max_iter, tol in [("tol 3.5e-4 (cg_tol)", 10, 3.5e-4), ("tol 1e-2", 10, 1e-2),
                                 ("tol 3e-2", 10, 3e-2), ("tol 0.1 (default)", 10, 0.1),
                                 ("5 iterations", 5, 0.0), ("3 iterations", 3, 0.0)]:
        got, counts = gradient(est, batch(0), max_iter, tol)
        rows.append({"backward solve": label,
                     "iterations": f"{np.mean(counts):.1f}",
                     "gradient error": f"{float((got - exact[0]).norm() / exact[0].norm()):.4f}"})
    print_table(rows, ["backward solve", "iterations", "gradient error"])
    print(f"scatter of the exact gradient between {args.batches} mini-batches of 8: "
          f"{scatter:.3f} (relative to the mean gradient)")
    # the forward solve with a bf16 denoiser: iterations per unroll and the output's change
    module, forward = est.module_, {}
    module.eval()
    module.autocast_dtype = torch.bfloat16
    for tol in (3.5e-4, 1e-3):
        module.cg_tol = tol
        module.cg_iterations.clear()
        with torch.no_grad():
            out = est._forward(*(batch(0)[k] for k in ("X", "maps", "masks")))
        forward[tol] = (list(module.cg_iterations), out)
    change = float((forward[1e-3][1] - forward[3.5e-4][1]).norm() / forward[3.5e-4][1].norm())
    print(f"forward CG with a bf16 denoiser, iterations per unroll: tol 3.5e-4 "
          f"{forward[3.5e-4][0]}, tol 1e-3 {forward[1e-3][0]}; output changed by {change:.4f}")
    write_json("bench_unrolled_gradient", {
        "rows": rows, "minibatch_scatter": scatter,
        "forward_iterations": {str(k): v[0] for k, v in forward.items()},
        "forward_output_change": change}, args.output)


if __name__ == "__main__":
    main()
