"""Image denoisers for unrolled reconstruction: ResNet, DnCNN and U-Net (2-D, any size).

Each maps (batch, channels, H, W) to the same shape and learns a residual: the output is
the input plus a correction, so an untrained network starts close to the identity.
"""

import torch
from torch import nn
from torch.nn import functional as F


class ResNetDenoiser(nn.Module):
    """Residual blocks ``x + conv(relu(conv(x)))`` between an input and an output convolution.

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import ResNetDenoiser
    >>> ResNetDenoiser(2, width=8, n_blocks=2)(torch.zeros(1, 2, 9, 7)).shape
    torch.Size([1, 2, 9, 7])
    """

    def __init__(self, channels, width=32, n_blocks=4):
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=1))
            for _ in range(n_blocks)
        )
        self.tail = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x):
        features = self.head(x)
        for block in self.blocks:
            features = features + block(features)
        return x + self.tail(features)


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017) without batch normalisation (so a sample's output does not
    depend on its batch): ``depth`` convolutions predicting the residual.

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import DnCNN
    >>> DnCNN(2, width=8, depth=4)(torch.zeros(1, 2, 8, 8)).shape
    torch.Size([1, 2, 8, 8])
    """

    def __init__(self, channels, width=32, depth=8):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


class UNet(nn.Module):
    """A U-Net with ``depth`` scales; upsampling by interpolation to the exact skip size, so
    odd sizes work.

    Examples
    --------
    >>> import torch
    >>> from skinverse.nn import UNet
    >>> UNet(2, width=4, depth=3)(torch.zeros(1, 2, 11, 9)).shape
    torch.Size([1, 2, 11, 9])
    """

    def __init__(self, channels, width=32, depth=3):
        super().__init__()
        widths = [width * 2**i for i in range(depth)]

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

        self.down = nn.ModuleList(
            block(channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)
        )
        self.up = nn.ModuleList(block(widths[i] + widths[i - 1], widths[i - 1])
                                for i in range(depth - 1, 0, -1))
        self.tail = nn.Conv2d(widths[0], channels, 1)

    def forward(self, x):
        skips, features = [], x
        for i, block in enumerate(self.down):
            if i > 0:
                features = F.max_pool2d(features, 2, ceil_mode=True)
            features = block(features)
            skips.append(features)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            features = F.interpolate(features, size=skip.shape[2:], mode="nearest")
            features = block(torch.cat([features, skip], dim=1))
        return x + self.tail(features)
