"""Run `python -m MODULE ARGS...` under memory limits, for the hostile sweep's mem_ cases:

    python -m tests.hostile.hostile_cases.run.limited [--as BYTES] [--data BYTES] [--cgroup DIR] MODULE ARGS...

--as and --data set the soft RLIMIT_AS and RLIMIT_DATA (as `ulimit -v` and `ulimit -d` do) before
MODULE is imported. --cgroup DIR points fastnet.memory at a cgroup tree of files in DIR (DIR/self
standing for /proc/self/cgroup): a container's limit, which a test cannot set on every machine.
"""

import resource
import runpy
import sys
from pathlib import Path

LIMITS = {"--as": resource.RLIMIT_AS, "--data": resource.RLIMIT_DATA}


def main(argv):
    while argv and argv[0] in (*LIMITS, "--cgroup"):
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--cgroup":
            from fastnet import memory

            memory.CGROUP_ROOT, memory.SELF_CGROUP = Path(value), Path(value) / "self"
        else:
            resource.setrlimit(LIMITS[flag], (int(value), resource.getrlimit(LIMITS[flag])[1]))
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
