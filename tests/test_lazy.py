"""Training data read lazily (numpy memory-maps, HDF5, torch Datasets): the same model as
arrays holding the same values, bit for bit on the CPU; clear errors for bad data."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skinverse import ImplicitClassifier, RIMRegressor, UnrolledRegressor
from skinverse.datasets import (
    HDF5Array,
    make_linear_gaussian_problem,
    make_mri_data,
    make_phantoms,
)
from skinverse.utils._testing import (
    TorchMLPClassifier,
    TorchMLPRegressor,
    data_parallel_worker,
    regression_problem,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def memmap(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    out[:] = array
    out.flush()
    return np.load(path, mmap_mode="r")


def hdf5(tmp_path, **arrays):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        for name, array in arrays.items():
            handle[name] = array
    return {name: HDF5Array(path, name) for name in arrays}


class DictDataset(torch.utils.data.Dataset):
    """Items as dicts of per-sample arrays (side data travels with its sample)."""

    def __init__(self, **arrays):
        self.arrays = arrays

    def __len__(self):
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.arrays.items()}


def regression_data():
    X, y = regression_problem(n_samples=300)
    return X, y, np.random.RandomState(1).uniform(0.5, 2.0, size=len(X))


MLP = dict(hidden_layer_sizes=(8,), max_epochs=4, batch_size=32, random_state=0,
           device="cpu", early_stopping=True)


@pytest.mark.parametrize("kind", ["memmap", "hdf5", "dataset", "dataset-workers"])
def test_regressor_on_lazy_data_equals_arrays(tmp_path, kind):
    """Sample weights normalised over all rows, the same split, the same batches."""
    X, y, w = regression_data()
    reference = TorchMLPRegressor(**MLP).fit(X, y, sample_weight=w)
    params = dict(MLP)
    if kind == "memmap":
        args = (memmap(tmp_path, "X", X), memmap(tmp_path, "y", y))
    elif kind == "hdf5":
        files = hdf5(tmp_path, X=X, y=y)
        args = (files["X"], files["y"])
    else:
        args = (DictDataset(X=X, y=y),)
        params["num_workers"] = 2 if kind == "dataset-workers" else 0
    est = TorchMLPRegressor(**params).fit(*args, sample_weight=w)
    np.testing.assert_array_equal(est.predict(X), reference.predict(X))
    assert est.validation_scores_ == reference.validation_scores_
    assert est.n_features_in_ == 5 and est.t_ == reference.t_


def test_classifier_on_a_dataset_decides_classes_and_weights_from_every_row(tmp_path):
    """Labels and class weights come from all rows (one class appears only after the
    first 256 rows, the head that sets the shapes); the split is stratified on them."""
    X, y = regression_problem(n_samples=400)
    labels = np.where(y > 0.3, "high", "low").astype(object)
    labels[350:] = "rare"
    params = dict(MLP, class_weight="balanced")
    reference = TorchMLPClassifier(**params).fit(X, labels)
    est = TorchMLPClassifier(**params).fit(
        torch.utils.data.StackDataset(torch.as_tensor(X), list(labels))
        if hasattr(torch.utils.data, "StackDataset") else DictDataset(X=X, y=labels))
    assert list(est.classes_) == ["high", "low", "rare"]
    np.testing.assert_array_equal(est.predict_proba(X), reference.predict_proba(X))
    assert est.validation_scores_ == reference.validation_scores_


def test_rim_on_lazy_data_equals_arrays(tmp_path):
    """Standardisation and the Wiener initialisation gathered from every row (1500 > one
    read chunk) in one streamed pass, as for arrays."""
    problem = make_linear_gaussian_problem("blur", 16, signal_scale=50.0, signal_mean=3.0,
                                           random_state=0)
    X, y = problem.sample(1500, random_state=1)
    params = dict(operator=problem.operator, noise_std=problem.noise_std, max_epochs=3,
                  hidden_size=8, n_steps=2, random_state=0, device="cpu")
    reference = RIMRegressor(**params).fit(X, y)
    files = hdf5(tmp_path, X=X, y=y)
    for args in [(files["X"], files["y"]),
                 (torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)),)]:
        est = RIMRegressor(**params).fit(*args)
        np.testing.assert_array_equal(est.predict(X), reference.predict(X))
        assert est.validation_scores_ == reference.validation_scores_
        assert est._standardization_[2] == reference._standardization_[2]


def test_unrolled_on_lazy_data_with_side_data_equals_arrays(tmp_path):
    """k-space, images, coil maps and masks read together, row by row."""
    X, y, maps, masks = make_mri_data(make_phantoms(16, 16, random_state=0), n_coils=2,
                                      random_state=0)
    params = dict(max_epochs=2, width=4, depth=2, n_unrolls=2, batch_size=5,
                  early_stopping=True, random_state=0, device="cpu")
    reference = UnrolledRegressor(**params).fit(X, y, maps=maps, masks=masks)
    lazy = [memmap(tmp_path, k, v) for k, v in (("X", X), ("y", y), ("m", maps), ("k", masks))]
    for est in [UnrolledRegressor(**params).fit(lazy[0], lazy[1], maps=lazy[2], masks=lazy[3]),
                UnrolledRegressor(**params).fit(DictDataset(X=X, y=y, maps=maps, masks=masks))]:
        np.testing.assert_array_equal(est.predict(X, maps=maps, masks=masks),
                                      reference.predict(X, maps=maps, masks=masks))
        assert est.validation_scores_ == reference.validation_scores_


def test_an_estimator_that_does_not_stream_reads_the_data_whole(tmp_path):
    """ImplicitClassifier keeps per-sample equilibria: a memory-map (what joblib hands its
    workers) is read silently, a Dataset with a warning; the model is the arrays' model."""
    X, y = regression_problem(n_samples=120)
    labels = (y > 0.3).astype(int)
    params = dict(hidden_size=8, max_epochs=2, random_state=0, device="cpu")
    reference = ImplicitClassifier(**params).fit(X, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ImplicitClassifier(**params).fit(memmap(tmp_path, "X", X), labels)
    np.testing.assert_array_equal(est.predict_proba(X), reference.predict_proba(X))
    with pytest.warns(UserWarning, match="does not stream"):
        est = ImplicitClassifier(**params).fit(DictDataset(X=X, y=labels))
    np.testing.assert_array_equal(est.predict_proba(X), reference.predict_proba(X))


# ---------------------------------------------------------------------- bad input
def test_a_nan_read_late_in_the_epoch_names_the_sample_and_leaves_nothing(tmp_path):
    X, y, _ = regression_data()
    X = X.copy()
    X[287, 3] = np.nan  # in the last batches of the first epoch
    lazy = memmap(tmp_path, "X", X)
    est = TorchMLPRegressor(**dict(MLP, early_stopping=False),
                            checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"X has a value that is NaN or infinite \(sample 287, column 3"):
        est.fit(lazy, y)
    assert not hasattr(est, "module_")  # no half-trained model
    assert not (tmp_path / "ckpt").exists()  # nothing written


def test_a_failed_warm_start_on_lazy_data_keeps_the_model_it_started_from(tmp_path):
    X, y, _ = regression_data()
    est = TorchMLPRegressor(**dict(MLP, early_stopping=False, warm_start=True)).fit(X, y)
    before = est.predict(X)
    bad = X.copy()
    bad[250] = np.inf
    with pytest.raises(ValueError, match="sample 250"):
        est.fit(memmap(tmp_path, "bad", bad), y)
    np.testing.assert_array_equal(est.predict(X), before)
    assert est.n_iter_ == 4
    est.fit(X, y)  # and it trains on from there
    assert est.n_iter_ == 8


@pytest.mark.parametrize("item, message", [
    (lambda i: (np.zeros(5 if i != 7 else 4), 0.0), r"sample 7 of the Dataset: 'X' has shape"),
    (lambda i: (np.zeros(5), 0.0 if i != 9 else "a"), r"sample 9 of the Dataset: 'y' has dtype"),
    (lambda i: (np.zeros(5), 0.0) if i != 3 else (np.zeros(5),), r"sample 3 .* parts"),
])
def test_inconsistent_dataset_items_name_the_sample(item, message):
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, index):
            return item(index)

    with pytest.raises(ValueError, match=message):
        TorchMLPRegressor(**MLP).fit(Bad())


