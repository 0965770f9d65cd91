"""Reading IDX files of unsigned bytes, raw or gzip, with every size checked before it is trusted.

The header is checked against the file's real size before anything large is allocated, so a forged
header fails fast; gzip data is decompressed at most OUT_CHUNK bytes at a time and stops once past
the header's claim, so a gzip bomb costs no more memory than the array it pretends to hold.
Every problem is an InputError: one line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zlib
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .. import memory
from ..errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 18  # compressed bytes read at a time
OUT_CHUNK = 1 << 20  # most decompressed bytes produced at a time, so a gzip bomb stops early
MAX_PAYLOAD = 1 << 32  # 4 GiB: far above any data set this trainer can hold, far below a forged header
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand n bytes to more than ~1032 n
IDX_TYPES = MappingProxyType({0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int",
                              0x0D: "float", 0x0E: "double"})


def read_idx(path, rank=None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzip or raw (told apart by magic bytes), as an array of its dims.

    rank, if given, is the number of dimensions the file must have. The header is checked against
    the file's real size before anything large is allocated, so a forged header fails fast.
    """
    return read_idx_file(Path(path), rank)[0]


def bad_file(path, problem) -> InputError:
    """The one-line error for a bad file."""
    return InputError(f"{path}: {problem}")


def read_idx_file(path: Path, rank=None):
    """read_idx, also returning the SHA-256 of the decompressed bytes and whether the file was gzip."""
    try:
        with open(path, "rb") as f:
            return read_idx_from(f, path, rank)
    except OSError as exc:
        raise bad_file(path, f"cannot read: {exc.strerror or exc}") from None


def read_idx_from(f, path: Path, rank=None):
    """read_idx_file on a file already open for binary reading at its start; path only names it in errors."""
    chunks, size, gz = _open_chunks(f, path, OUT_CHUNK)
    array, digest = _assemble(chunks, path, rank, size, gz)
    return array, digest, gz


def read_header(path: Path, rank=None) -> tuple:
    """The dims an IDX file's header claims, checked as read_idx checks them (the file's size, the
    gzip expansion bound, available memory) without reading its body: for a gzip file only the
    first compressed chunk is inflated. So several files can be checked against each other before
    any of them is decompressed."""
    try:
        with open(path, "rb") as f:
            chunks, size, gz = _open_chunks(f, path, 64)
            hlen, dims = _header(chunks, bytearray(), path, rank, gz)
            _check_claim(path, dims, hlen, size, gz)
            return dims
    except OSError as exc:
        raise bad_file(path, f"cannot read: {exc.strerror or exc}") from None


