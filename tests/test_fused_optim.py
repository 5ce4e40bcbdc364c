"""The loop's fused Adam/AdamW: ``lean_step`` is torch's fused step, bit for bit."""

import pickle
import types

import numpy as np
import pytest
import torch

from skinverse._base._fused import FusedAdam, FusedAdamW, optimizer_step
from skinverse._base._optim import _FUSED_OPTIMIZERS

pytestmark = pytest.mark.skipif(not _FUSED_OPTIMIZERS, reason="fused CPU optimisers: torch>=2.4")


def _params(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g))
            for shape in ((7, 5), (5,), (3, 7))]


def _grads(step, params):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) for p in params]


@pytest.mark.parametrize("lean_cls, torch_cls, options", [
    (FusedAdam, torch.optim.Adam, {}),
    (FusedAdam, torch.optim.Adam, {"weight_decay": 0.1}),
    (FusedAdamW, torch.optim.AdamW, {"weight_decay": 0.1}),
])
def test_lean_step_is_torchs_fused_step_bit_for_bit(lean_cls, torch_cls, options):
    ours, theirs = _params(0), _params(0)
    lean = lean_cls(ours, lr=1e-2, fused=True, **options)
    reference = torch_cls(theirs, lr=1e-2, fused=True, **options)
    full_steps, torch_step = [], lean.step
    # counts torch's own path (a bound method: the scheduler wraps it)
    lean.step = types.MethodType(lambda self: full_steps.append(1) or torch_step(), lean)
    scheduler = torch.optim.lr_scheduler.StepLR(lean, step_size=2, gamma=0.5)
    ref_scheduler = torch.optim.lr_scheduler.StepLR(reference, step_size=2, gamma=0.5)
    for step in range(6):
        for params, opt in ((ours, lean), (theirs, reference)):
            opt.zero_grad(set_to_none=True)
            assert all(p.grad is None for p in params)
            for p, grad in zip(params, _grads(step, params)):
                p.grad = grad
        optimizer_step(lean)
        reference.step()
        scheduler.step()  # no "scheduler before optimizer" warning: filterwarnings=error
        ref_scheduler.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)
    assert full_steps == [1]  # the first step initialises the state; the others are lean
    assert lean.param_groups[0]["lr"] == reference.param_groups[0]["lr"] == 1e-2 / 8
    for a, b in zip(ours, theirs):  # the state too: a resumed fit continues identically
        assert torch.equal(lean.state[a]["exp_avg_sq"], reference.state[b]["exp_avg_sq"])
        assert float(lean.state[a]["step"]) == 6


def test_lean_step_falls_back_where_torch_does_more():
    """A parameter without a gradient is skipped, a hook runs, amsgrad is honoured: each
    through torch's own step, with torch's result."""
    ours, theirs = _params(1), _params(1)
    lean, reference = (FusedAdam(ps, lr=1e-2, fused=True, amsgrad=True) for ps in (ours, theirs))
    calls = []
    lean.register_step_post_hook(lambda *args: calls.append(1))
    for step in range(3):
        for params in (ours, theirs):
            for p, grad in zip(params, _grads(step, params)):
                p.grad = None if (step == 1 and p.dim() == 1) else grad
        optimizer_step(lean)
        reference.step()
    assert calls == [1, 1, 1]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_fused_optimizer_pickles_and_loads_a_torch_state_dict():
    params = _params(2)
    lean = FusedAdam(params, lr=1e-3, fused=True)
    for p, grad in zip(params, _grads(0, params)):
        p.grad = grad
    lean.lean_step()
    clone = pickle.loads(pickle.dumps(lean))
    reference = torch.optim.Adam(_params(2), lr=1e-3, fused=True)
    reference.load_state_dict(lean.state_dict())
    np.testing.assert_array_equal(clone.state_dict()["state"][0]["exp_avg"],
                                  reference.state_dict()["state"][0]["exp_avg"])


def test_a_fit_with_the_lean_step_is_the_fit_with_torchs_step(monkeypatch):
    """Through the whole loop (a scheduler, early stopping's best weights): the same model."""
    from sklearn.datasets import load_digits

    from skinverse._base import _fused, _loop
    from skinverse.utils._testing import TorchMLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    y = y[:300]
    params = dict(hidden_layer_sizes=(16,), max_epochs=4, batch_size=50, random_state=0,
                  device="cpu", lr_schedule="cosine", early_stopping=True)
    lean = TorchMLPClassifier(**params).fit(X, y)
    assert isinstance(lean.optimizer_, _fused.FusedAdam)
    taken = []
    monkeypatch.setattr(_loop, "optimizer_step", lambda opt: taken.append(1) or opt.step())
    monkeypatch.setattr(_fused._LeanStep, "zero_grad", torch.optim.Optimizer.zero_grad)
    reference = TorchMLPClassifier(**params).fit(X, y)
    assert taken  # the patched loop ran torch's step
    for a, b in zip(lean.module_.parameters(), reference.module_.parameters()):
        assert torch.equal(a, b)