def test_an_iterable_dataset_is_refused():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield np.zeros(3), 0.0

    with pytest.raises(TypeError, match="map-style"):
        TorchMLPRegressor(**MLP).fit(Stream())


def test_hdf5_paths_that_do_not_exist_or_leave_the_file_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HDF5Array(tmp_path / "missing.h5", "X")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["X"] = np.zeros((4, 2))
    with h5py.File(tmp_path / "main.h5", "w") as handle:
        handle["X"] = h5py.ExternalLink("other.h5", "/X")
        handle["group/Z"] = np.zeros((4, 2))
    with pytest.raises(ValueError, match="external link"):
        HDF5Array(tmp_path / "main.h5", "X")
    with pytest.raises(ValueError, match="no dataset 'Y'"):
        HDF5Array(tmp_path / "main.h5", "Y")
    with pytest.raises(ValueError, match="is a group"):
        HDF5Array(tmp_path / "main.h5", "group")


def test_hdf5_array_reads_rows_in_any_order_and_pickles(tmp_path):
    data = np.arange(30.0).reshape(10, 3)
    array = hdf5(tmp_path, X=data)["X"]
    np.testing.assert_array_equal(array[[7, 2, 2, 9]], data[[7, 2, 2, 9]])
    clone = pickle.loads(pickle.dumps(array))  # reopens the file where it lands
    np.testing.assert_array_equal(clone[3:5], data[3:5])
    assert clone.shape == (10, 3) and len(clone) == 10


