r"""Defaults of :class:`~skinverse.unrolled.UnrolledRegressor` derived from the operator.

Scaling the operator by :math:`c` (and the measurements with it, :math:`A \to cA`,
:math:`y \to cy`) scales :math:`A^H A` and :math:`A^H y` by :math:`c^2` and leaves the
signal unchanged. The reconstructions stay the same when every weight that is added to
:math:`A^H A` scales with it:

* MoDL and CG-SENSE solve :math:`(A^H A + \lambda I) x = A^H y + \lambda D(x_k)`, so
  ``lam='auto'`` is :math:`\lambda = \lambda_0 \|A\|^2` with :math:`\lambda_0 = 0.05`,
  and a learned :math:`\lambda` is parametrised as :math:`\|A\|^2\,
  \mathrm{softplus}(\theta)` (the optimiser then moves it by the same relative amount at
  any scale);
* Deep Basis Pursuit's ADMM solves :math:`(A^H A + \rho^{-1} I) x = \dots`, so its
  penalty is :math:`\rho = \lambda_0 / \|A\|^2`;
* unrolled proximal gradient steps by :math:`1 / \|A\|^2`;
* conjugate gradients stop on a *relative* residual, :math:`\|r\| \le \mathrm{tol}\,\|b\|`,
  free of the scale; ``cg_tol='auto'`` is :math:`\sqrt{\varepsilon}` of the dtype
  (3.5e-4 in float32, 1.5e-8 in float64), the accuracy below which the float32 residual
  is rounding noise rather than progress.

:math:`\|A\|` is the operator's 2-norm by power iteration, computed once per operator and
cached on it (:meth:`~skinverse.operators.LinearOperator.norm`). An operator that takes
per-sample arguments (coil maps, masks) has a norm per sample: the median over the first
:data:`N_NORM_SAMPLES` training samples, computed once per fit. For multi-coil MRI with an
orthonormal FFT and maps with :math:`\sum_c |S_c|^2 = 1` it is 1, so ``'auto'`` is
:math:`\lambda = 0.05` there.
"""

import copy
import math
import warnings

import numpy as np
import torch

from ..operators import MatrixOperator
from ._report import magnitudes

LAM_AUTO = 0.05
N_NORM_SAMPLES = 8
POWER_ITERATIONS = 50


#: Relative residual of the implicit backward solve in training (or ``cg_tol`` if larger):
#: 6 iterations instead of 10 on MRI phantoms, a gradient within 4 % of the exact one
#: where mini-batch gradients scatter by 20 % (benchmarks/bench_unrolled_gradient.py).
BACKWARD_TOL = 0.1


def cg_tolerance(cg_tol, dtype, autocast=None):
    """``cg_tol`` with ``'auto'`` resolved: the square root of the dtype's epsilon, or an
    eighth of the epsilon of a low-precision denoiser (``autocast``) if larger: bf16
    rounds its output to 2**-8 relative, so solving below ~1e-3 refines noise."""
    if cg_tol != "auto":
        return float(cg_tol)
    tol = math.sqrt(torch.finfo(dtype).eps)
    return tol if autocast is None else max(tol, torch.finfo(autocast).eps / 8)


def lam_parameters(lam, method, norm_squared):
    r"""``(initial softplus value, scale)`` of :math:`\lambda`: the module's weight is
    ``scale * softplus(raw)`` (``softplus(raw) / scale`` as DBP's penalty). A given number
    is used as it is (scale 1); ``'auto'`` is :data:`LAM_AUTO` in units of
    :math:`\|A\|^2`."""
    if lam != "auto":
        return float(lam), 1.0
    return LAM_AUTO, max(float(norm_squared), 1e-30)


def per_sample_norm_squared(normal, like, n_iter=POWER_ITERATIONS):
    r"""Median over a batch of :math:`\|A_i\|^2`, the largest eigenvalue of each sample's
    :math:`A_i^H A_i`, by power iteration in float64 from a fixed seed.

    ``normal`` applies the batch's normal operators to a tensor shaped like ``like``.
    """
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(like.shape, generator=generator, dtype=torch.float64)
    x = real.to(like.device)
    if like.is_complex():
        imag = torch.randn(like.shape, generator=generator, dtype=torch.float64)
        x = torch.complex(real, imag).to(like.device)
    axes = tuple(range(1, x.dim()))
    value = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for _ in range(n_iter):
            norms = torch.linalg.vector_norm(x, dim=axes, keepdim=True).clamp_min(1e-300)
            x = normal(x / norms)
            value = torch.linalg.vector_norm(x, dim=axes)
    return float(value.median())


def operator_norm_squared(est, data):
    r""":math:`\|A\|^2` of a fit: the operator's own cached norm, or, when the data carry
    per-sample maps or masks, the median over the first :data:`N_NORM_SAMPLES`
    training samples."""
    if data.get("maps") is None and data.get("masks") is None:
        owner = est.operator_ if est.operator is None or isinstance(
            est.operator, str) else est.operator  # cached on the user's operator
        return owner.norm(n_iter=POWER_ITERATIONS) ** 2
    _, chunk = next(iter(est._validated_chunks(data, size=N_NORM_SAMPLES)))
    tensors = est._to_tensors({k: chunk[k] for k in ("X", "maps", "masks")
                               if chunk.get(k) is not None})
    tensors = {k: v.double() for k, v in tensors.items()}
    operator = copy.deepcopy(est.operator_).to(est.device_, torch.float64)
    params = est._params(tensors)
    with torch.no_grad():
        like = operator.adjoint(est._to_complex(tensors["X"], est._kspace_shape), **params)
    return per_sample_norm_squared(lambda v: operator.normal(v, **params), like)


