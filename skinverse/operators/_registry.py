"""One instance of every operator family, for the shared parametrised tests.

A new operator is registered here once; ``tests/test_operators.py`` then checks its
adjointness, shapes, dtypes, devices and composition.
"""

import numpy as np

from ._families import Blur, Identity, Inpainting, MatrixOperator, gaussian_kernel
from ._mri import MultiCoilMRI, SubsampledFourier


def registered_operators():
    """``{name: operator}`` with small, odd-sized instances of every family."""
    rng = np.random.RandomState(0)
    return {
        "identity": Identity((7,)),
        "matrix": MatrixOperator(rng.normal(size=(5, 9))),
        "matrix-complex": MatrixOperator(rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6))),
        "blur-1d": Blur(gaussian_kernel(5, 1.0), input_shape=(11,)),
        "blur-2d": Blur(gaussian_kernel(3, 0.8, ndim=2), input_shape=(7, 9)),
        "blur-2d-channels": Blur(gaussian_kernel(3, 0.8, ndim=2), input_shape=(3, 5, 6)),
        "inpainting": Inpainting((rng.uniform(size=(6, 5)) > 0.4).astype(float)),
        "fourier-odd": SubsampledFourier((rng.uniform(size=(7, 6)) > 0.5).astype(float)),
        "multicoil-mri": MultiCoilMRI(
            rng.normal(size=(3, 5, 7)) + 1j * rng.normal(size=(3, 5, 7)),
            (rng.uniform(size=(5, 7)) > 0.4).astype(float),
        ),
        "blur-then-mask": Inpainting((rng.uniform(size=(11,)) > 0.3).astype(float))
        @ Blur(gaussian_kernel(5, 1.0), input_shape=(11,)),
    }
