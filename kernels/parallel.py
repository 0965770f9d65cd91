"""Compiling a run's kernels on more than one core.

A kernel called apart (kernels.linking) compiles without its callees, so the kernels of a training
step can be compiled in different processes: worker processes compile their share into Numba's
on-disk cache while this process compiles the rest, then this one loads theirs from the cache.
Numba compiles one function at a time per process (its compiler lock), so processes are the way
to use a second core.

Workers start only where it pays and is safe: two or more kernels to compile, a second core this
process may run on, and Numba's cache on (kernels.JIT_OPTIONS). Nothing depends on a worker: one
that cannot start, fails or is stopped leaves its kernels uncompiled, and this process compiles
what it cannot load, as it would have without workers. A worker writes only cache files, each
under a name of its own (kernels.linking.KeyedCacheFile), and ignores SIGINT: a Ctrl-C reaches this
process, which stops its workers and goes on as a stop asks.
"""

import os
import pickle
import signal
import subprocess
import sys

MAX_WORKERS = 3  # beyond four processes a step's kernels do not divide any better
START_SECONDS = 0.5  # a worker's start (Python, NumPy, Numba, the first compile's setup), in the groups' unit


def compile_all(groups, module):
    """Compile (or load) every job of `groups`, [(seconds, [(kernel, argtypes), ...])], kernels of
    `module`: kernel.link(argtypes) for a kernel called apart, kernel.compile(argtypes) for a
    dispatcher. A group is compiled in one process (its kernels share leaves that each process
    compiles once); the groups with jobs to compile are shared between this process and up to
    MAX_WORKERS workers by their seconds. This process compiles its share, waits for the
    workers, then loads or compiles every job.

    Every slot of the kernels called apart is registered first: a caller loaded from the cache
    names its callees' slots, and LLVM ends the process on a name it cannot resolve."""
    for _, jobs in groups:
        for kernel, argtypes in jobs:
            if hasattr(kernel, "slot"):
                kernel.slot(argtypes)
    todo = []  # the groups' jobs that neither this process nor a cache holds
    for seconds, jobs in groups:
        missing = [(kernel, argtypes) for kernel, argtypes in jobs if not _ready(kernel, argtypes)]
        if missing:
            todo.append((seconds, missing))
    mine, workers = _start_workers(todo, module)
    try:
        for kernel, argtypes in mine:
            _compile(kernel, argtypes)
        for worker in workers:
            worker.wait()
    finally:
        for worker in workers:  # a stop or an error here: the workers' files are of no more use
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for _, jobs in groups:
        for kernel, argtypes in jobs:
            _compile(kernel, argtypes)


def _start_workers(todo, module):
    """(this process's jobs, the workers started): the groups shared out, the heaviest first, each
    to the least loaded process, a worker starting START_SECONDS behind. A worker's share that
    cannot start stays here; none start without a second core or Numba's on-disk cache."""
    count = min(cores(), len(todo), MAX_WORKERS + 1) - 1
    if count < 1 or not _caching(todo):  # one group, one core, or nowhere to leave compiled code
        return [job for _, jobs in todo for job in jobs], []
    loads, shares = [0.0] + [START_SECONDS] * count, [[] for _ in range(count + 1)]
    for seconds, jobs in sorted(todo, key=lambda group: -group[0]):
        i = loads.index(min(loads))
        loads[i] += seconds
        shares[i].extend(jobs)
    mine, workers = shares[0], []
    for share in filter(None, shares[1:]):
        worker = _start(module, share)
        if worker is None:
            mine = mine + share
        else:
            workers.append(worker)
    return mine, workers


def _compile(kernel, argtypes):
    (kernel.link if hasattr(kernel, "link") else kernel.compile)(argtypes)


def _dispatcher(kernel):
    return getattr(kernel, "dispatcher", kernel)


def _ready(kernel, argtypes):
    """True when the job needs no compile: done in this process, or in an on-disk cache."""
    d = _dispatcher(kernel)
    if tuple(argtypes) in d.overloads:
        return True
    has = getattr(d._cache, "has", None)  # kernels.linking.KernelCache
    return bool(has and has(tuple(argtypes), d.targetctx.codegen()))


def _caching(groups):
    """True when every job's kernel keeps its compiled code on disk (a KernelCache)."""
    return all(hasattr(_dispatcher(kernel)._cache, "has") for _, jobs in groups for kernel, _ in jobs)


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _start(module, share):
    """A worker process compiling `share` (kernel, argtypes) of module's kernels into Numba's cache;
    None where it cannot start."""
    names = {id(v): k for k, v in vars(module).items()}
    share = [(names[id(kernel)], tuple(argtypes)) for kernel, argtypes in share]
    root = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        worker = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=env, cwd=root)
    except (OSError, ValueError):
        return None
    try:
        with worker.stdin:
            pickle.dump((module.__name__, os.path.abspath(module.__file__), share), worker.stdin)
    except (OSError, pickle.PicklingError):  # it died at once, or a type would not pickle: no use waiting
        worker.kill()
        worker.wait()
        return None
    return worker


def work(stream):
    """A worker: compile the share read from `stream` (module name, its file, [(kernel name,
    argtypes)]) into Numba's cache. Exit status 3 when the module found is not the caller's file."""
    import importlib

    module_name, path, share = pickle.load(stream)
    module = importlib.import_module(module_name)
    if os.path.abspath(module.__file__) != path:
        sys.exit(3)
    for kernel, argtypes in share:
        _compile(getattr(module, kernel), argtypes)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent process decides what a Ctrl-C stops
    work(sys.stdin.buffer)
