r"""The output threshold of :class:`~skinverse.unrolled.UnrolledRegressor`: the last
data-consistency step puts the measurement noise back into regions a denoiser had
cleared (the background of an MRI image), and a soft threshold of the magnitudes,

.. math::

    \hat x \leftarrow \hat x\,\frac{\max(|\hat x| - \tau, 0)}{|\hat x|},

the proximal map of :math:`\tau \|x\|_1` (the image-domain sparsity prior of compressed
sensing MRI, Lustig et al. 2007), takes it out again. ``output_threshold='auto'``
chooses :math:`\tau` once training has ended: among 0 and a geometric grid of fractions
of the images' typical peak (the median over the held-out references of each one's
largest magnitude), the value whose reconstructions have the lowest mean training loss
on the validation images (the training images without a validation split), among those
that do not lower their PSNR (the estimator's score): the threshold never trades PSNR
for SSIM. It is kept only if it lowers that loss by at least ``MIN_GAIN`` (1 %).
Measured on ``bench_unrolled.py``'s held-out phantoms for a MoDL trained without it:
SSIM 0.848 -> 0.930 and PSNR 34.23 -> 34.49 dB at :math:`\tau` = 0.5 % of the peak,
0.967 and 34.17 dB at 1 % (the loss's own optimum, 2 %, costs 1.6 dB).

M. Lustig, D. Donoho, J. M. Pauly, "Sparse MRI: the application of compressed sensing
for rapid MR imaging", Magn. Reson. Med. 58(6), 2007.
"""

import numpy as np
import torch

from ._losses import _magnitude, per_sample_loss

#: The smallest relative decrease of the validation loss for which a threshold is kept:
#: below it, the gain is within what the choice of validation images moves, and images
#: unlike them pay for it (deblurring photographs with a model trained on
#: ``make_textured_images``: tau = 5e-4 chosen on the textures cost 0.07 dB on the
#: photographs).
MIN_GAIN = 0.01

#: Candidate thresholds, as fractions of the references' median peak magnitude.
GRID = np.concatenate([[0.0], np.geomspace(1e-4, 0.3, 36)])


def soft_threshold(images, tau):
    """Shrink the magnitudes of (complex or real) ``images`` by ``tau``, keeping phases
    (signs)."""
    magnitude = images.abs()
    return images * (torch.clamp(magnitude - tau, min=0) / magnitude.clamp_min(1e-30))


def _psnr_terms(pred, truth, shape, complex_images):
    """What the estimator's score (PSNR) decreases with, summed over a batch: the log of
    each image's (magnitude) MSE, as the score averages per-image PSNRs against a range
    the threshold does not change."""
    error = (_magnitude(pred, shape, complex_images)
             - _magnitude(truth, shape, complex_images))
    return torch.log(error.pow(2).reshape(len(error), -1).mean(dim=1).double()
                     .clamp_min(1e-300)).sum()


def fitted_threshold(estimator, data):
    """The estimator's ``output_threshold``; for 'auto', 0 for 'cg-sense' and otherwise
    the grid value of :math:`\\tau` of lowest mean loss on ``data`` (rows the
    estimator's batch iterators read) among those whose PSNR is no lower than without
    a threshold -- if it lowers that loss by ``MIN_GAIN`` -- computed with the module's
    threshold at 0."""
    if estimator.output_threshold != "auto":
        return float(estimator.output_threshold)
    if estimator.method == "cg-sense" or data is None or estimator._n_rows(data) == 0:
        return 0.0
    complex_images = not estimator._real_data
    shape = estimator.image_shape_
    with torch.no_grad():
        peaks = torch.cat([
            _magnitude(batch["y"], shape, complex_images).reshape(len(batch["y"]), -1)
            .amax(dim=1) for batch in estimator._iter_batches(data, shuffle=False)])
        scale = float(peaks.median())
        if not np.isfinite(scale) or scale <= 0:
            return 0.0
        candidates = [scale * float(q) for q in GRID]
        losses = torch.zeros(len(candidates), dtype=torch.float64)
        errors = torch.zeros(len(candidates), dtype=torch.float64)
        for batch in estimator._iter_batches(data, shuffle=False):
            flat = estimator._forward(batch["X"], batch.get("maps"), batch.get("masks"))
            images = estimator._to_complex(flat, shape)
            for i, tau in enumerate(candidates):
                pred = estimator._to_real(soft_threshold(images, tau)) if tau else flat
                losses[i] += per_sample_loss(estimator.loss, pred, batch["y"], shape,
                                             complex_images).sum().double().cpu()
                errors[i] += _psnr_terms(pred, batch["y"], shape, complex_images).cpu()
    allowed = errors <= errors[0] + 1e-9 * errors[0].abs()  # no loss of PSNR; 0 is in
    losses[~allowed] = float("inf")
    best = int(torch.argmin(losses))
    return float(candidates[best]) if losses[best] <= (1 - MIN_GAIN) * losses[0] else 0.0


__all__ = ["GRID", "MIN_GAIN", "fitted_threshold", "soft_threshold"]
