"""MoDL at full size (issue #16): wall time, CPU time, peak memory and test PSNR of a fit.

``UnrolledRegressor(method='modl')`` at its defaults (only ``random_state`` and
``device='cpu'`` given) on 400 ellipse phantoms of 64x64 (``make_phantoms``), 8 coils, 4x
Cartesian undersampling, noise 0.01 (``make_mri_data``), tested on 50 more. The fit runs in
a fresh child process with ``--threads`` torch threads that reports its peak resident set
size (``getrusage``; the data are simulated by the parent and loaded from ``.npy`` files,
so that the peak is the fit's and not the simulation's), the RSS before ``fit`` (torch and
the data), the wall and process CPU seconds of ``fit``,
the epochs run and the mean CG iterations per solve. The test PSNR and SSIM (magnitude
images, each reference's range) are compared with CG-SENSE, whose lambda is tuned on 40
training images.

    python benchmarks/bench_unrolled_speed.py [--train 400] [--threads 2] [--epochs N] [--split]
                                              [--profile] [--set key=value ...]

``--epochs`` overrides ``max_epochs`` (for a quick look); ``--set`` overrides other
parameters (e.g. ``--set width=16``), ``--profile`` profiles one epoch with
``torch.profiler`` and prints the most expensive operators, ``--split`` times the parts
of the fit (denoiser forward, CG solves, autograd backward, the implicit CG backward,
validation) by wrapping the functions that do them.

Target (issue #16): <= 10 minutes and <= 1 GB peak on 2 cores, no loss of PSNR.
"""

import argparse
import json
import subprocess
import sys
import time
import warnings

from _common import parse_overrides, print_table, write_json

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from skinverse.metrics import psnr, ssim
from skinverse.unrolled import UnrolledRegressor
n, n_test = args["train"], args["test"]
X, y, maps, masks = (np.load(f"{args['data']}/{k}.npy") for k in ("X", "y", "maps", "masks"))
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def time_parts():
    # Wall seconds of the parts of a fit, by wrapping the functions that do them (no
    # profiler): a part nested in another (a CG solve inside the backward) is counted in
    # both, under "part < outer".
    from collections import defaultdict
    import skinverse.operators._base as ops
    import skinverse.unrolled._estimator as estimator
    import skinverse.unrolled._module as module
    totals, stack = defaultdict(float), []
    def wrap(owner, name, label, static=False):
        func = getattr(owner, name)
        def timed(*a, **k):
            key = label + (" < " + stack[0] if stack else "")
            stack.append(label)
            start = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                totals[key] += time.perf_counter() - start
                stack.pop()
        setattr(owner, name, staticmethod(timed) if static else timed)
    wrap(module.UnrolledModule, "_denoise", "denoiser forward")
    wrap(ops, "conjugate_gradient", "CG solve")
    wrap(ops._ImplicitNormalSolve, "backward", "implicit CG backward", static=True)
    wrap(torch.Tensor, "backward", "backward")
    wrap(estimator, "validation_psnr", "validation")
    wrap(estimator.UnrolledRegressor, "_run_epoch", "training epochs")
    return totals
params = {"random_state": 0, "device": "cpu", **args["set"]}
if args["epochs"]:
    params["max_epochs"] = args["epochs"]
est = UnrolledRegressor(**params)
before = rss_mb()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    wall, cpu = time.perf_counter(), cpu_s()
    if args["split"]:
        split = time_parts()
    if args["profile"]:
        from torch.profiler import ProfilerActivity, profile
        est.set_params(max_epochs=1)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            est.fit(X[:n], y[:n], maps=maps[:n], masks=masks[:n])
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(table, file=sys.stderr)
    else:
        est.fit(X[:n], y[:n], maps=maps[:n], masks=masks[:n])
    wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
peak = rss_mb()
def magnitude(flat):
    two = flat.reshape(len(flat), 2, -1)
    return np.sqrt(two[:, 0] ** 2 + two[:, 1] ** 2)
pred = est.predict(X[n:], maps=maps[n:], masks=masks[n:])
t, p = magnitude(y[n:]), magnitude(pred)
from skinverse.unrolled._losses import _blur
def ssim_map(t, p):
    t, p = (torch.as_tensor(a).reshape(-1, 64, 64) for a in (t, p))
    peak = (t.amax(dim=(1, 2)) - t.amin(dim=(1, 2)))[:, None, None]
    mx, my = _blur(t), _blur(p)
    vx, vy, cxy = _blur(t * t) - mx**2, _blur(p * p) - my**2, _blur(t * p) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
smap = ssim_map(t, p).numpy().reshape(len(t), -1)
background = t < 0.01 * t.max(axis=1, keepdims=True)

print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "rss_before_fit_mb": before,
                  "psnr": float(psnr(t, p)), "ssim": float(ssim(t, p, image_shape=(64, 64))),
                  "ssim_background": float(smap[background].mean()),
                  "ssim_object": float(smap[~background].mean()),
                  "background_fraction": float(background.mean()),
                  "background_mean_magnitude": float((p / t.max(axis=1, keepdims=True))[background].mean()),
                  "epochs": int(est.n_iter_), "lam": float(est.lam_),
                  "stop": str(est.training_state_.stop_reason),
                  "cg_iters": [round(float(c), 2) for c in est.cg_iters_],
                  "loss_curve": [round(float(v), 5) for v in est.loss_curve_],
                  "validation": [round(float(v), 3) for v in (est.validation_scores_ or [])],
                  "validation_psnr": [round(float(v), 3) for v in getattr(est, "validation_psnr_", [])],
                  "split_s": {k: round(v, 2) for k, v in split.items()} if args["split"] else None}))
