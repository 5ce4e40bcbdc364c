"""The ``data`` section of a command-line config: built-in problems and data files.

A data section is either a built-in generator, ``{"generator": name, ...arguments}``, or
files: ``{"file": "data.npz", "X": key, "y": key, "maps": key, ...}`` (``.npz`` keys,
HDF5 dataset paths), ``{"X": "X.npy", "y": "y.npy", ...}`` (one ``.npy`` per array), or
``{"h5": path}`` (a DeepInPy-style HDF5 file). Relative paths are read from the config
file's folder. Every mistake raises :class:`DataError`.
"""

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets._lazy import resolve_hdf5_dataset

SIDE_KEYS = ("maps", "masks", "derivatives", "sample_weight")
_ARRAY_KEYS = ("X", "y") + SIDE_KEYS


class DataError(ValueError):
    """A data section or data file that cannot be used (exit code 3)."""


@dataclass
class Data:
    """Arrays for fit/predict/score, and what a built-in problem knows about them.

    Attributes
    ----------
    X, y : ndarray or None
    side : dict
        Per-sample keyword arguments of ``fit``/``predict``/``score`` (maps, masks, ...).
    params : dict
        Estimator parameters the problem defines (operator, noise_std, simulator, ...);
        they fill the parameters a config leaves at ``None``.
    simulate : bool
        Fit from the simulator (``fit()``), without ``X``.
    image_shape : tuple or None
        Shape of one image, for SSIM.
    complex_images : bool
        ``y`` holds real and imaginary parts; metrics use magnitudes.
    reference : dict
        Known answers: ``fisher`` (analytic Fisher matrix), ``optimal`` (the optimal
        reconstruction of ``X``).
    """

    X: object = None
    y: object = None
    side: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    simulate: bool = False
    image_shape: tuple = None
    complex_images: bool = False
    reference: dict = field(default_factory=dict)


# ---------------------------------------------------------------- built-in generators
def _mri(n_images=100, size=64, n_ellipses=8, n_coils=8, acceleration=4, noise_std=0.01,
         mask="cartesian", random_state=None):
    """Multi-coil MRI of random phantoms (:func:`~skinverse.datasets.make_mri_data`)."""
    from .datasets import make_mri_data, make_phantoms

    images = make_phantoms(n_images, size, n_ellipses=n_ellipses, random_state=random_state)
    X, y, maps, masks = make_mri_data(images, n_coils=n_coils, acceleration=acceleration,
                                      noise_std=noise_std, mask=mask, random_state=random_state)
    return Data(X, y, {"maps": maps, "masks": masks}, image_shape=tuple(masks.shape[1:]),
                complex_images=True)


def _deblurring(n_samples=1000, n_features=32, length_scale=3.0, kernel_size=7,
                kernel_sigma=2.0, noise_std=0.1, random_state=None):
    """1-D Gaussian-process signals blurred plus noise; ``optimal`` is the posterior mean."""
    import torch

    from .datasets import make_gaussian_signals
    from .operators import Blur, gaussian_kernel

    rng = np.random.RandomState(random_state)
    signals, cov = make_gaussian_signals(n_samples, n_features, length_scale=length_scale,
                                         random_state=rng)
    blur = Blur(gaussian_kernel(kernel_size, kernel_sigma), input_shape=(n_features,))
    eye = torch.eye(n_features, dtype=torch.float64)
    A = blur.to(dtype=torch.float64).forward(eye).numpy().T
    X = signals @ A.T + noise_std * rng.normal(size=signals.shape)
    gain = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + noise_std**2 * np.eye(n_features))
    operator = Blur(gaussian_kernel(kernel_size, kernel_sigma), input_shape=(n_features,))
    return Data(X, signals, params={"operator": operator, "noise_std": noise_std},
                reference={"optimal": X @ gain.T})


def _inpainting(n_images=200, size=16, observed_fraction=0.5, noise_std=0.05, n_ellipses=8,
                random_state=None):
    """Phantoms with a random fraction of pixels observed (one mask for all), plus noise."""
    from .datasets import make_phantoms
    from .operators import Inpainting

    rng = np.random.RandomState(random_state)
    images = make_phantoms(n_images, size, n_ellipses=n_ellipses, random_state=rng)
    mask = (rng.uniform(size=images.shape[1:]) < observed_fraction).astype(np.float64)
    X = (images + noise_std * rng.normal(size=images.shape)) * mask
    shape = tuple(images.shape[1:])
    return Data(X.reshape(n_images, -1), images.reshape(n_images, -1),
                params={"operator": Inpainting(mask), "noise_std": noise_std,
                        "input_shape": shape}, image_shape=shape)


