"""Training data read lazily, one mini-batch at a time.

``fit`` accepts, besides arrays, numpy memory-maps, HDF5 datasets
(:class:`skinverse.datasets.HDF5Array` or an open ``h5py.Dataset``) and map-style
``torch.utils.data.Dataset`` objects whose items are ``(x, y)`` pairs or dicts of
per-sample arrays. An estimator that streams reads them through a ``DataLoader``: it
validates a head of the data once (shapes, dtypes, fitted attributes), gathers what the
whole data decides (classes, sample-weight normalisation, standardisation) in one
streamed pass, then validates each mini-batch as it is read, so a NaN in a row read late
in an epoch is an error naming that row. Arrays holding the same values give the same
model, bit for bit on the CPU: the same split, the same permutation, the same batches.

Under ``torch.distributed`` every rank draws the same global batch of row indices and
reads only its own slice of it.
"""

import hashlib
import mmap
import numbers
import os

import numpy as np
import torch

#: Rows per read when a whole column is streamed (fingerprint, statistics).
STREAM_ROWS = 1024
#: Rows validated up front to set the fitted attributes (shapes, features).
HEAD_ROWS = 256


def _is_h5py_dataset(obj):
    return type(obj).__module__.split(".")[0] == "h5py" and hasattr(obj, "shape")


def is_lazy_array(obj):
    """A per-sample array that lives on disk: memory-map, HDF5 dataset."""
    from ..datasets._lazy import HDF5Array
    return isinstance(obj, (np.memmap, HDF5Array)) or _is_h5py_dataset(obj)


def is_lazy(obj):
    return is_lazy_array(obj) or isinstance(obj, torch.utils.data.Dataset)