"""


SIMULATE = r"""
import sys
import numpy as np
from skinverse.datasets import make_mri_data, make_phantoms
n, folder = int(sys.argv[1]), sys.argv[2]
data = make_mri_data(make_phantoms(n, 64, random_state=0), 8, 4, 0.01, random_state=0)
for key, array in zip(("X", "y", "maps", "masks"), data):
    np.save(f"{folder}/{key}.npy", array)
"""


def simulate(n, folder):
    """Simulate in a child process and save ``.npy`` files: Linux carries a process's
    peak RSS over fork and exec, so a parent that held the simulation would lend its peak
    to the fitting child's ``getrusage``."""
    subprocess.run([sys.executable, "-c", SIMULATE, str(n), folder], check=True)
    import numpy as np

    return tuple(np.load(f"{folder}/{k}.npy", mmap_mode="r")
                 for k in ("X", "y", "maps", "masks"))


def cg_sense(X, y, maps, masks, n_train, n_test):
    import numpy as np

    from skinverse.metrics import psnr, ssim
    from skinverse.unrolled import UnrolledRegressor

    def magnitude(flat):
        two = flat.reshape(len(flat), 2, -1)
        return np.sqrt(two[:, 0] ** 2 + two[:, 1] ** 2)

    def fit(lam, rows):
        est = UnrolledRegressor(method="cg-sense", lam=lam, learn_lam=False, cg_max_iter=100,
                                max_epochs=1, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.fit(X[rows], y[rows], maps=maps[rows], masks=masks[rows])

    tune = slice(0, 40)
    lam = max([1e-4, 1e-3, 1e-2, 1e-1], key=lambda v: fit(v, tune).score(
        X[tune], y[tune], maps=maps[tune], masks=masks[tune]))
    test = slice(n_train, n_train + n_test)
    pred = fit(lam, tune).predict(X[test], maps=maps[test], masks=masks[test])
    t, p = magnitude(y[test]), magnitude(pred)
    return lam, float(psnr(t, p)), float(ssim(t, p, image_shape=(64, 64)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--split", action="store_true",
                        help="also time the parts of the fit (denoiser, CG, backward, validation)")
    parser.add_argument("--set", nargs="*", default=[], help="key=value (Python literal)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    import tempfile

    folder = tempfile.TemporaryDirectory()
    data = simulate(args.train + args.test, folder.name)
    payload = json.dumps({"train": args.train, "test": args.test, "threads": args.threads,
                          "epochs": args.epochs, "profile": args.profile, "split": args.split,
                          "set": overrides,
                          "data": folder.name})
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, payload], check=False,
                          capture_output=True, text=True)

    if args.profile or done.returncode:
        print(done.stderr[-12000:])
    if done.returncode:
        raise SystemExit(done.returncode)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    res["child_seconds"] = time.perf_counter() - start
    import numpy as np

    lam, sense_psnr, sense_ssim = cg_sense(*(np.asarray(a) for a in data), args.train,
                                           args.test)
    folder.cleanup()
    rows = [
        {"reconstruction": f"CG-SENSE (lam={lam:g})", "PSNR dB": f"{sense_psnr:.2f}",
         "SSIM": f"{sense_ssim:.3f}", "fit wall s": "", "fit CPU s": "", "peak RSS MB": "",
         "epochs": ""},
        {"reconstruction": "MoDL " + (str(overrides) if overrides else "defaults"),
         "PSNR dB": f"{res['psnr']:.2f}", "SSIM": f"{res['ssim']:.3f}",
         "fit wall s": f"{res['wall_s']:.0f}", "fit CPU s": f"{res['cpu_s']:.0f}",
         "peak RSS MB": f"{res['peak_rss_mb']:.0f}", "epochs": str(res["epochs"])},
    ]
    print(f"{args.train} training phantoms 64x64, 8 coils, 4x, {args.threads} thread(s):")
    print_table(rows, ["reconstruction", "PSNR dB", "SSIM", "fit wall s", "fit CPU s",
                       "peak RSS MB", "epochs"])
    print(f"stop: {res['stop']}; lam_ {res['lam']:.4g}; CG iterations per solve by epoch "
          f"{res['cg_iters']}")
    print(f"MoDL SSIM on the background (reference < 1 % of its peak, "
          f"{100 * res['background_fraction']:.0f} % of the pixels) "
          f"{res['ssim_background']:.3f}, on the object {res['ssim_object']:.3f}; mean "
          f"background magnitude {100 * res['background_mean_magnitude']:.2f} % of the peak")
    if res.get("split_s"):
        epochs = res["split_s"].get("training epochs", 0.0)
        print("where the training epochs' wall time goes (a part inside another is listed "
              "as 'part < outer'):")
        print_table([{"part": k, "s": f"{v:.1f}", "share of the epochs":
                      f"{v / epochs:.0%}" if epochs else "-"}
                     for k, v in sorted(res["split_s"].items(), key=lambda kv: -kv[1])],
                    ["part", "s", "share of the epochs"])
    write_json("bench_unrolled_speed", {
        "settings": vars(args), "modl": res,
        "cg_sense": {"lam": lam, "psnr": sense_psnr, "ssim": sense_ssim},
        "target": {"minutes": 10, "peak_mb": 1024},
    }, args.output)


if __name__ == "__main__":
    main()
