"""The verified download: each file is fetched to a temporary name, checked, then given its final name.

A file is checked by the MD5 its publisher lists for the .gz (where one is known), then read as
IDX and checked by the SHA-256 of its decompressed payload (where one is known). Only then does
files.atomic_write rename it into place, so the cache never holds a partial or unverified file.
The verified payload goes straight into the decoded cache.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import atomic_write, check_destination
from . import cache
from .idx import READ_CHUNK, read_idx_from

if TYPE_CHECKING:
    from .sources import DatasetInfo

# A download gives up when no byte arrives for STALL_SECONDS, when fewer than STALL_BYTES arrive in
# any STALL_SECONDS (a mirror trickling a byte every few seconds), or when one file takes longer
# than DEADLINE_SECONDS in all (30 MB at 35 KB/s); its temporary file is then removed.
STALL_SECONDS = 30
STALL_BYTES = 16 << 10
DEADLINE_SECONDS = 15 * 60
MAX_DOWNLOAD = 1 << 30  # no data set file we fetch is near 1 GiB compressed


def download(info: DatasetInfo, mirror: str, dest: Path, bases) -> None:
    """Fetch the files named by bases (base names, no .gz) of data set info from mirror into dest."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {dest}: {exc.strerror or exc}; {info.how_to_get()}") from None
    for base in bases:
        _download_file(info, f"{mirror.rstrip('/')}/{base}.gz", dest / f"{base}.gz")


def _download_file(info: DatasetInfo, url: str, final: Path) -> None:
    """Download url to a temporary name beside final, check its MD5 and payload hash, then rename it to final."""
    base = final.name.removesuffix(".gz")
    try:
        check_destination(final, "download")
    except InputError as exc:
        raise InputError(f"{exc}; {info.how_to_get()}") from None
    with atomic_write(final, "w+b", "download") as f:
        md5 = _fetch(info, url, f)
        expected_md5 = info.gz_md5.get(final.name)
        if expected_md5 and md5 != expected_md5:
            raise InputError(f"downloaded {url} is corrupt or modified: MD5 {md5}, expected {expected_md5}")
        f.flush()
        f.seek(0)
        try:
            array, digest, _ = read_idx_from(f, Path(final.name), info.rank(base))
        except InputError as exc:
            raise InputError(f"downloaded {url} is not a valid IDX file ({exc})") from None
        expected = info.sha256.get(base)
        if expected and digest != expected:
            raise InputError(f"downloaded {url} is corrupt or modified: payload SHA-256 {digest}, expected {expected}")
    cache.store(final, info.name, array, digest)


def _fetch(info: DatasetInfo, url: str, out) -> str:
    """Copy url into the open file out, with progress on stderr; return the MD5 of the bytes."""
    # imported here, as most runs never download: docs/performance.md#constants-and-where-they-come-from
    import http.client
    import urllib.request

    md5 = hashlib.md5(usedforsecurity=False)
    print(f"downloading {url}", file=sys.stderr)
    start = window = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=STALL_SECONDS) as response:  # each read: a byte within it
            length, done, window_done = response.headers.get("Content-Length", ""), 0, 0
            length = int(length) if length.isdigit() else None
            while chunk := response.read1(READ_CHUNK):  # what has arrived, not a full READ_CHUNK
                done += len(chunk)
                if done > MAX_DOWNLOAD:
                    raise InputError(f"download of {url} exceeds {MAX_DOWNLOAD >> 20} MiB; giving up")
                out.write(chunk)
                md5.update(chunk)
                _progress(done, length)
                now = time.monotonic()
                if now - start > DEADLINE_SECONDS:
                    raise _gave_up(url, f"still unfinished after {DEADLINE_SECONDS:g} s ({done >> 10} KiB)", info)
                if now - window >= STALL_SECONDS:
                    if done - window_done < STALL_BYTES:
                        raise _gave_up(url, f"stalled: {done - window_done} bytes in the last "
                                            f"{now - window:.0f} s", info)
                    window, window_done = now, done
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise InputError(f"cannot download {url} ({_reason(exc)}); {info.how_to_get()}") from None
    finally:
        _progress(None, None)
    return md5.hexdigest()


def _gave_up(url, why, info):
    return InputError(f"cannot download {url} ({why}); {info.how_to_get()}")


def _reason(exc: Exception) -> str:
    """A short one-line reason for a failed download."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError):
        return f"stalled: no data for {STALL_SECONDS:g} s"
    return " ".join(str(reason).split()) or type(exc).__name__


def _progress(done, length) -> None:
    """Show download progress on stderr when it is a terminal; (None, None) ends the line."""
    if not sys.stderr.isatty():
        return
    if done is None:
        sys.stderr.write("\n")
    else:
        sys.stderr.write(f"\r  {done >> 10} KiB" + (f" of {length >> 10} KiB" if length else ""))
    sys.stderr.flush()