#: Weight of the newest epoch's validation PSNR in the running average that early
#: stopping, the plateau schedule and the best weights follow: per-image PSNRs of a few
#: dozen natural images scatter by ~0.5 dB from one epoch to the next, so the raw score's
#: record stalls while the trend still rises (deblurring photographs at the defaults:
#: 33.95 dB after 14 epochs on the raw score, 35.08 after 38 on the average).
VALIDATION_SMOOTHING = 0.3

#: What ``lr_schedule='plateau'`` multiplies the rate by when the averaged validation
#: PSNR stalls (torch's default is 0.1). Two stalled epochs of a noisy score are weak
#: evidence; a tenth of the rate then freezes training (deblurring photographs with a
#: model trained on ``make_textured_images``, seed 1: 34.19 dB after 31 epochs with 0.1,
#: 35.08 after 40 with 0.5).
PLATEAU_FACTOR = 0.5

#: The rules of the estimator's data-dependent defaults of shared parameters, as first
#: lines of their descriptions (``doc_defaults``).
DOC_NOTES = {
    "tol": (
        "        'auto': 0.02 dB of validation PSNR (0.5 % of its squared error) for both\n"
        "        ``early_stopping`` and ``lr_schedule='plateau'``; 1e-4 of the training\n"
        "        loss without validation. Otherwise:\n"),
    "early_stopping": (
        "        'auto': ``True`` when ``validation_fraction`` of the training data holds at\n"
        "        least 10 samples (the validation score is the PSNR of the held-out\n"
        "        images), so that a long fit stops when it stops improving; ``False`` for\n"
        "        smaller data. Otherwise:\n"),
    "lr_schedule": (
        "        'plateau' halves the rate here (where the text below says 10) when the\n"
        "        averaged validation PSNR stalls: two stalled epochs of a noisy score are\n"
        "        weak evidence, and a tenth of the rate freezes training.\n"),
}

#: Training samples whose peaks give the signal scale (the first ones: cheap on lazy data).
N_SCALE_SAMPLES = 256


def signal_scale(est, data):
    r"""The images' typical peak magnitude :math:`s`: the median over the first
    :data:`N_SCALE_SAMPLES` training references of each one's largest :math:`|x|`.

    The denoiser sees :math:`x / s` and its output is multiplied by :math:`s`. Every other
    step of the schemes is linear in the data, so images and measurements in any units
    (:math:`x \to c x`, :math:`y \to c y`) give the reconstruction of the same data in
    units of :math:`s`, times :math:`c`. Images scaled to a peak of 1 (the package's
    generators) get :math:`s = 1`, the scale the denoisers are initialised for. 1 when the
    references are all zero."""
    _, chunk = next(iter(est._validated_chunks(data, size=N_SCALE_SAMPLES)))
    y = np.asarray(chunk["y"], dtype=np.float64).reshape(len(chunk["y"]), -1)
    if not est._real_data:  # real and imaginary parts
        y = magnitudes(y)
    peak = float(np.median(np.abs(y).max(axis=1))) if y.size else 0.0
    return peak if np.isfinite(peak) and peak > 0 else 1.0


def noise_radius(est, data):
    """Mean norm of the measured noise ``||A x - y||`` over the training pairs (read in
    chunks, in memory or lazy alike): the data-consistency radius of 'dbp'."""
    operator = copy.deepcopy(est.operator_).to(est.device_, torch.float64)
    norms = []
    for _, chunk in est._validated_chunks(data):
        tensors = est._to_tensors({k: v for k, v in chunk.items() if v is not None})
        with torch.no_grad():
            images = est._to_complex(tensors["y"].double(), est.image_shape_)
            kspace = est._to_complex(tensors["X"].double(), est._kspace_shape)
            residual = operator.forward(images, **est._params(tensors)) - kspace
        norms.append(residual.abs().pow(2).reshape(len(images), -1).sum(dim=1).sqrt())
    return float(torch.cat(norms).mean())


def least_squares_operator(X, y):
    r"""``operator='lstsq'``: the dense :math:`A` minimising :math:`\|X - y A^\top\|_F`
    over the training pairs, as a :class:`~skinverse.operators.MatrixOperator`. Warns
    when the training signals span fewer dimensions than they have: :math:`A` is then
    blind to the others and the reconstruction there is the denoiser's guess."""
    solution, _, rank, _ = np.linalg.lstsq(y, X, rcond=None)
    if rank < y.shape[1]:
        warnings.warn(
            f"operator='lstsq': the training signals y span {rank} of their {y.shape[1]} "
            "dimensions, so the learned operator sees nothing of the others and the "
            "reconstruction there is the denoiser's guess. Pass more (or more varied) "
            "training pairs, or the true operator=.", UserWarning, stacklevel=5)
    return MatrixOperator(solution.T)


__all__ = ["BACKWARD_TOL", "DOC_NOTES", "LAM_AUTO", "N_SCALE_SAMPLES", "PLATEAU_FACTOR",
           "VALIDATION_SMOOTHING",
           "cg_tolerance", "lam_parameters", "least_squares_operator", "noise_radius",
           "operator_norm_squared", "per_sample_norm_squared", "signal_scale"]
