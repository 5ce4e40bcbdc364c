"""Where the training loop's batches come from: tensors held on the device, or data read
lazily (see ``_sources``) -- whether an estimator streams, the head's validation and the
whole-data decisions, per-batch validation, the fit's ``DataLoader`` -- and, under
``torch.distributed``, each rank's part of every global batch."""

import numpy as np
import torch

from ._device import check_finite_tensor, release_free_memory, to_tensor
from ._distributed import shard, world
from ._sources import (
    HEAD_ROWS,
    STREAM_ROWS,
    LazyPlan,
    LazyRows,
    check_finite_rows,
    is_lazy_array,
    make_loader,
    split_batch,
)
from ._warn import warn_user

#: Batches between returns of freed heap memory to the system (see
#: :func:`~skinverse._base._device.release_free_memory`); ~1 ms each, rare enough not
#: to show in an epoch's time.
TRIM_EVERY = 64


class RowSubset:
    """Rows ``rows`` (a long tensor on the tensors' device) of in-memory tensors, held
    without copying them: a training/validation split of a large image set would
    otherwise hold the data twice. Batches index the full tensors with the composed rows,
    so they hold the same values as batches of a copied subset; ``subset[key]`` copies
    that column's rows (for the small per-sample columns estimators read whole)."""

    def __init__(self, tensors, rows):
        self.tensors, self.rows = tensors, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        return self.tensors[key].index_select(0, self.rows)

    def __contains__(self, key):
        return key in self.tensors

    def keys(self):
        return self.tensors.keys()

    def take(self, positions):
        """The rows at ``positions`` (a slice or a long tensor) of the subset."""
        rows = self.rows[positions]
        return {k: v.index_select(0, rows) for k, v in self.tensors.items()}


