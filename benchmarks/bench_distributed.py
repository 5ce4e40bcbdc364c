"""Data-parallel training on the CPU: 1, 2 and 4 gloo processes against one process.

A TorchMLPRegressor (1024 -> 64 -> 1) trains on a lazy source: a map-style torch
``Dataset`` that reads each row from ``.npy`` files with ``os.pread`` (no memory-map, so
a rank holds only what it reads) and records every row it reads. Each world size runs
under ``torch.multiprocessing.spawn`` with a ``file://`` rendezvous in a temporary
directory, one thread per rank. Every rank first fits the estimator once on one batch
held in memory (imports, module, optimiser, DDP set-up: the baseline), then fits it on
the Dataset; the reference is the one-process fit (no process group) on the same rows
as in-memory arrays, which draws the same global batches.

Reported per world size:

- max relative difference of the training loss (final epoch, and over every epoch)
  from the one-process fit -- target <= 1e-5;
- rows read per rank per epoch (expected n_train / world_size; every row read by exactly
  one rank per epoch is checked), and MB of data read per rank per epoch;
- peak RSS per rank during the lazy fit (``VmHWM``, restarted after the warm-up), and
  that minus the rank's RSS before the fit (what the data costs);
- wall seconds per epoch per sample (all ranks together; on a machine with fewer cores
  than ranks the processes share cores, so this measures overhead, not speed-up).

    python benchmarks/bench_distributed.py [--world-sizes 1 2 4] [--samples 16384]
                                           [--epochs 3] [--dtype float32 [float64]]
"""

import argparse
import os
import pickle
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from skinverse._base import Callback
from skinverse.utils._testing import TorchMLPRegressor

FEATURES = 1024


class FileRows(torch.utils.data.Dataset):
    """``(X[i], y[i])`` read from ``.npy`` files with ``os.pread`` (nothing mapped, nothing
    cached by the process); records each index it reads (a ``None`` marks an epoch's
    start, set by :class:`EpochMarks`)."""

    def __init__(self, x_path, y_path):
        self.paths, self.reads = (str(x_path), str(y_path)), []
        self._files = None
        self.meta = [self._header(p) for p in self.paths]

    @staticmethod
    def _header(path):
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(handle)
            return handle.tell(), shape, np.dtype(dtype)

    def __len__(self):
        return self.meta[0][1][0]

    def _row(self, which, index):
        if self._files is None:
            self._files = [os.open(p, os.O_RDONLY) for p in self.paths]
        offset, shape, dtype = self.meta[which]
        count = int(np.prod(shape[1:], dtype=np.int64))
        size = count * dtype.itemsize
        raw = os.pread(self._files[which], size, offset + index * size)
        return np.frombuffer(raw, dtype=dtype).reshape(shape[1:])

    def __getitem__(self, index):
        self.reads.append(int(index))
        return self._row(0, index), self._row(1, index)

    def __getstate__(self):
        return {**self.__dict__, "_files": None}


