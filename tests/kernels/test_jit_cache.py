"""The JIT kernels' on-disk cache: reused by a second run, and still working when the package
directory is read-only (Numba then falls back to its user-wide cache directory)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# Root can write into any directory, so for root the probe makes Numba's in-tree writability
# check fail exactly as it fails on a read-only directory (PermissionError from its test write).
PROBE = """
import os, numba.core.caching as caching
if os.geteuid() == 0:
    def read_only(self):
        raise PermissionError(13, "Permission denied", self._cache_path)
    for name in dir(caching):  # InTreeCacheLocator (and its older _-prefixed name, variants)
        if "InTree" in name and name.endswith("Locator"):
            getattr(caching, name).ensure_cache_path = read_only
import numpy as np, kernels, kernels.jit as jit
assert kernels.__file__.startswith({pkg!r}), kernels.__file__
Z = np.zeros((3, 4), np.float32)
stats = jit._softmax.stats
print(jit.softmax(Z, np.empty_like(Z))[0, 0], sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def _run(pkg_parent, home):
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "PYTHONPATH": str(pkg_parent)}
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("NUMBA_DISABLE_JIT", None)
    return subprocess.run([sys.executable, "-c", PROBE.format(pkg=str(pkg_parent))], env=env,
                          capture_output=True, text=True, timeout=300, cwd=str(home))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_read_only_package_compiles_into_the_user_cache_and_reuses_it(tmp_path):
    """First run compiles and writes the user-wide cache; the second run loads it (a cache hit)."""
    pkg_parent, home = tmp_path / "site", tmp_path / "home"
    shutil.copytree(ROOT / "kernels", pkg_parent / "kernels", ignore=shutil.ignore_patterns("__pycache__", "prebuilt"))
    home.mkdir()
    for p in (pkg_parent / "kernels", pkg_parent):
        p.chmod(0o555)
    try:
        first, second = _run(pkg_parent, home), _run(pkg_parent, home)
    finally:
        for p in (pkg_parent, pkg_parent / "kernels"):
            p.chmod(0o755)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.split() == ["0.25", "0", "1"], first.stdout  # compiled: one cache miss
    assert second.stdout.split() == ["0.25", "1", "0"], second.stdout  # loaded: one cache hit
    assert not list((pkg_parent / "kernels").rglob("*.nbi")), "wrote into the read-only package"
    assert list((home / ".cache" / "numba").rglob("*.nbi")), "no Numba index in the user cache"


# --- kernels compiled once (kernels.linking) ---------------------------------------------------

STEP_PROBE = """
import hashlib, subprocess, sys, numpy as np, kernels, kernels.jit as jit, kernels.parallel as parallel
from numba.core.dispatcher import Dispatcher
assert kernels.__file__.startswith({pkg!r}), kernels.__file__
{setup}
f32 = np.float32
sizes, codes = np.array([6, 5, 3]), np.array([1, 0])
rng = np.random.default_rng(0)
params = (rng.standard_normal(kernels.parameter_count(sizes)) * 0.3).astype(f32)
grads, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
images, labels = rng.integers(0, 256, (20, 6)).astype(np.uint8), rng.integers(0, 3, 20).astype(np.uint8)
scale, shift = np.full(6, 1 / 255, f32), np.zeros(6, f32)
work = kernels.mlp_workspace((6, 5, 3), 8, f32, parts=2)
losses, finite = jit.mlp_train_steps(images, np.arange(20), [0, 8, 16, 20], labels, scale, shift, sizes, codes,
                                     params, grads, "adam", (m, v), (0.9, 0.999, 1e-8), 1, [1e-2] * 3, work)
gd, _ = jit.mlp_train_steps(images, np.arange(20), [0, 20], labels, scale, shift, sizes, codes, params, grads, "gd",
                            (), (), 1, [1e-2], kernels.mlp_workspace((6, 5, 3), 20, f32, parts=2))
out = np.empty((20, 3), f32)
jit.mlp_logits(images, np.arange(20), scale, shift, sizes, codes, params, out,
               kernels.mlp_workspace((6, 5, 3), 20, f32, parts=2, training=False))
compiled = sorted(name for name, d in vars(jit).items()
                  if isinstance(d, Dispatcher) and sum(d.stats.cache_misses.values()))
digest = hashlib.sha256(b"".join(a.tobytes() for a in (losses, gd, params, m, v, out))).hexdigest()[:16]
print(digest, ",".join(compiled) or "-")
"""


SERIAL = "parallel.MAX_WORKERS = 0"  # every kernel compiled in the probe's own process


