"""IMNNTransformer against the training loop of the imnn paper, in one process, interleaved.

Problem (issue #16): N = 10 draws of a Gaussian, theta = (mean, variance) at (0, 1),
analytic det F = N^2 / 2 = 50 (``--problems`` adds the variance alone, N = 10, det F 5).
Each seed runs every row before the next seed starts.

Rows:

- ``reference``: the loop of Charnock, Lavaux & Wandelt (2018) as the imnn package
  (0.3.2, ``SimulatorIMNN.fit``) runs it, written here in torch: its example network
  (three hidden layers of 128, leaky ReLU, Glorot-normal weights), Adam at 1e-3, loss
  -ln det F + r Lambda_2 with lambda = 10, epsilon = 0.1 and the adaptive coupling r,
  n_s = n_d = 1000 fresh simulations per step (derivatives of the summaries of the first
  n_d of them by forward-mode autograd through network and simulator), det F of fresh
  validation simulations every step, the best weights on it kept, stopping after 250
  steps without a new best once 1000 steps ran (the package example's
  ``min_iterations=1000, patience=250``);
- ``skinverse``: ``IMNNTransformer(simulator=..., theta_fid=..., random_state=seed)``,
  everything else at its defaults;
- ``imnn (JAX)``: the imnn package itself on the same problem and settings, run by
  ``--peer-python`` (an interpreter with imnn 0.3.2 and jax) in a child process, when
  given: its fit time includes the XLA compilation, as a user pays it (imnn 0.3.2 needs
  small compatibility edits to run on a current jax: see RESULTS.md).

After one untimed tiny fit of each torch row (the one-time imports), reported per
fit: process CPU seconds of ``fit`` (``time.process_time``; one thread, so a
machine shared with other jobs disturbs it far less than the wall time, also reported),
steps, and det F of the fitted summaries on fresh simulations (mean of 3 sets of 5000,
the same sets for the torch rows) over the analytic value. The time ratio is
skinverse / reference, median over seeds.

    python benchmarks/bench_imnn_reference.py [--seeds 0 1 2] [--threads 1]
        [--problems mean_variance variance] [--peer-python PATH] [--output PATH]

Target (issue #16): skinverse's fit <= 0.5x the reference's time at a det F at least as
high.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import gaussian_mean_variance_problem, gaussian_variance_problem
from skinverse.imnn import IMNNTransformer

PROBLEMS = {"mean_variance": lambda: gaussian_mean_variance_problem(10),
            "variance": lambda: gaussian_variance_problem(10)}
N_EVAL, EVAL_SETS = 5000, 3


# --------------------------------------------------------------------------- reference loop
def _simulate_with_derivatives(simulator, theta, n, generator):
    """``n`` simulations at ``theta`` and dx/dtheta (n, n_features, n_params), the noise
    shared between the parameters (the generator state is replayed)."""
    theta = theta.expand(n, -1).contiguous()
    state = generator.get_state()
    columns = []
    for k in range(theta.shape[1]):
        direction = torch.zeros_like(theta)
        direction[:, k] = 1
        generator.set_state(state)
        x, dx = torch.func.jvp(lambda th: simulator(th, generator), (theta,), (direction,))
        columns.append(dx)
    return x, torch.stack(columns, dim=-1)


def _summaries_and_derivatives(net, x, dx):
    """Summaries of ``x`` and their derivatives along each column of ``dx``."""
    columns = []
    for k in range(dx.shape[-1]):
        t, dt = torch.func.jvp(net, (x,), (dx[..., k],))
        columns.append(dt)
    return t, torch.stack(columns, dim=-1)


def _fisher(t, dt):
    mean = t.mean(dim=0)
    centred = t - mean
    cov = centred.T @ centred / (len(t) - 1)
    inv = torch.linalg.inv(cov)
    dmu = dt.mean(dim=0)
    return dmu.T @ inv @ dmu, cov, inv


def _glorot_network(n_in, hidden, n_out, generator):
    """stax.serial(Dense(h), LeakyRelu, ..., Dense(n_out)): Glorot-normal weights, biases
    N(0, 1e-6)."""
    layers, width = [], n_in
    for size in list(hidden) + [n_out]:
        linear = torch.nn.Linear(width, size)
        with torch.no_grad():
            std = math.sqrt(2.0 / (width + size))
            linear.weight.copy_(torch.randn(size, width, generator=generator) * std)
            linear.bias.copy_(torch.randn(size, generator=generator) * 1e-6)
        layers += [linear, torch.nn.LeakyReLU(0.01)]
        width = size
    return torch.nn.Sequential(*layers[:-1])


def fit_reference(problem, seed, n_s=1000, n_d=1000, hidden=(128, 128, 128), lam=10.0,
                  epsilon=0.1, learning_rate=1e-3, min_iterations=1000, patience=250,
                  max_iterations=100_000):
    """The imnn package's SimulatorIMNN.fit in torch; returns (summary network, steps)."""
    generator = torch.Generator().manual_seed(seed)
    theta = torch.as_tensor(problem.theta_fid, dtype=torch.float32)[None]
    n_features = problem.simulator.n_data
    net = _glorot_network(n_features, hidden, len(problem.theta_fid), generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    alpha = -math.log(epsilon * (lam - 1) + epsilon**2 / (1 + epsilon)) / epsilon
    eye = torch.eye(len(problem.theta_fid))

    def statistics_of(train):
        x, dx = _simulate_with_derivatives(problem.simulator, theta, n_d, generator)
        if n_s > n_d:
            x = torch.cat([x, problem.simulator(theta.expand(n_s - n_d, -1), generator)])
        t, dt = _summaries_and_derivatives(net, x, dx if train else dx.detach())
        return _fisher(t, dt[:n_d])

    best, best_weights, waited, counter = -math.inf, None, 0, 0
    while waited < patience and counter < max_iterations:
        fisher, cov, inv = statistics_of(train=True)
        lambda2 = torch.linalg.matrix_norm(cov - eye) + torch.linalg.matrix_norm(inv - eye)
        r = lam * lambda2 / (lambda2 + torch.exp(-alpha * lambda2))
        loss = -torch.linalg.slogdet(fisher)[1] + r * lambda2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # the package validates on fresh simulations every step
            det = float(torch.linalg.det(statistics_of(train=False)[0]))
        if det > best:
            best, waited = det, 0
            best_weights = {k: v.clone() for k, v in net.state_dict().items()}
        elif counter > min_iterations:
            waited += 1
        counter += 1
    net.load_state_dict(best_weights)
    return net, counter


# --------------------------------------------------------------------------- evaluation
def det_ratio(problem, summary, seed):
    """det F of ``summary`` (a torch function of raw simulations) on EVAL_SETS fresh sets
    of N_EVAL simulations (the same for every row of a seed) over the analytic value."""
    theta = torch.as_tensor(problem.theta_fid, dtype=torch.float32)[None]
    dets = []
    for s in range(EVAL_SETS):
        generator = torch.Generator().manual_seed(10_000 + 10 * seed + s)
        x, dx = _simulate_with_derivatives(problem.simulator, theta, N_EVAL, generator)
        with torch.no_grad():
            t, dt = _summaries_and_derivatives(summary, x, dx)
            dets.append(float(torch.linalg.det(_fisher(t.double(), dt.double())[0])))
    return float(np.mean(dets)) / float(np.linalg.det(problem.fisher))


def _timed(fit):
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit()
    return result, time.perf_counter() - start, time.process_time() - cpu


def run_reference(name, problem, seed):
    (net, steps), wall, cpu = _timed(lambda: fit_reference(problem, seed))
    net.eval()
    return {"row": "reference", "problem": name, "seed": seed, "steps": steps,
            "cpu_seconds": cpu, "seconds": wall, "ratio": det_ratio(problem, net, seed)}


def run_skinverse(name, problem, seed):
    imnn = IMNNTransformer(simulator=problem.simulator, theta_fid=problem.theta_fid,
                           random_state=seed)
    _, wall, cpu = _timed(imnn.fit)
    return {"row": "skinverse", "problem": name, "seed": seed, "steps": imnn.n_iter_,
            "cpu_seconds": cpu, "seconds": wall, "architecture": imnn.architecture_,
            "ratio": det_ratio(problem, imnn._net, seed)}


# --------------------------------------------------------------------------- the package
_PEER_SCRIPT = r"""
import json, sys, time
import jax, jax.numpy as np
from jax.example_libraries import stax, optimizers
from imnn import SimulatorIMNN
name, seed, n_eval, n_sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n_data = 10
if name == "mean_variance":
    theta_fid, analytic = np.array([0.0, 1.0]), n_data**2 / 2
    simulator = lambda key, t: t[0] + jax.random.normal(key, shape=(n_data,)) * np.sqrt(t[1])
else:
    theta_fid, analytic = np.array([1.0]), n_data / 2
    simulator = lambda key, t: jax.random.normal(key, shape=(n_data,)) * np.sqrt(t[0])
n_params = len(theta_fid)
model = stax.serial(stax.Dense(128), stax.LeakyRelu, stax.Dense(128), stax.LeakyRelu,
                    stax.Dense(128), stax.LeakyRelu, stax.Dense(n_params))
model_key, fit_key = jax.random.split(jax.random.PRNGKey(seed))
start, cpu = time.perf_counter(), time.process_time()
imnn = SimulatorIMNN(n_s=1000, n_d=1000, n_params=n_params, n_summaries=n_params,
                     input_shape=(n_data,), θ_fid=theta_fid, model=model,
                     optimiser=optimizers.adam(step_size=1e-3), key_or_state=model_key,
                     simulator=simulator)
imnn.fit(10.0, 0.1, rng=fit_key, min_iterations=1000, patience=250, print_rate=None)
jax.block_until_ready(imnn.w)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
summary = lambda key, t: model[1](imnn.w, simulator(key, t))
both = jax.jit(jax.vmap(lambda key: (summary(key, theta_fid),
                                     jax.jacfwd(summary, argnums=1)(key, theta_fid))))
dets = []
for s in range(n_sets):
    keys = jax.random.split(jax.random.PRNGKey(10_000 + 10 * seed + s), n_eval)
    t, dt = both(keys)
    dmu, cov = dt.mean(axis=0), np.cov(t, rowvar=False).reshape(n_params, n_params)
    dets.append(float(np.linalg.det(dmu.T @ np.linalg.solve(cov, dmu))))
print(json.dumps({"steps": int(imnn.history["detF"].shape[0]), "cpu_seconds": cpu,
                  "seconds": wall, "ratio": sum(dets) / len(dets) / analytic}))
"""


def run_peer(python, name, seed, threads):
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    done = subprocess.run([python, "-c", _PEER_SCRIPT, name, str(seed), str(N_EVAL),
                           str(EVAL_SETS)], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        print(f"imnn (JAX) failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"row": "imnn (JAX)", "problem": name, "seed": seed, **row}


# --------------------------------------------------------------------------- main
def summarise(rows, problem):
    out = {}
    by_seed = {}
    for r in rows:
        if r["problem"] == problem:
            by_seed.setdefault(r["seed"], {})[r["row"]] = r
    for peer in ("reference", "imnn (JAX)"):
        pairs = [(v["skinverse"], v[peer]) for v in by_seed.values()
                 if "skinverse" in v and peer in v]
        if pairs:
            out[peer] = {
                "cpu_ratio_median": statistics.median(a["cpu_seconds"] / b["cpu_seconds"]
                                                      for a, b in pairs),
                "det_ratio_skinverse_mean": float(np.mean([a["ratio"] for a, _ in pairs])),
                "det_ratio_peer_mean": float(np.mean([b["ratio"] for _, b in pairs])),
            }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", nargs="+", default=["mean_variance"],
                        choices=sorted(PROBLEMS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peer-python", default=None,
                        help="an interpreter with imnn 0.3.2 and jax (row 'imnn (JAX)')")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warm = PROBLEMS[args.problems[0]]()  # pay the one-time imports before any timed fit
    fit_reference(warm, 0, n_s=50, n_d=50, min_iterations=1, patience=1, max_iterations=2)
    _timed(IMNNTransformer(simulator=warm.simulator, theta_fid=warm.theta_fid, n_s=50,
                           n_d=50, max_epochs=2, random_state=0).fit)
    rows = []
    for seed in args.seeds:
        for name in args.problems:
            problem = PROBLEMS[name]()
            runs = [run_reference(name, problem, seed), run_skinverse(name, problem, seed)]
            if args.peer_python:
                runs.append(run_peer(args.peer_python, name, seed, args.threads))
            for row in filter(None, runs):
                rows.append(row)
                print(f"{row['row']:<11} {name:<14} seed {seed}  det F ratio "
                      f"{row['ratio']:.3f}  {row['steps']} steps  {row['cpu_seconds']:.1f} "
                      f"CPU s ({row['seconds']:.1f} s)", flush=True)
    print()
    print_table([{"row": r["row"], "problem": r["problem"], "seed": r["seed"],
                  "det F / analytic": f"{r['ratio']:.3f}", "steps": r["steps"],
                  "CPU s": f"{r['cpu_seconds']:.1f}", "wall s": f"{r['seconds']:.1f}"}
                 for r in rows],
                ["row", "problem", "seed", "det F / analytic", "steps", "CPU s", "wall s"])
    summary = {name: summarise(rows, name) for name in args.problems}
    for name, peers in summary.items():
        for peer, s in peers.items():
            print(f"{name}: skinverse / {peer} CPU time, median over seeds "
                  f"{s['cpu_ratio_median']:.3f}; det F / analytic {s['det_ratio_skinverse_mean']:.3f}"
                  f" against {s['det_ratio_peer_mean']:.3f}")
    print("target: CPU time ratio <= 0.5 against the reference at a det F at least as high")
    write_json("bench_imnn_reference", {"seeds": args.seeds, "threads": args.threads,
                                        "rows": rows, "summary": summary}, args.output)


if __name__ == "__main__":
    main()
