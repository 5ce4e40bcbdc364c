r"""Offline MRI data: ellipse phantoms, smooth coil maps, sampling masks, and simulated
multi-coil k-space in the layout of :class:`~skinverse.unrolled.UnrolledRegressor`.

Layout (complex data cross the scikit-learn boundary as real arrays, real part first):

* ``X``: k-space, shape (n, 2 * C * H * W), the flattening of (n, 2, C, H, W);
* ``y``: images, shape (n, 2 * H * W), the flattening of (n, 2, H, W);
* ``maps``: coil maps, shape (n, 2, C, H, W); ``masks``: sampling masks, (n, H, W).
"""

import numpy as np
import torch
from sklearn.utils import check_random_state


def make_phantoms(n_images, size=64, *, n_ellipses=8, random_state=None):
    """Random-ellipse phantoms of the Shepp-Logan family, with values in [0, 1].

    Each image is a head-shaped ellipse with a darker rim and ``n_ellipses`` inner ellipses
    of random centre, axes, angle and intensity.

    Parameters
    ----------
    n_images : int
    size : int or (H, W), default=64
        Image size (odd sizes too).
    n_ellipses : int, default=8
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    images : ndarray of shape (n_images, H, W)

    Examples
    --------
    >>> from skinverse.datasets import make_phantoms
    >>> make_phantoms(2, 32, random_state=0).shape
    (2, 32, 32)
    """
    rng = check_random_state(random_state)
    H, W = (size, size) if np.isscalar(size) else size
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")

    def ellipse(cx, cy, a, b, angle):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    images = np.zeros((n_images, H, W))
    for image in images:
        a, b = rng.uniform(0.7, 0.9), rng.uniform(0.8, 0.95)
        image[ellipse(0, 0, a, b, 0)] = 1.0
        image[ellipse(0, 0, 0.92 * a, 0.92 * b, 0)] = 0.2
        for _ in range(n_ellipses):
            cx, cy = rng.uniform(-0.5, 0.5, size=2) * np.array([a, b])
            axes = rng.uniform(0.05, 0.35, size=2)
            image[ellipse(cx, cy, *axes, rng.uniform(0, np.pi))] += rng.uniform(-0.15, 0.4)
    return np.clip(images, 0, 1)


