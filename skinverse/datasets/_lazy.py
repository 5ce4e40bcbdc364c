"""Arrays on disk that estimators read batch by batch (``fit`` streams them)."""

import os

import numpy as np


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading HDF5 files needs h5py: pip install h5py "
                          "(or pip install 'skinverse[hdf5]')") from exc
    return h5py


def resolve_hdf5_dataset(handle, key, path, depth=0):
    """The dataset at ``key`` of the open file ``handle``, refusing external links and
    virtual datasets on the way (they would read other files).

    Raises
    ------
    ValueError
        ``key`` does not exist, is a group, is reached through an external link or a
        chain of more than 8 soft links, or is a virtual dataset.
    """
    h5py = _h5py()
    parts = [p for p in key.split("/") if p]
    for i in range(len(parts)):
        prefix = "/" + "/".join(parts[: i + 1])
        link = handle.get(prefix, getlink=True)
        if link is None:
            raise ValueError(f"{str(path)!r} has no dataset {key!r}; top-level keys: "
                             f"{sorted(handle)}.")
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(f"{str(path)!r}: {prefix!r} is an external link to "
                             f"{link.filename!r}; external links are refused.")
        if isinstance(link, h5py.SoftLink):
            if depth > 8:
                raise ValueError(f"{str(path)!r}: too many soft links at {prefix!r}.")
            rest = "/".join(parts[i + 1:])
            return resolve_hdf5_dataset(handle, link.path.rstrip("/") + "/" + rest, path,
                                        depth + 1)
    node = handle[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{str(path)!r}: {key!r} is a group, not a dataset.")
    if node.is_virtual:
        raise ValueError(f"{str(path)!r}: {key!r} is a virtual dataset (it reads other "
                         "files); refused.")
    return node


class HDF5Array:
    """One dataset of an HDF5 file, read lazily: pass it to ``fit`` like an array.

    The file is opened read-only on first access and again in every process that
    unpickles the object (``DataLoader`` workers, Dask workers), so it can travel where
    an open ``h5py.Dataset`` cannot. Rows are read with ``array[rows]``; estimators read
    one mini-batch at a time, so the data never has to fit in memory.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file.
    name : str
        The dataset inside it (``'/images'``, ``'train/X'``). External links and virtual
        datasets are refused: they would read other files.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> from skinverse.datasets import HDF5Array
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["X"] = np.arange(12.0).reshape(4, 3)
    >>> X = HDF5Array(path, "X")
    >>> X.shape, X[[0, 2]].tolist()
    ((4, 3), [[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]])
    """

    def __init__(self, path, name):
        self.path, self.name = os.fspath(path), name
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"HDF5 file {self.path!r} does not exist.")
        self._file = self._dataset = None
        dataset = self._open()
        self.shape, self.dtype = tuple(dataset.shape), np.dtype(dataset.dtype)
        if not self.shape:
            raise ValueError(f"{self.path!r}: {name!r} is a scalar; a per-sample array "
                             "needs a first axis of samples.")

    def _open(self):
        if self._dataset is None:
            h5py = _h5py()
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise ValueError(f"cannot read {self.path!r} as HDF5: {exc}") from exc
            try:
                self._dataset = resolve_hdf5_dataset(self._file, self.name, self.path)
            except BaseException:
                self._file.close()
                self._file = None
                raise
        return self._dataset

    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, rows):
        """Rows in any order (h5py wants increasing indices: sorted, read, reordered)."""
        dataset = self._open()
        if isinstance(rows, (slice, int, np.integer)):
            return np.asarray(dataset[rows])
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if rows.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique[0] < 0 or unique[-1] >= self.shape[0]:
            raise IndexError(f"rows out of range for {self.shape[0]} samples.")
        return np.asarray(dataset[unique])[inverse.reshape(-1)]

    def __array__(self, dtype=None, copy=None):
        array = np.asarray(self._open()[()])
        return array if dtype is None else array.astype(dtype, copy=False)

    def __getstate__(self):
        return {"path": self.path, "name": self.name, "shape": self.shape,
                "dtype": self.dtype}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._file = self._dataset = None

    def __repr__(self):
        return f"HDF5Array({self.path!r}, {self.name!r}, shape={self.shape})"

    def close(self):
        if self._file is not None:
            self._file.close()
        self._file = self._dataset = None