def _open_chunks(f, path, raw_chunk):
    """(iterator over f's IDX bytes, decompressed if gzip; f's size; whether it is gzip)."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise bad_file(path, "is empty")
    gz = f.read(2) == GZIP_MAGIC
    f.seek(0)
    chunks = _gunzip(f, path) if gz else iter(lambda: f.read(raw_chunk), b"")
    return iter(chunks), size, gz


def available_memory():
    """Bytes this process may still allocate (fastnet.memory.available: the machine's free memory,
    ulimit -v, a container's cgroup limit), or None where unknown."""
    return memory.available()


def payload_sha256(array: np.ndarray) -> str:
    """The SHA-256 of the IDX file (header and bytes) that a uint8 array was decoded from."""
    digest = hashlib.sha256(bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _gunzip(f, path):
    """Yield the decompressed bytes of gzip file f, at most OUT_CHUNK at a time; any gzip fault is an InputError."""
    d = zlib.decompressobj(31)
    data, at_end = b"", False
    try:
        while True:
            if not data:
                data = f.read(READ_CHUNK)
                at_end = not data
            out = d.decompress(data, OUT_CHUNK)
            data = d.unconsumed_tail
            if out:
                yield out
            if d.eof:  # a member ended: only another gzip member may follow
                data = d.unused_data or f.read(READ_CHUNK)
                if len(data) == 1:
                    data += f.read(1)
                if not data:
                    return
                if data[:2] != GZIP_MAGIC:
                    raise bad_file(path, "has unexpected bytes after the end of its gzip data")
                d = zlib.decompressobj(31)
            elif at_end and not out:
                raise bad_file(path, "is truncated: its gzip data ends early")
    except zlib.error as exc:
        raise bad_file(path, f"is corrupt gzip data ({exc})") from None


def _fill(chunks, data: bytearray, n: int) -> bool:
    """Append chunks to data until it holds at least n bytes; False if they run out first."""
    while len(data) < n:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        data += chunk
    return True


def _header(chunks, data, path, rank, gz):
    """Read and check the IDX header from chunks into data; return (header length, dims)."""
    if not _fill(chunks, data, 4):
        raise bad_file(path, f"is too short for an IDX header ({len(data)} bytes)")
    if data[0] or data[1]:
        hint = " (and not gzip data despite its .gz name)" if path.name.endswith(".gz") and not gz else ""
        raise bad_file(path, f"is not an IDX file: magic bytes {data[0]:02x} {data[1]:02x}, expected 00 00{hint}")
    if data[2] != 0x08:
        kind = IDX_TYPES.get(data[2], "unknown")
        raise bad_file(path, f"has IDX element type 0x{data[2]:02x} ({kind}); only 0x08 (unsigned byte) is supported")
    ndim = data[3]
    if ndim == 0 or (rank is not None and ndim != rank):
        raise bad_file(path, f"has {ndim} dimensions, expected {rank or 'at least 1'}")
    hlen = 4 + 4 * ndim
    if not _fill(chunks, data, hlen):
        raise bad_file(path, f"is truncated inside its IDX header ({len(data)} of {hlen} bytes)")
    return hlen, struct.unpack(f">{ndim}I", bytes(data[4:hlen]))


def _claim(dims):
    return f"its header claims {' x '.join(map(str, dims))} = {math.prod(dims)} bytes"


def _check_claim(path, dims, hlen, size, gz):
    """InputError unless the body a header claims can be: under MAX_PAYLOAD and the memory available,
    exactly the rest of a raw file, within what a gzip file's size can inflate to."""
    nbytes, total = math.prod(dims), hlen + math.prod(dims)
    claim = _claim(dims)
    if nbytes > MAX_PAYLOAD:
        raise bad_file(path, f"{claim}, over the {MAX_PAYLOAD >> 30} GiB limit")
    if not gz and size != total:
        if size < total:
            raise bad_file(path, f"is truncated: {claim} but only {size - hlen} follow")
        raise bad_file(path, f"has {size - total} bytes of trailing data: {claim} but {size - hlen} follow")
    if gz and total > DEFLATE_MAX_RATIO * size + 1024:
        raise bad_file(path, f"is truncated or forged: {claim}, more than its {size} bytes of gzip data can hold")
    have = available_memory()
    if have is not None and nbytes > have:
        raise bad_file(path, f"{claim}, more than the {have >> 20} MiB of memory available; not read")


def _assemble(chunks, path, rank, size, gz):
    """Collect the IDX bytes into one buffer of the claimed size, checking the header first and the
    length as bytes arrive; return (array, sha256 of header and body)."""
    head = bytearray()
    hlen, dims = _header(chunks, head, path, rank, gz)
    _check_claim(path, dims, hlen, size, gz)
    nbytes = math.prod(dims)
    body = np.empty(nbytes, np.uint8)  # filled in place: the peak is the array, not a growing copy
    digest = hashlib.sha256(head[:hlen])
    done, chunk, head = 0, memoryview(head)[hlen:], None  # the view keeps only what it needs alive
    while chunk is not None:
        if done + len(chunk) > nbytes:
            raise bad_file(path, f"has trailing data: {_claim(dims)} but more follow")
        body[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        digest.update(chunk)
        done += len(chunk)
        chunk = None  # freed before the next one is inflated: the peak stays one chunk above the array
        chunk = next(chunks, None)
    if done < nbytes:
        raise bad_file(path, f"is truncated: {_claim(dims)} but only {done} follow")
    return body.reshape(dims), digest.hexdigest()
