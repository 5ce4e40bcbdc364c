"""Randomness from ``random_state``: a local :class:`torch.Generator`, never global seeding."""

import math

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn


def make_generator(random_state):
    """A CPU :class:`torch.Generator` seeded from a sklearn ``random_state``.

    An int seeds it directly; a :class:`numpy.random.RandomState` is drawn from (as
    sklearn does); ``None`` takes fresh entropy without touching any global RNG.
    """
    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    elif isinstance(random_state, (int, np.integer)):
        seed = int(random_state)
    else:
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed % (2**63))
    return generator


def build_module_isolated(factory):
    """Call ``factory()`` without advancing the user's global torch RNG.

    Module constructors draw their default initialisation from the global RNG; forking it
    keeps the user's RNG state exactly as it was. The weights drawn there are replaced by
    :func:`init_parameters`.
    """
    with torch.random.fork_rng(devices=[]):
        return factory()


def _uniform_(tensor, bound, generator):
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def _fan_in(tensor):
    if tensor.dim() < 2:
        return tensor.numel()
    return tensor.shape[1] * math.prod(tensor.shape[2:])


def _init_default(module, generator):
    """PyTorch's default initialisation, drawn from ``generator``."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
        for param in module.parameters(recurse=False):
            _uniform_(param, bound, generator)
        return
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        module.reset_parameters()  # deterministic: ones and zeros
        return
    if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
        # ConvTranspose stores (in, out, ...): torch's own fan computation handles both.
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if isinstance(bias, nn.Parameter):
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
            _uniform_(bias, 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0, generator)
        return
    if isinstance(module, nn.Embedding):
        with torch.no_grad():
            module.weight.normal_(generator=generator)
        return
    for param in module.parameters(recurse=False):
        _uniform_(param, 1.0 / math.sqrt(max(_fan_in(param), 1)), generator)


def init_parameters(module, generator):
    """Re-initialise every parameter of ``module`` from ``generator``.

    A module that defines ``reset_parameters_with(generator)`` takes control of the
    initialisation of its whole subtree; known torch layers get PyTorch's defaults; any
    other parameter is drawn uniformly in ``+-1/sqrt(fan_in)``.
    """
    custom = getattr(module, "reset_parameters_with", None)
    if callable(custom):
        custom(generator)
        return module
    if any(True for _ in module.parameters(recurse=False)):
        _init_default(module, generator)
    for child in module.children():
        init_parameters(child, generator)
    return module


def shared_seed(random_state):
    """``random_state`` as every data-parallel rank will see it.

    Under ``torch.distributed`` with ``random_state=None``, rank 0 draws the seed and
    broadcasts it, so every rank starts from the same weights; otherwise the value is
    returned unchanged.
    """
    from ._distributed import world

    if random_state is not None or world()[1] == 1:
        return random_state
    seed = torch.tensor([int(np.random.SeedSequence().generate_state(1)[0])], dtype=torch.int64)
    if torch.distributed.get_backend() == "nccl":
        seed = seed.cuda()
    torch.distributed.broadcast(seed, src=0)
    return int(seed.item())
