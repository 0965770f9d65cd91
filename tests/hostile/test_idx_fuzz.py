"""Property tests of read_idx: mutated headers, huge dims, truncations, appended bytes, gzip wrapping.

Each generated file must either read as exactly the array its bytes encode (by an independent
reference decoder) or raise InputError with one line naming the file; any other exception fails.
"""

import gzip
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fastnet.data.idx import read_idx
from fastnet.errors import InputError

SETTINGS = settings(max_examples=600, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
SMALL_ARRAYS = arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
HUGE = st.sampled_from([2**32 - 1, 2**31, 4_000_000_000, 60000, 1 << 20]) | st.integers(0, 2**32 - 1)


def encode(array) -> bytes:
    """The IDX bytes of a uint8 array."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def reference(blob: bytes):
    """The array blob encodes as a uint8 IDX file, or None if it is not one (a deliberately plain decoder)."""
    if len(blob) < 4 or blob[:3] != b"\x00\x00\x08" or blob[3] == 0:
        return None
    header = 4 + 4 * blob[3]
    if len(blob) < header:
        return None
    dims = struct.unpack(f">{blob[3]}I", blob[4:header])
    if len(blob) - header != math.prod(dims):
        return None
    return np.frombuffer(blob[header:], np.uint8).reshape(dims)


def mutate(draw, blob: bytes) -> bytes:
    """blob changed by one drawn mutation of its header, dims, length or content."""
    header = 4 + 4 * blob[3]
    kind = draw(st.sampled_from(["none", "header byte", "dim", "rank", "truncate", "append", "random"]))
    if kind == "header byte":
        i = draw(st.integers(0, header - 1))
        return blob[:i] + bytes([draw(st.integers(0, 255))]) + blob[i + 1:]
    if kind == "dim":
        i = draw(st.integers(0, blob[3] - 1))
        return blob[:4 + 4 * i] + struct.pack(">I", draw(HUGE)) + blob[8 + 4 * i:]
    if kind == "rank":
        return blob[:3] + bytes([draw(st.integers(0, 255))]) + blob[4:]
    if kind == "truncate":
        return blob[:draw(st.integers(0, max(len(blob) - 1, 0)))]
    if kind == "append":
        return blob + draw(st.binary(min_size=1, max_size=40))
    if kind == "random":
        return draw(st.binary(max_size=80))
    return blob


def read_or_input_error(path):
    """read_idx(path), or None after an InputError, which must be one line naming path."""
    try:
        return read_idx(path)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory for the generated files."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.slow
@SETTINGS
@given(array=SMALL_ARRAYS, gz=st.booleans(), data=st.data())
def test_mutated_idx_reads_exactly_or_fails_cleanly(work, array, gz, data):
    blob = mutate(data.draw, encode(array))
    path = work / ("case.gz" if gz else "case")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    want, got = reference(blob), read_or_input_error(path)
    assert (want is None) == (got is None)
    if want is not None:
        assert got.shape == want.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@SETTINGS
@given(array=SMALL_ARRAYS, data=st.data())
def test_mutated_gzip_stream_never_misreads(work, array, data):
    packed = gzip.compress(encode(array))
    kind = data.draw(st.sampled_from(["truncate", "append", "flip", "set", "append member"]))
    if kind == "truncate":
        packed = packed[:data.draw(st.integers(0, len(packed) - 1))]
    elif kind == "append":
        packed += data.draw(st.binary(min_size=1, max_size=40))
    elif kind == "append member":
        packed += gzip.compress(data.draw(st.binary(max_size=40)))
    else:
        i = data.draw(st.integers(0, len(packed) - 1))
        value = packed[i] ^ data.draw(st.integers(1, 255)) if kind == "flip" else data.draw(st.integers(0, 255))
        packed = packed[:i] + bytes([value]) + packed[i + 1:]
    path = work / "stream.gz"
    path.write_bytes(packed)
    got = read_or_input_error(path)
    if kind == "truncate":
        assert got is None
    if got is not None:  # a successful read must be what the (possibly changed) stream really holds
        want = reference(gzip.decompress(packed))
        assert want is not None and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@settings(SETTINGS, max_examples=200)
@given(dims=st.lists(HUGE, min_size=1, max_size=3), body=st.binary(max_size=64), gz=st.booleans())
def test_forged_dims_never_read(work, dims, body, gz):
    blob = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body
    path = work / "forged"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    got = read_or_input_error(path)
    assert (got is None) == (math.prod(dims) != len(body))
