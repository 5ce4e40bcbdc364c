"""Installation script for skinverse."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "skinverse" / "__init__.py").read_text(), re.M
).group(1)

EXTRAS = {
    "plot": ["matplotlib>=3.5"],
    "logging": ["tensorboard>=2.10", "tqdm>=4.60"],
    "distributed": ["dask[distributed]>=2023.1"],
    "hdf5": ["h5py>=3"],
    "doc": ["sphinx>=7", "numpydoc>=1.6", "matplotlib>=3.8", "sphinx-gallery>=0.17"],
    "test": ["pytest>=7", "pandas>=1.5", "matplotlib>=3.5", "tensorboard>=2.10",
             "dask[distributed]>=2023.1", "h5py>=3"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="skinverse",
    version=VERSION,
    description=(
        "scikit-learn estimators for learned inverse problems and simulation-based "
        "inference, backed by PyTorch"
    ),
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    packages=find_packages(include=["skinverse", "skinverse.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "scikit-learn>=1.6",
        "joblib>=1.2",
        "torch>=2.1",
        "safetensors>=0.4",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["skinverse=skinverse.__main__:main"]},
    classifiers=[
        "License :: OSI Approved :: BSD License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
