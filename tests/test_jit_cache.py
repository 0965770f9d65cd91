"""The JIT kernels' on-disk cache: reused by a second run, and still working when the package
directory is read-only (Numba then falls back to its user-wide cache directory)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT")
def test_read_only_package_compiles_into_the_user_cache_and_reuses_it(tmp_path):
    """First run compiles and writes the user-wide cache; the second run loads it (a cache hit)."""
    pkg_parent, home = tmp_path / "site", tmp_path / "home"
    shutil.copytree(ROOT / "kernels", pkg_parent / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
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
