"""Shared by the benchmarks: the training data, and a closing table of reference vs JIT medians.

Benchmarks call `report(benchmark, backend)` after timing; at the end of the session one line per
group gives the NumPy and Numba medians, the speedup, and the comparable unit from extra_info.
"""

import pytest

from fastnet import data

ROWS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def train_data():
    """Fashion-MNIST's training split: uint8 images (60000, 784) and uint8 labels."""
    train = data.load_split("fashion-mnist", "train")
    return train.images, train.labels


@pytest.fixture
def report(request):
    """A function that records a finished benchmark for the closing table."""
    rows = request.config.stash.setdefault(ROWS, [])

    def record(benchmark, backend):
        if benchmark.stats is not None:  # None under --benchmark-disable
            rows.append((benchmark.group, backend, benchmark.stats.stats.median, dict(benchmark.extra_info)))

    return record


def _time(seconds):
    """Seconds as a short string in µs, ms or s."""
    for scale, unit in ((1e-3, "us"), (1, "ms")):
        if seconds < scale:
            return f"{seconds / scale * 1e3:.1f}{unit}"
    return f"{seconds:.2f}s"


def pytest_terminal_summary(terminalreporter, config):
    """Print each group's NumPy and Numba medians side by side with the speedup, then each row's rate."""
    groups = {}
    for group, backend, median, extra in config.stash.get(ROWS, []):
        groups.setdefault(group, {})[backend] = (median, extra)
    if not groups:
        return
    terminalreporter.section("medians: numpy reference vs numba JIT")
    for group, by in groups.items():
        ref, fast = by.get("numpy", (float("nan"),))[0], by.get("numba", (float("nan"),))[0]
        units = "; ".join(f"{b} " + ", ".join(f"{k} {v:.3g}" for k, v in e.items() if k != "us_per_call")
                          for b, (_, e) in sorted(by.items()))
        terminalreporter.write_line(f"{group:28} numpy {_time(ref):>8}  numba {_time(fast):>8}  "
                                    f"x{ref / fast:5.1f}  {units}")
