"""What a process may still allocate (fastnet.memory: free memory, ulimit -v, a container's cgroup)
and what a run allocates (recipe.peak_bytes): a run that does not fit is refused with one line
before it allocates, and the estimate fits the peak really measured."""

import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from tests.helpers import write_idx
from fastnet import memory, recipe, run
from fastnet.backend import get_backend
from fastnet.errors import InputError
from fastnet.model import evaluate
from tests.helpers import ROOT



def cgroup(tmp_path, monkeypatch, line, files):
    """A cgroup tree of files ({relative path: text}) under tmp_path, and a /proc/self/cgroup of line."""
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "self").write_text(line + "\n")
    monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(memory, "SELF_CGROUP", tmp_path / "self")


def test_cgroup_v2_room_is_the_least_of_the_group_and_its_ancestors(tmp_path, monkeypatch):
    cgroup(tmp_path, monkeypatch, "0::/user.slice/run-1.scope", {
        "cgroup.controllers": "memory",
        "user.slice/memory.max": "3000000", "user.slice/memory.current": "2500000",
        "user.slice/run-1.scope/memory.max": "1000000", "user.slice/run-1.scope/memory.current": "400000",
        "user.slice/run-1.scope/memory.stat": "anon 300000\ninactive_file 100000\n"})
    assert memory.cgroup_headroom() == 500_000  # the parent's 3 MB less 2.5 MB used; the group has 700 KB
    (tmp_path / "user.slice/memory.max").write_text("max\n")
    assert memory.cgroup_headroom() == 700_000  # 1 MB less 400 KB used, 100 KB of it reclaimable page cache


def test_cgroup_v1_room_and_its_number_for_no_limit(tmp_path, monkeypatch):
    cgroup(tmp_path, monkeypatch, "4:memory:/process/abc\n3:cpu:/process/abc", {
        "memory/process/abc/memory.limit_in_bytes": "9223372036854771712",
        "memory/process/abc/memory.usage_in_bytes": "5000000",
        "memory/memory.limit_in_bytes": "9223372036854771712"})
    assert memory.cgroup_headroom() is None
    (tmp_path / "memory/process/memory.limit_in_bytes").write_text("8000000")
    (tmp_path / "memory/process/memory.usage_in_bytes").write_text("6000000")
    (tmp_path / "memory/process/memory.stat").write_text("cache 10\ntotal_inactive_file 1000000\n")
    assert memory.cgroup_headroom() == 3_000_000


def test_a_container_that_mounts_its_own_group_as_the_root(tmp_path, monkeypatch):
    """Docker without a cgroup namespace: /proc/self/cgroup names /docker/<id>, which is mounted as the root."""
    cgroup(tmp_path, monkeypatch, "0::/docker/0123abcd", {
        "cgroup.controllers": "memory", "memory.max": "2147483648", "memory.current": "1073741824"})
    assert memory.cgroup_headroom() == 1 << 30
    monkeypatch.setattr(memory, "machine_available", lambda: 8 << 30)
    monkeypatch.setattr(memory, "rlimit_headroom", lambda: None)
    assert memory.available() == 1 << 30


def test_available_is_the_least_limit_known(monkeypatch):
    monkeypatch.setattr(memory, "machine_available", lambda: None)
    monkeypatch.setattr(memory, "cgroup_headroom", lambda: None)
    monkeypatch.setattr(memory, "rlimit_headroom", lambda: None)
    assert memory.available() is None
    monkeypatch.setattr(memory, "rlimit_headroom", lambda: -5)  # already past the limit
    assert memory.available() == 0
    monkeypatch.setattr(memory, "machine_available", lambda: 100)
    monkeypatch.setattr(memory, "rlimit_headroom", lambda: 300)
    assert memory.available() == 100


