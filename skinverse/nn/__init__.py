"""Network backbones (torch only)."""

from ._denoisers import DnCNN, ResNetDenoiser, UNet
from ._mlp import MLP
from ._recurrent import ConvGRUCell, RecurrentConvNet, RecurrentDenseNet

__all__ = [
    "MLP",
    "ConvGRUCell",
    "DnCNN",
    "RecurrentConvNet",
    "RecurrentDenseNet",
    "ResNetDenoiser",
    "UNet",
]