def _step(pkg_parent, cache, setup=SERIAL, **env):
    """(digest of a few steps and logits, the kernels the probe's process compiled) in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(pkg_parent), "NUMBA_CACHE_DIR": str(cache), **env}
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, "-c", STEP_PROBE.format(pkg=str(pkg_parent), setup=setup)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=str(cache.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]  # a process ended by an unresolved symbol lands here
    digest, compiled = proc.stdout.split()
    return digest, set(compiled.split(",")) - {"-"}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_a_cached_step_whose_callees_are_missing_stale_or_of_another_cpu_compiles_them_and_never_crashes(tmp_path):
    """A step's callees are compiled apart and named by symbol in their callers' cached code
    (kernels.linking): a process must compile and register every callee before a cached caller
    runs, or LLVM ends it. Each way the cache can lack a callee is a compile, with the same bits:
    a warm cache (nothing compiled), a callee's entry deleted, entries of another CPU, an edited source."""
    pkg_parent, cache = tmp_path / "site", tmp_path / "cache"
    shutil.copytree(ROOT / "kernels", pkg_parent / "kernels", ignore=shutil.ignore_patterns("__pycache__", "prebuilt"))
    cold, compiled = _step(pkg_parent, cache)
    assert {"_mlp", "_pass", "_weight_gradients"} <= compiled
    assert _step(pkg_parent, cache) == (cold, set())  # warm: every kernel loaded from the cache

    for entry in cache.rglob("jit._pass-*"):  # the middle of the chain gone: _mlp cached, _pass not
        entry.unlink()
    assert _step(pkg_parent, cache) == (cold, {"_pass"})

    other_cpu = _step(pkg_parent, cache, NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="")[1]
    assert {"_mlp", "_pass", "_weight_gradients"} <= other_cpu  # another CPU key: nothing of ours applies
    assert _step(pkg_parent, cache) == (cold, set())  # and this CPU's entries are still there

    source = pkg_parent / "kernels" / "jit.py"
    source.write_text(source.read_text() + "\n# edited\n")
    edited, compiled = _step(pkg_parent, cache)
    assert edited == cold and {"_mlp", "_pass", "_weight_gradients"} <= compiled


STEP_KERNELS = {"_mlp", "_pass", "_first_layer_piece", "_forward_rows", "_backward_rows", "_weight_gradients",
                "_logits_tile"}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="compile workers start only with a second core")
def test_compile_workers_take_a_share_of_the_step_and_change_no_bit(tmp_path):
    """With a second core, a cold step's kernels are shared with a worker process (kernels.parallel):
    this process compiles only its share and loads the rest from the cache the worker wrote, with
    the bits of a compile in one process; the next process compiles nothing."""
    pkg_parent = tmp_path / "site"
    shutil.copytree(ROOT / "kernels", pkg_parent / "kernels", ignore=shutil.ignore_patterns("__pycache__", "prebuilt"))
    serial, compiled = _step(pkg_parent, tmp_path / "serial")
    assert STEP_KERNELS <= compiled
    shared, mine = _step(pkg_parent, tmp_path / "shared", setup="")
    assert shared == serial
    assert mine & STEP_KERNELS and STEP_KERNELS - mine, mine  # some compiled here, the others by the worker
    assert _step(pkg_parent, tmp_path / "shared", setup="") == (serial, set())


# Workers that let their share down, each in its own way: this process compiles what it cannot load.
WORKER_FAILS = {
    "cannot_start": "parallel._start = lambda module, share: None",
    "exits_at_once": ("parallel._start = lambda module, share: subprocess.Popen([sys.executable, '-c', "
                      "'raise SystemExit(1)'], stdin=subprocess.DEVNULL)"),
}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="compile workers start only with a second core")
@pytest.mark.parametrize("how", sorted(WORKER_FAILS))
def test_a_worker_that_fails_leaves_its_share_to_this_process(tmp_path, how):
    """A worker that cannot start or exits at once compiles nothing: every kernel is compiled here,
    with the same bits."""
    pkg_parent = tmp_path / "site"
    shutil.copytree(ROOT / "kernels", pkg_parent / "kernels", ignore=shutil.ignore_patterns("__pycache__", "prebuilt"))
    serial, _ = _step(pkg_parent, tmp_path / "serial")
    digest, compiled = _step(pkg_parent, tmp_path / how, setup=WORKER_FAILS[how])
    assert digest == serial and STEP_KERNELS <= compiled


def test_a_worker_compiles_nothing_from_another_file_than_its_callers():
    """The worker imports the kernels by name; found elsewhere than the caller's file, it exits 3."""
    import io
    import pickle

    from kernels import parallel

    with pytest.raises(SystemExit) as stop:
        parallel.work(io.BytesIO(pickle.dumps(("kernels.jit", "/elsewhere/kernels/jit.py", [("_mlp", ())]))))
    assert stop.value.code == 3


