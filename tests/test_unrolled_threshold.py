"""UnrolledRegressor's output threshold, its in-place validation split and its default
precision, against their references."""

import numpy as np
import pytest
import torch

from skinverse._base import _device
from skinverse._base._device import autocast_dtype
from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.metrics import ssim
from skinverse.unrolled import UnrolledRegressor
from skinverse.unrolled._losses import per_sample_loss
from skinverse.unrolled._threshold import GRID, MIN_GAIN, soft_threshold

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
SMALL = dict(n_unrolls=2, width=4, depth=1, max_epochs=3, learning_rate=1e-2,
             random_state=0, device="cpu")


@pytest.fixture(scope="module")
def mri():
    return make_mri_data(make_phantoms(30, 16, random_state=0), n_coils=2, acceleration=2,
                         noise_std=0.03, random_state=0)


def test_soft_threshold_is_the_proximal_map_of_the_l1_norm():
    """argmin_x |x - z|^2 / 2 + tau |x| (complex z): by brute force on a fine grid."""
    z = torch.tensor([0.3 + 0.4j, -0.05 + 0.02j, 2.0 - 1.0j, 0j], dtype=torch.complex128)
    tau = 0.2
    got = soft_threshold(z, tau)
    r = np.linspace(0, 3, 30001)
    for zi, gi in zip(z.numpy(), got.numpy()):
        phase = zi / abs(zi) if abs(zi) else 1.0  # the minimiser keeps the phase
        objective = 0.5 * np.abs(r * phase - zi) ** 2 + tau * r
        np.testing.assert_allclose(gi, r[np.argmin(objective)] * phase, atol=2e-4)
    real = soft_threshold(torch.tensor([-1.0, 0.1, 0.5]), 0.2)
    np.testing.assert_allclose(real, [-0.8, 0.0, 0.3], atol=1e-7)


def test_auto_threshold_is_the_grid_minimum_of_the_training_loss(mri):
    """Without a validation split the threshold minimises the mean loss of the training
    images over the grid values that do not lower their PSNR: recomputed here from the
    unthresholded model's predictions."""
    X, y, maps, masks = mri
    args = dict(maps=maps, masks=masks)
    auto = UnrolledRegressor(early_stopping=False, **SMALL).fit(X, y, **args)
    off = UnrolledRegressor(early_stopping=False, output_threshold=0, **SMALL).fit(X, y,
                                                                                   **args)
    assert off.output_threshold_ == 0.0 and auto.output_threshold_ > 0
    raw = torch.as_tensor(off.predict(X, **args))
    images = torch.complex(*raw.reshape(len(raw), 2, 16, 16).unbind(1))
    magnitude = np.sqrt(y[:, :256] ** 2 + y[:, 256:] ** 2)
    scale = np.median(magnitude.max(axis=1))
    truth = torch.as_tensor(y)

    def loss_and_psnr(tau):
        shrunk = soft_threshold(images, tau)
        flat = torch.cat([shrunk.real.reshape(len(raw), -1), shrunk.imag.reshape(len(raw), -1)],
                         dim=1)
        loss = float(per_sample_loss("ssim+l1", flat, truth, (16, 16)).mean())
        return loss, off._psnr(y, flat.numpy())  # the estimator's score

    losses, psnrs = np.array([loss_and_psnr(scale * q) for q in GRID]).T
    allowed = psnrs >= psnrs[0] - 1e-6  # the threshold may not lower the PSNR
    best = np.argmin(np.where(allowed, losses, np.inf))
    assert losses[best] < (1 - MIN_GAIN) * losses[0] and psnrs[best] >= psnrs[0] - 1e-6
    assert auto.output_threshold_ == pytest.approx(scale * GRID[best], rel=1e-5)
    # the thresholded predictions are the unthresholded ones, shrunk
    pred = auto.predict(X, **args)
    shrunk = soft_threshold(images, auto.output_threshold_)
    np.testing.assert_allclose(pred[:, :256], shrunk.real.reshape(len(raw), -1), atol=1e-5)
    t = magnitude
    p_auto = np.sqrt(pred[:, :256] ** 2 + pred[:, 256:] ** 2)
    p_off = np.abs(images.numpy()).reshape(len(raw), -1)
    assert ssim(t, p_auto, image_shape=(16, 16)) > ssim(t, p_off, image_shape=(16, 16))


def test_a_threshold_that_gains_less_than_min_gain_is_not_kept(mri, monkeypatch):
    """The same fit as above with the bar raised above the gain: no threshold."""
    from skinverse.unrolled import _threshold

    X, y, maps, masks = mri
    monkeypatch.setattr(_threshold, "MIN_GAIN", 0.99)
    est = UnrolledRegressor(early_stopping=False, **SMALL).fit(X, y, maps=maps, masks=masks)
    assert est.output_threshold_ == 0.0


def test_threshold_is_off_for_cg_sense_and_a_given_value_is_kept(mri):
    X, y, maps, masks = mri
    args = dict(maps=maps, masks=masks)
    sense = UnrolledRegressor(method="cg-sense", max_epochs=1).fit(X, y, **args)
    assert sense.output_threshold_ == 0.0
    fixed = UnrolledRegressor(output_threshold=0.05, **SMALL).fit(X, y, **args)
    assert fixed.output_threshold_ == 0.05 == fixed.module_.output_threshold
    with pytest.raises(ValueError, match="output_threshold"):
        UnrolledRegressor(output_threshold=-1.0).fit(X, y, **args)


def test_in_place_validation_split_gives_the_model_of_a_copied_split(mri, monkeypatch):
    """The split keeps row indices into the whole tensors instead of copies of them; the
    batches hold the same values, so the fitted model is the same, bit for bit."""
    X, y, maps, masks = mri
    args = dict(maps=maps, masks=masks)
    fits = []
    for in_place in (True, False):
        monkeypatch.setattr(UnrolledRegressor, "_split_in_place", in_place)
        est = UnrolledRegressor(early_stopping=True, validation_fraction=0.2,
                                mixed_precision=None, **SMALL).fit(X, y, **args)
        fits.append((est.predict(X, **args), est.validation_scores_, est.loss_curve_))
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    assert fits[0][1] == fits[1][1] and fits[0][2] == fits[1][2]


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype(None, cpu, torch.float32) is None
    assert autocast_dtype("fp16", cpu, torch.float32) is torch.float16
    assert autocast_dtype("auto", cpu, torch.float64) is None  # float64 stays exact
    for native in (False, True):
        monkeypatch.setattr(_device.torch.ops.mkldnn, "_is_mkldnn_bf16_supported",
                            lambda native=native: native)
        expected = torch.bfloat16 if native else None
        assert autocast_dtype("auto", cpu, torch.float32) is expected
