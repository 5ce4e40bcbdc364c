"""One small fit of each estimator on an idle and on a busy machine, by thread policy.

Each fit runs in a fresh process (the OpenMP policy is read when torch loads) with torch's
default number of threads (one per core) or one thread, and OpenMP's idle threads left to
torch's default (``torch`` imported before skinverse, no policy set: libgomp spins for a
while at every barrier) or sleeping (``OMP_WAIT_POLICY=PASSIVE``, what skinverse sets
when it is imported first). "Busy" runs a pure-Python busy loop on one
core meanwhile -- a notebook user's other work. The table gives wall seconds and the
slowdown of busy over idle.

    python benchmarks/bench_threads.py [--estimators rim imnn implicit unrolled]

Target (issue #14): no collapse under load at the defaults (busy/idle near the share of
the machine the other process takes, not 10x).
"""

import argparse
import json
import os
import subprocess
import sys

from _common import print_table, write_json

FITS = {
    "rim": """
from skinverse.operators import Blur, gaussian_kernel
from skinverse.rim import RIMRegressor
rng = np.random.RandomState(0)
x = rng.normal(size=(200, 256))
blur = Blur(gaussian_kernel(5, 1.5, ndim=2), input_shape=(16, 16))
X = blur(torch.as_tensor(x.reshape(-1, 16, 16))).reshape(200, -1).numpy()
est = RIMRegressor(operator=blur, noise_std=0.05, input_shape=(16, 16), n_steps=3, width=8,
                   depth=2, max_epochs=3, early_stopping=False, random_state=0)
fit = lambda: est.fit(X + 0.05 * rng.normal(size=X.shape), x)
""",
    "imnn": """
from skinverse.datasets import gaussian_mean_variance_problem
from skinverse.imnn import IMNNTransformer
p = gaussian_mean_variance_problem(n_data=20)
est = IMNNTransformer(simulator=p.simulator, theta_fid=p.theta_fid, max_epochs=150,
                      early_stopping=False, random_state=0)
fit = lambda: est.fit()
""",
    "implicit": """
from sklearn.datasets import load_digits
from skinverse.implicit import ImplicitClassifier
X, y = load_digits(return_X_y=True)
est = ImplicitClassifier(max_epochs=5, random_state=0)
fit = lambda: est.fit(X / 16, y)
""",
    "unrolled": """
from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.unrolled import UnrolledRegressor
data, images = make_mri_data(make_phantoms(48, 32, random_state=0), n_coils=4,
                             random_state=0, as_container=True)
est = UnrolledRegressor(n_unrolls=3, width=16, depth=2, max_epochs=2, random_state=0)
fit = lambda: est.fit(data, images)
""",
}

RUN = """
import time, warnings
warnings.simplefilter("ignore")
import numpy as np
import skinverse
import torch
{threads}
{setup}
start = time.perf_counter()
fit()
print(time.perf_counter() - start)
"""


def _time(name, policy, one_thread):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                            "OMP_WAIT_POLICY")}
    threads = "torch.set_num_threads(1)" if one_thread else ""
    code = RUN.format(threads=threads, setup=FITS[name])
    if policy is None:  # torch first: skinverse cannot choose the policy any more
        code = "import torch\n" + code
    else:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=1200)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=list(FITS))
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args(argv)
    settings = [(None, False), ("PASSIVE", False), ("PASSIVE", True)]
    rows, payload = [], {"cores": os.cpu_count()}
    for name in args.estimators:
        for policy, one in settings:
            idle = _time(name, policy, one)
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                busy = _time(name, policy, one)
            finally:
                hog.kill()
            kind = "torch's default wait" if policy is None else policy.lower()
            label = f"{kind}, {'1 thread' if one else 'default threads'}"
            rows.append({"estimator": name, "setting": label, "idle s": f"{idle:.2f}",
                         "busy s": f"{busy:.2f}", "busy / idle": f"{busy / idle:.2f}"})
            payload[f"{name} {label}"] = {"idle": idle, "busy": busy}
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, ["estimator", "setting", "idle s", "busy s", "busy / idle"])
    write_json("bench_threads", payload, args.output)


if __name__ == "__main__":
    main()