class EpochMarks(Callback):
    """Marks the start of each epoch in the Dataset's list of reads."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, estimator, epoch):
        self.dataset.reads.append(None)


def params(epochs, dtype, batch_size):
    return dict(hidden_layer_sizes=(64,), max_epochs=epochs, batch_size=batch_size,
                tol=0, n_iter_no_change=10**6, early_stopping=False, random_state=0,
                device="cpu", dtype=dtype)


def write_data(directory, n, seed=0):
    """A nonlinear regression problem with ``FEATURES`` inputs, written as float32."""
    rng = np.random.RandomState(seed)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.float32,
                                  shape=(n, FEATURES))
    y = np.lib.format.open_memmap(directory / "y.npy", mode="w+", dtype=np.float32,
                                  shape=(n,))
    w = rng.normal(size=FEATURES) / np.sqrt(FEATURES)
    for start in range(0, n, 4096):
        block = rng.normal(size=(min(4096, n - start), FEATURES)).astype(np.float32)
        X[start:start + len(block)] = block
        y[start:start + len(block)] = np.sin(2 * block @ w) + 0.5 * block[:, 0] ** 2
    X.flush(), y.flush()


def status_mb(field):
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB. Not ``ru_maxrss``: that
    one survives ``execve``, so a spawned rank would inherit the parent's peak."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    """Restart ``VmHWM`` from the current RSS (Linux >= 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def worker(rank, world_size, directory, config):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{directory / 'rendezvous'}", rank=rank,
        world_size=world_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = FileRows(directory / "X.npy", directory / "y.npy")
            # baseline: everything but the data (one batch in memory, one epoch)
            head = [dataset[i] for i in range(config["batch_size"])]
            TorchMLPRegressor(**{**config["params"], "max_epochs": 1}).fit(
                np.stack([h[0] for h in head]), np.stack([h[1] for h in head]))
            dataset.reads.clear()
            baseline = status_mb("VmRSS") if reset_peak() else status_mb("VmHWM")
            est = TorchMLPRegressor(**config["params"], callbacks=[EpochMarks(dataset)])
            torch.distributed.barrier()
            start = time.perf_counter()
            est.fit(dataset)
            torch.distributed.barrier()
            seconds = time.perf_counter() - start
        result = {"rank": rank, "loss_curve": list(est.loss_curve_), "reads": dataset.reads,
                  "baseline_rss_mb": baseline, "peak_rss_mb": status_mb("VmHWM"), "seconds": seconds}
        (directory / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))
        torch.distributed.barrier()  # leave together (gloo's shutdown)
    finally:
        torch.distributed.destroy_process_group()


def epochs_of(reads):
    """The rows read in each epoch (after the first epoch mark; before it: the head)."""
    epochs, current = [], None
    for index in reads:
        if index is None:
            current = []
            epochs.append(current)
        elif current is not None:
            current.append(index)
    return epochs


