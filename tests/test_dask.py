"""A grid search of fastnet.sklearn.MLPClassifier on a real Dask cluster (two worker processes)
gives what the same search gives in this process: same best parameters, same scores.

Each fit is seeded and runs on one thread, so where it runs cannot change its result. The workers
also show the default thread count at work: Dask starts them with OMP_NUM_THREADS=1, so
fastnet.threads.default_threads() is 1 there.
"""

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[sklearn]')")
distributed = pytest.importorskip("dask.distributed",
                                  reason="dask[distributed] is not installed (pip install '.[dask]')")

import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastnet.sklearn import MLPClassifier  # noqa: E402
from fastnet.threads import default_threads  # noqa: E402

pytestmark = pytest.mark.slow  # a local Dask cluster

GRID = {"hidden_layer_sizes": [(16,), (32,)], "learning_rate_init": [1e-3, 1e-2]}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_a_dask_cluster_equals_the_local_one():
    X, y = load_digits(return_X_y=True)
    X, y = X[:900], y[:900]
    search = lambda: GridSearchCV(MLPClassifier(max_iter=10, random_state=0, threads=1), GRID, cv=3)  # noqa: E731
    local = search().fit(X, y)  # first: also compiles (or loads) the kernels into Numba's disk cache
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        on_dask = search()
        with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
            on_dask.fit(X, y)
        workers = client.run(default_threads)
    ran_on = {task["worker"] for task in tasks.data}
    assert len(tasks.data) >= 12 and len(ran_on) == 2  # 4 settings x 3 folds (and the refit) on both workers
    assert len(workers) == 2 and set(workers.values()) == {1}
    assert on_dask.best_params_ == local.best_params_
    assert on_dask.best_score_ == local.best_score_
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
