r"""Training losses of :class:`~skinverse.unrolled.UnrolledRegressor`, per sample.

``'mse'`` is the mean squared error of the real and imaginary parts. ``'ssim'`` is
:math:`1 - \mathrm{SSIM}` of the magnitude images, differentiable and equal to
:func:`skinverse.metrics.ssim` (Gaussian window :math:`\sigma = 1.5` truncated at 3.5
widths, symmetric borders, the range :math:`R` of each reference). ``'ssim+l1'`` mixes
them as Zhao et al. found best for image restoration,

.. math::

    \ell = \alpha\,(1 - \mathrm{SSIM}(|x|, |\hat x|)) + (1 - \alpha)\,
    \frac{\|\hat x - x\|_1}{d\,R}, \qquad \alpha = 0.84,

with the L1 term divided by the reference's range so that both terms are free of the
images' scale.

H. Zhao, O. Gallo, I. Frosio, J. Kautz, "Loss functions for image restoration with
neural networks", IEEE Trans. Comput. Imaging 3(1), 2017.
"""

import torch
import torch.nn.functional as F

LOSSES = ("mse", "l1", "ssim", "ssim+l1")
ALPHA = 0.84


def _gaussian(sigma, truncate, dtype, device):
    radius = int(truncate * sigma + 0.5)
    grid = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum(), radius


def _blur(images, sigma=1.5, truncate=3.5):
    """Separable Gaussian filter over the spatial axes of (batch, *shape) with symmetric
    borders (scipy's ``mode='reflect'``)."""
    kernel, radius = _gaussian(sigma, truncate, images.dtype, images.device)
    out = images
    spatial = images.dim() - 1
    for axis in range(1, spatial + 1):
        size = out.shape[axis]
        r = min(radius, size)
        moved = out.movedim(axis, -1)
        padded = torch.cat([moved[..., :r].flip(-1), moved, moved[..., -r:].flip(-1)], dim=-1)
        flat = padded.reshape(-1, 1, padded.shape[-1])
        taps = kernel[radius - r: radius + r + 1] if r < radius else kernel
        filtered = F.conv1d(flat, taps.view(1, 1, -1))
        out = filtered.reshape(*moved.shape[:-1], size).movedim(-1, axis)
    return out


def ssim_per_sample(truth, pred, peak):
    """Mean SSIM of each (batch, *shape) pair, ``peak`` the data range per sample."""
    shape = (-1,) + (1,) * (truth.dim() - 1)
    mx, my = _blur(truth), _blur(pred)
    vx = _blur(truth * truth) - mx**2
    vy = _blur(pred * pred) - my**2
    cxy = _blur(truth * pred) - mx * my
    c1, c2 = ((0.01 * peak) ** 2).reshape(shape), ((0.03 * peak) ** 2).reshape(shape)
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.reshape(len(index), -1).mean(dim=1)


def _magnitude(flat, image_shape, complex_images):
    if not complex_images:
        return flat.reshape(len(flat), *image_shape)
    two = flat.reshape(len(flat), 2, *image_shape)
    return torch.sqrt(two[:, 0] ** 2 + two[:, 1] ** 2 + 1e-24)


def per_sample_loss(kind, pred, truth, image_shape, complex_images=True):
    """The loss ``kind`` of each sample of flat (batch, n) predictions and references."""
    if kind == "mse":
        return (pred - truth).pow(2).mean(dim=1)
    ref = _magnitude(truth, image_shape, complex_images)
    axes = tuple(range(1, ref.dim()))
    peak = (ref.amax(dim=axes) - ref.amin(dim=axes)).clamp_min(1e-12)
    if kind == "l1":
        return (pred - truth).abs().mean(dim=1) / peak
    est = _magnitude(pred, image_shape, complex_images)
    structural = 1 - ssim_per_sample(ref, est, peak)
    if kind == "ssim":
        return structural
    return ALPHA * structural + (1 - ALPHA) * (pred - truth).abs().mean(dim=1) / peak


__all__ = ["LOSSES", "per_sample_loss", "ssim_per_sample"]
