"""fastnet.threads.default_threads: all the cores this process may use, or the share of them that a
joblib/loky or Dask worker was given, or fewer where the caller limits BLAS."""

import pytest
from threadpoolctl import threadpool_limits

from fastnet import threads
from fastnet.threads import SHARE_VARIABLES, available_cores, default_threads


@pytest.fixture
def no_share(monkeypatch):
    """No share in the environment, and no BLAS limit of fastnet's own (an earlier in-process
    command line's set_threads leaves one)."""
    for name in SHARE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_own_blas_limit", [None])
    return monkeypatch


def test_all_usable_cores_by_default(no_share):
    import numpy  # noqa: F401 (loads BLAS, as any caller has)

    with threadpool_limits(available_cores(), user_api="blas"):
        assert default_threads() == available_cores()


@pytest.mark.parametrize("name", SHARE_VARIABLES)
def test_a_share_set_by_the_parent_caps_it(no_share, name):
    no_share.setenv(name, "1")
    assert default_threads() == 1


@pytest.mark.parametrize("value", ["0", "", "two", "-3"])
def test_meaningless_shares_are_ignored(no_share, value):
    no_share.setenv("OMP_NUM_THREADS", value)
    with threadpool_limits(available_cores(), user_api="blas"):
        assert default_threads() == available_cores()


def test_a_callers_blas_limit_caps_it_but_not_fastnets_own(no_share):
    import numpy  # noqa: F401

    with threadpool_limits(1, user_api="blas"):
        assert default_threads() == 1
    with threadpool_limits(available_cores(), user_api="blas"):  # restores what set_threads changes
        threads.set_threads(None, 1, "numba")  # the command line's plan: BLAS on one thread under Numba's
        assert default_threads() == available_cores()


def test_limited_restores_blas_and_numba():
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_info

    import kernels.jit  # noqa: F401 (the numba backend in use, as after get_backend("numba"))

    before = numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]
    with threads.limited(1, 1, "numba") as n:
        assert n == 1 and numba.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert (numba.get_num_threads(), [i["num_threads"] for i in threadpool_info()]) == before


def test_inside_loky_workers_each_gets_its_share():
    joblib = pytest.importorskip("joblib")
    got = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(default_threads)() for _ in range(2))
    assert got == [max(joblib.cpu_count() // 2, 1)] * 2
