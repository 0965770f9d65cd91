"""The README stays true: its Python examples run, it stays short, its flag table stays complete.

Every fenced ```python block of README.md runs in a fresh interpreter, in an empty temporary
directory, and must exit 0. A block whose fence is preceded by the line `<!-- no-test -->` is
not run (it needs something a test cannot have, such as a Dask cluster). A block is skipped,
with the reason, when it reads Fashion-MNIST and the files are not installed, or when it imports
an optional package that is not installed.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
NO_TEST = "<!-- no-test -->"
MAX_LINES = 150
TIMEOUT = 600  # seconds: a cold Numba cache compiles the kernels first (tens of seconds on 2 cores)
OPTIONAL = {"sklearn": "scikit-learn", "dask": "dask", "joblib": "joblib", "matplotlib": "matplotlib",
            "onnx": "onnx", "onnxruntime": "onnxruntime", "skl2onnx": "skl2onnx"}
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")


def code_blocks(text, language="python"):
    """(first line number, code) of each fenced block in `language`, less those marked NO_TEST."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, fence = i, opening.group(1)
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md:{start + 1}: fence never closed")
        marked = start > 0 and lines[start - 1].strip() == NO_TEST
        if opening.group(2) == language and not marked:
            blocks.append((start + 2, "\n".join(lines[start + 1 : i]) + "\n"))
        i += 1
    return blocks


def imported_modules(code):
    """Top-level names of the modules a block imports."""
    names = re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", code, flags=re.M)
    return set(names)


def fashion_mnist_installed():
    """Whether Fashion-MNIST can be read without a download (its small test split is read to find out)."""
    from fastnet import data
    from fastnet.errors import InputError

    try:
        data.load("fashion-mnist", "test", download=False)
    except InputError:
        return False
    return True


README_BLOCKS = code_blocks(README.read_text(encoding="utf-8"))


def run_block(code, cwd):
    """Run code in a fresh interpreter in cwd, with the repository importable; the finished process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.slow
@pytest.mark.parametrize("line, code", README_BLOCKS, ids=[f"README.md:{n}" for n, _ in README_BLOCKS])
def test_python_block_runs(line, code, tmp_path):
    for module in sorted(imported_modules(code) & OPTIONAL.keys()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"README.md:{line} imports {module}, and {OPTIONAL[module]} is not installed")
    if re.search(r"fashion[-_]?mnist", code, flags=re.I) and not fashion_mnist_installed():
        pytest.skip(f"README.md:{line} reads Fashion-MNIST, which cannot be found without a download "
                    "(apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)")
    done = run_block(code, tmp_path)
    assert done.returncode == 0, f"README.md:{line} exited {done.returncode}:\n{done.stderr[-3000:]}"


def test_block_extraction():
    text = "\n".join([
        "```python", "a = 1", "```",
        "<!-- no-test -->", "```python", "cluster()", "```",
        "```sh", "make test", "```",
        "````python", "s = '```'", "````",
    ])
    assert code_blocks(text) == [(2, "a = 1\n"), (12, "s = '```'\n")]
    assert imported_modules("import fastnet\nfrom sklearn.pipeline import x\n") == {"fastnet", "sklearn"}


def test_block_runner_reports_failure(tmp_path):
    assert run_block("import fastnet, kernels\n", tmp_path).returncode == 0
    assert run_block("raise SystemExit(3)\n", tmp_path).returncode == 3


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES}"


def flag_table(text):
    """The long flags named in the first column of the README table whose header starts `| flag |`."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^\|\s*flag\s*\|", line)), None)
    assert start is not None, "README.md has no table with a 'flag' column"
    flags = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        flags |= set(re.findall(r"--[a-z][a-z0-9-]*", line.split("|")[1]))
    return flags


def test_flag_table_matches_argparse():
    from fastnet.train import build_parser

    defined = {flag for action in build_parser()._actions if action.dest != "help"
               for flag in action.option_strings if flag.startswith("--")}
    listed = flag_table(README.read_text(encoding="utf-8"))
    assert not defined - listed, f"flags missing from the README's table: {sorted(defined - listed)}"
    assert not listed - defined, f"flags in the README's table that train does not define: {sorted(listed - defined)}"
