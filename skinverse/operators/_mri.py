r"""MRI forward models: single-coil subsampled Fourier and multi-coil SENSE.

Images are complex tensors of shape (batch, H, W), k-space (batch, H, W) or
(batch, n_coils, H, W); the Fourier transform is centred and orthonormal, so
:math:`F^H = F^{-1}`. Masks and coil maps may be fixed at construction or given per sample
as keyword arguments of ``forward``/``adjoint`` (``mask=(batch, H, W)``,
``maps=(batch, n_coils, H, W)``).
"""

import functools
import weakref

import torch

from ._base import LinearOperator


@functools.lru_cache(maxsize=32)
def _checkerboard(H, W, device, dtype):
    """:math:`(-1)^{m+n}` on an H x W grid: a shift by half the size in the other domain."""
    m, n = torch.arange(H, device=device), torch.arange(W, device=device)
    return (1 - 2 * ((m[:, None] + n[None, :]) % 2)).to(dtype)


def _centred(transform, x):
    r"""``fftshift(transform(ifftshift(x)))`` over the last two axes. For even sizes the
    shifts are checkerboard modulations, :math:`\pm C \odot F(C \odot x)`, one
    multiplication each instead of two copies (``roll``); odd sizes shift."""
    H, W = x.shape[-2:]
    if H % 2 or W % 2:
        x = torch.fft.ifftshift(x, dim=(-2, -1))
        return torch.fft.fftshift(transform(x, norm="ortho"), dim=(-2, -1))
    board = _checkerboard(H, W, x.device, x.real.dtype if x.is_complex() else x.dtype)
    out = transform(x * board, norm="ortho") * board
    return out if (H // 2 + W // 2) % 2 == 0 else -out


def fft2c(x):
    """Centred orthonormal 2-D FFT over the last two axes (any size, odd too)."""
    return _centred(torch.fft.fft2, x)


def ifft2c(k):
    """Inverse of :func:`fft2c`."""
    return _centred(torch.fft.ifft2, k)


def _line_axis(mask):
    """The axis the 1-D transforms of :meth:`MultiCoilMRI.normal` run along when
    ``mask`` (``(..., H, W)``) samples whole rows (-2: constant along each row) or whole
    columns (-1), else ``None``."""
    if bool((mask == mask[..., :1]).all()):
        return -2
    if bool((mask == mask[..., :1, :]).all()):
        return -1
    return None


#: (weak reference to the mask tensor given, its version, its line axis) of the last
#: ``normal``: the conjugate-gradient iterations of a solve pass the same mask, which is
#: then tested once (the test reads the whole mask and synchronises with the device).
_last_lines = (lambda: None, None, None)


def _remembered_line_axis(given, mask):
    """:func:`_line_axis` of ``mask``, the device copy of the tensor ``given``."""
    global _last_lines
    last, version, dim = _last_lines
    if isinstance(given, torch.Tensor):
        if last() is given and version == given._version:
            return dim
        dim = _line_axis(mask)
        _last_lines = (weakref.ref(given), given._version, dim)
        return dim
    return _line_axis(mask)


def _complex(value, name):
    tensor = torch.as_tensor(value)
    if not tensor.is_complex():
        tensor = tensor.to(torch.float32).to(torch.complex64)
    return tensor.to(torch.complex64)


def _mask(value):
    mask = torch.as_tensor(value).to(torch.float32)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1.")
    return mask


class SubsampledFourier(LinearOperator):
    r"""Single-coil Cartesian MRI: :math:`y = M \odot F x`.

    Parameters
    ----------
    mask : array-like of shape (H, W) or None
        Sampled k-space locations (1) or None to pass ``mask=`` per call.
    image_shape : tuple (H, W) or None
        Needed when ``mask`` is None.

    Examples
    --------
    >>> import torch
    >>> from skinverse.operators import SubsampledFourier
    >>> op = SubsampledFourier(torch.ones(5, 5))
    >>> x = torch.randn(2, 5, 5, dtype=torch.complex64)
    >>> bool(torch.allclose(op.adjoint(op.forward(x)), x, atol=1e-6))
    True
    """

    _tensors = ("mask",)
    complex_input = complex_output = True

    def __init__(self, mask=None, image_shape=None):
        self.mask = None if mask is None else _mask(mask)
        shape = tuple(self.mask.shape) if mask is not None else tuple(image_shape)
        super().__init__(shape, shape)

    def _mask_for(self, x, mask):
        mask = self.mask if mask is None else mask
        if mask is None:
            raise ValueError("SubsampledFourier has no mask: pass mask=(batch, H, W).")
        return mask.to(device=x.device, dtype=x.real.dtype)

    def forward(self, x, mask=None):
        return fft2c(x) * self._mask_for(x, mask)

    def adjoint(self, y, mask=None):
        return ifft2c(y * self._mask_for(y, mask))

    def __repr__(self):
        return f"SubsampledFourier({self.input_shape})"


class MultiCoilMRI(LinearOperator):
    r"""Multi-coil (SENSE) MRI: :math:`y_c = M \odot F (S_c x)`, :math:`c = 1..C`.

    The adjoint is :math:`A^H y = \sum_c \bar S_c \odot F^H (M \odot y_c)`.

    Parameters
    ----------
    maps : array-like of shape (C, H, W) or None
        Coil sensitivity maps (complex); None to pass ``maps=`` per call.
    mask : array-like of shape (H, W) or None
        Sampling mask; None to pass ``mask=`` per call.
    image_shape : tuple (H, W) or None
        Needed when ``maps`` is None.
    n_coils : int or None
        Needed when ``maps`` is None.

    Examples
    --------
    >>> import torch
    >>> from skinverse.operators import MultiCoilMRI
    >>> op = MultiCoilMRI(torch.ones(2, 4, 4) / 2**0.5, torch.ones(4, 4))
    >>> op.forward(torch.ones(1, 4, 4, dtype=torch.complex64)).shape
    torch.Size([1, 2, 4, 4])
    """

    _tensors = ("maps", "mask")
    complex_input = complex_output = True

    def __init__(self, maps=None, mask=None, image_shape=None, n_coils=None):
        self.maps = None if maps is None else _complex(maps, "maps")
        self.mask = None if mask is None else _mask(mask)
        if self.maps is not None:
            n_coils, image_shape = self.maps.shape[0], tuple(self.maps.shape[1:])
        if image_shape is None or n_coils is None:
            raise ValueError("MultiCoilMRI needs maps, or image_shape and n_coils.")
        super().__init__(tuple(image_shape), (int(n_coils), *image_shape))

    def _parts(self, x, maps, mask):
        maps = self.maps if maps is None else maps
        mask = self.mask if mask is None else mask
        if maps is None or mask is None:
            raise ValueError("MultiCoilMRI needs maps and mask, fixed or per call.")
        maps = maps.to(device=x.device, dtype=x.dtype if x.is_complex() else torch.complex64)
        if maps.dim() == 3:
            maps = maps[None]
        mask = mask.to(device=x.device, dtype=x.real.dtype)
        if mask.dim() == 2:
            mask = mask[None]
        return maps, mask[:, None]

    def forward(self, x, maps=None, mask=None):
        maps, mask = self._parts(x, maps, mask)
        return fft2c(maps * x[:, None]) * mask

    def adjoint(self, y, maps=None, mask=None):
        maps, mask = self._parts(y, maps, mask)
        return (maps.conj() * ifft2c(y * mask)).sum(dim=1)

    def normal(self, x, maps=None, mask=None):
        r""":math:`A^H A x = C \odot \sum_c \bar S_c \odot F^{-1}(M \odot F(S_c \odot C
        \odot x))` for even sizes: the centring modulations :math:`C` of the two k-space
        sides cancel (:math:`C^2 = 1` and :math:`M` commutes with them) and those of the
        image side act on the coil-combined image, so an application costs three
        multiplications of coil size instead of eight (the plain FFTs are not centred).
        Odd sizes: :math:`A^H(A x)`.

        A Cartesian mask of whole lines (each k-space row, or each column, sampled or
        not) commutes with the transform along the lines, :math:`F^H M F = F_1^H M
        F_1`, so only the 1-D transforms across the lines run: half the FFT work of
        every conjugate-gradient iteration (the same result to rounding)."""
        H, W = x.shape[-2:]
        if H % 2 or W % 2:
            return self.adjoint(self.forward(x, maps, mask), maps, mask)
        given = self.mask if mask is None else mask
        maps, mask = self._parts(x, maps, mask)
        board = _checkerboard(H, W, x.device, x.real.dtype)
        k = maps * (x * board)[:, None]
        dim = _remembered_line_axis(given, mask)
        if dim is None:
            k = torch.fft.ifft2(torch.fft.fft2(k, norm="ortho").mul_(mask), norm="ortho")
        else:  # (-1)^n of the board along the lines cancels with itself
            k = torch.fft.ifft(torch.fft.fft(k, dim=dim, norm="ortho").mul_(mask), dim=dim,
                               norm="ortho")
        return (maps.conj() * k).sum(dim=1) * board

    def __repr__(self):
        return f"MultiCoilMRI({self.output_shape[0]} coils, {self.input_shape})"
