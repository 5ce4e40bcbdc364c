"""Data-parallel training with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

When a process group is initialised (e.g. the script runs under ``torchrun``), every rank
fits the same estimator on the same data with the same ``random_state``: all ranks draw
the same global batches, each takes its own slice, and the gradients are averaged
(weighted by slice size) before every optimiser step. The fitted estimator is an ordinary
one -- no wrapper module -- and only rank 0 prints, logs and writes checkpoints.
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
