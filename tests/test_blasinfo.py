"""fastnet.blasinfo: which BLAS kernels a run gets, and the note when the environment forces older ones."""

import os
import subprocess
import sys
from pathlib import Path

from fastnet import blasinfo

ROOT = Path(__file__).resolve().parents[1]


def info(kernels, forced, library="openblas"):
    return {"library": library, "version": "0.3.31", "kernels": kernels, "forced": forced}


def test_the_header_names_library_version_and_kernel_family():
    assert blasinfo.blas_text(info("SkylakeX", None)) == "openblas 0.3.31 (SkylakeX kernels)"
    assert blasinfo.blas_text(info("Haswell", "Haswell")) == "openblas 0.3.31 (Haswell kernels, forced)"
    assert blasinfo.blas_text(None) == "BLAS unknown"


def test_a_note_only_when_the_environment_forces_kernels_older_than_the_cpu_runs():
    note = blasinfo.forced_warning(info("Haswell", "Haswell"), avx512=True)
    assert note.startswith("note: OPENBLAS_CORETYPE=Haswell") and "1.8x" in note and "\n" not in note
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