def _fisher_problem(factory):
    """A generator over an IMNN toy problem: simulations at parameters around the fiducial
    point (``X``, ``y = theta``); ``mode='simulator'`` fits from the simulator itself."""

    def generate(n_samples=1000, spread=0.1, mode="simulator", random_state=None,
                 **problem_args):
        import torch

        if mode not in ("simulator", "design"):
            raise DataError(f"data 'mode' must be 'simulator' or 'design', got {mode!r}.")
        problem = factory(**problem_args)
        rng = np.random.RandomState(random_state)
        scale = np.maximum(np.abs(problem.theta_fid), 1.0)
        theta = problem.theta_fid + spread * scale * rng.uniform(-1, 1, (n_samples,
                                                                       len(scale)))
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        X = problem.simulator(torch.as_tensor(theta), generator).numpy()
        params = {"simulator": problem.simulator, "theta_fid": problem.theta_fid}
        return Data(X.reshape(n_samples, -1), theta, params=params,
                    simulate=mode == "simulator", reference={"fisher": problem.fisher})

    generate.__signature__ = _merged_signature(generate, factory)
    generate.__doc__ = f"IMNN toy problem {factory.__name__} (simulations around theta_fid)."
    return generate


def _merged_signature(generate, factory):
    """The keyword-only signature of ``generate`` followed by the problem's arguments."""
    own = [p for p in inspect.signature(generate).parameters.values()
           if p.kind is not p.VAR_KEYWORD]
    extra = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(factory).parameters.values()]
    return inspect.Signature([p.replace(kind=p.KEYWORD_ONLY) for p in own] + extra)


def _sklearn(name, drop=("return_X_y", "as_frame", "coef")):
    """A generator over a scikit-learn loader or ``make_*`` function returning ``(X, y)``."""
    import sklearn.datasets

    function = getattr(sklearn.datasets, name)
    fixed = {k: v for k, v in {"return_X_y": True, "coef": False}.items()
             if k in inspect.signature(function).parameters}

    def generate(**kwargs):
        X, y = function(**kwargs, **fixed)[:2]
        return Data(np.asarray(X, dtype=np.float64), np.asarray(y))

    params = [p for k, p in inspect.signature(function).parameters.items() if k not in drop]
    generate.__signature__ = inspect.Signature(params)
    generate.__doc__ = f"scikit-learn's {name} (shipped offline, or generated)."
    return generate


def generators():
    """``{name: generator}``: every built-in data generator of the command line."""
    from .datasets import (
        gaussian_mean_problem,
        gaussian_mean_variance_problem,
        gaussian_variance_problem,
        line_slope_problem,
    )

    table = {"make_mri_data": _mri, "rim_deblurring": _deblurring,
             "rim_inpainting": _inpainting}
    for problem in (gaussian_mean_problem, gaussian_variance_problem,
                    gaussian_mean_variance_problem, line_slope_problem):
        table[problem.__name__] = _fisher_problem(problem)
    for name in ("load_digits", "load_diabetes", "load_iris", "make_regression",
                 "make_classification"):
        table[name] = _sklearn(name)
    return table


def _generate(spec):
    """The :class:`Data` of ``{'generator': name, ...}``, its arguments checked by name."""
    spec = dict(spec)
    name = spec.pop("generator")
    if name == "mri":  # the name of the first config format
        name = "make_mri_data"
    table = generators()
    if name not in table:
        raise DataError(f"unknown data generator {name!r}; choose among {sorted(table)}.")
    function = table[name]
    valid = inspect.signature(function).parameters
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise DataError(f"unknown argument(s) {unknown} of data generator {name!r}; valid: "
                        f"{sorted(valid)}.")
    try:
        return function(**spec)
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise DataError(f"data generator {name!r} failed: {exc}") from exc


# ---------------------------------------------------------------- files
def _path(value, base):
    """The existing file ``value`` (relative to ``base``)."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} not found.")
    return path


def _load_npy(path):
    """A ``.npy`` array, memory-mapped (no pickled objects)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r} as .npy: {exc}") from exc


def _read_npz(path, keys):
    """``{role: array}`` of the ``.npz`` arrays ``keys`` names (no pickled objects)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            missing = sorted(set(keys.values()) - names)
            if missing:
                raise DataError(f"{str(path)!r} has no array(s) {missing}; it holds "
                                f"{sorted(names)}.")
            return {role: archive[key] for role, key in keys.items()}
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r} as .npz: {exc}") from exc


def _h5py():
    """The h5py module, or a :class:`DataError` saying how to install it."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading HDF5 files needs h5py: pip install h5py") from exc
    return h5py