def test_lazy_data_of_unequal_lengths_is_refused(tmp_path):
    X, y, _ = regression_data()
    with pytest.raises(ValueError, match="different numbers of samples"):
        TorchMLPRegressor(**MLP).fit(memmap(tmp_path, "X", X), y[:-1])


# ---------------------------------------------------------------------- data parallel
def test_each_rank_reads_only_its_share_and_the_fit_matches_one_process(tmp_path):
    """Two gloo processes under DistributedDataParallel on a Dataset: every training row
    is read once per epoch by exactly one rank, and the model equals the one-process fit
    on the same global batches."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    params = dict(hidden_layer_sizes=(16,), max_epochs=3, batch_size=40, tol=0,
                  n_iter_no_change=99, random_state=0, device="cpu")
    out = tmp_path / "rank0.pkl"
    torch.multiprocessing.spawn(
        data_parallel_worker,
        args=(2, f"file://{tmp_path / 'rendezvous'}", str(out), params, True),
        nprocs=2, join=True)
    X, y = regression_problem()
    single = TorchMLPRegressor(**params).fit(X, y)
    result = pickle.loads(out.read_bytes())
    np.testing.assert_allclose(result["loss_curve"], single.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(result["estimator"].predict(X), single.predict(X), rtol=1e-4,
                               atol=1e-5)
    reads = [pickle.loads((tmp_path / f"rank0.pkl.rank{r}.reads").read_bytes())
             for r in (0, 1)]
    head = 1 + min(len(X), 256)  # each rank reads the first item (the parts' shapes),
    training = [r[head:] for r in reads]  # then validates the first rows once
    assert [len(r) for r in training] == [3 * len(X) // 2] * 2
    for epoch in range(3):
        share = [set(r[epoch * 120:(epoch + 1) * 120]) for r in training]
        assert not share[0] & share[1] and len(share[0] | share[1]) == len(X)


def test_an_interrupted_fit_on_lazy_data_resumes_exactly(tmp_path):
    """The checkpoint of lazy data is keyed by a chunked hash of its bytes."""
    from skinverse.exceptions import TrainingInterruptedWarning
    from skinverse.utils._testing import RaiseAt

    X, y, _ = regression_data()
    lazy = (memmap(tmp_path, "X", X), memmap(tmp_path, "y", y))
    params = dict(MLP, max_epochs=6, checkpoint_dir=tmp_path / "ckpt")
    reference = TorchMLPRegressor(**MLP | {"max_epochs": 6}).fit(X, y)
    with pytest.warns(TrainingInterruptedWarning):
        TorchMLPRegressor(**params, callbacks=[RaiseAt(3)]).fit(*lazy)
    resumed = TorchMLPRegressor(**params).fit(*lazy)
    np.testing.assert_array_equal(resumed.predict(X), reference.predict(X))
    other = X.copy()
    other[5, 0] += 1.0  # other data: a fit of its own, not the checkpoint above
    fresh = TorchMLPRegressor(**params).fit(memmap(tmp_path, "other", other), lazy[1])
    assert fresh.n_iter_ == 6 and len(list((tmp_path / "ckpt").iterdir())) == 2


def test_a_model_fitted_with_loader_workers_pickles(tmp_path):
    X, y, _ = regression_data()
    est = TorchMLPRegressor(**MLP, num_workers=1).fit(DictDataset(X=X, y=y))
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict(X), est.predict(X))


@pytest.mark.parametrize("kind", ["memmap", "hdf5"])
def test_prediction_on_lazy_data_equals_arrays_and_reads_in_chunks(tmp_path, kind,
                                                                    monkeypatch):
    """predict/score on data on disk: read STREAM_ROWS rows at a time (never whole), the
    same values as on the arrays; RIM standardises each chunk as fit did."""
    from skinverse._base import _sources

    X, y, _ = regression_data()
    X_test = np.random.RandomState(2).normal(size=(2500, 5))
    y_test = X_test @ np.arange(1.0, 6.0)
    mlp = TorchMLPRegressor(**MLP).fit(X, y)
    problem = make_linear_gaussian_problem("blur", 16, signal_scale=50.0, signal_mean=3.0,
                                           random_state=0)
    Xr, yr = problem.sample(2500, random_state=1)
    rim = RIMRegressor(operator=problem.operator, noise_std=problem.noise_std, max_epochs=2,
                       hidden_size=8, n_steps=2, random_state=0, device="cpu").fit(Xr, yr)
    if kind == "memmap":
        lazy = {"X": memmap(tmp_path, "X", X_test), "Xr": memmap(tmp_path, "Xr", Xr)}
    else:
        lazy = hdf5(tmp_path, X=X_test, Xr=Xr)
    reads = []
    read = _sources._Column.read
    monkeypatch.setattr(_sources._Column, "read",
                        lambda self, rows: reads.append(len(rows)) or read(self, rows))
    np.testing.assert_array_equal(mlp.predict(lazy["X"]), mlp.predict(X_test))
    assert mlp.score(lazy["X"], y_test) == mlp.score(X_test, y_test)
    np.testing.assert_array_equal(rim.predict(lazy["Xr"]), rim.predict(Xr))
    assert max(reads) == _sources.STREAM_ROWS and sum(reads) == 3 * 2500


def test_a_nan_in_lazy_prediction_data_names_the_sample(tmp_path):
    X, y, _ = regression_data()
    est = TorchMLPRegressor(**MLP).fit(X, y)
    X_test = np.random.RandomState(2).normal(size=(2000, 5))
    X_test[1500, 3] = np.nan
    with pytest.raises(ValueError, match="sample 1500, column 3"):
        est.predict(memmap(tmp_path, "X", X_test))