def test_a_version_saved_while_another_process_saves_one_keeps_its_own_code(tmp_path):
    """Two processes saving two versions of one kernel at once (compile workers, two runs sharing a
    cache): Numba's numbered data files can leave the index mapping one version to the other's code;
    kernels.linking.KeyedCacheFile names each version's file by its key, so a version loads its own
    data or nothing."""
    from numba.core.caching import IndexDataCacheFile

    from kernels.linking import KeyedCacheFile

    def interleaved(kind, folder):
        """Process A saves k1 while process B saves k2, both having read the empty index first:
        A writes its index, B its index and data, then A its data (the order a race may take)."""
        folder.mkdir()
        a, b = (kind(str(folder), "jit.kernel-1.py311", "stamp") for _ in range(2))
        empty = {}
        writes = []
        for cf in (a, b):
            cf._load_index = lambda: dict(empty)
            cf._save_data = lambda name, data, cf=cf: writes.append((cf, name, data))
        for cf, key, data in ((a, "k1", b"code of k1"), (b, "k2", b"code of k2")):
            cf.save(key, data)
        (a_data, b_data) = [w for w in writes if w[0] is a], [w for w in writes if w[0] is b]
        for cf, name, data in (*b_data, *a_data):  # B's data lands first, A's after it
            IndexDataCacheFile._save_data(cf, name, data)
        return IndexDataCacheFile(str(folder), "jit.kernel-1.py311", "stamp")

    numbered = interleaved(IndexDataCacheFile, tmp_path / "numbered")
    assert numbered.load("k2") == b"code of k1"  # the race this class exists for: k2 would run k1's code
    keyed = interleaved(KeyedCacheFile, tmp_path / "keyed")
    assert keyed.load("k2") == b"code of k2" and keyed.load("k1") in (None, b"code of k1")


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_no_python_code_can_enter_a_kernel_compiled_for_compiled_callers_only():
    """Kernels without a CPython wrapper would crash the interpreter if Python called them: every
    one of kernels.jit is an InternalDispatcher that raises TypeError instead, and every kernel
    called apart is an intrinsic that raises from Python; every other dispatcher has its wrapper."""
    import inspect

    import numpy as np
    from numba.core.dispatcher import Dispatcher
    from numba.core.extending import _Intrinsic

    from kernels import jit
    from kernels.linking import InternalDispatcher

    internal = apart = 0
    for name, obj in vars(jit).items():
        if isinstance(obj, InternalDispatcher):
            internal += 1
            arity = len(inspect.signature(obj.py_func).parameters)
            with pytest.raises(TypeError, match="compiled callers only"):
                obj(*[np.zeros(3)] * arity)
        elif isinstance(obj, Dispatcher):
            assert not obj.targetoptions.get("no_cpython_wrapper"), name
        elif isinstance(obj, _Intrinsic):
            apart += 1
            with pytest.raises(NotImplementedError):
                obj()
    assert internal >= 10 and apart == 6


def test_bench_and_tools_reach_no_private_kernel():
    """bench.profile_step and every tool go through documented kernels (kernels.jit.step_pass, ...)."""
    import re

    for path in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "fastnet").rglob("*.py")]:
        found = re.findall(r"\bjit\._\w+", path.read_text())
        assert not found, f"{path.relative_to(ROOT)} reaches {found}"


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_a_caller_compiles_before_its_callee_and_an_empty_slot_raises_instead_of_crashing():
    """A kernel called apart is reached through its slot (kernels.linking): its caller compiles
    and runs without it, a call before the callee is linked raises RuntimeError (not a jump to
    address 0), and once linked the call goes through. A callee that returns a value is refused."""
    import numba
    import numpy as np

    from kernels.linking import apart, internal

    @internal({})
    def add_one(x):
        x[0] += 1

    @internal({})
    def returns(x):
        return x[0]

    add_one_apart, returns_apart = apart(add_one), apart(returns)

    @numba.njit
    def caller(x):
        add_one_apart(x)
        add_one_apart(x)

    x = np.zeros(1)
    with pytest.raises(RuntimeError, match="add_one is not linked"):
        caller(x)
    assert x[0] == 0
    add_one_apart.link((numba.typeof(x),))
    caller(x)
    assert x[0] == 2
    with pytest.raises(TypeError, match="returns nothing"):
        returns_apart.link((numba.typeof(x),))


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_the_compile_announcement_says_what_this_machine_takes(tmp_path, monkeypatch):
    """Before a compile (fastnet.run.warm_up): nothing when the cache or the prebuilt kernels hold
    the step; else the last compile remembered beside the cache; else this machine's time to compile
    a small kernel, scaled to the whole compile (COMPILE_PER_PROBE), shared with a worker on a second
    core (PARALLEL_SHARE). The probe is a real compile: a fraction of a second, not zero."""
    from kernels import jit, parallel
    from kernels.linking import KernelCache

    monkeypatch.setattr(KernelCache, "holds_any", lambda self, codegen: False)
    monkeypatch.setattr(jit, "_record_path", lambda: str(tmp_path / "seconds.json"))
    assert 0 < jit._probe() < 5
    monkeypatch.setattr(jit, "_probe", lambda: 0.08)
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    assert jit.compile_seconds() == pytest.approx(jit.COMPILE_PER_PROBE * 0.08)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    assert jit.compile_seconds() == pytest.approx(jit.COMPILE_PER_PROBE * 0.08 * jit.PARALLEL_SHARE)
    jit.remember_compile_seconds(4.24)
    assert jit.compile_seconds() == 4.2  # remembered, to a tenth of a second
    monkeypatch.setattr(KernelCache, "holds_any", lambda self, codegen: True)
    assert jit.compile_seconds() == 0
