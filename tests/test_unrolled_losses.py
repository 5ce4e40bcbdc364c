"""Training losses of UnrolledRegressor against their references."""

import numpy as np
import pytest
import torch

from skinverse.datasets import make_mri_data, make_phantoms
from skinverse.metrics import ssim
from skinverse.unrolled import UnrolledRegressor
from skinverse.unrolled._losses import LOSSES, per_sample_loss, ssim_per_sample


@pytest.mark.parametrize("shape", [(20, 17), (40,)])
def test_differentiable_ssim_equals_the_metric(shape):
    rng = np.random.RandomState(0)
    truth = rng.uniform(size=(3, *shape))
    pred = truth + 0.1 * rng.normal(size=truth.shape)
    peak = np.ptp(truth.reshape(3, -1), axis=1)
    ours = ssim_per_sample(torch.tensor(truth), torch.tensor(pred), torch.tensor(peak))
    reference = [ssim(truth[i].reshape(1, -1), pred[i].reshape(1, -1),
                      image_shape=shape if len(shape) > 1 else None) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-12)


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_gradients_match_finite_differences(kind):
    rng = np.random.RandomState(1)
    truth = torch.tensor(rng.normal(size=(2, 2 * 6 * 5)))
    pred = (truth + 0.3 * torch.tensor(rng.normal(size=truth.shape))).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p: per_sample_loss(kind, p, truth, (6, 5)).sum(), (pred,), eps=1e-6,
        atol=1e-6)


@pytest.mark.parametrize("kind", ["l1", "ssim", "ssim+l1"])
def test_losses_are_free_of_the_images_scale(kind):
    rng = np.random.RandomState(2)
    truth = torch.tensor(rng.normal(size=(2, 2 * 8 * 8)))
    pred = truth + 0.2 * torch.tensor(rng.normal(size=truth.shape))
    base = per_sample_loss(kind, pred, truth, (8, 8))
    np.testing.assert_allclose(per_sample_loss(kind, 1e3 * pred, 1e3 * truth, (8, 8)), base,
                               rtol=1e-9)
    assert torch.all(per_sample_loss(kind, truth, truth, (8, 8)) < 1e-9)


def test_an_ssim_trained_model_trains_and_the_loss_is_recorded():
    X, y, maps, masks = make_mri_data(make_phantoms(12, 16, random_state=0), n_coils=2,
                                      random_state=0)
    params = dict(max_epochs=3, width=4, depth=2, n_unrolls=2, random_state=0, device="cpu")
    est = UnrolledRegressor(loss="ssim+l1", **params).fit(X, y, maps=maps, masks=masks)
    assert 0 < est.loss_curve_[-1] < est.loss_curve_[0] < 1  # 1 - SSIM and L1/R: below 1
    with pytest.raises(ValueError, match="loss"):
        UnrolledRegressor(loss="psnr", **params).fit(X, y, maps=maps, masks=masks)
