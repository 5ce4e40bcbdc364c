r"""Summaries and their derivatives :math:`\partial t/\partial\theta` in one pass for the
default networks, by the chain rule written out instead of forward-mode autograd.

For data :math:`x` with derivatives :math:`\partial x/\partial\theta_k`, the
derivatives of the summaries are Jacobian-vector products of the network. The default
networks compute them alongside the summaries: an MLP pushes the tangents through each
linear layer (:math:`W\,\dot h`) and activation (:math:`\phi'(z)\odot\dot z`), all
parameters at once as a batch of tangents; the interpolated deep-sets network takes
the slope of its interval (:class:`~skinverse.imnn._networks.ElementwiseSum`). Both
keep the primal computed once (``torch.func.jvp`` over the parameters repeats it) and
stay differentiable in the weights. Other networks (a user's ``model``) go through
``torch.func.jvp``.

:func:`prepare` does once what depends on the data only (standardisation, and for the
deep-sets network the knot interval of each entry), so a fixed set (the validation
simulations) is prepared once per fit.
"""

import torch
from torch import nn

from ._networks import ElementwiseSum

_ACTIVATIONS = (nn.SiLU, nn.Tanh, nn.ReLU)


def supports_tangents(module):
    """True for the networks this module differentiates by hand."""
    if isinstance(module, ElementwiseSum):
        return module.interpolates()
    return isinstance(module, nn.Sequential) and len(module) > 0 and all(
        isinstance(layer, (nn.Linear, nn.Identity, *_ACTIVATIONS)) for layer in module)


def _activation_with_tangent(layer, z, dz):
    if isinstance(layer, nn.SiLU):
        s = torch.sigmoid(z)
        return z * s, dz * (s * (1 + z * (1 - s))).unsqueeze(1)
    if isinstance(layer, nn.Tanh):
        h = torch.tanh(z)
        return h, dz * (1 - h * h).unsqueeze(1)
    return torch.relu(z), dz * (z > 0).to(dz.dtype).unsqueeze(1)


def sequential_with_tangents(module, x, tangents):
    r"""Outputs of a sequence of linear layers and activations, and their derivatives.

    Parameters
    ----------
    module : torch.nn.Sequential
        Linear layers and SiLU, tanh or ReLU activations.
    x : Tensor of shape (n, n_features)
    tangents : Tensor of shape (m, n_features, n_params), m <= n
        :math:`\partial x/\partial\theta` of the first m rows of ``x``.

    Returns
    -------
    t : Tensor of shape (n, n_outputs)
    dt : Tensor of shape (m, n_outputs, n_params)
    """
    m = len(tangents)
    head, dh = x[:m], tangents.transpose(1, 2)  # (m, n_params, n_features)
    for layer in module:
        if isinstance(layer, nn.Linear):
            head = layer(head)
            dh = dh @ layer.weight.T
        elif not isinstance(layer, nn.Identity):
            head, dh = _activation_with_tangent(layer, head, dh)
    t = head if m == len(x) else torch.cat([head, module(x[m:])])
    return t, dh.transpose(1, 2)


def prepare(module, x):
    """What the network needs of standardised ``x`` that does not depend on its weights:
    the knot intervals for the deep-sets network, ``x`` itself otherwise."""
    if isinstance(module, ElementwiseSum):
        return module.locate(x)
    return x


def with_tangents(module, prepared, tangents):
    """Summaries of prepared data and the derivatives of its first ``len(tangents)``
    rows (``tangents`` already in the network's input units)."""
    if isinstance(module, ElementwiseSum):
        return module.from_located(prepared, tangents)
    return sequential_with_tangents(module, prepared, tangents)


def outputs(module, prepared):
    """Summaries of prepared data."""
    if isinstance(module, ElementwiseSum):
        return module.from_located(prepared)[0]
    return module(prepared)
