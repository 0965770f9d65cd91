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
import hashlib, numpy as np, kernels, kernels.jit as jit
from numba.core.dispatcher import Dispatcher
assert kernels.__file__.startswith({pkg!r}), kernels.__file__
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


def _step(pkg_parent, cache, **env):
    env = {**os.environ, "PYTHONPATH": str(pkg_parent), "NUMBA_CACHE_DIR": str(cache), **env}
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run([sys.executable, "-c", STEP_PROBE.format(pkg=str(pkg_parent))], env=env,
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
