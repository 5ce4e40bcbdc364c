"""Concrete forward models: identity (denoising), dense matrix, blur, inpainting."""

import numpy as np
import torch
from torch.nn import functional as F

from ._base import LinearOperator

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _as_tensor(value, name):
    if isinstance(value, torch.Tensor):
        tensor = value.detach().clone()
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}.")
        tensor = torch.as_tensor(np.array(array, copy=True))
    if tensor.is_complex():
        return tensor.to(torch.complex64)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinity.")
    return tensor.to(torch.float32)


class Identity(LinearOperator):
    """:math:`A = I` (denoising).

    Examples
    --------
    >>> import torch
    >>> from skinverse.operators import Identity
    >>> Identity((3,)).forward(torch.ones(2, 3)).shape
    torch.Size([2, 3])
    """

    def __init__(self, shape):
        super().__init__(shape, shape)

    def forward(self, x):
        return x

    def adjoint(self, y):
        return y

    def __repr__(self):
        return f"Identity({self.input_shape})"


class MatrixOperator(LinearOperator):
    r"""A dense matrix :math:`A \in \mathbb R^{m \times d}` (e.g. compressed sensing).

    Parameters
    ----------
    matrix : array-like of shape (m, d)
        The matrix (real or complex).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skinverse.operators import MatrixOperator
    >>> A = MatrixOperator(np.arange(6.0).reshape(2, 3))
    >>> A.forward(torch.ones(1, 3))
    tensor([[ 3., 12.]])
    """

    _tensors = ("matrix",)

    def __init__(self, matrix):
        matrix = _as_tensor(matrix, "matrix")
        if matrix.dim() != 2:
            raise ValueError(f"matrix must be 2-D (m, d), got shape {tuple(matrix.shape)}.")
        super().__init__((matrix.shape[1],), (matrix.shape[0],))
        self.matrix = matrix
        self.complex_input = self.complex_output = matrix.is_complex()

    def _cast(self, v):
        """The matrix in ``v``'s precision, and ``v`` complex when the matrix is."""
        if self.matrix.is_complex():
            return self.matrix, v.to(self.matrix.dtype)
        return self.matrix.to(v.dtype), v

    def forward(self, x):
        matrix, x = self._cast(x)
        return x @ matrix.T

    def adjoint(self, y):
        matrix, y = self._cast(y)
        return y @ matrix.conj()

    def __repr__(self):
        return f"MatrixOperator({self.output_shape[0]}x{self.input_shape[0]})"


class Blur(LinearOperator):
    r"""Convolution :math:`A x = k * x` with zero boundary, output the size of the input.

    Parameters
    ----------
    kernel : array-like, 1-D, 2-D or 3-D with odd sizes
        The point-spread function.
    input_shape : tuple of int
        Shape of one signal: the kernel's dimensionality, optionally preceded by a channel
        axis (each channel is blurred alike).

    Examples
    --------
    >>> import torch
    >>> from skinverse.operators import Blur
    >>> blur = Blur([0.25, 0.5, 0.25], input_shape=(5,))
    >>> blur.forward(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]))
    tensor([[0.0000, 0.2500, 0.5000, 0.2500, 0.0000]])
    """

    _tensors = ("kernel",)

    def __init__(self, kernel, input_shape):
        kernel = _as_tensor(kernel, "kernel")
        if kernel.dim() not in _CONV or any(s % 2 == 0 for s in kernel.shape):
            raise ValueError(
                f"kernel must be 1-D, 2-D or 3-D with odd sizes, got shape {tuple(kernel.shape)}."
            )
        input_shape = tuple(input_shape)
        if len(input_shape) not in (kernel.dim(), kernel.dim() + 1):
            raise ValueError(
                f"input_shape {input_shape} must have {kernel.dim()} axes (or one more for "
                "channels) to match the kernel."
            )
        super().__init__(input_shape, input_shape)
        self.kernel = kernel
        self._ndim = kernel.dim()

    def _apply(self, x, kernel):
        spatial = x.shape[x.dim() - self._ndim :]
        flat = x.reshape(-1, 1, *spatial)
        weight = kernel.to(dtype=x.dtype, device=x.device)[None, None]
        out = _CONV[self._ndim](flat, weight, padding=[s // 2 for s in kernel.shape])
        return out.reshape(x.shape)

    def forward(self, x):
        return self._apply(x, torch.flip(self.kernel, dims=list(range(self._ndim))))

    def adjoint(self, y):
        return self._apply(y, self.kernel)

    def __repr__(self):
        return f"Blur(kernel {tuple(self.kernel.shape)}, input {self.input_shape})"


def gaussian_kernel(size, sigma, ndim=1):
    """A normalised Gaussian kernel of odd ``size`` and width ``sigma`` in ``ndim`` axes."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 \
            or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size!r}.")
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}.")
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}.")
    axis = np.arange(size) - size // 2
    profile = np.exp(-0.5 * (axis / sigma) ** 2)
    kernel = profile
    for _ in range(ndim - 1):
        kernel = np.multiply.outer(kernel, profile)
    return kernel / kernel.sum()


class Inpainting(LinearOperator):
    r"""Masking :math:`A x = m \odot x`: the entries where ``mask`` is 0 are unobserved.

    Parameters
    ----------
    mask : array-like of 0/1 (or booleans)
        Shape of one signal.

    Examples
    --------
    >>> import torch
    >>> from skinverse.operators import Inpainting
    >>> Inpainting([1, 0, 1]).forward(torch.tensor([[1.0, 2.0, 3.0]]))
    tensor([[1., 0., 3.]])
    """

    _tensors = ("mask",)

    def __init__(self, mask):
        mask = _as_tensor(mask, "mask")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1.")
        if not bool(mask.any()):
            raise ValueError("mask observes nothing (all zeros).")
        super().__init__(tuple(mask.shape), tuple(mask.shape))
        self.mask = mask

    def forward(self, x):
        return x * self.mask.to(dtype=x.real.dtype, device=x.device)

    def adjoint(self, y):
        return self.forward(y)

    def __repr__(self):
        return f"Inpainting({self.input_shape}, {int(self.mask.sum())} observed)"
