"""Device and dtype resolution, and tensor conversion at the numpy boundary."""

import ctypes
import functools

import numpy as np
import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def autocast_dtype(mixed_precision, device, dtype):
    """The ``torch.autocast`` dtype of a ``mixed_precision`` parameter, or None (full
    precision). ``'auto'`` is bfloat16 for float32 models on a device that computes it
    natively -- CUDA with bf16 support, a CPU with AVX512-BF16 or AMX (oneDNN's
    bf16 convolutions there are ~2.5x its float32 ones) -- and full precision elsewhere,
    where bf16 is emulated and slower."""
    if mixed_precision != "auto":
        return {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    if dtype != torch.float32:
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        native = device.type == "cpu" and probe is not None and bool(probe())
    return torch.bfloat16 if native else None


def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``'auto'`` picks CUDA when it is available and the CPU otherwise. An explicit CUDA
    device that this machine lacks is an error, never a silent fall-back.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r} "
            f"of type {type(device).__name__}."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this "
                "machine (torch.cuda.is_available() is False). Use device='auto' or 'cpu'."
            )
        index = 0 if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible."
            )
    elif resolved.type not in ("cpu", "mps"):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        )
    return resolved


def device_available(device):
    """Whether tensors can be placed on ``device`` (a :class:`torch.device`) here."""
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return True


def resolve_dtype(dtype):
    """Turn the ``dtype`` parameter (``'float32'`` or ``'float64'``) into a torch dtype."""
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):
        raise ValueError(
            f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}."
        ) from None


def to_tensor(array, *, dtype, device):
    """Copy-safe conversion of a numpy array to a tensor on ``device``.

    Read-only arrays (memmaps, broadcast views) are copied, because torch cannot share
    memory it is not allowed to write.
    """
    array = np.asarray(array)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array).copy()
    tensor = torch.from_numpy(array)
    if torch.device(device).type == "cuda":
        tensor = tensor.pin_memory()  # page-locked, so the copy below is truly asynchronous
    return tensor.to(device=device, dtype=dtype, non_blocking=True)


def to_numpy(tensor, dtype=None):
    """Bring a tensor back to a numpy array (on the CPU), optionally casting it."""
    array = tensor.detach().to("cpu").numpy()
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


def check_finite_tensor(tensor, name, dtype_name, offset=0, rows=None):
    """Raise a ValueError naming the sample and column of the first non-finite value.

    Called after the cast to the estimator's dtype: a finite float64 value beyond
    float32's range (about 3.4e38) becomes infinite there, and NaN in side data (coil
    maps, masks) would silently poison every prediction.
    """
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    bad = (~finite).reshape(len(tensor), -1).nonzero()[0].tolist()
    row, column = (bad[0] + offset if rows is None else int(rows[bad[0]])), bad[1]
    raise ValueError(
        f"{name} has a value that is NaN or infinite in {dtype_name} (sample {row}, "
        f"column {column} of the flattened sample). Values must be finite and, with "
        f"dtype={dtype_name!r}, within its range (float32: |x| < 3.4e38); rescale the "
        "data or use dtype='float64'."
    )


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
        return None


def release_free_memory():
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    Batches of a few hundred kB are freed and allocated again in a varying order; glibc
    serves them from its heap and keeps the free space, so the resident memory of a long
    epoch grew by ~0.3 MB per batch (a 100k-row RIM epoch: 242 -> 466 MB anonymous;
    trimmed every 50 batches it stayed at 311 MB). A no-op where the C library is not
    glibc.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