def limited(as_bytes):
    """preexec_fn: an address-space limit (ulimit -v) for the child."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))


def test_ulimit_v_is_counted(tmp_path):
    code = "from fastnet import memory; print(memory.rlimit_headroom(), memory.available())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=limited(1 << 30))
    room, available = map(int, proc.stdout.split())
    assert 0 <= available <= room < (1 << 30) - (10 << 20), proc.stderr  # the interpreter's own space is used


@pytest.mark.slow
def test_a_run_beyond_ulimit_v_is_refused_up_front(tmp_path):
    """Under `ulimit -v` of 1 GiB, a 1,000,000-unit hidden layer (a 1.1 GB optimiser state) is one line
    and status 2, not a MemoryError traceback partway; a small run trains under the same limit."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 60)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 8, 8)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 4)
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "FASTNET_CACHE_DIR": str(tmp_path / "cache")}
    for layers, code in (("64,1000000,4", 2), ("64,32,4", 0)):
        proc = subprocess.run([sys.executable, "-m", "fastnet.train", "--data-dir", tmp_path, "--epochs", "1",
                               "--layers", layers, "--backend", "numpy", "--threads", "1", "--quiet"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300, preexec_fn=limited(1 << 30))
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 0
    refused = subprocess.run([sys.executable, "-m", "fastnet.train", "--data-dir", tmp_path, "--epochs", "1",
                              "--layers", "64,1000000,4", "--backend", "numpy", "--threads", "1"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300, preexec_fn=limited(1 << 30))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "of memory but" in lines[0], refused.stderr


def measured(sizes, n, batch, dtype, backend, rows_dtype, threads=1, val_split=0.1):
    """(peak bytes that tracemalloc sees from the split to the test evaluation, recipe.peak_bytes):
    the steps of python -m fastnet.train after its data are loaded. NumPy reports its allocations
    to tracemalloc; the compiled kernels allocate nothing large."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, sizes[0])).astype(rows_dtype)
    y = (np.arange(n) % sizes[-1]).astype(np.uint8)
    test = X[:100].copy(), y[:100].copy()
    K = get_backend(backend)
    r = recipe.Recipe(layers=sizes, epochs=1, batch_size=batch, lr=1e-3, schedule="constant", beta1=0.9,
                      val_split=val_split, dtype=dtype)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        train, val = recipe.split(X, y, val_split, 0)
        state = recipe.new_state(r, train[0])
        run.train(state, K, train, val, r, parts=threads)
        evaluate(state.model, K, *test)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    estimate = recipe.peak_bytes(sizes, min(batch, n), dtype, X.nbytes, eval_rows=recipe.eval_rows_of(n, val_split, 100),
                                 scaled_rows=n, threads=threads, backend=backend, pixels=rows_dtype == np.uint8)
    return peak, estimate


@pytest.mark.slow
@pytest.mark.parametrize("sizes, n, batch, dtype, backend, rows_dtype", [
    ((64, 20000, 4), 300, 64, "float64", "numba", np.uint8),  # small data, a wide layer: was counted 4x
    ((64, 20000, 4), 300, 64, "float32", "numpy", np.uint8),
    ((784, 1024, 10), 2000, 128, "float32", "numba", np.float32),
    ((784, 1024, 10), 2000, 128, "float32", "numpy", np.uint8),
    ((300, 64, 2000), 3000, 500, "float32", "numba", np.uint8),  # many classes: the logits count
])
def test_the_estimate_fits_the_measured_peak(sizes, n, batch, dtype, backend, rows_dtype):
    """At least what the run allocates, at most twice that and 4 MiB."""
    measured((sizes[0], 3, sizes[-1]), 20, 5, dtype, backend, rows_dtype)  # compiled outside the measure
    peak, estimate = measured(sizes, n, batch, dtype, backend, rows_dtype, threads=2)
    assert peak <= estimate <= 2 * peak + (4 << 20), (peak / 2**20, estimate / 2**20)


def test_a_default_fashion_mnist_run_fits_in_little_memory():
    """784,128,10 on 60,000 images in batches of 128, on 64 threads: well under 1 GiB counted."""
    need = recipe.peak_bytes((784, 128, 10), 128, "float32", 60000 * 784, eval_rows=60000, threads=64)
    assert 60000 * 784 < need < 1 << 30


def test_the_refusal_names_the_settings_and_what_is_left(monkeypatch):
    monkeypatch.setattr(memory, "available", lambda: 100 << 20)
    with pytest.raises(InputError, match=r"needs about [0-9.]+ GiB of memory but 100 MiB are available; "
                                        "use smaller --layers or --batch-size, or --dtype float32"):
        recipe.check_memory((784, 100000, 10), 128, "float32", 0, eval_rows=1000)
    recipe.check_memory((784, 128, 10), 128, "float32", 0, eval_rows=1000)
