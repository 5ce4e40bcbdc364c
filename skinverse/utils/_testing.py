"""Small estimators built on the shared base, for tests and benchmarks only.

They prove the base on its own: a plain multilayer perceptron behind each head.
"""

import torch
from sklearn.base import ClassifierMixin, RegressorMixin

from .._base import BaseTorchEstimator, Callback, ClassifierHead, RegressorHead, shared_params
from ..nn import MLP


def make_mlp(n_in, hidden_layer_sizes, n_out):
    """``Linear -> ReLU -> ... -> Linear``."""
    return MLP(n_in, hidden_layer_sizes, n_out)


class _MLPMixin:
    _model_params = (*BaseTorchEstimator._model_params, "hidden_layer_sizes")
    _parameter_constraints = {
        **BaseTorchEstimator._parameter_constraints,
        "hidden_layer_sizes": [tuple],
    }

    def _build_module(self, data):
        return make_mlp(self.n_features_in_, self.hidden_layer_sizes, self.n_outputs_)


class TorchMLPRegressor(RegressorMixin, _MLPMixin, RegressorHead, BaseTorchEstimator):
    """Test-only MLP regressor on :class:`BaseTorchEstimator`."""

    def __init__(self, *, hidden_layer_sizes=(32,), max_epochs=200, batch_size="auto",
                 learning_rate=1e-3, optimizer="adam", alpha=0.0, lr_schedule=None,
                 grad_clip=None, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, tol=1e-4, warm_start=False, random_state=None,
                 device="auto", dtype="float32", verbose=0, callbacks=None, log_dir=None,
                 checkpoint_dir=None, num_workers=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.num_workers = num_workers
        super().__init__(**shared_params(locals()))


class TorchMLPClassifier(ClassifierMixin, _MLPMixin, ClassifierHead, BaseTorchEstimator):
    """Test-only MLP classifier on :class:`BaseTorchEstimator`."""

    _parameter_constraints = {
        **_MLPMixin._parameter_constraints,
        "class_weight": [None, dict, str],
    }

    def __init__(self, *, hidden_layer_sizes=(32,), class_weight=None, max_epochs=200,
                 batch_size="auto", learning_rate=1e-3, optimizer="adam", alpha=0.0,
                 lr_schedule=None, grad_clip=None, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, warm_start=False,
                 random_state=None, device="auto", dtype="float32", verbose=0,
                 callbacks=None, log_dir=None, checkpoint_dir=None, num_workers=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.class_weight = class_weight
        self.num_workers = num_workers
        super().__init__(**shared_params(locals()))


def regression_problem(n_samples=240, n_features=5, seed=0):
    """A fixed nonlinear regression problem (for tests that spawn processes)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n_samples, n_features))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]


class RecordingDataset(torch.utils.data.Dataset):
    """A map-style torch ``Dataset`` of ``(X[i], y[i])`` that records which items it
    read (to test that each data-parallel rank reads only its own rows)."""

    def __init__(self, X, y):
        self.X, self.y, self.reads = X, y, []

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        self.reads.append(int(index))
        return self.X[index], self.y[index]


def data_parallel_worker(rank, world_size, init_method, out_path, params, lazy=False):
    """One rank of a gloo data-parallel fit of :class:`TorchMLPRegressor`; rank 0 saves
    its loss curve, weights and a pickle of the fitted estimator to ``out_path``. With
    ``lazy`` the data comes as a :class:`RecordingDataset` and every rank saves the
    items it read."""
    import pickle

    import torch

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init_method, rank=rank,
                                         world_size=world_size)
    try:
        X, y = regression_problem()
        if lazy:
            data = RecordingDataset(X, y)
            est = TorchMLPRegressor(**params).fit(data)
            with open(f"{out_path}.rank{rank}.reads", "wb") as handle:
                pickle.dump(data.reads, handle)
        else:
            est = TorchMLPRegressor(**params).fit(X, y)
        if rank == 0:
            with open(out_path, "wb") as handle:
                pickle.dump({"loss_curve": est.loss_curve_, "estimator": est}, handle)
        with open(f"{out_path}.rank{rank}", "wb") as handle:  # every rank's weights
            pickle.dump({k: v.numpy() for k, v in est.module_.state_dict().items()}, handle)
        # Tear down together: a rank that leaves while its peer still works can make
        # gloo's shutdown abort the peer ("terminate called without an active exception").
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


class RaiseAt(Callback):
    """A callback raising ``KeyboardInterrupt`` at the end of epoch ``epoch`` (Ctrl-C or a
    pre-emption, for tests of interruption and resumption)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, estimator, logs):
        if logs["epoch"] == self.epoch:
            raise KeyboardInterrupt
