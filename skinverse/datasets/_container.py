r"""Multi-coil MRI acquisitions in the shapes users have, as one indexable object.

scikit-learn splits ``X`` by rows (``cross_val_score``, ``GridSearchCV``, ``Pipeline``);
k-space with its coil maps and sampling masks must split *together*. A
:class:`MultiCoilData` holds all three and indexes like an array of samples, so the
model-selection tools split it without metadata routing.
"""

import numbers

import numpy as np


def _complex_array(value, name, ndim):
    array = np.asarray(value)
    if array.dtype.kind not in "fciu" or array.ndim != ndim:
        raise ValueError(f"{name} must be a numeric array with {ndim} dimensions, got "
                         f"dtype {array.dtype} and shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values.")
    return array


class MultiCoilData:
    r"""k-space, coil sensitivity maps and sampling masks of ``n`` MRI acquisitions.

    The forward model of sample :math:`i` is
    :math:`y_{i,c} = M_i \odot \mathcal F(S_{i,c}\, x_i)` (centred orthonormal FFT), with
    :math:`S_{i,c}` the map of coil :math:`c` and :math:`M_i` the mask.

    Parameters
    ----------
    kspace : array-like of shape (n, n_coils, H, W), complex
        Measured k-space (zeros where not sampled).
    maps : array-like of shape (n, n_coils, H, W), complex
        Coil sensitivity maps.
    masks : array-like of shape (n, H, W)
        Sampling masks of 0 and 1 (or booleans).

    Notes
    -----
    Indexing with integers, slices, boolean or integer arrays (``data[idx]`` or
    ``data[idx, ...]``, as scikit-learn does) returns a :class:`MultiCoilData` of those
    samples; ``len(data)`` and ``data.shape[0]`` are the number of samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from skinverse.datasets import MultiCoilData, make_mri_data, make_phantoms
    >>> from skinverse.unrolled import UnrolledRegressor
    >>> data, images = make_mri_data(make_phantoms(12, 16, random_state=0), n_coils=2,
    ...                              acceleration=2, random_state=0, as_container=True)
    >>> data.shape, images.dtype
    ((12, 2, 16, 16), dtype('complex64'))
    >>> est = UnrolledRegressor(method="cg-sense", lam=1e-3, max_epochs=1)
    >>> scores = cross_val_score(est, data, images, cv=3)  # maps and masks follow the folds
    >>> bool(np.all(scores > 15))  # PSNR in dB of each fold
    True
    """

    def __init__(self, kspace, maps, masks):
        kspace = _complex_array(kspace, "kspace", 4)
        maps = _complex_array(maps, "maps", 4)
        masks = _complex_array(masks, "masks", 3)
        if maps.shape != kspace.shape:
            raise ValueError(f"maps {maps.shape} and kspace {kspace.shape} must have the same "
                             "shape (n, n_coils, H, W).")
        if masks.shape != (kspace.shape[0], *kspace.shape[2:]):
            raise ValueError(f"masks must have shape (n, H, W) = "
                             f"{(kspace.shape[0], *kspace.shape[2:])}, got {masks.shape}.")
        if not np.all((masks == 0) | (masks == 1)):
            raise ValueError("masks must hold only 0 and 1.")
        self.kspace, self.maps, self.masks = kspace, maps, masks.astype(np.float64)

    @property
    def shape(self):
        return self.kspace.shape

    @property
    def ndim(self):
        return 4

    def __len__(self):
        return self.kspace.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple):  # scikit-learn's X[idx, ...]
            rest = [k for k in key[1:] if k is not Ellipsis]
            if rest:
                raise IndexError("MultiCoilData indexes samples only.")
            key = key[0]
        if isinstance(key, numbers.Integral):
            key = [key]
        return MultiCoilData(self.kspace[key], self.maps[key], self.masks[key])

    def __repr__(self):
        n, coils, H, W = self.shape
        return f"MultiCoilData(n={n}, n_coils={coils}, image_shape=({H}, {W}))"

    def flat(self, dtype=None):
        """The flattened real layout of :class:`~skinverse.unrolled.UnrolledRegressor`:
        ``X`` (n, 2 * n_coils * H * W), ``maps`` (n, 2, n_coils, H, W), ``masks``.
        ``dtype`` defaults to the precision of the k-space (float32 for complex64 and
        float32, float64 otherwise), so predictions keep the input's precision."""
        if dtype is None:
            single = self.kspace.dtype in (np.complex64, np.float32, np.float16)
            dtype = np.float32 if single else np.float64
        n = len(self)
        X = np.concatenate([self.kspace.real.reshape(n, -1), self.kspace.imag.reshape(n, -1)],
                           axis=1).astype(dtype)
        maps = np.stack([self.maps.real, self.maps.imag], axis=1).astype(dtype)
        return X, maps, self.masks.astype(dtype)

    @classmethod
    def from_flat(cls, X, maps, masks):
        """The inverse of :meth:`flat`."""
        X, maps = np.asarray(X), np.asarray(maps)
        kspace_shape = maps.shape[2:]
        two = X.reshape(len(X), 2, *kspace_shape)
        return cls(two[:, 0] + 1j * two[:, 1], maps[:, 0] + 1j * maps[:, 1], masks)


def images_to_flat(images, dtype=np.float64):
    """Complex images (n, H, W) -> real (n, 2 * H * W), real part first."""
    images = np.asarray(images)
    n = len(images)
    return np.concatenate([images.real.reshape(n, -1), images.imag.reshape(n, -1)],
                          axis=1).astype(dtype)


def flat_to_images(flat, image_shape):
    """Real (n, 2 * H * W) -> complex images (n, H, W)."""
    two = np.asarray(flat).reshape(len(flat), 2, *image_shape)
    return two[:, 0] + 1j * two[:, 1]