def _h5_dataset(handle, key, path):
    """The dataset at ``key``, refusing external links and virtual datasets on the way
    (they would read other files)."""
    try:
        return resolve_hdf5_dataset(handle, key, path)
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def _read_h5(path, keys):
    """The datasets ``keys`` (``{role: dataset path}``; by default X, y and the side
    arrays under their own names) of the HDF5 file ``path``."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as handle:
            keys = keys or {k: k for k in _ARRAY_KEYS if k == "X" or k in handle}
            return {role: np.asarray(_h5_dataset(handle, key, path)[()])
                    for role, key in keys.items()}
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r} as HDF5: {exc}") from exc


def _default_keys(path):
    """X, y and the side arrays an ``.npz`` file holds under their own names."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {str(path)!r} as .npz: {exc}") from exc
    return {key: key for key in _ARRAY_KEYS if key in names}


def _read_files(spec, base):
    """The :class:`Data` of a files section (``file`` with keys, or one path per array)."""
    spec = dict(spec)
    image_shape = spec.pop("image_shape", None)
    unknown = sorted(set(spec) - set(_ARRAY_KEYS) - {"file"})
    if unknown:
        valid = ["file", *_ARRAY_KEYS, "image_shape"]
        raise DataError(f"unknown data key(s) {unknown}; valid: {valid}, or "
                        "{'generator': name, ...} or {'h5': path}.")
    if "file" not in spec:  # one .npy file per array
        arrays = {role: _load_npy(_path(value, base)) for role, value in spec.items()}
    else:
        path = _path(spec.pop("file"), base)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            if spec:
                raise DataError(f"a .npy file holds X only; give the others as paths, e.g. "
                                f"{{'X': 'X.npy', 'y': 'y.npy'}}, not keys {sorted(spec)}.")
            arrays = {"X": _load_npy(path)}
        elif suffix == ".npz":
            arrays = _read_npz(path, spec or _default_keys(path))
        elif suffix in (".h5", ".hdf5", ".hdf"):
            arrays = _read_h5(path, spec)
        else:
            raise DataError(f"unknown data file type {suffix!r} of {str(path)!r}; use .npz, "
                            ".npy, .h5 or .hdf5.")
    return _from_arrays(arrays, image_shape)


def _from_arrays(arrays, image_shape):
    """:class:`Data` from ``{role: array}``, checking that every array has X's samples."""
    if "X" not in arrays:
        raise DataError("the data section names no 'X'.")
    n = len(arrays["X"])
    for role, array in arrays.items():
        if len(array) != n:
            raise DataError(f"{role} has {len(array)} samples but X has {n}.")
    side = {k: arrays[k] for k in SIDE_KEYS if k in arrays}
    complex_images = "maps" in side
    if image_shape is None and complex_images:
        image_shape = tuple(np.shape(side["maps"])[3:])
    return Data(arrays["X"], arrays.get("y"), side,
                image_shape=None if image_shape is None else tuple(image_shape),
                complex_images=complex_images)


def _deepinpy(spec, base):
    """The :class:`Data` of ``{'h5': path}``, a DeepInPy-style MRI file."""
    from .datasets import load_deepinpy_h5

    spec = dict(spec)
    path = _path(spec.pop("h5"), base)
    unknown = sorted(set(spec) - {"n_images"})
    if unknown:
        raise DataError(f"unknown data key(s) {unknown} with 'h5'; valid: h5, n_images.")
    _h5py()
    try:
        X, y, maps, masks = load_deepinpy_h5(path, **spec)
    except (ValueError, OSError, KeyError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    return _from_arrays({"X": X, "y": y, "maps": maps, "masks": masks}, None)


def load_data(spec, base="."):
    """The :class:`Data` a config's data section describes.

    Parameters
    ----------
    spec : dict or str
        The data section; a string is a file path (``.npz`` with its own key names,
        ``.npy`` holding X, HDF5 with datasets ``X`` and ``y``).
    base : path, default='.'
        Folder that relative file paths start from (the config file's).

    Returns
    -------
    Data
    """
    if isinstance(spec, (str, Path)):
        spec = {"file": str(spec)}
    if not isinstance(spec, dict):
        raise DataError(f"the data section must be a table (JSON object), got {spec!r}.")
    if "generator" in spec:
        return _generate(spec)
    if "h5" in spec:
        return _deepinpy(spec, base)
    return _read_files(spec, base)
