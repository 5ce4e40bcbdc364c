"""Training on memory-mapped data larger than the process's memory.

RIMRegressor (1-D blur, 512 samples per signal, GRU backbone) and UnrolledRegressor
(MoDL on 32x32 multi-coil MRI, 8 coils, k-space + coil maps + masks) each fit one epoch
on a training set written to ``.npy`` files and passed to ``fit`` as read-only
memory-maps (``np.load(path, mmap_mode='r')``). Every fit runs in its own child process;
its peak resident memory is the ``ru_maxrss`` that the parent collects with
``os.wait4``. Reported per estimator:

- peak RSS of the fit on the memory-maps, and the ratio data size / peak RSS
  (target >= 4, i.e. peak RSS <= 1/4 of the data);
- baseline: the same child importing torch and skinverse, building the estimator and
  fitting it on one batch held in memory (module, optimiser, torch's compiled-optimizer
  imports: everything but the data); peak minus baseline is what the data costs;
- same model: the first ``--subset`` rows fitted as in-memory arrays and as memory-maps
  of those rows; max |difference| of the predictions (expected exactly 0).

The files are written by a separate child process, chunk by chunk (a pool of simulated
samples, re-drawn noise per row), and deleted at the end.

    python benchmarks/bench_memory.py [--gb 2.5] [--subset 1024] [--dir /tmp]
                                      [--estimators rim unrolled]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

#: Rows written per chunk by the writer (a few tens of MB).
WRITE_ROWS = 2048
POOL = 2048
RIM_FEATURES = 512
MRI_SIZE, MRI_COILS = 32, 8


# ---------------------------------------------------------------------- problems
def rim_problem():
    from skinverse.datasets import make_linear_gaussian_problem
    return make_linear_gaussian_problem("blur", RIM_FEATURES, random_state=0)


def rim_estimator(**extra):
    from skinverse import RIMRegressor
    p = rim_problem()
    params = dict(operator=p.operator, noise_std=p.noise_std, backbone="gru",
                  hidden_size=8, n_steps=2, max_epochs=1, batch_size=256,
                  early_stopping=True, random_state=0, device="cpu")
    return RIMRegressor(**{**params, **extra})


def unrolled_estimator(**extra):
    from skinverse import UnrolledRegressor
    params = dict(method="modl", width=8, depth=2, n_unrolls=2, cg_max_iter=4,
                  max_epochs=1, batch_size=32, early_stopping=False, random_state=0,
                  device="cpu")
    return UnrolledRegressor(**{**params, **extra})


def row_bytes(name):
    """Bytes per training sample (float32) over all the files of ``name``."""
    if name == "rim":
        return 2 * RIM_FEATURES * 4
    pixels = MRI_SIZE * MRI_SIZE
    return 4 * (2 * MRI_COILS * pixels + 2 * pixels + 2 * MRI_COILS * pixels + pixels)


def file_shapes(name, n):
    if name == "rim":
        return {"X": (n, RIM_FEATURES), "y": (n, RIM_FEATURES)}
    pixels = MRI_SIZE * MRI_SIZE
    return {"X": (n, 2 * MRI_COILS * pixels), "y": (n, 2 * pixels),
            "maps": (n, 2, MRI_COILS, MRI_SIZE, MRI_SIZE),
            "masks": (n, MRI_SIZE, MRI_SIZE)}


def pool(name):
    """Simulated samples that the writer re-uses with fresh noise: ``(clean arrays,
    noise std, a function adding noise to a chunk)``."""
    rng = np.random.RandomState(0)
    if name == "rim":
        p = rim_problem()
        signals = p.mean + rng.normal(size=(POOL, RIM_FEATURES)) @ p._chol.T
        clean = {"X": (signals @ p.matrix.T).astype(np.float32),
                 "y": signals.astype(np.float32)}

        def noisy(chunk, rng):
            sign = rng.choice(np.float32([-1, 1]), size=(len(chunk["y"]), 1))
            chunk = {"X": chunk["X"] * sign, "y": chunk["y"] * sign}  # mean-zero prior
            chunk["X"] += p.noise_std * rng.standard_normal(chunk["X"].shape, np.float32)
            return chunk
        return clean, noisy

    from skinverse.datasets import make_mri_data, make_phantoms
    X, y, maps, masks = make_mri_data(make_phantoms(POOL, MRI_SIZE, random_state=0),
                                      n_coils=MRI_COILS, noise_std=0.0, random_state=0)
    clean = {"X": X.astype(np.float32), "y": y.astype(np.float32),
             "maps": maps.astype(np.float32), "masks": masks.astype(np.float32)}

    def noisy(chunk, rng):
        n = len(chunk["X"])
        noise = 0.01 * rng.standard_normal((n, 2, MRI_COILS, MRI_SIZE, MRI_SIZE), np.float32)
        noise *= chunk["masks"][:, None, None]  # noise on the sampled k-space only
        chunk["X"] = chunk["X"] + noise.reshape(n, -1)
        return chunk
    return clean, noisy


# ---------------------------------------------------------------------- child steps
def write_files(name, directory, n):
    """Write ``n`` rows of every array of ``name`` to ``directory/name_<key>.npy``."""
    clean, noisy = pool(name)
    rng = np.random.default_rng(1)
    outs = {key: np.lib.format.open_memmap(Path(directory) / f"{name}_{key}.npy", mode="w+",
                                           dtype=np.float32, shape=shape)
            for key, shape in file_shapes(name, n).items()}
    for start in range(0, n, WRITE_ROWS):
        stop = min(start + WRITE_ROWS, n)
        idx = rng.integers(0, POOL, size=stop - start)
        chunk = noisy({key: value[idx] for key, value in clean.items()}, rng)
        for key, out in outs.items():
            out[start:stop] = chunk[key]
    for out in outs.values():
        out.flush()
    return {"rows": n}


def load(name, directory, rows=None, in_memory=False):
    arrays = {key: np.load(Path(directory) / f"{name}_{key}.npy", mmap_mode="r")
              for key in file_shapes(name, 1)}
    if rows is not None:
        arrays = {key: value[:rows] for key, value in arrays.items()}  # still memory-maps
    if in_memory:
        arrays = {key: np.array(value) for key, value in arrays.items()}
    return arrays


def fit(est, arrays):
    extra = {k: v for k, v in arrays.items() if k not in ("X", "y")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(arrays["X"], arrays["y"], **extra)


def predict(est, arrays, rows):
    extra = {k: np.asarray(v[:rows]) for k, v in arrays.items() if k not in ("X", "y")}
    return est.predict(np.asarray(arrays["X"][:rows]), **extra)


def make_estimator(name):
    return rim_estimator() if name == "rim" else unrolled_estimator()


def child_fit(name, directory, baseline):
    """The measured fit: on the memory-maps, or (baseline) on one batch in memory."""
    import torch
    torch.set_num_threads(1)
    est = make_estimator(name)
    arrays = load(name, directory)
    if baseline:
        arrays = {key: np.array(value[:est.batch_size]) for key, value in arrays.items()}
    start = time.perf_counter()
    fit(est, arrays)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as handle:  # cross-check of wait4's ru_maxrss
        hwm = [int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM:")]
    return {"seconds": seconds, "n_iter": int(est.n_iter_), "vmhwm_mb": hwm[0] if hwm else None}


def child_subset(name, directory, rows):
    """Max |prediction difference| of fits on the first ``rows`` rows as arrays and as
    memory-maps (two epochs, so that the second epoch's shuffling counts too)."""
    import torch
    torch.set_num_threads(1)
    extra = dict(max_epochs=2)
    maker = rim_estimator if name == "rim" else unrolled_estimator
    memory = load(name, directory, rows, in_memory=True)
    mapped = load(name, directory, rows)
    a = fit(maker(**extra), memory)
    b = fit(maker(**extra), mapped)
    test = load(name, directory, rows + 256, in_memory=True)
    test = {key: value[rows:] for key, value in test.items()}  # rows not trained on
    pa, pb = predict(a, test, len(test["X"])), predict(b, test, len(test["X"]))
    return {"max_abs_diff": float(np.max(np.abs(pa - pb))),
            "prediction_scale": float(np.max(np.abs(pa)))}


def run_child(step, *args, threads=1):
    """Run ``step`` in a fresh interpreter; its JSON result and its own peak RSS (MB)
    as the parent's ``wait4`` reports it."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", step, out, *map(str, args)]
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        if proc.returncode:
            raise RuntimeError(f"child {cmd} failed with exit code {proc.returncode}")
        result = json.loads(Path(out).read_text())
    finally:
        os.unlink(out)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def child_main(argv):
    step, out, name, directory, *rest = argv
    if step == "write":
        result = write_files(name, directory, int(rest[0]))
    elif step == "fit":
        result = child_fit(name, directory, baseline=rest[0] == "baseline")
    else:
        result = child_subset(name, directory, int(rest[0]))
    Path(out).write_text(json.dumps(result))


# ---------------------------------------------------------------------- parent
def bench(name, directory, gb, subset, threads):
    n = int(gb * 1e9 // row_bytes(name))
    start = time.perf_counter()
    run_child("write", name, directory, n)
    write_s = time.perf_counter() - start
    data_mb = sum(f.stat().st_size for f in Path(directory).glob(f"{name}_*.npy")) / 2**20
    base = run_child("fit", name, directory, "baseline", threads=threads)
    lazy = run_child("fit", name, directory, "lazy", threads=threads)
    same = run_child("subset", name, directory, subset, threads=threads)
    for f in Path(directory).glob(f"{name}_*.npy"):
        f.unlink()
    return {
        "estimator": name, "samples": n, "data_mb": data_mb, "write_seconds": write_s,
        "peak_rss_mb": lazy["peak_rss_mb"], "baseline_rss_mb": base["peak_rss_mb"],
        "peak_vmhwm_mb": lazy["vmhwm_mb"], "baseline_vmhwm_mb": base["vmhwm_mb"],
        "data_attributable_mb": lazy["peak_rss_mb"] - base["peak_rss_mb"],
        "ratio_data_over_peak": data_mb / lazy["peak_rss_mb"],
        "fit_seconds": lazy["seconds"], "epochs": lazy["n_iter"],
        "subset_rows": subset, "subset_max_abs_diff": same["max_abs_diff"],
        "subset_prediction_scale": same["prediction_scale"],
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.5,
                        help="data per estimator, in GB (1e9 bytes)")
    parser.add_argument("--subset", type=int, default=1024,
                        help="rows of the arrays-vs-memory-map comparison")
    parser.add_argument("--estimators", nargs="+", default=["rim", "unrolled"],
                        choices=["rim", "unrolled"])
    parser.add_argument("--dir", default=None, help="where to write the data files")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_table, write_json

    directory = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.dir))
    try:
        free = shutil.disk_usage(directory).free
        if free < 1.2 * args.gb * 1e9:
            raise SystemExit(f"{free / 1e9:.1f} GB free in {directory}; --gb {args.gb} "
                             "needs 20 % more than that.")
        results = [bench(name, directory, args.gb, args.subset, args.threads)
                   for name in args.estimators]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    columns = ["estimator", "data GB", "samples", "peak RSS MB", "baseline MB",
               "data-attributable MB", "data / peak", "fit s", "subset max diff"]
    rows = [{"estimator": r["estimator"], "data GB": f"{r['data_mb'] * 2**20 / 1e9:.2f}",
             "samples": r["samples"], "peak RSS MB": f"{r['peak_rss_mb']:.0f}",
             "baseline MB": f"{r['baseline_rss_mb']:.0f}",
             "data-attributable MB": f"{r['data_attributable_mb']:.0f}",
             "data / peak": f"{r['ratio_data_over_peak']:.2f}",
             "fit s": f"{r['fit_seconds']:.1f}",
             "subset max diff": f"{r['subset_max_abs_diff']:.3g}"} for r in results]
    print_table(rows, columns)
    for r in results:
        met = r["ratio_data_over_peak"] >= 4 and r["subset_max_abs_diff"] == 0
        print(f"{r['estimator']}: data / peak RSS = {r['ratio_data_over_peak']:.2f} "
              f"(target >= 4), subset max |diff| = {r['subset_max_abs_diff']:.3g} "
              f"(expected 0): {'met' if met else 'NOT met'}")
    write_json("bench_memory", {"gb": args.gb, "threads": args.threads,
                                "results": results}, args.output)
    return results


if __name__ == "__main__":
    main()
