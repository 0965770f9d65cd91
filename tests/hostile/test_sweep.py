"""The fresh hostile sweep (tests/hostile/hostile_sweep.py): its FAST subset runs with the tests;
`make hostile` runs every case."""

import pytest

from tests.hostile import hostile_sweep

pytestmark = pytest.mark.slow  # about 20 commands in subprocesses


def test_hostile_sweep_fast_subset():
    """About 20 of the sweep's 200-odd cases, one or more per family; `make hostile` runs them all."""
    import io

    cases = [c for c in hostile_sweep.CASES if c.fast]
    assert len(cases) >= 15 and len(hostile_sweep.CASES) >= 100
    report = io.StringIO()
    defects = hostile_sweep.sweep(cases, out=report)
    assert not defects, report.getvalue()
