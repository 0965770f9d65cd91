"""Shared by the benchmarks: the training data, and a closing table of each backend's medians.

The backends come from the `backend` and `backend_name` fixtures of the repository's conftest.py.
Benchmarks call `report(benchmark, backend_name)` after timing; at the end of the session one line
per group gives every backend's median, its speedup over the reference, and the comparable unit
from extra_info.
"""

import pytest

from fastnet import data
from kernels import BACKENDS, REFERENCE

ROWS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def train_data():
    """Fashion-MNIST's training split: uint8 images (60000, 784) and uint8 labels."""
    train = data.load("fashion-mnist", "train")
    return train.images, train.labels


@pytest.fixture
def report(request):
    """A function that records a finished benchmark for the closing table."""
    rows = request.config.stash.setdefault(ROWS, [])

    def record(benchmark, backend_name):
        if benchmark.stats is not None:  # None under --benchmark-disable
            rows.append((benchmark.group, backend_name, benchmark.stats.stats.median, dict(benchmark.extra_info)))

    return record


def _time(seconds):
    """Seconds as a short string in µs, ms or s."""
    for scale, unit in ((1e-3, "us"), (1, "ms")):
        if seconds < scale:
            return f"{seconds / scale * 1e3:.1f}{unit}"
    return f"{seconds:.2f}s"


def pytest_terminal_summary(terminalreporter, config):
    """Print each group's median per backend, with its speedup over the reference, then each row's rate."""
    groups = {}
    for group, name, median, extra in config.stash.get(ROWS, []):
        groups.setdefault(group, {})[name] = (median, extra)
    if not groups:
        return
    terminalreporter.section(f"medians, and speedup over the {REFERENCE} reference")
    for group, by in groups.items():
        ref = by.get(REFERENCE, (float("nan"),))[0]
        cells = [(name, by[name][0]) for name in BACKENDS if name in by]
        medians = "  ".join(f"{name} {_time(t):>8}" + ("" if name == REFERENCE else f" x{ref / t:5.1f}") for name, t in cells)
        units = "; ".join(f"{b} " + ", ".join(f"{k} {v:.3g}" for k, v in e.items() if k != "us_per_call")
                          for b, (_, e) in sorted(by.items()))
        terminalreporter.write_line(f"{group:28} {medians}  {units}")
