"""Checks of :class:`~skinverse.unrolled.UnrolledRegressor`'s per-sample side data
(coil maps and sampling masks) and of the sizes of the flattened layout."""

import numpy as np


def check_maps_and_masks(n, maps, masks):
    """Validated ``{'maps': ..., 'masks': ...}`` (those given) of ``n`` samples; float
    maps keep their precision (float32 maps are not copied: they are the largest
    array of an MRI set)."""
    side = {}
    if maps is not None:
        maps = np.asarray(maps)
        maps = maps if maps.dtype.kind == "f" else maps.astype(np.float64)
        if maps.ndim != 5 or maps.shape[0] != n or maps.shape[1] != 2:
            raise ValueError(f"maps must have shape (n_samples={n}, 2, n_coils, H, W) (real "
                             f"and imaginary parts), got {maps.shape}.")
        side["maps"] = maps
    if masks is not None:
        masks = np.asarray(masks, dtype=np.float64)
        if masks.ndim != 3 or masks.shape[0] != n:
            raise ValueError(f"masks must have shape (n_samples={n}, H, W), got "
                             f"{masks.shape}.")
        if not np.all((masks == 0) | (masks == 1)):
            raise ValueError("masks must hold only 0 and 1.")
        if np.any(masks.reshape(n, -1).sum(axis=1) == 0):
            raise ValueError("a mask has no samples: every mask must sample k-space.")
        side["masks"] = masks
    return side


def check_sizes(n_x, n_y, image_shape, kspace_shape):
    """X and y of the flattened complex layout: real and imaginary parts of k-space of
    ``kspace_shape`` and of images of ``image_shape``."""
    if n_x != 2 * int(np.prod(kspace_shape)):
        raise ValueError(f"X has {n_x} features; k-space of shape {kspace_shape} needs "
                         f"2 * {int(np.prod(kspace_shape))} (real and imaginary parts).")
    if n_y != 2 * int(np.prod(image_shape)):
        raise ValueError(f"y has {n_y} features; images of shape {image_shape} need "
                         f"2 * {int(np.prod(image_shape))} (real and imaginary parts).")
