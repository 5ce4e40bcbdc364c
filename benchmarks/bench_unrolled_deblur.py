"""2-D deblurring of natural images: MoDL at its defaults against tuned classical methods.

MoDL (``UnrolledRegressor(operator=blur)``, everything else at the defaults but the
loss, which is compared) trains on the package's generator ``make_textured_images``
(``--train-on textured``) or on other patches of the same photographs (``--train-on
photographs``; they overlap the test patches, so that variant is a reference, not a
test of generalisation), and is tested on patches of scikit-learn's two photographs
(``load_sample_patches``) through the same Gaussian blur and noise. Baselines: Tikhonov
(``(A^T A + lambda I)^-1 A^T y``, lambda on a grid) and total variation (smoothed TV by
Adam, weight on a grid), each tuned on training images, and each also tuned on the test
photographs themselves (an oracle: no tuning rule does better). PSNR (the mean of the
per-image PSNRs) and SSIM, data range 1, of the held-out photographs.

    python benchmarks/bench_unrolled_deblur.py [--size 32] [--train 400] [--test 100]
                                               [--blur 1.5] [--noise 0.01]
                                               [--train-on textured|photographs]
                                               [--set key=value ...]

Target (issue #13): MoDL's PSNR and SSIM both above the best classical baseline; both
margins are printed, against the baselines tuned on the training images and against
the oracle.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import parse_overrides, print_table, write_json

from skinverse.datasets import load_sample_patches, make_textured_images
from skinverse.metrics import psnr, ssim
from skinverse.operators import Blur, gaussian_kernel
from skinverse.unrolled import UnrolledRegressor


def quality(truth, pred, size):
    """PSNR and SSIM with the images' range, 1 (a flat patch of sky has a tiny range of
    its own, which would make every error look large)."""
    return (psnr(truth, pred, data_range=1.0),
            ssim(truth, pred, image_shape=(size, size), data_range=1.0))


def tikhonov(blur, X, lam):
    est = UnrolledRegressor(operator=blur, method="cg-sense", lam=lam, learn_lam=False,
                            cg_max_iter=100, cg_tol=1e-8, max_epochs=1, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X[:2], np.zeros((2, X.shape[1]))).predict(X)


def total_variation(blur, X, weight, size, n_iter=200):
    """argmin ||Ax - y||^2 + weight * TV_eps(x) by Adam, all images at once."""
    y = torch.as_tensor(X, dtype=torch.float64).reshape(-1, size, size)
    op = blur.to(dtype=torch.float64)
    x = op.adjoint(y).clone().requires_grad_()
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(n_iter):
        opt.zero_grad()
        fidelity = (op.forward(x) - y).pow(2).sum()
        dx, dy = x[:, 1:, :-1] - x[:, :-1, :-1], x[:, :-1, 1:] - x[:, :-1, :-1]
        tv = torch.sqrt(dx**2 + dy**2 + 1e-6).sum()
        (fidelity + weight * tv).backward()
        opt.step()
    return x.detach().reshape(len(X), -1).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--blur", type=float, default=1.5, help="Gaussian width in pixels")
    parser.add_argument("--noise", type=float, default=0.01, help="on images in [0, 1]")
    parser.add_argument("--losses", nargs="+", default=["ssim+l1"])
    parser.add_argument("--train-on", choices=["textured", "photographs"],
                        default="textured")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="override the default max_epochs (for a quick run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[],
                        help="MoDL parameters, key=value (Python literal), e.g. width=16")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, rng = args.size, np.random.RandomState(0)
    kernel = gaussian_kernel(2 * int(3 * args.blur) + 1, args.blur, ndim=2)
    blur = Blur(kernel, (size, size))

    def observe(images):
        clean = blur.forward(torch.as_tensor(images).reshape(-1, size, size))
        return clean.reshape(len(images), -1).numpy() + args.noise * rng.normal(
            size=images.shape)

    if args.train_on == "textured":
        train = make_textured_images(args.train, size, random_state=0)
    else:  # other random patches of the same two photographs
        train = load_sample_patches(size, args.train, random_state=0)
    train = train.reshape(args.train, -1)
    test = load_sample_patches(size, args.test, random_state=1).reshape(args.test, -1)
    X_train, X_test = observe(train), observe(test)
    tune = slice(0, 40)
    rows = {"blurred (y)": quality(test, X_test, size)}
    lams = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    weights = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    oracle = {}
    for name, method, grid in [("Tikhonov", lambda X, p: tikhonov(blur, X, p), lams),
                               ("total variation",
                                lambda X, p: total_variation(blur, X, p, size), weights)]:
        on_test = {p: quality(test, method(X_test, p), size) for p in grid}
        best = max(grid, key=lambda p: quality(train[tune], method(X_train[tune], p),
                                               size)[0])
        rows[f"{name} ({best:g}, tuned on training)"] = on_test[best]
        best_test = max(grid, key=lambda p: on_test[p][0])
        oracle[f"{name} ({best_test:g}, tuned on test)"] = on_test[best_test]
    rows.update(oracle)
    seconds, epochs = {}, {}
    for loss in args.losses:
        params = {"max_epochs": args.max_epochs} if args.max_epochs else {}
        params.update(parse_overrides(args.set))
        model = UnrolledRegressor(**{"operator": blur, "loss": loss, "random_state": 0,
                                     "device": "cpu", **params})
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X_train, train)
        seconds[loss], epochs[loss] = time.process_time() - start, model.n_iter_
        rows[f"MoDL defaults (loss={loss})"] = quality(test, model.predict(X_test), size)
    table = [{"reconstruction": k, "PSNR dB": f"{v[0]:.2f}", "SSIM": f"{v[1]:.3f}"}
             for k, v in rows.items()]
    print_table(table, ["reconstruction", "PSNR dB", "SSIM"])
    classical = {k: v for k, v in rows.items() if k.endswith("on training)")}
    best_psnr = max(v[0] for v in classical.values())
    best_ssim = max(v[1] for v in classical.values())
    oracle_psnr = max(v[0] for v in oracle.values())
    oracle_ssim = max(v[1] for v in oracle.values())
    for loss in args.losses:
        p, s = rows[f"MoDL defaults (loss={loss})"]
        print(f"MoDL loss={loss}, trained on {args.train_on}: {p - best_psnr:+.2f} dB and "
              f"SSIM {s - best_ssim:+.3f} over the best classical baseline tuned on the "
              f"training images, {p - oracle_psnr:+.2f} dB and {s - oracle_ssim:+.3f} over "
              f"the best tuned on the test images (target: both > 0); {epochs[loss]} "
              f"epochs, {seconds[loss]:.0f} CPU s")
    write_json("bench_unrolled_deblur", {
        "results": {k: {"psnr": v[0], "ssim": v[1]} for k, v in rows.items()},
        "modl_minus_best_psnr": {loss: rows[f"MoDL defaults (loss={loss})"][0] - best_psnr
                                 for loss in args.losses},
        "modl_minus_best_ssim": {loss: rows[f"MoDL defaults (loss={loss})"][1] - best_ssim
                                 for loss in args.losses},
        "modl_minus_oracle_psnr": {loss: rows[f"MoDL defaults (loss={loss})"][0]
                                   - oracle_psnr for loss in args.losses},
        "modl_minus_oracle_ssim": {loss: rows[f"MoDL defaults (loss={loss})"][1]
                                   - oracle_ssim for loss in args.losses},
        "train_on": args.train_on,
        "cpu_seconds": seconds, "epochs": epochs, "size": size, "n_train": args.train,
        "n_test": args.test, "blur": args.blur, "noise": args.noise,
    }, args.output)


if __name__ == "__main__":
    main()
