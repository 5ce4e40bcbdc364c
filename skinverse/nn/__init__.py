"""Network backbones (torch only)."""

from ._recurrent import ConvGRUCell, RecurrentConvNet, RecurrentDenseNet

__all__ = ["ConvGRUCell", "RecurrentConvNet", "RecurrentDenseNet"]
