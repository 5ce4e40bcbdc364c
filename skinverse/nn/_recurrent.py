"""Recurrent backbones: a convolutional GRU cell (1-D/2-D/3-D), a multiscale convolutional
recurrent network (Hourglass or U-Net) and a dense GRU network."""

import torch
from torch import nn
from torch.nn import functional as F

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvGRUCell(nn.Module):
    r"""Convolutional GRU: the gates of :class:`torch.nn.GRUCell` computed by convolutions.

    .. math::

        z = \sigma(W_z * [x, h]),\quad r = \sigma(W_r * [x, h]),\quad
        h' = (1 - z) \odot h + z \odot \tanh(W_h * [x, r \odot h])

    Parameters
    ----------
    dim : {1, 2, 3}
        Spatial dimensionality.
    in_channels, hidden_channels : int
        Channels of the input and of the memory.
    kernel_size : int, default=3
        Odd kernel size ('same' padding keeps any input size, odd sizes included).
    """

    def __init__(self, dim, in_channels, hidden_channels, kernel_size=3):
        super().__init__()
        conv = _CONV[dim]
        pad = kernel_size // 2
        self.hidden_channels = hidden_channels
        self.gates = conv(in_channels + hidden_channels, 2 * hidden_channels, kernel_size,
                          padding=pad)
        self.candidate = conv(in_channels + hidden_channels, hidden_channels, kernel_size,
                              padding=pad)

    def forward(self, x, h=None):
        if h is None:
            h = x.new_zeros((x.shape[0], self.hidden_channels, *x.shape[2:]))
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * candidate


class RecurrentConvNet(nn.Module):
    """A multiscale convolutional recurrent network for RIM updates.

    ``depth`` levels, each halving the size (stride-2 convolution) and doubling the width,
    with a :class:`ConvGRUCell` memory at every level. The decoder upsamples by
    interpolation to the exact size of the level above, so any input size works (odd
    sizes too). With ``skip=True`` it is a U-Net (encoder features concatenated into the
    decoder); with ``skip=False`` an Hourglass.

    Parameters
    ----------
    dim : {1, 2, 3}
        Spatial dimensionality.
    in_channels, out_channels : int
        Channels of the input and of the update.
    width : int, default=32
        Channels at the finest level.
    depth : int, default=2
        Number of scales.
    skip : bool, default=True
        U-Net skip connections.

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import RecurrentConvNet
    >>> net = RecurrentConvNet(2, 3, 1, width=8, depth=2)
    >>> out, memory = net(torch.zeros(4, 3, 9, 7))
    >>> out.shape
    torch.Size([4, 1, 9, 7])
    """

    def __init__(self, dim, in_channels, out_channels, width=32, depth=2, skip=True):
        super().__init__()
        conv = _CONV[dim]
        widths = [width * 2**level for level in range(depth)]
        self.skip = skip
        self.stem = conv(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(
            conv(widths[i - 1], widths[i], 3, stride=2, padding=1) for i in range(1, depth)
        )
        self.memory = nn.ModuleList(ConvGRUCell(dim, w, w) for w in widths)
        self.up = nn.ModuleList(
            conv(widths[i], widths[i - 1], 3, padding=1) for i in range(1, depth)
        )
        self.merge = nn.ModuleList(
            conv(2 * widths[i - 1], widths[i - 1], 3, padding=1) for i in range(1, depth)
        ) if skip else None
        self.head = conv(widths[0], out_channels, 3, padding=1)

    def forward(self, x, memory=None):
        memory = memory or [None] * len(self.memory)
        features = F.relu(self.stem(x))
        skips, new_memory = [], []
        for level, cell in enumerate(self.memory):
            if level > 0:
                features = F.relu(self.down[level - 1](features))
            features = cell(features, memory[level])
            new_memory.append(features)
            skips.append(features)
        for level in range(len(self.memory) - 1, 0, -1):
            target = skips[level - 1]
            features = F.interpolate(features, size=target.shape[2:], mode="nearest")
            features = F.relu(self.up[level - 1](features))
            if self.skip:
                features = F.relu(self.merge[level - 1](torch.cat([features, target], dim=1)))
        return self.head(features), new_memory


class RecurrentDenseNet(nn.Module):
    """Two stacked GRU cells between a linear encoder and decoder, for 1-D signals.

    Both memories are carried from one step to the next.

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import RecurrentDenseNet
    >>> out, memory = RecurrentDenseNet(12, 4, hidden_size=16)(torch.zeros(5, 12))
    >>> out.shape
    torch.Size([5, 4])
    """

    def __init__(self, in_features, out_features, hidden_size=64):
        super().__init__()
        self.encode = nn.Linear(in_features, hidden_size)
        self.cells = nn.ModuleList([nn.GRUCell(hidden_size, hidden_size),
                                    nn.GRUCell(hidden_size, hidden_size)])
        self.decode = nn.Linear(hidden_size, out_features)

    def forward(self, x, memory=None):
        memory = memory or [None] * len(self.cells)
        features = F.relu(self.encode(x))
        new_memory = []
        for cell, h in zip(self.cells, memory):
            features = cell(features, h)
            new_memory.append(features)
        return self.decode(features), new_memory
