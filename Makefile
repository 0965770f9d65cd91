# make train: set up, get the data, train, report.  make test: set up, run the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   := /usr/share/datasets/fashion-mnist

.PHONY: setup data train test test-fast test-nojit hostile bench compare gradcheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=68'
	$(PY) -m pip install --quiet 'numba==0.68.1' numpy threadpoolctl
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test,plot,sklearn,dask,onnx]'
	touch $@

# The kernels compiled once for a portable x86-64 baseline (kernels.prebuild), so that a first run
# compiles nothing; again whenever the kernels change.
PREBUILT := kernels/prebuilt/manifest.json
$(PREBUILT): $(VENV)/.installed kernels/jit.py kernels/blas.py kernels/linking.py kernels/parallel.py kernels/prebuild.py kernels/__init__.py
	$(PY) -m kernels.prebuild

setup: $(VENV)/.installed $(PREBUILT)

# The data set: Debian's package where apt is usable as root; otherwise fastnet downloads it
# from the official mirror into ~/.cache/fastnet on first use.
data:
	@if [ -f $(DATA)/train-images-idx3-ubyte.gz ]; then echo "data: $(DATA)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "data: not installed system-wide; fastnet will download it on first use"; fi

train: setup data
	$(PY) -m fastnet.train --save model.npz --plot plots

test: setup data
	$(PY) -m pytest

# The inner loop: every test not marked slow (under two minutes with the kernels compiled once).
test-fast: setup
	$(PY) -m pytest -m "not slow"

test-nojit: setup data
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest tests/kernels/test_kernels.py

# Every case of the hostile sweep (about 200 commands, a few minutes); make test runs a fast subset.
hostile: setup data
	$(PY) tests/hostile/hostile_sweep.py

bench: setup data
	$(PY) -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=median,iqr,min,rounds

compare: setup data
	$(PY) -m bench.compare

gradcheck: setup data
	$(PY) -m fastnet.gradcheck

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks *.egg-info kernels/prebuilt