def run(world_size, data_dir, config):
    directory = Path(tempfile.mkdtemp(prefix=f"ddp{world_size}_"))
    try:
        for name in ("X.npy", "y.npy"):
            os.symlink(data_dir / name, directory / name)
        start = time.perf_counter()
        torch.multiprocessing.spawn(worker, args=(world_size, directory, config),
                                    nprocs=world_size, join=True)
        total = time.perf_counter() - start
        ranks = [pickle.loads((directory / f"rank{r}.pkl").read_bytes())
                 for r in range(world_size)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return ranks, total


def summarise(world_size, dtype, ranks, reference, n, row_mb, epochs):
    loss = np.array(ranks[0]["loss_curve"])
    ref = np.array(reference)
    per_epoch = [epochs_of(r["reads"]) for r in ranks]
    per_rank_rows = [np.mean([len(e) for e in p]) for p in per_epoch]
    disjoint = all(
        sorted(i for p in per_epoch for i in p[e]) == list(range(n)) for e in range(epochs))
    same_loss = all(np.array_equal(r["loss_curve"], ranks[0]["loss_curve"]) for r in ranks)
    seconds = max(r["seconds"] for r in ranks)
    return {
        "world_size": world_size, "dtype": dtype,
        "final_loss": float(loss[-1]), "reference_final_loss": float(ref[-1]),
        "rel_diff_final": float(abs(loss[-1] - ref[-1]) / abs(ref[-1])),
        "rel_diff_max": float(np.max(np.abs(loss - ref) / np.abs(ref))),
        "rows_per_rank_per_epoch": per_rank_rows,
        "mb_read_per_rank_per_epoch": [rows * row_mb for rows in per_rank_rows],
        "each_row_read_once_per_epoch": disjoint, "ranks_agree_on_loss": same_loss,
        "peak_rss_mb": [r["peak_rss_mb"] for r in ranks],
        "baseline_rss_mb": [r["baseline_rss_mb"] for r in ranks],
        "rss_over_baseline_mb": [r["peak_rss_mb"] - r["baseline_rss_mb"] for r in ranks],
        "fit_seconds": seconds, "us_per_sample_epoch": 1e6 * seconds / (epochs * n),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", nargs="+", default=["float32"],
                        choices=["float32", "float64"])
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args(argv)
    from _common import print_table, write_json

    torch.set_num_threads(1)
    data_dir = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    results = []
    try:
        write_data(data_dir, args.samples)
        X = np.load(data_dir / "X.npy")
        y = np.load(data_dir / "y.npy")
        row_mb = (X.itemsize * FEATURES + y.itemsize) / 2**20
        for dtype in args.dtype:
            config = {"params": params(args.epochs, dtype, args.batch_size),
                      "batch_size": args.batch_size}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                TorchMLPRegressor(**{**config["params"], "max_epochs": 1}).fit(
                    X[:args.batch_size], y[:args.batch_size])  # warm-up, as the ranks do
                start = time.perf_counter()
                single = TorchMLPRegressor(**config["params"]).fit(X, y)
                single_s = time.perf_counter() - start
            results.append({"world_size": "none (arrays)", "dtype": dtype,
                            "final_loss": float(single.loss_curve_[-1]),
                            "fit_seconds": single_s,
                            "us_per_sample_epoch": 1e6 * single_s / (args.epochs * args.samples)})
            for world_size in args.world_sizes:
                ranks, _ = run(world_size, data_dir, config)
                results.append(summarise(world_size, dtype, ranks, single.loss_curve_,
                                         args.samples, row_mb, args.epochs))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    def fmt(values, spec):
        return "/".join(format(v, spec) for v in values) if isinstance(values, list) else "-"

    columns = ["ranks", "dtype", "final loss", "rel diff final", "rel diff max",
               "rows/rank/epoch", "MB read/rank/epoch", "peak RSS MB/rank",
               "RSS over baseline MB", "us/sample/epoch"]
    rows = [{"ranks": r["world_size"], "dtype": r["dtype"],
             "final loss": f"{r['final_loss']:.6g}",
             "rel diff final": f"{r['rel_diff_final']:.2g}" if "rel_diff_final" in r else "-",
             "rel diff max": f"{r['rel_diff_max']:.2g}" if "rel_diff_max" in r else "-",
             "rows/rank/epoch": fmt(r.get("rows_per_rank_per_epoch"), ".0f"),
             "MB read/rank/epoch": fmt(r.get("mb_read_per_rank_per_epoch"), ".1f"),
             "peak RSS MB/rank": fmt(r.get("peak_rss_mb"), ".0f"),
             "RSS over baseline MB": fmt(r.get("rss_over_baseline_mb"), ".0f"),
             "us/sample/epoch": f"{r['us_per_sample_epoch']:.1f}"} for r in results]
    print(f"{args.samples} samples x {FEATURES} float32 features "
          f"({args.samples * row_mb:.0f} MB), batch {args.batch_size}, {args.epochs} epochs")
    print_table(rows, columns)
    for r in results:
        if "rel_diff_max" in r:
            ok = (r["rel_diff_max"] <= 1e-5 and r["each_row_read_once_per_epoch"]
                  and r["ranks_agree_on_loss"])
            print(f"{r['world_size']} ranks, {r['dtype']}: max rel loss diff "
                  f"{r['rel_diff_max']:.2g} (target <= 1e-5), each row read by one rank per "
                  f"epoch: {r['each_row_read_once_per_epoch']}, ranks agree: "
                  f"{r['ranks_agree_on_loss']} -> {'met' if ok else 'NOT met'}")
    write_json("bench_distributed", {"samples": args.samples, "features": FEATURES,
                                     "epochs": args.epochs, "batch_size": args.batch_size,
                                     "results": results}, args.output)
    return results


if __name__ == "__main__":
    main()
