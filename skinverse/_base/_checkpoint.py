"""Checkpoints: the :class:`~skinverse._base._state.TrainingState`'s ``state_dict``,
written so that a file can never run code, never be mistaken for another fit's, and
never be half-written.

* **Format.** Tensors in `safetensors <https://huggingface.co/docs/safetensors>`_, every
  other value in JSON (inside the safetensors metadata); loading evaluates nothing.
  The file starts with a magic string and the SHA-256 digest of the rest: a truncated or
  bit-flipped file is a :class:`~skinverse.exceptions.CheckpointError` naming it.
* **Identity.** A checkpoint belongs to a configuration *and* to the training data: its
  sub-directory of ``checkpoint_dir`` is named by a hash of the parameters (stable
  across processes: arrays and tensors by the hash of their bytes, callables by their
  qualified name; a lambda or a local function is refused) and a fingerprint of the
  training data (shapes, dtypes and the hash of the bytes of every array, side data
  included). Another configuration or other data in the same ``checkpoint_dir`` trains
  afresh in a sub-directory of its own; the folds of a search never share one.
* **Writes.** A unique temporary file in the target directory (created exclusively,
  never following a link), ``fsync``, then an atomic rename: two processes never mix
  files, and a reader sees a whole old or a whole new checkpoint.
"""

import functools
import hashlib
import inspect
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..exceptions import CheckpointError

CHECKPOINT_NAME = "state.safetensors"
_MAGIC = b"SKINVERSE-CKPT-2\n"
_DIGEST_SIZE = 32
# Parameters that may change between an interrupted fit and its resumption.
_RESUMABLE_PARAMS = ("verbose", "callbacks", "log_dir", "checkpoint_dir", "max_epochs",
                     "warm_start", "device", "num_workers")


# ---------------------------------------------------------------------- identity
def _hash_bytes(*chunks):
    digest = hashlib.blake2b(digest_size=20)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _array_id(array):
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("arrays of Python objects cannot identify a checkpoint.")
    return ["array", str(array.dtype), list(array.shape), _hash_bytes(array.view(np.uint8))]


def _tensor_bytes(tensor):
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _callable_id(value, where):
    name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    if "<lambda>" in name or "<locals>" in name:
        raise ValueError(
            f"checkpoint_dir needs parameters that identify themselves in any process, but "
            f"{where} is {name}, a lambda or a function defined inside another function. "
            "Define it at module level (or leave checkpoint_dir=None)."
        )
    return ["callable", name]


def canonical(value, where="parameter", _depth=0):
    """A JSON-able description of ``value`` that is the same in every process."""
    if _depth > 30:
        raise ValueError(f"{where} is nested too deeply to identify a checkpoint.")
    nested = functools.partial(canonical, _depth=_depth + 1)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ["float", repr(value)]
    if isinstance(value, np.generic):
        return nested(value.item(), where)
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [nested(v, where) for v in value]]
    if isinstance(value, dict):
        return ["dict", sorted([str(k), nested(v, f"{where}[{k!r}]")] for k, v in value.items())]
    if isinstance(value, np.ndarray):
        return _array_id(value)
    if isinstance(value, torch.Tensor):
        return ["tensor", str(value.dtype), list(value.shape),
                _hash_bytes(_tensor_bytes(value))]
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, gauss = value.get_state()
        return ["RandomState", _hash_bytes(keys.tobytes()), pos, has_gauss, gauss]
    if isinstance(value, functools.partial):
        return ["partial", nested(value.func, where), nested(value.args, where),
                nested(value.keywords, where)]
    if isinstance(value, type) or inspect.isroutine(value):
        owner = getattr(value, "__self__", None)
        if owner is not None and not inspect.ismodule(owner) and not isinstance(owner, type):
            return ["method", nested(owner, where), value.__name__]
        return _callable_id(value, where)
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, torch.nn.Module):
        return [kind, nested(dict(value.state_dict()), where)]
    if hasattr(value, "get_params"):
        return [kind, nested(value.get_params(deep=False), where)]
    if hasattr(value, "__dict__"):
        fields = {k: v for k, v in vars(value).items() if not k.startswith("_cached")}
        return [kind, nested(fields, where)]
    raise ValueError(f"{where} of type {kind} cannot identify a checkpoint; "
                     "leave checkpoint_dir=None.")


