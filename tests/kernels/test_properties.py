"""Property tests (hypothesis, derandomized): kernels on hostile logits, and the argument checks.

Kernels, every registered backend: for any finite logits up to +-1e4 (N in 1..64 rows, K in 2..20
classes), softmax rows are probabilities summing to 1, the cross-entropy is finite and >= 0, and the
fused output layer's dZ rows sum to 0. Tolerances (float32 eps = 1.19e-7, float64 eps = 2.2e-16): a row
of K probabilities, each rounded once to the dtype (the JIT twin also rounds the exp and the
scaling: ~3 roundings of relative size eps/2 each), sums to 1 within 2·K·eps; dZ = (p - y)/N sums
to 0 within 2·K·eps/N. The loss is >= 0 exactly in exact arithmetic (log of a sum that contains
exp(0) = 1, minus a logit <= the row maximum); rounding may take it below 0 by at most 1e-6 (float32).

Arguments: random strings and numbers for the numeric flags of `python -m fastnet.train`, through
build_parser().parse_args and settings_from (and parse_layers, as main does): either a valid parse
with sane values, or an InputError, never another exception (no SystemExit, no ValueError).
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnet import train
from fastnet.errors import InputError
from fastnet.model import parse_layers
from fastnet.recipe import MAX_THREADS

# function_scoped_fixture: the `backend` fixture (conftest.py) is a kernel module, which no example
# changes, so sharing it between examples is safe.
FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@st.composite
def logits_and_labels(draw, dtype=np.float32):
    n = draw(st.integers(1, 64))
    k = draw(st.integers(2, 20))
    big = st.sampled_from([1e4, -1e4, 9999.5, -9999.5, 0.0, 1e-30, -1e-30, 1.0])
    anything = st.floats(-1e4, 1e4, allow_nan=False, width=32 if dtype == np.float32 else 64)
    Z = draw(hnp.arrays(dtype, (n, k), elements=st.one_of(big, anything)))
    y = draw(hnp.arrays(np.uint8, n, elements=st.integers(0, k - 1)))
    return Z, y


def tolerance(dtype, k):
    return 2 * k * np.finfo(dtype).eps


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_output_layer_kernels_on_extreme_logits(backend, dtype, data):
    """softmax, cross_entropy and the fused softmax_cross_entropy on one draw of logits and labels."""
    Z, y = data.draw(logits_and_labels(dtype))
    n, k = Z.shape
    rows = np.arange(n)

    # softmax: rows of probabilities, summing to 1, largest where the logit is largest
    P = backend.softmax(Z, np.empty_like(Z))
    assert P.dtype == dtype and not np.isnan(P).any()
    assert (P >= 0).all() and (P <= 1).all()
    sums = P.astype(np.float64).sum(axis=1)
    assert np.abs(sums - 1).max() <= tolerance(dtype, k), sums
    assert (P[rows, Z.argmax(axis=1)] == P.max(axis=1)).all()

    # cross-entropy: finite, >= 0 up to rounding, and at most the mean gap to the row max + log K
    loss = backend.cross_entropy(Z, y)
    assert isinstance(loss, float) and math.isfinite(loss) and loss >= -1e-6, loss
    gap = (Z.max(axis=1).astype(np.float64) - Z[rows, y]).mean()
    assert loss <= gap + math.log(k) + 1e-3 * (1 + gap)

    # fused output layer: the same loss, and dZ = (P - Y)/N with rows summing to 0
    dZ = np.full_like(Z, np.nan)
    fused = backend.softmax_cross_entropy(Z, y, dZ)
    assert math.isfinite(fused) and fused == pytest.approx(loss, rel=1e-5, abs=1e-5)
    assert not np.isnan(dZ).any()
    assert (np.abs(dZ) <= (1 + tolerance(dtype, k)) / n).all()
    sums = dZ.astype(np.float64).sum(axis=1)
    assert np.abs(sums).max() <= tolerance(dtype, k) / n, sums


# --- argument checks --------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
ODD = st.sampled_from(["", " ", "-", "--", "-h", "--help", "--epochs", "nan", "NaN", "inf", "-inf", "1e309",
                       "1e-400", "5e-324", "0x10", "1_000", " 3 ", "\u0663", "3.0", "1,2", "784,128,10",
                       "784,,10", ",", "784, 128, 10", "1" * 5000, "9" * 30 + ",9", "0", "-0", "+7",
                       "\x00", "1\x00", "\ud800", "%s", "%(prog)s", "{}"])
VALUES = st.one_of(NUMBERS, ODD, st.text(max_size=12))
FLAGS = ["--epochs", "--batch-size", "--lr", "--layers", "--val-split", "--warmup", "--threads",
         "--checkpoint-every", "--seed"]


@st.composite
def argvs(draw):
    argv = []
    for flag in draw(st.lists(st.sampled_from(FLAGS), min_size=1, max_size=4)):
        value = draw(VALUES)
        # `--flag=--` hits a CPython argparse bug: see test_explicit_double_dash_value below
        argv += [f"{flag}={value}"] if value != "--" and draw(st.booleans()) else [flag, value]
    return argv


PARSER = train.build_parser()  # built once: parse_args keeps no state between calls


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(argv=argvs())
def test_train_arguments_parse_or_raise_input_error(argv):
    try:
        args = PARSER.parse_args(argv)
        r = train.recipe_from(args)
        train.check_args(args)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for key in ("epochs", "batch_size"):
        assert isinstance(getattr(r, key), int) and getattr(r, key) > 0
    assert isinstance(r.lr, float) and 0 < r.lr < math.inf
    assert isinstance(r.warmup, int) and r.warmup >= 0
    split = r.val_split  # a count of images, or a fraction of them
    assert (isinstance(split, int) and split >= 0) or (isinstance(split, float) and 0 <= split < 1)
    assert args.threads is None or 0 < args.threads <= MAX_THREADS
    assert len(r.layers) >= 2 and min(r.layers) > 0
    assert not (args.checkpoint_every and not args.save)


@pytest.mark.parametrize("argv", [
    ["--epochs", "3", "--lr", "1e-3", "--layers", "784,64,10", "--val-split", "0", "--warmup", "10"],
    ["--batch-size=1", "--lr=5e-324", "--layers=1,1"],
])
def test_some_valid_arguments_parse(argv):
    r = train.recipe_from(train.build_parser().parse_args(argv))
    assert r.layers == parse_layers(argv[argv.index("--layers") + 1] if "--layers" in argv else
                                    [a for a in argv if a.startswith("--layers=")][0].split("=")[1])


# CPython gh-109475 (fixed in 3.11.8 and 3.12.2): `--opt=--` makes argparse store [] without
# calling the type check; fastnet's own settings check must still turn it into exit 2.
@pytest.mark.parametrize("flag", ["--epochs", "--batch-size", "--lr", "--layers", "--val-split", "--warmup"])
def test_explicit_double_dash_value(flag):
    with pytest.raises(InputError):
        train.recipe_from(PARSER.parse_args([f"{flag}=--"]))
