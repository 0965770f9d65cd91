"""python -m kernels.prebuild: compile the JIT kernels once for a portable x86-64 baseline, to ship them.

A first run on a machine otherwise compiles the training step (seconds; docs/performance.md,
"Compile time"). This compiles every configuration a run of `python -m fastnet.train` and the
common calls of the Python API use (parameters float32 and float64; images as uint8 pixels or
float32/float64 features; IDX-sized labels; every optimiser, which share one compiled step) for
the CPU baseline BASELINE (x86-64-v3: AVX2 and FMA, which every x86-64 CPU of the last decade
has), in a child process with an empty Numba cache, and copies Numba's cache files into
kernels/prebuilt/ with a manifest of what they were built with. `make setup` runs it, and so does
a package build (BuildPy below: `pip wheel .` or `python -m build`).

kernels.linking.KernelCache finds them there when the user's own cache lacks a kernel and
everything the manifest names matches (Numba, Python, the BLAS integer width, jit.py's contents,
a CPU with the baseline); otherwise Numba compiles as before.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def exercise():
    """Call every kernel a run uses, for every prebuilt configuration (in the child process)."""
    import numpy as np

    from . import jit, mlp_workspace, parameter_count

    sizes, codes = np.array([3, 2, 2], np.int64), np.array([1, 0], np.int64)
    labels = np.array([0, 1, 1, 0], np.uint8)
    for dtype in (np.float32, np.float64):
        params = np.zeros(parameter_count(sizes), dtype)
        scale, shift = np.ones(3, dtype), np.zeros(3, dtype)
        for images_dtype in (np.uint8, np.float32, np.float64):
            images = np.arange(12).reshape(4, 3).astype(images_dtype)
            work = mlp_workspace((3, 2, 2), 4, dtype, parts=2)
            m, v, grads = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
            jit.mlp_train_steps(images, np.arange(4), [0, 4], labels, scale, shift, sizes, codes, params, grads,
                                "adam", (m, v), (0.9, 0.999, 1e-8), 1, [1e-3], work)
            out = np.empty((4, 2), dtype)
            jit.mlp_logits(images, np.arange(4), scale, shift, sizes, codes, params, out,
                           mlp_workspace((3, 2, 2), 4, dtype, parts=2, training=False))
        jit.cross_entropy(out, labels)
        jit.softmax(out, np.empty_like(out))
        jit.all_finite(params)
    print(json.dumps(shipped_kernels(jit)))


def shipped_kernels(jit):
    """Names of the kernels a run loads from a cache: those Python calls and those called apart
    (kernels.linking). The rest are compiled into these and never loaded on their own."""
    from numba.core.dispatcher import Dispatcher

    from .linking import InternalDispatcher

    apart = {d.dispatcher.py_func.__name__ for d in vars(jit).values() if hasattr(d, "dispatcher")}
    return sorted(name for name, d in vars(jit).items()
                  if isinstance(d, Dispatcher) and (not isinstance(d, InternalDispatcher) or name in apart))


def manifest():
    """What the shipped files were built with: a lookup checks each against the running process."""
    import numba

    from . import blas

    return {"numba": numba.__version__, "python": list(sys.version_info[:2]), "baseline": BASELINE,
            "blas_int_bits": blas._bits, "jit_sha256": hashlib.sha256((HERE / "jit.py").read_bytes()).hexdigest()}


BASELINE = "x86-64-v3"


def build(out):
    """Compile in a child (empty cache, the baseline CPU) and put its cache files into `out`."""
    with tempfile.TemporaryDirectory(prefix="fastnet-prebuild-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_CPU_NAME=BASELINE, NUMBA_CPU_FEATURES="")
        env.pop("NUMBA_DISABLE_JIT", None)
        child = subprocess.run([sys.executable, "-m", "kernels.prebuild", "--inner"], env=env, check=True,
                               cwd=str(HERE.parent), stdout=subprocess.PIPE, text=True)
        names = json.loads(child.stdout.strip().splitlines()[-1])
        files = [p for p in Path(cache).rglob("jit.*")
                 if p.suffix in (".nbi", ".nbc") and p.name.split("-")[0][len("jit."):] in names]
        if not files:
            raise SystemExit("prebuild: the child compiled nothing into its cache")
        staging = Path(tempfile.mkdtemp(prefix=".prebuilt-", dir=out.parent))
        for p in files:
            shutil.copy2(p, staging / p.name)
        (staging / "manifest.json").write_text(json.dumps(manifest(), indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)  # whole, or not at all
    return files


try:  # building fastnet (setuptools is there): wheels carry the prebuilt kernels
    from setuptools.command.build_py import build_py as _build_py
except ImportError:  # running it
    _build_py = None

if _build_py is not None:

    class BuildPy(_build_py):
        """setuptools' build_py, then the prebuilt kernels into the build (pyproject.toml's cmdclass)."""

        def run(self):
            super().run()
            if not getattr(self, "editable_mode", False):  # editable: make setup builds them in the tree
                build(Path(self.build_lib).resolve() / "kernels" / "prebuilt")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kernels.prebuild", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "prebuilt"), help="where the files go (default kernels/prebuilt)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # the compiling child
    args = parser.parse_args(argv)
    if args.inner:
        exercise()
        return
    files = build(Path(args.out).resolve())
    print(f"prebuilt {len(files)} kernel cache files for {BASELINE} into {args.out}")


if __name__ == "__main__":
    main()
