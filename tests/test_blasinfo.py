"""fastnet.blasinfo: which BLAS kernels a run gets, and the note when the environment forces older ones."""

import os
import subprocess
import sys

from fastnet import blasinfo
from tests.helpers import ROOT, idx_set


def info(kernels, forced, library="openblas"):
    return {"library": library, "version": "0.3.31", "kernels": kernels, "forced": forced}


def test_the_header_names_library_version_and_kernel_family():
    assert blasinfo.blas_text(info("SkylakeX", None)) == "openblas 0.3.31 (SkylakeX kernels)"
    assert blasinfo.blas_text(info("Haswell", "Haswell")) == "openblas 0.3.31 (Haswell kernels, forced)"
    assert blasinfo.blas_text(None) == "BLAS unknown"


def test_a_note_only_when_the_environment_forces_kernels_older_than_the_cpu_runs():
    note = blasinfo.forced_warning(info("Haswell", "Haswell"), avx512=True)
    assert note.startswith("note: OPENBLAS_CORETYPE=Haswell") and "take 1.3-1.8x as long" in note and "\n" not in note
    assert blasinfo.forced_warning(info("Haswell", "Haswell"), avx512=False) is None  # an AVX2 CPU: nothing lost
    assert blasinfo.forced_warning(info("Haswell", None), avx512=True) is None  # chosen by OpenBLAS, not forced
    assert blasinfo.forced_warning(info("SkylakeX", "SkylakeX"), avx512=True) is None
    assert blasinfo.forced_warning(info(None, "Haswell", "mkl"), avx512=True) is None


def test_the_running_process_reports_its_blas():
    found = blasinfo.blas_info()
    assert found["library"] and found["version"]
    assert found["forced"] == os.environ.get("OPENBLAS_CORETYPE")


def test_forced_kernels_in_a_child_are_reported_as_such():
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", PYTHONPATH=str(ROOT))
    code = "from fastnet import blasinfo; i = blasinfo.blas_info(); print(i['kernels'], i['forced'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Haswell", "Haswell"]


def _has_avx512():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " avx512f" in line for line in f)


def test_a_run_names_its_blas_in_the_header_and_the_metrics_and_notes_forced_kernels(tmp_path):
    """The header line and --metrics-json name the BLAS kernels; with OPENBLAS_CORETYPE=Haswell on an
    AVX-512 CPU one 'note:' line says what it costs (and nothing else is on stderr)."""
    import json

    idx_set(tmp_path, 60, 20)
    for forced in (None, "Haswell"):
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"} if forced is None else \
            dict(os.environ, OPENBLAS_CORETYPE=forced)
        env.update(PYTHONPATH=str(ROOT), FASTNET_CACHE_DIR=str(tmp_path / "cache"))
        proc = subprocess.run([sys.executable, "-m", "fastnet.train", "--data-dir", str(tmp_path), "--epochs", "1",
                               "--layers", "16,4,3", "--backend", "numpy", "--val-split", "0",
                               "--metrics-json", str(tmp_path / "m.json")], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        found = json.loads((tmp_path / "m.json").read_text())["blas"]
        assert found["forced"] == forced and found["library"] in proc.stdout.splitlines()[0]
        notes = [line for line in proc.stderr.splitlines() if line.strip()]
        expect_note = forced is not None and _has_avx512() and found["kernels"] not in blasinfo.AVX512_FAMILIES
        assert len(notes) == expect_note and all(n.startswith("note: OPENBLAS_CORETYPE") for n in notes), notes
