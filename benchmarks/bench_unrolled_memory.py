"""Peak memory and time of a MoDL fit: CG differentiated implicitly vs through its iterations.

``UnrolledRegressor(method='modl')`` at its defaults (5 unrolls, 10 CG iterations, ResNet
denoiser of width 32 and depth 4, batch 'auto' = min(200, n)) on 64x64 phantoms, 8 coils,
4x Cartesian undersampling, for a few epochs. Each configuration runs in a fresh
subprocess (one thread by default) that reports its peak resident set size
(``getrusage``), the RSS before ``fit`` (interpreter, torch, data), the fit time and the
held-out PSNR, so that the rows differ only in how the data-consistency solve is
differentiated:

- 'unrolled': autograd through the CG iterations (the previous behaviour, kept as the
  reference);
- 'implicit': one more CG solve of the same system in the backward pass (the default);
- 'implicit + checkpointed denoiser': also recompute the denoiser's activations in the
  backward pass instead of keeping them (``UnrolledModule.checkpoint_denoiser``).

    python benchmarks/bench_unrolled_memory.py [--train 40] [--epochs 2] [--threads 1]

The issue's target is 400 training images in <= 10 minutes on 2 cores with <= 1 GB peak;
the script prints the per-image figures that the extrapolation uses.
"""

import argparse
import json
import subprocess
import sys

from _common import print_table, write_json

CONFIGS = {
    "unrolled CG (reference)": {"cg_backward": "unrolled", "checkpoint": False},
    "implicit CG (default)": {"cg_backward": "implicit", "checkpoint": False},
    "implicit CG + checkpointed denoiser": {"cg_backward": "implicit", "checkpoint": True},
}

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.unrolled import UnrolledRegressor
from skinverse.unrolled._module import UnrolledModule
UnrolledModule.cg_backward = args["cg_backward"]
UnrolledModule.checkpoint_denoiser = args["checkpoint"]
n, n_test = args["train"], args["test"]
images = make_phantoms(n + n_test, 64, random_state=0)
X, y, maps, masks = make_mri_data(images, 8, 4, 0.01, random_state=0)
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss_mb()
est = UnrolledRegressor(method="modl", max_epochs=args["epochs"], random_state=0,
                        device="cpu")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    est.fit(X[:n], y[:n], maps=maps[:n], masks=masks[:n])
    seconds = time.perf_counter() - start
peak = rss_mb()
score = est.score(X[n:], y[n:], maps=maps[n:], masks=masks[n:])
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "rss_before_fit_mb": before,
                  "psnr": float(score), "batch_size": min(200, n),
                  "cg_iters": [float(c) for c in est.cg_iters_]}))
"""


def run(config, args):
    payload = json.dumps({**config, "train": args.train, "test": args.test,
                          "epochs": args.epochs, "threads": args.threads})
    done = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    results = {name: run(config, args) for name, config in CONFIGS.items()}
    reference = results["unrolled CG (reference)"]
    rows = []
    for name, res in results.items():
        steps = args.epochs * -(-args.train // res["batch_size"])
        res["seconds_per_image_epoch"] = res["seconds"] / (args.train * args.epochs)
        res["fit_memory_mb"] = res["peak_rss_mb"] - res["rss_before_fit_mb"]
        rows.append({
            "CG gradient": name, "fit s": f"{res['seconds']:.1f}",
            "s/step": f"{res['seconds'] / steps:.2f}",
            "peak RSS MB": f"{res['peak_rss_mb']:.0f}",
            "fit MB (peak - before)": f"{res['fit_memory_mb']:.0f}",
            "x ref memory": f"{res['fit_memory_mb'] / reference['fit_memory_mb']:.2f}",
            "x ref time": f"{res['seconds'] / reference['seconds']:.2f}",
            "PSNR dB": f"{res['psnr']:.2f}",
        })
    print(f"MoDL defaults, {args.train} training images 64x64, 8 coils, batch "
          f"{min(200, args.train)}, {args.epochs} epochs, {args.threads} thread(s):")
    print_table(rows, ["CG gradient", "fit s", "s/step", "peak RSS MB",
                       "fit MB (peak - before)", "x ref memory", "x ref time", "PSNR dB"])
    for name, res in results.items():
        minutes = res["seconds_per_image_epoch"] * 400 * 50 / 60
        res["extrapolated_minutes_400_images_50_epochs"] = minutes
        res["extrapolated_fit_mb_batch_200"] = res["fit_memory_mb"] / res["batch_size"] * 200
        print(f"{name}: 400 images x 50 epochs (the defaults) ~{minutes:.0f} min on "
              f"{args.threads} thread(s) at this rate; fit memory at batch 200 (the default "
              f"batch for 400 images) ~{res['extrapolated_fit_mb_batch_200']:.0f} MB "
              "(linear in the batch)")
    write_json("bench_unrolled_memory", {"settings": vars(args), "results": results},
               args.output)


if __name__ == "__main__":
    main()
