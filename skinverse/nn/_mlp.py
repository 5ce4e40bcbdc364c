"""Multilayer perceptron."""

from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """A multilayer perceptron: linear layers with an activation between them.

    Parameters
    ----------
    in_features, out_features : int
    hidden_layer_sizes : tuple of int
    activation : {'relu', 'silu', 'tanh', 'gelu'}, default='relu'

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import MLP
    >>> MLP(4, (8, 8), 2, activation="silu")(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, in_features, hidden_layer_sizes, out_features, activation="relu"):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{activation!r}.")
        layers, width = [], in_features
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
            width = size
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