def make_coil_maps(n_coils, shape, *, random_state=None):
    r"""Smooth complex coil sensitivities around the field of view, normalised so that
    :math:`\sum_c |S_c|^2 = 1` everywhere.

    Returns
    -------
    maps : ndarray of shape (n_coils, H, W), complex

    Examples
    --------
    >>> import numpy as np
    >>> from skinverse.datasets import make_coil_maps
    >>> maps = make_coil_maps(4, (16, 16), random_state=0)
    >>> bool(np.allclose((np.abs(maps) ** 2).sum(axis=0), 1))
    True
    """
    rng = check_random_state(random_state)
    H, W = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    angles = 2 * np.pi * (np.arange(n_coils) / n_coils + rng.uniform(0, 1 / n_coils))
    maps = []
    for angle in angles:
        cx, cy = 1.3 * np.cos(angle), 1.3 * np.sin(angle)
        magnitude = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.9**2))
        phase = rng.uniform(-np.pi, np.pi) + rng.uniform(-1, 1) * (xx * np.cos(angle)
                                                                  + yy * np.sin(angle))
        maps.append(magnitude * np.exp(1j * phase))
    maps = np.array(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def make_cartesian_mask(shape, acceleration=4, *, center_fraction=0.08, random_state=None):
    """Variable-density Cartesian mask: fully sampled centre lines plus random phase-encode
    lines (columns) drawn with a density decaying from the centre, ``W / acceleration``
    lines in all.

    Returns
    -------
    mask : ndarray of shape (H, W) of 0.0/1.0

    Examples
    --------
    >>> from skinverse.datasets import make_cartesian_mask
    >>> int(make_cartesian_mask((32, 32), 4, random_state=0)[0].sum())
    8
    """
    rng = check_random_state(random_state)
    H, W = shape
    n_lines = max(1, int(round(W / acceleration)))
    n_center = min(n_lines, max(1, int(round(center_fraction * W))))
    center = np.arange(W // 2 - n_center // 2, W // 2 - n_center // 2 + n_center)
    others = np.setdiff1d(np.arange(W), center)
    density = 1.0 / (1.0 + np.abs(others - W // 2)) ** 1.0
    chosen = rng.choice(others, size=n_lines - n_center, replace=False, p=density / density.sum())
    mask = np.zeros((H, W))
    mask[:, np.concatenate([center, chosen]).astype(int)] = 1.0
    return mask


def make_poisson_disc_mask(shape, acceleration=4, *, center_fraction=0.08, random_state=None):
    """Variable-density Poisson-disc mask (2-D random sampling with a minimum distance that
    grows away from the centre), ``H * W / acceleration`` samples.

    Returns
    -------
    mask : ndarray of shape (H, W) of 0.0/1.0

    Examples
    --------
    >>> from skinverse.datasets import make_poisson_disc_mask
    >>> mask = make_poisson_disc_mask((32, 32), 4, random_state=0)
    >>> bool(0.2 < mask.mean() < 0.3)
    True
    """
    rng = check_random_state(random_state)
    H, W = shape
    target = int(round(H * W / acceleration))
    yy, xx = np.meshgrid(np.arange(H) - H // 2, np.arange(W) - W // 2, indexing="ij")
    radius = np.sqrt((yy / (H / 2)) ** 2 + (xx / (W / 2)) ** 2)
    mask = (radius <= center_fraction * 2).astype(float)
    min_distance = 0.5 + 1.5 * radius  # pixels; looser sampling at high frequencies
    candidates = rng.permutation(H * W)
    for scale in (1.0, 0.7, 0.5, 0.0):
        for index in candidates:
            if mask.sum() >= target:
                return mask
            i, j = divmod(index, W)
            if mask[i, j]:
                continue
            r = scale * min_distance[i, j]
            lo_i, hi_i = max(0, int(i - r)), min(H, int(i + r) + 1)
            lo_j, hi_j = max(0, int(j - r)), min(W, int(j + r) + 1)
            if r == 0 or not mask[lo_i:hi_i, lo_j:hi_j].any():
                mask[i, j] = 1.0
    return mask


#: Images simulated at a time: the k-space of a chunk is computed in double precision
#: and written into the outputs, so the peak memory is the outputs' plus one chunk's.
CHUNK = 16


def make_mri_data(images, n_coils=8, acceleration=4, noise_std=0.01, *, mask="cartesian",
                  dtype="float32", random_state=None, as_container=False):
    r"""Simulate multi-coil k-space of ``images`` with per-image coil maps and masks.

    :math:`y_c = M \odot F(S_c x) + \sigma (\epsilon_r + i \epsilon_i)` on the sampled
    locations. The k-space is computed in double precision from the maps as returned (so
    the data and the maps agree to the precision of ``dtype``), ``CHUNK`` images at a
    time, so the memory used is that of the outputs plus one chunk.

    Parameters
    ----------
    images : array-like of shape (n_images, H, W), real or complex
    n_coils : int, default=8
    acceleration : float, default=4
    noise_std : float, default=0.01
    mask : {'cartesian', 'poisson'}, default='cartesian'
    dtype : {'float32', 'float64'}, default='float32'
        Precision of the outputs (complex64 / complex128 for ``as_container``): single
        precision, as scanners store k-space and as the estimators compute by default,
        halves the memory of double.
    random_state : int, RandomState instance or None, default=None
    as_container : bool, default=False
        Return ``(data, images)``: a :class:`MultiCoilData` (complex k-space, maps and
        masks of shape (n, n_coils, H, W) and (n, H, W)) and the complex images (n, H, W),
        the shapes users have; the default is the flattened real layout below.

    Returns
    -------
    X : ndarray of shape (n_images, 2 * n_coils * H * W)
        k-space, real and imaginary parts.
    y : ndarray of shape (n_images, 2 * H * W)
        The images, real and imaginary parts.
    maps : ndarray of shape (n_images, 2, n_coils, H, W)
    masks : ndarray of shape (n_images, H, W)

    Examples
    --------
    >>> from skinverse.datasets import make_mri_data, make_phantoms
    >>> X, y, maps, masks = make_mri_data(make_phantoms(2, 16, random_state=0), n_coils=4,
    ...                                   random_state=0)
    >>> X.shape, y.shape, maps.shape, masks.shape, X.dtype
    ((2, 2048), (2, 512), (2, 2, 4, 16, 16), (2, 16, 16), dtype('float32'))
    """
    from ..operators import MultiCoilMRI
    from ._container import MultiCoilData

    rng = check_random_state(random_state)
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n_images, H, W), got {images.shape}.")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    dtype = np.dtype(dtype)
    n, H, W = images.shape
    make_mask = {"cartesian": make_cartesian_mask, "poisson": make_poisson_disc_mask}[mask]
    maps = np.empty((n, 2, n_coils, H, W), dtype)
    for i in range(n):
        coil_maps = make_coil_maps(n_coils, (H, W), random_state=rng)
        maps[i, 0], maps[i, 1] = coil_maps.real, coil_maps.imag
    masks = np.empty((n, H, W), dtype)
    for i in range(n):
        masks[i] = make_mask((H, W), acceleration, random_state=rng)
    op = MultiCoilMRI(image_shape=(H, W), n_coils=n_coils)
    X = np.empty((n, 2, n_coils, H, W), dtype)
    y = np.empty((n, 2, H, W), dtype)
    chunks = [slice(start, start + CHUNK) for start in range(0, n, CHUNK)]
    for rows in chunks:
        x = torch.as_tensor(images[rows]).to(torch.complex128)
        y[rows, 0], y[rows, 1] = x.real.numpy(), x.imag.numpy()
        chunk_maps = torch.as_tensor(maps[rows], dtype=torch.float64)
        kspace = op.forward(x, maps=torch.complex(chunk_maps[:, 0], chunk_maps[:, 1]),
                            mask=torch.as_tensor(masks[rows], dtype=torch.float64))
        X[rows, 0], X[rows, 1] = kspace.real.numpy(), kspace.imag.numpy()
    # the noise: one stream of the real parts of every sample, then of the imaginary parts
    for part in (0, 1):
        for rows in chunks:
            noise = rng.normal(size=X[rows, part].shape) * masks[rows, None]
            X[rows, part] += noise_std * noise
    if as_container:
        kspace, coil_maps = X[:, 0] + 1j * X[:, 1], maps[:, 0] + 1j * maps[:, 1]
        return MultiCoilData(kspace, coil_maps, masks), y[:, 0] + 1j * y[:, 1]
    return X.reshape(n, -1), y.reshape(n, -1), maps, masks


def load_deepinpy_h5(path, n_images=None):
    """Load a DeepInPy-style HDF5 file (keys ``imgs``, ``maps``, ``masks``, ``ksp``) into the
    layout of :func:`make_mri_data` (needs ``h5py``).

    Parameters
    ----------
    path : str or path
    n_images : int or None, default=None
        Read only the first ``n_images``.

    Returns
    -------
    X, y, maps, masks : as :func:`make_mri_data`.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("load_deepinpy_h5 needs h5py: pip install h5py") from exc
    rows = slice(None) if n_images is None else slice(0, n_images)
    with h5py.File(path, "r") as handle:
        missing = {"imgs", "maps", "masks", "ksp"} - set(handle)
        if missing:
            raise ValueError(f"{path} lacks the DeepInPy key(s) {sorted(missing)}.")
        imgs, maps = np.asarray(handle["imgs"][rows]), np.asarray(handle["maps"][rows])
        masks, ksp = np.asarray(handle["masks"][rows]), np.asarray(handle["ksp"][rows])
    n, n_coils, H, W = maps.shape
    if imgs.shape != (n, H, W) or ksp.shape != maps.shape or masks.shape != (n, H, W):
        raise ValueError(
            f"inconsistent shapes in {path}: imgs {imgs.shape}, maps {maps.shape}, masks "
            f"{masks.shape}, ksp {ksp.shape}; expected (N, H, W), (N, C, H, W), (N, H, W), "
            "(N, C, H, W)."
        )
    ksp = ksp * masks[:, None]
    X = np.stack([ksp.real, ksp.imag], axis=1).reshape(n, -1).astype(np.float64)
    y = np.stack([imgs.real, imgs.imag], axis=1).reshape(n, -1).astype(np.float64)
    return X, y, np.stack([maps.real, maps.imag], axis=1), masks.astype(np.float64)
