"""Does a reconstruction trained on the package's generators transfer to natural images?

MoDL is trained on synthetic images -- the piecewise-constant ``make_phantoms`` and the
shaded, edged and textured ``make_textured_images`` -- and tested on crops of the two
photographs bundled with scikit-learn, all through the same multi-coil simulation
(``make_mri_data``: coils, Cartesian undersampling, noise). The reference in the same run
is CG-SENSE with its lambda chosen on the *training* set; the table gives PSNR and SSIM
of magnitude images on the natural test crops and MoDL's gain over CG-SENSE.

    python benchmarks/bench_unrolled_transfer.py [--size 32] [--n-train 200] [--epochs 50]
        [--width 32] [--depth 4] [--unrolls 5] [--threads 1]

Target (issue #13): trained on the generators, >= +3 dB over CG-SENSE on natural images.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import print_table, write_json

from skinverse.datasets import (
    load_sample_patches,
    make_mri_data,
    make_phantoms,
    make_textured_images,
)
from skinverse.metrics import ssim
from skinverse.unrolled import UnrolledRegressor


def _magnitude_metrics(images, pred):
    truth, guess = np.abs(images).reshape(len(images), -1), np.abs(pred).reshape(len(pred), -1)
    peak = truth.max(axis=1)
    psnr = 10 * np.log10(peak**2 / ((guess - truth) ** 2).mean(axis=1))
    shape = images.shape[1:]
    return float(psnr.mean()), float(ssim(truth, guess, image_shape=shape))


def _simulate(images, seed, args):
    return make_mri_data(images, n_coils=args.coils, acceleration=args.acceleration,
                         noise_std=args.noise, random_state=seed, as_container=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--unrolls", type=int, default=5)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--acceleration", type=float, default=4)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    patches = load_sample_patches(args.size, args.n_test, random_state=0)
    test, test_images = _simulate(patches.reshape(-1, args.size, args.size), 1, args)
    generators = {"make_phantoms": make_phantoms, "make_textured_images": make_textured_images}
    rows, payload = [], {"args": vars(args)}
    for name, generator in generators.items():
        train, train_images = _simulate(generator(args.n_train, args.size, random_state=2), 3,
                                        args)
        sense = max((UnrolledRegressor(method="cg-sense", learn_lam=False, lam=lam,
                                       cg_max_iter=30, max_epochs=1).fit(train, train_images)
                     for lam in (1e-4, 1e-3, 1e-2, 1e-1)),
                    key=lambda est: est.score(train, train_images))
        start = time.perf_counter()
        modl = UnrolledRegressor(method="modl", n_unrolls=args.unrolls, width=args.width,
                                 depth=args.depth, max_epochs=args.epochs,
                                 random_state=0).fit(train, train_images)
        seconds = time.perf_counter() - start
        base = _magnitude_metrics(test_images, sense.predict(test))
        ours = _magnitude_metrics(test_images, modl.predict(test))
        rows.append({"trained on": name, "CG-SENSE PSNR": f"{base[0]:.2f}",
                     "MoDL PSNR": f"{ours[0]:.2f}", "gain dB": f"{ours[0] - base[0]:+.2f}",
                     "CG-SENSE SSIM": f"{base[1]:.3f}", "MoDL SSIM": f"{ours[1]:.3f}",
                     "train s": f"{seconds:.0f}"})
        payload[name] = {"sense": base, "modl": ours, "gain_db": ours[0] - base[0],
                         "sense_lam": sense.lam, "seconds": seconds}
    print_table(rows, list(rows[0]))
    write_json("bench_unrolled_transfer", payload, args.output)
    return payload


if __name__ == "__main__":
    main()
