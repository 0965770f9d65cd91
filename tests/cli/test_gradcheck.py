"""The gradcheck command as a user runs it."""

import pytest

from tests.helpers import idx_set, needs_real, run_cli


@pytest.mark.parametrize("activation", ["tanh", "logistic", "identity"])
def test_gradcheck_cli_takes_activation_and_alpha(tmp_path, tmp_cache, activation):
    proc = run_cli("fastnet.gradcheck", "--data-dir", str(idx_set(tmp_path / "data")), "--layers", "16,8,3",
                   "--backend", "numpy", "--activation", activation, "--alpha", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{activation} hidden layers, alpha 0.5" in proc.stdout
    assert float(proc.stdout.strip().splitlines()[-1].split(": ")[1]) < 1e-7


@needs_real
def test_gradcheck_cli_passes():
    proc = run_cli("fastnet.gradcheck", "--backend", "numpy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("relative difference: ")
    assert float(last.split(": ")[1]) < 1e-7