def config_key(estimator):
    """The parameters a checkpoint belongs to, as a canonical JSON string."""
    params = estimator.get_params(deep=False)
    keep_epochs = params.get("lr_schedule") in ("step", "cosine")  # their clock is max_epochs
    kept = {k: canonical(v, f"parameter {k}") for k, v in params.items()
            if k not in _RESUMABLE_PARAMS or (k == "max_epochs" and keep_epochs)}
    return json.dumps([type(estimator).__qualname__, kept], sort_keys=True)


def data_fingerprint(data):
    """Shapes, dtypes and byte hashes of the validated training data (side data too)."""
    return json.dumps(canonical(data, "training data"), sort_keys=True)


# ---------------------------------------------------------------------- the format
def _encode(obj, tensors):
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()
        return {"tensor": name}
    if isinstance(obj, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [_encode(v, tensors) for v in obj]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"float": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a checkpoint holds tensors and plain values; got {type(obj).__name__}.")


def _decode(obj, tensors):
    if not isinstance(obj, dict):
        return obj
    (kind, value), = obj.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    if kind == "float":
        return float(value)
    items = [_decode(v, tensors) for v in value]
    return tuple(items) if kind == "tuple" else items


def dumps(identity, state):
    """Bytes of a checkpoint: magic, SHA-256 of the payload, safetensors payload."""
    from safetensors.torch import save

    tensors = {}
    meta = json.dumps({"identity": identity, "state": _encode(state, tensors)})
    payload = save(tensors, metadata={"skinverse": meta})
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def loads(raw, path, map_location=None):
    """``(identity, state)`` of checkpoint bytes; a damaged file is a CheckpointError."""
    from safetensors.torch import load

    head = len(_MAGIC) + _DIGEST_SIZE
    if raw[: len(_MAGIC)] != _MAGIC:
        raise CheckpointError(f"{path} is not a skinverse checkpoint (or was written by an "
                              "incompatible version); remove it or use another directory.")
    payload = raw[head:]
    if hashlib.sha256(payload).digest() != raw[len(_MAGIC):head]:
        raise CheckpointError(f"{path} is damaged (its digest does not match: truncated or "
                              "altered); remove it to train afresh.")
    try:
        size = int.from_bytes(payload[:8], "little")
        meta = json.loads(json.loads(payload[8 : 8 + size])["__metadata__"]["skinverse"])
        tensors = load(payload)
    except Exception as exc:  # the digest matched, so this file was written that way
        raise CheckpointError(f"{path} could not be read as a checkpoint: {exc}") from exc
    if map_location is not None:
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return meta["identity"], _decode(meta["state"], tensors)


def write_atomic(path, data):
    """Write ``data`` to ``path`` through a unique temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Checkpointer:
    """Where and how one fit (a configuration on some data) saves and resumes its state.

    Parameters
    ----------
    directory : path
        The estimator's ``checkpoint_dir``.
    estimator : BaseTorchEstimator
    data : dict
        The validated training data (what :func:`data_fingerprint` hashes).
    """

    def __init__(self, directory, estimator, data):
        config, fingerprint = config_key(estimator), data_fingerprint(data)
        self.identity = {"config": _hash_bytes(config.encode()),
                         "data": _hash_bytes(fingerprint.encode())}
        name = f"{type(estimator).__name__}-{_hash_bytes(config.encode(), fingerprint.encode())}"
        self.path = Path(directory) / name / CHECKPOINT_NAME

    def load(self, map_location):
        """The saved state, or ``None`` when this fit has no checkpoint yet."""
        if not self.path.exists():
            return None
        identity, state = loads(self.path.read_bytes(), self.path, map_location)
        if identity != self.identity:
            raise CheckpointError(f"{self.path} belongs to another configuration or other "
                                  "data than its directory name says; remove it.")
        return state

    def save(self, state):
        write_atomic(self.path, dumps(self.identity, state))
