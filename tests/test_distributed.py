"""Scaling out: data-parallel training over torch.distributed (gloo, 2 CPU processes) and
hyperparameter search on a Dask cluster, each against its single-process reference."""

import pickle

import numpy as np
import pytest
import torch

from skinverse.utils._testing import (
    TorchMLPRegressor,
    data_parallel_worker,
    regression_problem,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PARAMS = dict(hidden_layer_sizes=(16,), max_epochs=6, batch_size=40, tol=0,
              n_iter_no_change=99, random_state=0, device="cpu")


def test_two_gloo_processes_match_single_process_training(tmp_path):
    """Same global batch of 40: each rank computes 20 rows, gradients are averaged."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    out = tmp_path / "rank0.pkl"
    torch.multiprocessing.spawn(
        data_parallel_worker,
        args=(2, f"file://{tmp_path / 'rendezvous'}", str(out), PARAMS),
        nprocs=2,
        join=True,
    )
    result = pickle.loads(out.read_bytes())
    X, y = regression_problem()
    single = TorchMLPRegressor(**PARAMS).fit(X, y)
    # Float32 sums in another order: agreement to ~1e-6 relative, stated as 1e-4.
    np.testing.assert_allclose(result["loss_curve"], single.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(result["estimator"].predict(X), single.predict(X), rtol=1e-4,
                               atol=1e-5)
    assert result["estimator"].n_iter_ == single.n_iter_ == 6


def test_ranks_start_from_the_same_weights_without_a_random_state(tmp_path):
    """random_state=None: rank 0 draws the seed and broadcasts it, so the ranks' models
    (trained on averaged gradients) stay identical."""
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    out = tmp_path / "rank0.pkl"
    params = {**PARAMS, "random_state": None, "max_epochs": 1}
    torch.multiprocessing.spawn(
        data_parallel_worker,
        args=(2, f"file://{tmp_path / 'rendezvous'}", str(out), params),
        nprocs=2,
        join=True,
    )
    ranks = [pickle.loads((tmp_path / f"rank0.pkl.rank{r}").read_bytes()) for r in (0, 1)]
    for key, value in ranks[0].items():
        np.testing.assert_array_equal(value, ranks[1][key])


def test_grid_search_on_a_dask_cluster_matches_n_jobs_1():
    distributed = pytest.importorskip("distributed", reason="the 'distributed' extra is missing")
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = regression_problem()
    grid = {"hidden_layer_sizes": [(4,), (16,)], "learning_rate": [1e-3, 1e-2]}
    estimator = TorchMLPRegressor(max_epochs=5, random_state=0, device="cpu")
    reference = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            client.run(torch.set_num_threads, 1)  # one torch thread per worker process
            with parallel_backend("dask"):
                search = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X, y)
    assert search.best_params_ == reference.best_params_
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               reference.cv_results_["mean_test_score"], rtol=1e-6)
    np.testing.assert_array_equal(search.predict(X), reference.predict(X))
