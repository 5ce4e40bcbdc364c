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


def is_real_operator(operator):
    """A user's operator that maps real signals to real measurements (e.g. a blur)."""
    return not (operator is None or isinstance(operator, str)
                or getattr(operator, "complex_input", False))


def check_sizes(n_x, n_y, image_shape, kspace_shape, real_operator=False):
    """X and y of the flattened complex layout: real and imaginary parts of k-space of
    ``kspace_shape`` and of images of ``image_shape``. With a ``real_operator`` the real
    layout (one value per entry) is allowed too, so the error names the array that fits
    neither: X of the real layout with a y of the wrong size is a mistake in y."""
    m, d = int(np.prod(kspace_shape)), int(np.prod(image_shape))
    if real_operator and n_x in (m, 2 * m) and n_y not in (d, 2 * d):
        raise ValueError(f"y has {n_y} features but the operator's input_shape "
                         f"{tuple(image_shape)} holds {d} (real images, with X of {m} "
                         f"features) or 2 * {d} (real and imaginary parts, with X of "
                         f"2 * {m}).")
    if real_operator and n_y == d:
        raise ValueError(f"X has {n_x} features but the operator's output_shape "
                         f"{tuple(kspace_shape)} holds {m} (for the real images of y, "
                         f"{d} features).")
    if real_operator and n_x == m:
        raise ValueError(f"y has {n_y} features and X {n_x}: real images of "
                         f"{tuple(image_shape)} ({d} features) need X of {m} features, the "
                         f"operator's output_shape {tuple(kspace_shape)}; real and imaginary "
                         f"parts need y of 2 * {d} and X of 2 * {m}.")
    if n_x != 2 * int(np.prod(kspace_shape)):
        raise ValueError(f"X has {n_x} features; k-space of shape {kspace_shape} needs "
                         f"2 * {int(np.prod(kspace_shape))} (real and imaginary parts).")
    if n_y != 2 * int(np.prod(image_shape)):
        raise ValueError(f"y has {n_y} features; images of shape {image_shape} need "
                         f"2 * {int(np.prod(image_shape))} (real and imaginary parts).")
