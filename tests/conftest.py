"""Test configuration: one torch thread (the common checks run ~10x faster on 2 cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def digits():
    """load_digits scaled to [0, 1] (ships with scikit-learn)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def regression_data():
    """A smooth nonlinear regression problem with a known noise-free target."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(300, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]
    return X, y
