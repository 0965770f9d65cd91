"""Kernels shipped prebuilt (python -m kernels.prebuild, kernels.linking.KernelCache): a first run
compiles nothing and gives a host compile's very bits; every mismatch falls back to compiling,
never to a crash."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT
PREBUILT = ROOT / "kernels" / "prebuilt"

pytestmark = [
    pytest.mark.slow,  # each test runs the prebuilt kernels in fresh processes
    pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="needs the JIT"),
    pytest.mark.skipif(not (PREBUILT / "manifest.json").exists(), reason="no prebuilt kernels: run make setup"),
]

# Every prebuilt configuration (parameters float32/64; images uint8, float32, float64), Adam and GD
# steps, logits, the loss: a digest of everything they computed, and the kernels the run compiled.
PROBE = """
import hashlib, sys, numpy as np, kernels, kernels.jit as jit
from numba.core.dispatcher import Dispatcher
assert kernels.__file__.startswith({pkg!r}), kernels.__file__
import kernels.parallel; kernels.parallel.MAX_WORKERS = 0  # every compile in this process, where stats see it
{patch}
rng = np.random.default_rng(0)
sizes, codes = np.array([40, 24, 3]), np.array([1, 0])
labels = rng.integers(0, 3, 40).astype(np.uint8)
h = hashlib.sha256()
for dtype, images_dtype in {configs}:
    params = (rng.standard_normal(kernels.parameter_count(sizes)) * 0.3).astype(dtype)
    grads, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    images = (rng.random((40, 40)) * 255).astype(images_dtype)
    scale, shift = np.full(40, 1 / 255, dtype), np.full(40, -0.5, dtype)
    args = (images, np.arange(40), [0, 16, 32, 40], labels, scale, shift, sizes, codes, params, grads)
    work = kernels.mlp_workspace((40, 24, 3), 16, dtype, parts=2)
    adam, _ = jit.mlp_train_steps(*args, "adam", (m, v), (0.9, 0.999, 1e-8), 1, [1e-2] * 3, work, 1e-3)
    gd, _ = jit.mlp_train_steps(*args, "gd", (), (), 1, [1e-2] * 3, work, 0.5)  # alpha: the penalty's Σ W² too
    out = np.empty((40, 3), dtype)
    jit.mlp_logits(images, np.arange(40), scale, shift, sizes, codes, params, out,
                   kernels.mlp_workspace((40, 24, 3), 40, dtype, parts=2, training=False))
    for a in (adam, gd, params, m, v, out, np.float64(jit.cross_entropy(out, labels))):
        h.update(np.asarray(a).tobytes())
compiled = sorted(n for n, d in vars(jit).items() if isinstance(d, Dispatcher) and sum(d.stats.cache_misses.values()))
print(h.hexdigest()[:16], ",".join(compiled) or "-")
"""
ALL = "[(d, i) for d in (np.float32, np.float64) for i in (np.uint8, np.float32, np.float64)]"
ONE = "[(np.float32, np.uint8)]"
STEP = {"_mlp", "_pass", "_weight_gradients"}


@pytest.fixture
def site(tmp_path):
    """A copy of the kernels package, its prebuilt kernels included, and an empty cache."""
    shutil.copytree(ROOT / "kernels", tmp_path / "site" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "site"


def run(site, configs=ONE, patch="", **env):
    """(digest, kernels compiled) of the probe in a fresh process with an empty Numba cache."""
    cache = site.parent / f"cache-{len(list(site.parent.glob('cache-*')))}"
    env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_CACHE_DIR": str(cache), **env}
    for name in ("NUMBA_DISABLE_JIT", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "FASTNET_NO_PREBUILT"):
        if name not in env or env[name] is None:
            env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(pkg=str(site), configs=configs, patch=patch)],
                          env=env, capture_output=True, text=True, timeout=900, cwd=str(site.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]  # a process ended by an unresolved symbol lands here
    digest, compiled = proc.stdout.split()
    return digest, set(compiled.split(",")) - {"-"}


def edit_manifest(site, **changes):
    path = site / "kernels" / "prebuilt" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_first_run_compiles_nothing_and_gives_a_host_compiles_bits_in_every_prebuilt_configuration(site):
    prebuilt, compiled = run(site, ALL)
    assert compiled == set()
    host, compiled = run(site, ALL, FASTNET_NO_PREBUILT="1")
    assert STEP <= compiled and host == prebuilt


@pytest.mark.parametrize("mismatch", ["numba", "python", "blas_int_bits", "jit_sha256", "cpu_name", "internals"])
def test_any_mismatch_compiles_instead_and_gives_the_same_bits(site, mismatch):
    """Another Numba, Python or BLAS integer width, an edited jit.py, a user's NUMBA_CPU_NAME, a
    Numba without the internals the lookup uses: each is a compile, never a crash."""
    env, patch = {}, ""
    if mismatch == "numba":
        edit_manifest(site, numba="0.0.0")
    elif mismatch == "python":
        edit_manifest(site, python=[3, 0])
    elif mismatch == "blas_int_bits":
        edit_manifest(site, blas_int_bits=16)
    elif mismatch == "jit_sha256":  # an edited source: Numba's own cache key changes too
        source = site / "kernels" / "jit.py"
        source.write_text(source.read_text() + "\n# edited\n")
    elif mismatch == "cpu_name":
        env = {"NUMBA_CPU_NAME": "host"}
    else:
        patch = "import kernels.linking as L; L._internals = lambda cache: None"
    digest, compiled = run(site, ONE, patch, **env)
    assert STEP <= compiled
    assert digest == run(site, ONE, FASTNET_NO_PREBUILT="1")[0]


def test_a_missing_prebuilt_callee_is_compiled_and_its_cached_caller_still_runs(site):
    """The shipped _mlp names _pass by symbol; with _pass's files gone, _pass is compiled and linked
    before _mlp runs (kernels.linking): no crash, the same bits."""
    for path in (site / "kernels" / "prebuilt").glob("jit._pass-*"):
        path.unlink()
    digest, compiled = run(site, ONE)
    assert compiled == {"_pass"}
    assert digest == run(site, ONE, FASTNET_NO_PREBUILT="1")[0]


def test_each_cpu_gets_the_flavour_that_rounds_as_its_own_compile_or_none(monkeypatch):
    """512-bit AMD hosts take v4-512, AVX-512 Intel hosts (256-bit preferred) and AVX2 hosts v3; an
    AVX-512 CPU nobody checked, or one lacking a feature of its flavour, takes none (a compile)."""
    from numba.core.registry import cpu_target

    from kernels import linking

    v3, v4 = linking.V3_FEATURES, linking.V4_FEATURES
    assert linking.flavour("znver4", v4) == linking.flavour("znver5", v4) == "v4-512"
    assert linking.flavour("skylake-avx512", v4) == linking.flavour("sapphirerapids", v4) == "v3"
    assert linking.flavour("haswell", v3) == linking.flavour("znver3", v3) == "v3"
    assert linking.flavour("futurelake", v4) is None
    assert linking.flavour("znver4", v3 | {"avx512f"}) is None
    assert linking.flavour("sandybridge", frozenset({"avx", "sse4.2"})) is None
    codegen = cpu_target.target_context.codegen()
    assert linking.prebuilt_usable(codegen)
    monkeypatch.setattr(linking, "_host_features", lambda: linking.V3_FEATURES - {"avx2"})
    assert not linking.prebuilt_usable(codegen)
