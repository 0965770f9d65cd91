"""python -m bench.compile_profile: where a cold compile of the training kernels goes, by stage and by function.

Runs fastnet.run.warm_up (the kernels of a training run and of evaluation: what a first
`python -m fastnet.train` compiles) in a fresh process with an empty Numba cache, every kernel
compiled in that process (kernels.parallel.MAX_WORKERS = 0: the whole compile's work), and splits
its wall time, each moment counted once, by what was running then:

  stages     Numba typing (type inference), Numba lowering (Numba IR to LLVM IR), Numba's other
             passes (bytecode analysis, rewrites, parfors), LLVM function passes, LLVM module passes
             (optimisation after linking callees in), LLVM machine code (MCJIT), the cache write,
             and the rest (Python around them)
  functions  the kernel whose compile was innermost at that moment (Numba's "numba:compile"
             events), with how many times it was compiled

Then, in another fresh process with another empty cache, the same warm_up as a run does it, the
kernels shared with compile workers where the machine has a second core: the wall time a user
waits. Stages are read from Numba's event API ("numba:run_pass") and from timers put around the LLVM
calls of numba.core.codegen, in this process only (a profiling tool, not fastnet's runtime).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

from kernels.parallel import cores

STAGE_OF_PASS = {"nopython_type_inference": "Numba typing", "partial_type_inference": "Numba typing",
                 "native_lowering": "Numba lowering", "native_parfor_lowering": "Numba lowering"}


class Timeline:
    """Attributes elapsed time to the innermost stage and the innermost function being compiled."""

    def __init__(self):
        self.stages, self.functions = [], []
        self.by_stage, self.by_function, self.compiles = defaultdict(float), defaultdict(float), Counter()
        self.last = time.perf_counter()

    def _tick(self):
        now = time.perf_counter()
        self.by_stage[self.stages[-1] if self.stages else "rest"] += now - self.last
        self.by_function[self.functions[-1] if self.functions else "(outside a compile)"] += now - self.last
        self.last = now

    def push(self, stack, name):
        self._tick()
        stack.append(name)

    def pop(self, stack):
        self._tick()
        stack.pop()

    def timed(self, owner, method, stage):
        """Wrap owner.method so that its time counts as `stage`."""
        inner = getattr(owner, method)

        def wrapper(*args, **kw):
            self.push(self.stages, stage)
            try:
                return inner(*args, **kw)
            finally:
                self.pop(self.stages)

        setattr(owner, method, wrapper)

    def on_event(self, event):
        """Numba's compile and pass events: functions and typing/lowering stages."""
        if event.kind == "numba:compile":
            name = getattr(event.data["dispatcher"], "__qualname__", str(event.data["dispatcher"]))
            if event.is_start:
                self.compiles[name] += 1
                self.push(self.functions, name)
            else:
                self.pop(self.functions)
        elif event.kind == "numba:run_pass":
            name = event.data["name"].split(" [")[0]  # "native_lowering [_mlp]"
            stage = STAGE_OF_PASS.get(name, "Numba, other passes")
            if event.is_start:
                self.push(self.stages, stage)
            else:
                self.pop(self.stages)


def _warm_up_args(dtype, optimizer):
    """What fastnet.run.warm_up takes for a run on IDX pixels and labels (uint8), a tiny network."""
    import numpy as np

    from fastnet.recipe import Recipe, new_state

    images = np.random.default_rng(0).integers(0, 256, (4, 3)).astype(np.uint8)
    labels = np.array([0, 1, 1, 0], np.uint8)  # a run on IDX pixels and labels compiles for these types
    state = new_state(Recipe(layers=(3, 2, 2), dtype=np.dtype(dtype).name, optimizer=optimizer), images)
    return state, (images, labels), [(images, labels)]


def shared(dtype="float32", optimizer="adam"):
    """Seconds of one cold warm_up as a run does it (compile workers where a second core is)."""
    from kernels import jit
    from fastnet.run import warm_up

    args = _warm_up_args(dtype, optimizer)
    t0 = time.perf_counter()
    warm_up(jit, *args)
    return time.perf_counter() - t0


def profile(dtype="float32", optimizer="adam"):
    """{stage: s}, {function: (s, compiles)} and the total of one cold warm_up, in this process."""
    from numba.core import codegen, event

    timeline = Timeline()
    timeline.timed(codegen.CPUCodeLibrary, "_optimize_functions", "LLVM function passes")
    timeline.timed(codegen.CPUCodeLibrary, "_optimize_final_module", "LLVM module passes")
    timeline.timed(codegen.JITCodeLibrary, "_finalize_specific", "LLVM machine code")
    timeline.timed(codegen.CPUCodeLibrary, "serialize_using_object_code", "cache write")

    class Listener(event.Listener):
        def on_start(self, e):
            timeline.on_event(e)

        def on_end(self, e):
            timeline.on_event(e)

    from kernels import jit, parallel
    from fastnet.run import warm_up

    parallel.MAX_WORKERS = 0  # every kernel compiled here, where the timers see it
    args = _warm_up_args(dtype, optimizer)
    listener = Listener()
    for kind in ("numba:compile", "numba:run_pass"):
        event.register(kind, listener)
    t0 = timeline.last = time.perf_counter()
    warm_up(jit, *args)
    total = time.perf_counter() - t0
    timeline._tick()
    functions = {f: (s, timeline.compiles[f]) for f, s in timeline.by_function.items()}
    return dict(timeline.by_stage), functions, total


def report(stages, functions, total, wall=None, out=sys.stdout):
    print(f"cold compile of a training run's kernels, in one process: {total:.2f} s", file=out)
    if wall is not None:
        print(f"the same as a run does it, with compile workers on {cores()} cores: {wall:.2f} s", file=out)
    print("by stage:", file=out)
    for name, s in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {s:6.2f} s  {100 * s / total:4.0f}%", file=out)
    print("by function (innermost compile; times compiled):", file=out)
    for name, (s, n) in sorted(functions.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:24s} {s:6.2f} s  {100 * s / total:4.0f}%  x{n}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compile_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--optimizer", choices=("adam", "gd"), default="adam")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--inner", choices=("profile", "shared"), help=argparse.SUPPRESS)  # the measuring child
    args = parser.parse_args(argv)
    if args.inner == "profile":
        stages, functions, total = profile(args.dtype, args.optimizer)
        print(json.dumps({"stages": stages, "functions": functions, "total": total}))
        return
    if args.inner == "shared":
        print(json.dumps({"wall": shared(args.dtype, args.optimizer)}))
        return
    result = {}
    for inner in ("profile", "shared"):
        with tempfile.TemporaryDirectory(prefix="fastnet-compile-") as cache:  # an empty cache: a cold compile
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTNET_NO_PREBUILT="1")  # a compile, not the shipped kernels
            proc = subprocess.run([sys.executable, "-m", "bench.compile_profile", "--inner", inner, "--dtype",
                                   args.dtype, "--optimizer", args.optimizer], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"the profile failed: {proc.stderr.strip().splitlines()[-1:]}")
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    result["cores"] = cores()
    report(result["stages"], result["functions"], result["total"], result["wall"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