def _as_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class _Column:
    """One per-sample array (in memory or on disk), read by rows."""

    def __init__(self, array, name):
        if not is_lazy_array(array):
            array = np.asarray(array)
        if not getattr(array, "shape", ()):
            raise ValueError(f"{name} must be a per-sample array with a first axis of "
                             f"samples, got a scalar.")
        self.array, self.name = array, name
        self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)

    def __len__(self):
        return self.shape[0]

    def read(self, rows):
        if _is_h5py_dataset(self.array):  # h5py wants increasing, unique indices
            unique, inverse = np.unique(rows, return_inverse=True)
            return np.asarray(self.array[unique])[inverse.reshape(-1)]
        if isinstance(self.array, np.memmap):
            layout = self.__dict__.get("_layout", False)
            if layout is False:
                layout = self._layout = _file_layout(self.array)
            if layout is not None:
                return self._pread(rows, *layout)
        out = np.array(self.array[rows])  # a copy: memmap rows become plain arrays
        _release_pages(self.array)
        return out

    def _pread(self, rows, path, start, row_bytes):
        """Rows of a memory-mapped file read with ``pread`` into a new array: the bytes
        come through the page cache without being mapped into this process (a fault on
        a mapped file maps whole large folios: 256 random rows of 2 kB mapped ~400 MB)."""
        if self.__dict__.get("_fd") is None:
            self._fd = os.open(path, os.O_RDONLY)
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique), *self.shape[1:]), dtype=self.dtype)
        flat = out.reshape(len(unique), -1).view(np.uint8).reshape(len(unique), row_bytes)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1  # runs of consecutive rows
        for run in np.split(np.arange(len(unique)), breaks):
            if not len(run):
                continue
            first, count = int(unique[run[0]]), len(run)
            data = os.pread(self._fd, count * row_bytes, start + first * row_bytes)
            if len(data) != count * row_bytes:
                raise ValueError(f"{self.name}: the file {path!r} is shorter than its "
                                 f"memory-map says (rows {first}..{first + count - 1}).")
            flat[run[0]:run[0] + count] = np.frombuffer(data, np.uint8).reshape(count, -1)
        return out[inverse.reshape(-1)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_fd", None)  # a worker process opens the file itself
        return state

    def __del__(self):
        fd = self.__dict__.get("_fd")
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass


def _file_layout(array):
    """``(path, byte offset of row 0, bytes per row)`` of a row-contiguous memory-map of a
    file, or ``None`` (then rows are read through the mapping)."""
    handle = getattr(array, "_mmap", None)
    if handle is None or not array.filename or not array.flags.c_contiguous \
            or array.ndim == 0 or array.dtype.hasobject:
        return None
    try:
        base = np.frombuffer(handle, dtype=np.uint8)
        mapped_at = base.ctypes.data
        del base
    except (TypeError, ValueError, BufferError):
        return None
    # numpy maps from the offset rounded down to the allocation granularity
    map_start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.itemsize
    return array.filename, map_start + (array.ctypes.data - mapped_at), row_bytes


def _release_pages(array):
    """Unmap the pages of a shared memory-map that reads touched, so that they count
    against the system's page cache, not against this process's resident memory (which
    would otherwise grow to the whole file over an epoch). Clean pages come back from
    the page cache on the next read; a copy-on-write map (``mode='c'``) keeps its pages,
    which may hold private changes."""
    handle = getattr(array, "_mmap", None)
    if handle is None or getattr(array, "mode", "c") == "c" or not hasattr(handle, "madvise"):
        return
    try:
        handle.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # pragma: no cover - a platform without it
        pass


class _DatasetColumns:
    """The columns of a map-style ``Dataset`` whose items are ``(x, y)``, ``(x,)``, ``x``
    or dicts of per-sample arrays (``{'X': ..., 'y': ..., 'maps': ...}``)."""

    def __init__(self, dataset):
        try:
            self.n = len(dataset)
        except TypeError:
            raise TypeError(f"a Dataset passed to fit must be map-style with __len__; "
                            f"{type(dataset).__name__} has none (iterable-style datasets "
                            "cannot be split or shuffled reproducibly).") from None
        if self.n == 0:
            raise ValueError("the Dataset passed to fit is empty.")
        self.dataset = dataset
        first = self._item(0)
        self.spec = {key: (value.shape, value.dtype) for key, value in first.items()}

    def _item(self, index):
        item = self.dataset[index]
        if isinstance(item, dict):
            if "X" not in item:
                raise ValueError(f"sample {index} of the Dataset is a dict without 'X'; "
                                 f"its keys are {sorted(item)}.")
            return {str(k): _as_numpy(v) for k, v in item.items()}
        if isinstance(item, (tuple, list)):
            if not 1 <= len(item) <= 2:
                raise ValueError(f"sample {index} of the Dataset has {len(item)} parts; "
                                 "items must be (x, y), (x,), x or a dict of arrays.")
            return dict(zip(("X", "y"), (_as_numpy(v) for v in item)))
        return {"X": _as_numpy(item)}

    def read(self, rows):
        items = []
        for index in rows:
            index = int(index)
            item = self._item(index)
            if item.keys() != self.spec.keys():
                raise ValueError(f"sample {index} of the Dataset has the parts "
                                 f"{sorted(item)}, but sample 0 has {sorted(self.spec)}.")
            for key, value in item.items():
                shape, dtype = self.spec[key]
                if value.shape != shape:
                    raise ValueError(f"sample {index} of the Dataset: {key!r} has shape "
                                     f"{value.shape}, but sample 0 has {shape}.")
                if value.dtype.kind != dtype.kind:
                    raise ValueError(f"sample {index} of the Dataset: {key!r} has dtype "
                                     f"{value.dtype}, but sample 0 has {dtype}.")
            items.append(item)
        out = {}
        for key, (_, dtype) in self.spec.items():
            stacked = np.stack([item[key] for item in items])
            # numbers in the first item's dtype; text keeps its longest label
            out[key] = stacked if dtype.kind in "USO" else stacked.astype(dtype, copy=False)
        return out


class LazyData:
    """Named per-sample columns of ``n`` rows, read together by row indices.

    Built by :func:`lazy_source` from ``fit``'s arguments; ``read(rows)`` returns a dict of
    numpy arrays in the order of ``rows``.
    """

    def __init__(self, columns, dataset=None):
        self.columns, self.dataset = columns, dataset
        lengths = {key: len(col) for key, col in columns.items()}
        if dataset is not None:
            lengths.update({key: dataset.n for key in dataset.spec})
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the training arrays have different numbers of samples: "
                             f"{lengths}.")
        self.n = next(iter(lengths.values()))
        self.keys = tuple(lengths)

    def __len__(self):
        return self.n

    def read(self, rows, keys=None):
        rows = np.asarray(rows, dtype=np.int64)
        keys = self.keys if keys is None else keys
        out = {}
        if self.dataset is not None and any(k in self.dataset.spec for k in keys):
            out.update({k: v for k, v in self.dataset.read(rows).items() if k in keys})
        out.update({k: col.read(rows) for k, col in self.columns.items() if k in keys})
        return out

    def chunks(self, keys=None, size=STREAM_ROWS):
        """``(rows, arrays)`` over the whole data, ``size`` rows at a time."""
        for start in range(0, self.n, size):
            rows = np.arange(start, min(start + size, self.n))
            yield rows, self.read(rows, keys)

    def materialize(self):
        """Every column read whole (for estimators that do not stream)."""
        parts = [arrays for _, arrays in self.chunks(size=max(self.n, 1))]
        return parts[0]

    def fingerprint(self):
        """Shapes, dtypes and a SHA-256 of every column's bytes, read in chunks."""
        digests = {key: hashlib.sha256() for key in self.keys}
        shapes = {}
        for _, arrays in self.chunks():
            for key, value in arrays.items():
                value = np.ascontiguousarray(value)
                shapes[key] = [list(value.shape[1:]), str(value.dtype)]
                digests[key].update(value.tobytes())
        return {"lazy": self.n,
                **{key: [*shapes[key], digests[key].hexdigest()] for key in self.keys}}


