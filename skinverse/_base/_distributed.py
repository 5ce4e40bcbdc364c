"""Data-parallel training with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

When a process group is initialised (e.g. the script runs under ``torchrun``), every rank
fits the same estimator with the same ``random_state``: all ranks draw the same global
batches of row indices and each computes the loss of its own slice (reading only those
rows when the data is lazy: a memory-map, an HDF5 dataset, a torch ``Dataset``).
Gradients are reduced by :class:`torch.nn.parallel.DistributedDataParallel` -- bucketed,
and overlapped with the backward pass -- with each rank's loss weighted by its slice's
share of the batch, so every step is the step of the whole global batch. The fitted
estimator is an ordinary one (the DDP wrapper lives only during ``fit``); only rank 0
prints, logs and writes checkpoints.
"""

import torch


def world():
    """``(rank, world_size)`` of the default process group, or ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process():
    return world()[0] == 0


def shard(batch, n_rows):
    """This rank's contiguous slice of a global batch, and its share of the batch."""
    rank, size = world()
    if size == 1:
        return batch, 1.0
    bounds = [n_rows * r // size for r in range(size + 1)]
    rows = slice(bounds[rank], bounds[rank + 1])
    return {k: v[rows] for k, v in batch.items()}, (bounds[rank + 1] - bounds[rank]) / n_rows


def average_gradients(parameters, share):
    """Global-batch gradient: sum over ranks of ``share * local gradient`` (one all-reduce)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params]) * share
    torch.distributed.all_reduce(flat)
    offset = 0
    for p in params:
        count = p.grad.numel()
        p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
        offset += count


def all_reduce_sum(tensor):
    """Sum a tensor over ranks, in place."""
    torch.distributed.all_reduce(tensor)
    return tensor


class _LossModule(torch.nn.Module):
    """The estimator's loss as a module, so that DDP sees every forward pass (its
    parameters are the estimator's ``module_``; the estimator is not a submodule)."""

    def __init__(self, estimator):
        super().__init__()
        self.net = estimator.module_
        object.__setattr__(self, "_estimator", estimator)

    def forward(self, batch):
        return self._estimator._compute_loss(batch)


def data_parallel(estimator):
    """``DistributedDataParallel`` over the estimator's loss, or ``None`` when there is
    nothing to train. ``find_unused_parameters`` (an extra graph traversal per step) only
    for methods that may leave a trainable parameter out of a step."""
    if not any(p.requires_grad for p in estimator.module_.parameters()):
        return None
    device = estimator.device_
    return torch.nn.parallel.DistributedDataParallel(
        _LossModule(estimator),
        device_ids=[device.index or 0] if device.type == "cuda" else None,
        find_unused_parameters=estimator._may_skip_parameters(),
    )
