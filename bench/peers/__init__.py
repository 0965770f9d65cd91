"""The peers bench.compare runs fastnet against: one module per library, each a script (`python -m
bench.peers.NAME`) that trains the seed recipe from fastnet's initial weights. bench.peers.common
holds what they share; the pin is here because it must come before anything imports NumPy.

A script pins itself first thing: Linux's CPU affinity belongs to each thread and is inherited by
the threads it starts, so a pool started at import (OpenBLAS's, at `import numpy`; XLA's; torch's)
keeps whatever mask was in force then. Under bench.compare the mask is already set, inherited from
the runner; the pin makes a script run alone obey --threads too.
"""

import argparse
import os
import sys


def pin_cpus(n):
    """Let this thread, and every thread it starts from now on, run on the first n usable cores."""
    cores = sorted(os.sched_getaffinity(0))
    if n > len(cores):
        sys.exit(f"--threads {n}: this process may only use {len(cores)} cores")
    os.sched_setaffinity(0, cores[:n])
    return cores[:n]


def pin_from_argv(argv=None):
    """pin_cpus(--threads of the command line), read before the full parse so it can come first."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=1)
    return pin_cpus(p.parse_known_args(sys.argv[1:] if argv is None else argv)[0].threads)
