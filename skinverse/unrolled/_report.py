"""Layout conversions, PSNR of the reconstructions and TensorBoard panels of
:class:`~skinverse.unrolled.UnrolledRegressor`."""

import numpy as np
import torch

from .._base import to_numpy
from .._base._batches import RowSubset
from .._base._sources import LazyRows
from ..metrics import psnr, ssim


def complex_images(real, shape):
    """(batch, 2 * prod(shape)) real -> (batch, *shape) complex."""
    two = real.reshape(real.shape[0], 2, *shape)
    return torch.complex(two[:, 0], two[:, 1])


def real_parts(z):
    """(batch, *shape) complex -> (batch, 2 * prod(shape)) real, real parts first."""
    return torch.stack([z.real, z.imag], dim=1).reshape(z.shape[0], -1)


def weighted_psnr(peak, mse, sample_weight):
    """Weighted mean of per-sample ``10 log10(peak^2 / mse)``."""
    peak = np.maximum(np.asarray(peak, dtype=np.float64), 1e-12)
    mse = np.maximum(np.asarray(mse, dtype=np.float64), 1e-30 * peak**2)
    return float(np.average(10 * np.log10(peak**2 / mse), weights=sample_weight))


def score_psnr(real_data, truth, pred, sample_weight):
    """The estimator's score: per-image PSNRs averaged, against one range for all real
    images (that of ``y`` as a set, as :func:`skinverse.metrics.psnr` with
    ``data_range``) and each magnitude image's peak for complex ones."""
    pred = np.asarray(pred, dtype=np.float64)
    if real_data:
        ref, est = truth.reshape(len(truth), -1), pred.reshape(len(truth), -1)
        peak = np.full(len(ref), ref.max() - ref.min())
    else:
        ref, est = magnitudes(truth), magnitudes(pred)
        peak = ref.max(axis=1)
    return weighted_psnr(peak, ((est - ref) ** 2).mean(axis=1), sample_weight)


def magnitudes(flat):
    """Magnitudes of flat (n, 2 * d) real-and-imaginary rows."""
    two = np.asarray(flat).reshape(len(flat), 2, -1)
    return np.sqrt(two[:, 0] ** 2 + two[:, 1] ** 2)


def validation_psnr(est, val):
    """Mean PSNR of the magnitude images of a validation split, batch by batch (the
    whole split at once for real images: one range for the set, as ``score``)."""
    if est._real_data:
        with torch.no_grad():
            pred = to_numpy(est._forward(val["X"]))
        return est._psnr(to_numpy(val["y"]), pred)
    peaks, errors = [], []
    with torch.no_grad():
        for batch in est._iter_batches(val, shuffle=False):
            pred = to_numpy(est._forward(batch["X"], batch.get("maps"), batch.get("masks")))
            ref, rec = magnitudes(to_numpy(batch["y"])), magnitudes(pred)
            peaks.append(ref.max(axis=1))
            errors.append(((rec - ref) ** 2).mean(axis=1))
    return weighted_psnr(np.concatenate(peaks), np.concatenate(errors), None)


def first_example(est, train):
    """The first training sample, on the device (for the TensorBoard panels)."""
    if isinstance(train, LazyRows):
        data = est._validate_lazy_batch(train.plan, train.rows[:1])
        return {k: v.to(est.device_) for k, v in est._cpu_tensors(data).items()}
    if isinstance(train, RowSubset):
        return train.take(slice(0, 1))
    return {k: v[:1] for k, v in train.items() if v is not None}


def log_panels(est, writer, epoch):
    """lam, CG iterations and image panels of one training example."""
    writer.add_scalar("lam", float(est.module_.lam.detach()), epoch)
    writer.add_scalar("cg_iterations", est.cg_iters_[-1], epoch)
    sample = est._monitor or {}
    if not sample:
        return
    with torch.no_grad():
        pred = est._forward(sample["X"], sample.get("maps"), sample.get("masks"))
        kspace = complex_images(sample["X"], est._kspace_shape)
        zero_filled = est.operator_.adjoint(kspace, **est._params(sample))
    shape = est.image_shape_
    panels = {
        "zero_filled": zero_filled.abs()[0],
        "prediction": complex_images(pred, shape).abs()[0],
        "ground_truth": complex_images(sample["y"], shape).abs()[0],
    }
    panels["error"] = (panels["prediction"] - panels["ground_truth"]).abs()
    truth = to_numpy(panels["ground_truth"]).reshape(1, -1)
    guess = to_numpy(panels["prediction"]).reshape(1, -1)
    writer.add_scalar("psnr/train_example", psnr(truth, guess), epoch)
    if len(shape) == 2:
        writer.add_scalar("ssim/train_example", ssim(truth, guess, image_shape=shape), epoch)
    for name, image in panels.items():
        image = image / image.max().clamp_min(1e-12)
        writer.add_image(f"images/{name}", image[None].float().cpu(), epoch)