def lazy_source(X, y, fit_params):
    """A :class:`LazyData` when ``X``, ``y`` or a per-sample fit argument is read lazily;
    ``None`` when everything is in memory (the arrays path)."""
    named = {"X": X, "y": y, **fit_params}
    if not any(is_lazy(v) for v in named.values() if v is not None):
        return None
    dataset = None
    if isinstance(X, torch.utils.data.Dataset):
        if y is not None:
            raise ValueError("X is a torch Dataset, whose items carry the targets: pass "
                             "y=None (items are (x, y) pairs or dicts with 'X' and 'y').")
        dataset = _DatasetColumns(X)
        del named["X"], named["y"]
    for key, value in named.items():
        if isinstance(value, torch.utils.data.Dataset):
            raise TypeError(f"{key} is a torch Dataset; only X may be one (its items then "
                            "carry the other per-sample arrays).")
    columns = {}
    for key, value in named.items():
        if value is None or isinstance(value, (numbers.Number, str)):
            continue
        if dataset is not None and key in dataset.spec:
            raise ValueError(f"{key!r} is given both as an argument and in the Dataset's "
                             "items.")
        if not hasattr(value, "shape") and not isinstance(value, (list, tuple)):
            raise TypeError(f"{key} must be array-like with one row per sample to train on "
                            f"lazy data, got {type(value).__name__}.")
        columns[key] = _Column(value, key)
    return LazyData(columns, dataset)


def check_finite_rows(arrays, rows):
    """A ValueError naming the sample and column of the first NaN or infinity in a batch
    of floating-point arrays read from lazy data (``rows``: their sample indices)."""
    for key, value in arrays.items():
        if value.dtype.kind not in "fc":
            continue
        finite = np.isfinite(value.reshape(len(value), -1))
        if finite.all():
            continue
        row, column = np.argwhere(~finite)[0]
        raise ValueError(
            f"{key} has a value that is NaN or infinite (sample {int(rows[row])}, column "
            f"{int(column)} of the flattened sample). Values must be finite: clean or "
            "impute the data before fitting.")


def split_batch(raw):
    """``(X, y, other per-sample arrays)`` of a batch read from a :class:`LazyData`."""
    raw = dict(raw)
    return raw.pop("X"), raw.pop("y", None), raw


class LazyRows:
    """A subset of a :class:`LazyData` (the training or the validation rows) and the
    estimator's per-batch validation; what the loop iterates instead of tensors."""

    def __init__(self, plan, rows):
        self.plan, self.rows = plan, np.asarray(rows, dtype=np.int64)

    def __len__(self):
        return len(self.rows)


class LazyPlan(dict):
    """The validated head of lazy data (a dict, as ``_validate_fit_data`` returns) that
    also knows the whole source and the global per-sample values (sample weights,
    labels) decided from all rows."""

    def __init__(self, head, source, weights=None, labels=None):
        super().__init__(head)
        self.source, self.weights, self.labels = source, weights, labels


class BatchReader(torch.utils.data.Dataset):
    """What a ``DataLoader`` indexes: a batch of global rows -> validated tensors (CPU)."""

    def __init__(self, estimator, plan):
        self.estimator, self.plan = estimator, plan

    def __len__(self):
        return self.plan.source.n

    def __getitem__(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        data = self.estimator._validate_lazy_batch(self.plan, rows)
        return rows, self.estimator._cpu_tensors(data)


class _EpochBatches(torch.utils.data.Sampler):
    """The batches of row indices of the current epoch (set before each pass), so that
    persistent ``DataLoader`` workers serve every epoch."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def make_loader(estimator, plan, num_workers, pin_memory):
    """A ``DataLoader`` reading whole batches (``batch_size=None``: each sampler element
    is a batch of row indices)."""
    sampler = _EpochBatches()
    loader = torch.utils.data.DataLoader(
        BatchReader(estimator, plan), batch_size=None, sampler=sampler,
        num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers else None)
    return loader, sampler