class BatchSteps:
    """Methods of :class:`~skinverse._base._loop.TrainingLoop` that make batches."""

    def _streams(self, source):
        """Whether this estimator (with these parameters) reads ``source`` batch by batch;
        otherwise ``fit`` reads it whole into memory first."""
        return True

    def _read_whole(self, source):
        """``(X, y, fit_params)`` of lazy data read into memory (estimators or settings
        that do not stream); a warning unless it was only a memory-map (joblib hands
        those to its workers)."""
        on_disk = [c.array for c in source.columns.values() if is_lazy_array(c.array)]
        if source.dataset is not None or not all(isinstance(a, np.memmap) for a in on_disk):
            warn_user(f"{type(self).__name__} with these parameters does not stream its "
                      f"training data: the {source.n} samples are read into memory.",
                      UserWarning)
        return split_batch(source.materialize())

    def _lazy_globals(self, source, reset):
        """What the whole data decides before any batch is validated: ``(normalised
        sample weights or None, stratification labels or None, extra keyword arguments
        of the head's validation)``. Reads only small per-sample columns."""
        from ._heads import normalized_sample_weight  # (the heads import this module)

        weights = None
        if "sample_weight" in source.keys:
            raw = np.concatenate([a["sample_weight"] for _, a in
                                  source.chunks(keys=("sample_weight",))])
            weights = normalized_sample_weight(raw, np.empty((source.n, 0)))
        return weights, None, {}

    def _validate_lazy(self, source, reset):
        """Validate the first rows (which sets the fitted attributes) and gather what the
        whole data decides; each batch is validated again when it is read."""
        weights, labels, kwargs = self._lazy_globals(source, reset)
        rows = np.arange(min(source.n, HEAD_ROWS))
        raw = source.read(rows)
        check_finite_rows(raw, rows)
        X, y, other = split_batch(raw)
        other.pop("sample_weight", None)
        head = self._validate_fit_data(X, y, reset=reset, **kwargs, **other)
        head["sample_weight"] = None if weights is None else weights[rows]
        return LazyPlan(head, source, weights, labels)

    def _validate_lazy_batch(self, plan, rows):
        """A batch of lazy data validated as the head was (with ``reset=False``)."""
        raw = plan.source.read(rows)
        check_finite_rows(raw, rows)
        X, y, other = split_batch(raw)
        other.pop("sample_weight", None)
        data = self._validate_fit_data(X, y, reset=False, **other)
        data["sample_weight"] = None if plan.weights is None else plan.weights[rows]
        return data

    def _validated_chunks(self, data, size=STREAM_ROWS):
        """``(rows, validated per-sample arrays)`` over all the training data, ``size``
        rows at a time, in memory or lazy alike (so that statistics a method gathers from
        the whole data are the same, bit for bit, whichever way it came)."""
        n = data.source.n if isinstance(data, LazyPlan) else len(data["X"])
        for start in range(0, n, size):
            rows = np.arange(start, min(start + size, n))
            if isinstance(data, LazyPlan):
                yield rows, self._validate_lazy_batch(data, rows)
            else:
                yield rows, {k: v[start:start + size] if isinstance(v, np.ndarray) else v
                             for k, v in data.items()}

    def _cpu_tensors(self, data, rows=None):
        """Per-sample arrays to CPU tensors in the module's dtype, checked finite (naming
        the sample: ``rows`` maps batch positions to sample indices)."""
        out = {}
        for key, value in data.items():
            if value is None:
                continue
            kind = np.asarray(value).dtype.kind
            dtype = self._torch_dtype if kind in "fc" else torch.long if kind in "iu" else None
            out[key] = to_tensor(value, dtype=dtype, device="cpu")
            if kind in "fc":
                check_finite_tensor(out[key], key, self.dtype, rows=rows)
        return out

    def _lazy_loader(self, plan):
        """The fit's ``DataLoader`` over ``plan`` (made once per fit call)."""
        loaders = self.__dict__.setdefault("_loaders", {})
        if id(plan) not in loaders:
            workers = int(getattr(self, "num_workers", 0) or 0)
            loaders[id(plan)] = make_loader(self, plan, workers,
                                            pin_memory=self.device_.type == "cuda")
        return loaders[id(plan)]

    def _read_batches(self, lazy, batches):
        """Tensors on the device for each batch of rows (positions in ``lazy.rows``)."""
        loader, sampler = self._lazy_loader(lazy.plan)
        sampler.batches = [lazy.rows[np.asarray(b)] for b in batches]
        for index, (_, tensors) in enumerate(loader):
            if index % TRIM_EVERY == TRIM_EVERY - 1:
                release_free_memory()  # resident memory stays at a few batches
            yield {k: v.to(self.device_, non_blocking=True) for k, v in tensors.items()}

    @staticmethod
    def _n_rows(tensors):
        if isinstance(tensors, (LazyRows, RowSubset)):
            return len(tensors)
        return len(next(iter(tensors.values())))

    def _effective_batch_size(self, n):
        return min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)

    def _batch_rows(self, n, *, shuffle, min_rows=1):
        """The mini-batches of an epoch as row positions (slices in order, or a
        permutation drawn from the fit's generator). A last batch smaller than
        ``min_rows`` (the data-parallel world size) joins the one before it."""
        size = self._effective_batch_size(n)
        starts = list(range(0, n, size))
        if len(starts) > 1 and n - starts[-1] < min_rows:
            starts.pop()
        bounds = list(zip(starts, starts[1:] + [n]))
        if not shuffle:
            return [slice(a, b) for a, b in bounds]
        order = torch.randperm(n, generator=self._generator)
        return [order[a:b] for a, b in bounds]

    def _iter_batches(self, tensors, *, shuffle):
        """Mini-batches by indexing tensors already on the device (no DataLoader), or
        read from lazy data through the fit's ``DataLoader``."""
        batches = self._batch_rows(self._n_rows(tensors), shuffle=shuffle)
        if isinstance(tensors, LazyRows):
            yield from self._read_batches(tensors, [_positions(b) for b in batches])
            return
        for rows in batches:
            if isinstance(tensors, RowSubset):
                yield tensors.take(rows if isinstance(rows, slice) else rows.to(self.device_))
            elif isinstance(rows, slice):
                yield {k: v[rows] for k, v in tensors.items()}
            else:
                rows = rows.to(self.device_)
                yield {k: v.index_select(0, rows) for k, v in tensors.items()}

    def _local_batches(self, train):
        """``(this rank's part of each global batch, its share of the batch)`` for one
        training epoch. Every rank draws the same global batches; lazy data is read
        only for this rank's rows."""
        rank, size = world()
        n = self._n_rows(train)
        batches = self._batch_rows(n, shuffle=True, min_rows=size)
        if isinstance(train, LazyRows):
            local, shares = [], []
            for rows in batches:
                rows = _positions(rows)
                bounds = [len(rows) * r // size for r in range(size + 1)]
                local.append(rows[bounds[rank]:bounds[rank + 1]])
                shares.append((bounds[rank + 1] - bounds[rank]) / len(rows))
            yield from zip(self._read_batches(train, local), shares)
            return
        for rows in batches:
            rows = rows.to(self.device_)  # (index_select: half the cost of v[rows])
            if isinstance(train, RowSubset):
                batch = train.take(rows)
            else:
                batch = {k: v.index_select(0, rows) for k, v in train.items()}
            yield (batch, 1.0) if size == 1 else shard(batch, len(rows))


def _positions(rows):
    """Row positions as a numpy array (from a slice or an index tensor)."""
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop)
    return rows.numpy()
