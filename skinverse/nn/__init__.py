"""Network backbones (torch only)."""

from ._mlp import MLP
from ._recurrent import ConvGRUCell, RecurrentConvNet, RecurrentDenseNet

__all__ = ["MLP", "ConvGRUCell", "RecurrentConvNet", "RecurrentDenseNet"]
