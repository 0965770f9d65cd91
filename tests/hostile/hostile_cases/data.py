"""Hostile data files and memory limits (issue 21: D1-D3, R1-R3), for tests/hostile/hostile_sweep.py.

dat_npz_*: .npz data written by hand (encryption flags, unknown compression, forged sizes, zip and
  .npy headers at their limits) or by NumPy in odd dtypes, byte orders and layouts;
dat_csv_*: CSV directories with byte-order marks, other encodings, ragged rows, huge numbers, empty files;
mem_*: runs under `ulimit -v` / `ulimit -d` (tests/hostile/hostile_cases/run/limited.py sets them before
  fastnet starts) and under a container's cgroup limit (a cgroup tree of files in the workspace).
"""

import bz2
import io
import zlib

import numpy as np

from tests.helpers import zip_bytes

LIMITED = ["tests.hostile.hostile_cases.run.limited"]
GIB = 1 << 30


def add(case, sweep):
    data_cases(case, sweep)
    csv_cases(case, sweep)
    memory_cases(case, sweep)


# ----------------------------------------------------------------- .npz files

def arrays(ws, sweep):
    """The workspace's IDX data set as the four arrays of a .npz."""
    from fastnet.data.idx import read_idx

    return {"X_train": read_idx(ws / sweep.TI), "y_train": read_idx(ws / sweep.TL),
            "X_test": read_idx(ws / sweep.SI), "y_test": read_idx(ws / sweep.SL)}


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def header(shape, descr="|u1", version=(1, 0)):
    buffer = io.BytesIO()
    write = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    write(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def packed(payload, method):
    """payload compressed as zip method 0, 8 (raw deflate), 12 (bzip2) or 14 (zipfile's lzma layout)."""
    if method == 8:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(payload) + packer.flush()
    if method == 12:
        return bz2.compress(payload)
    if method == 14:
        import zipfile

        packer = zipfile.LZMACompressor()  # zipfile's layout: a version, the properties, raw LZMA1 data
        return packer.compress(payload) + packer.flush()
    return payload


def raw_npz(sweep, key="X_train", payload=None, method=8, **member):
    """Setup: d.npz written by hand (tests.helpers.zip_bytes) from the workspace's arrays; member `key`
    holds payload (its .npy bytes; default: its own array) compressed by method, with the zip entry
    fields of member (flags, method, size, compressed, crc) forged where given; extra= adds members."""
    extra = member.pop("extra", [])

    def setup(ws):
        members = []
        for name, array in arrays(ws, sweep).items():
            body = npy(array) if name != key or payload is None else payload
            entry = dict(name=f"{name}.npy", data=packed(body, method), method=method, size=len(body),
                         crc=zlib.crc32(body))
            if name == key:
                entry.update(member)
            members.append(entry)
        members += [dict(name=n, data=b, crc=zlib.crc32(b)) for n, b in extra]
        (ws / "d.npz").write_bytes(zip_bytes(members))
    return setup


def npz_of(sweep, **changes):
    """Setup: d.npz written by np.savez from the workspace's arrays, each change a function of the
    four arrays returning the member's new value."""
    def setup(ws):
        found = arrays(ws, sweep)
        found.update({k: f(found) for k, f in changes.items()})
        np.savez(ws / "d.npz", **found)
    return setup


def flat(a):
    return a.reshape(len(a), -1)


def data_cases(case, sweep):
    big = 179 << 30
    for name, code, setup in [
        ("encrypted_images", 2, raw_npz(sweep, flags=1)),
        ("encrypted_labels", 2, raw_npz(sweep, "y_train", flags=1)),
        ("encrypted_test_only", 2, raw_npz(sweep, "X_test", flags=1)),
        ("compression_99", 2, raw_npz(sweep, method=99)),
        ("compression_implode_6", 2, raw_npz(sweep, method=6)),
        ("compression_bzip2", 0, raw_npz(sweep, method=12)),
        ("compression_lzma", 0, raw_npz(sweep, method=14)),
        ("stored", 0, raw_npz(sweep, method=0)),
        ("stored_claims_179_gib", 2, raw_npz(sweep, payload=header((big,)) + bytes(9000), method=0, size=big)),
        ("deflate_claims_179_gib", 2, raw_npz(sweep, payload=header((big,)) + bytes(9000), size=big)),
        ("deflate_claims_3_gib", 2, raw_npz(sweep, payload=header((3 * GIB,)) + bytes(9000), size=3 * GIB)),
        ("compressed_size_beyond_file", 2, raw_npz(sweep, compressed=big)),
        ("size_claim_short_of_header", 2, raw_npz(sweep, size=100)),
        ("header_and_size_agree_on_40_mb_of_4_kb", 2,
         raw_npz(sweep, payload=header((40_000_000,)) + bytes(4000), size=40_000_128)),
        ("bad_crc", 2, raw_npz(sweep, crc=1234)),
        ("labels_bad_crc_stored", 2, raw_npz(sweep, "y_train", method=0, crc=99)),
        ("truncated_deflate_stream", 2, lambda ws: (raw_npz(sweep)(ws), _truncate_member(ws))),
        ("header_v2", 0, raw_npz(sweep, payload=header((300, 8, 8), version=(2, 0)) + bytes(300 * 64))),
        ("header_length_4_gib", 2, raw_npz(sweep, payload=b"\x93NUMPY\x02\x00" + b"\xff\xff\xff\xff" + bytes(64))),
        ("header_negative_shape", 2, raw_npz(sweep, payload=header((300, 8, 8)).replace(b"(300,", b"(-30,"))),
        ("header_shape_overflows", 2, raw_npz(sweep, payload=header((2**62, 2**62)) + bytes(100))),
        ("header_not_a_dict", 2, raw_npz(sweep, payload=b"\x93NUMPY\x01\x00\x10\x00" + b"[1, 2, 3]      \n")),
        ("member_is_another_zip", 2, raw_npz(sweep, payload=zip_bytes([dict(name="a", data=b"x")]))),
        ("hundred_extra_members", 0, raw_npz(sweep, extra=[(f"junk{i}.bin", bytes(100)) for i in range(100)])),
        ("big_endian_float32", 0, npz_of(sweep, X_train=lambda a: flat(a["X_train"]).astype(">f4"),
                                         X_test=lambda a: flat(a["X_test"]).astype(">f4"))),
        ("big_endian_float64", 0, npz_of(sweep, X_train=lambda a: flat(a["X_train"]).astype(">f8"),
                                         X_test=lambda a: flat(a["X_test"]).astype(">f8"))),
        ("big_endian_float32_train_native_test", 0, npz_of(sweep, X_train=lambda a: a["X_train"].astype(">f4"),
                                                           X_test=lambda a: a["X_test"].astype("<f4"))),
        ("big_endian_int32", 0, npz_of(sweep, X_train=lambda a: a["X_train"].astype(">i4"),
                                       X_test=lambda a: a["X_test"].astype(">i4"))),
        ("big_endian_uint16_labels", 0, npz_of(sweep, y_train=lambda a: a["y_train"].astype(">u2"),
                                               y_test=lambda a: a["y_test"].astype(">u2"))),
        ("big_endian_float_labels", 0, npz_of(sweep, y_train=lambda a: a["y_train"].astype(">f8"))),
        ("float16_images", 0, npz_of(sweep, X_train=lambda a: a["X_train"].astype(np.float16),
                                     X_test=lambda a: a["X_test"].astype(np.float16))),
        ("bool_images", 0, npz_of(sweep, X_train=lambda a: a["X_train"] > 127, X_test=lambda a: a["X_test"] > 127)),
        ("int64_huge_pixels", 0, npz_of(sweep, X_train=lambda a: a["X_train"].astype(np.int64) * 10**15,
                                        X_test=lambda a: a["X_test"].astype(np.int64) * 10**15)),
        ("fortran_order_images", 0, npz_of(sweep, X_train=lambda a: np.asfortranarray(flat(a["X_train"])))),
        ("fortran_order_3d_images", 0, npz_of(sweep, X_train=lambda a: np.asfortranarray(a["X_train"]))),
        ("labels_uint64_top", 2, npz_of(sweep, y_train=lambda a: np.r_[a["y_train"][:-1].astype("u8"),
                                                                        np.uint64(2**64 - 1)])),
        ("complex_images", 2, npz_of(sweep, X_train=lambda a: a["X_train"].astype(np.complex64))),
        ("text_images", 2, npz_of(sweep, X_train=lambda a: a["X_train"].astype(str))),
        ("datetime_images", 2, npz_of(sweep, X_train=lambda a: a["X_train"].astype("M8[s]"))),
        ("structured_images", 2, npz_of(sweep, X_train=lambda a: np.zeros(300, [("a", "u1"), ("b", "f4")]))),
        ("void_images", 2, npz_of(sweep, X_train=lambda a: np.zeros((300, 64), "V2"))),
        ("object_labels", 2, raw_npz(sweep, "y_train", payload=npy(np.array([1, "a"] * 150, dtype=object)))),
        ("scalar_images", 2, npz_of(sweep, X_train=lambda a: np.array(7, np.uint8))),
        ("labels_1e20", 2, npz_of(sweep, y_train=lambda a: np.full(300, 1e20))),
        ("labels_minus_1e20", 2, npz_of(sweep, y_train=lambda a: np.full(300, -1e20))),
        ("labels_int64_min", 2, npz_of(sweep, y_train=lambda a: np.r_[a["y_train"][:-1].astype(np.int64),
                                                                       np.iinfo(np.int64).min])),
        ("labels_bool", 2, npz_of(sweep, y_train=lambda a: a["y_train"] > 1)),
        ("empty_zip", 2, lambda ws: (ws / "d.npz").write_bytes(b"PK\x05\x06" + bytes(18))),
    ]:
        case(f"dat_npz_{name}", "data files", sweep.NPZ_ARGS + ["d.npz"], code, setup=setup, timeout=60,
             fast=name == "deflate_claims_179_gib")
    for dtype in (">f4", ">f8"):  # the compiled step takes native byte order only
        case(f"dat_npz_big_endian_{dtype[1:]}_numba", "data files", sweep.NPZ_ARGS + ["d.npz", "--backend", "numba"],
             0, setup=npz_of(sweep, X_train=lambda a, t=dtype: flat(a["X_train"]).astype(t),
                             X_test=lambda a, t=dtype: flat(a["X_test"]).astype(t)), timeout=180)


def _truncate_member(ws):
    """Cut X_train's deflate stream in half, keeping the zip directory as it was (sizes claim it whole)."""
    blob = bytearray((ws / "d.npz").read_bytes())
    start = blob.index(b"X_train.npy") + len(b"X_train.npy") + 20  # its zip64 extra field follows the name
    blob[start + 2000 : start + 4000] = bytes(2000)
    (ws / "d.npz").write_bytes(bytes(blob))


# ----------------------------------------------------------------- CSV directories

def csv_files(sweep, train_bytes=None, test_bytes=None, edit=None):
    """Setup: csv/train.csv and csv/test.csv from the workspace's arrays (a header line, then label,
    pixels per line), each replaced by the bytes given, or passed through edit(bytes, split)."""
    def setup(ws):
        found = arrays(ws, sweep)
        (ws / "csv").mkdir()
        for split, given in (("train", train_bytes), ("test", test_bytes)):
            x, y = flat(found[f"X_{split}"]), found[f"y_{split}"]
            text = "label," + ",".join(f"p{i}" for i in range(64)) + "\n" + "".join(
                f"{y[i]}," + ",".join(map(str, x[i])) + "\n" for i in range(len(y)))
            body = given if given is not None else text.encode()
            (ws / "csv" / f"{split}.csv").write_bytes(edit(body, split) if edit else body)
    return setup


def no_header(body):
    return body.split(b"\n", 1)[1]


def first_row_alone(body, split):
    """No header, and the train set's first row the only one of class 3 (the others of class 3 made 0):
    without that row the set has 3 classes, which --layers 64,8,4 refuses."""
    lines = no_header(body).split(b"\n")
    if split == "train":
        lines = [b"3" + lines[0][1:]] + [b"0" + line[1:] if line.startswith(b"3,") else line for line in lines[1:]]
    return b"\n".join(lines)


BOM = b"\xef\xbb\xbf"


def csv_cases(case, sweep):
    for name, code, setup in [
        ("bom_no_header_keeps_first_row", 0, csv_files(sweep, edit=lambda b, s: BOM + first_row_alone(b, s))),
        ("no_header_keeps_first_row", 0, csv_files(sweep, edit=first_row_alone)),
        ("bom_with_header", 0, csv_files(sweep, edit=lambda b, s: BOM + b)),
        ("only_a_bom", 2, csv_files(sweep, train_bytes=BOM)),
        ("utf16_with_bom", 2, csv_files(sweep, edit=lambda b, s: b.decode().encode("utf-16"))),
        ("latin1_header", 2, csv_files(sweep, edit=lambda b, s: b.replace(b"label", b"\xe9tiquette", 1))),
        ("crlf_line_ends", 0, csv_files(sweep, edit=lambda b, s: b.replace(b"\n", b"\r\n"))),
        ("no_final_newline", 0, csv_files(sweep, edit=lambda b, s: b.rstrip(b"\n"))),
        ("trailing_blank_lines", 0, csv_files(sweep, edit=lambda b, s: b + b"\n\n\n")),
        ("spaces_around_cells", 0, csv_files(sweep, edit=lambda b, s: b.replace(b",", b" , "))),
        ("trailing_comma", 2, csv_files(sweep, edit=lambda b, s: b.replace(b"\n", b",\n"))),
        ("semicolons", 2, csv_files(sweep, edit=lambda b, s: b.replace(b",", b";"))),
        ("quoted_cells", 2, csv_files(sweep, edit=lambda b, s: b.replace(b",", b'","'))),
        ("ragged_long_row", 2, csv_files(sweep, edit=lambda b, s: b + b"1," + b"2," * 200 + b"3\n")),
        ("nul_bytes", 2, csv_files(sweep, edit=lambda b, s: b + b"1," + b"\x002," * 63 + b"1\n")),
        ("pixel_1e400", 2, csv_files(sweep, edit=lambda b, s: b + b"1," + b"1e400," * 63 + b"1\n")),
        ("pixel_1e30", 0, csv_files(sweep, edit=lambda b, s: b + b"1," + b"1e30," * 63 + b"1\n")),
        ("negative_pixels", 0, csv_files(sweep, edit=lambda b, s: b + b"1," + b"-5," * 63 + b"1\n")),
        ("label_1e20", 2, csv_files(sweep, edit=lambda b, s: b + b"1e20," + b"1," * 63 + b"1\n")),
        ("label_fraction", 2, csv_files(sweep, edit=lambda b, s: b + b"1.5," + b"1," * 63 + b"1\n")),
        ("hex_cells", 2, csv_files(sweep, edit=lambda b, s: b + b"1," + b"0x10," * 63 + b"1\n")),
        ("empty_train_file", 2, csv_files(sweep, train_bytes=b"")),
        ("empty_test_file", 2, csv_files(sweep, test_bytes=b"")),
        ("newlines_only", 2, csv_files(sweep, train_bytes=b"\n\n\n")),
    ]:
        case(f"dat_csv_{name}", "data files", sweep.NPZ_ARGS + ["csv"], code, setup=setup, timeout=60,
             fast=name == "bom_no_header_keeps_first_row")


# ----------------------------------------------------------------- memory limits

def fake_cgroup(v2=True, limit=GIB, usage=100 << 20, parent_limit=None):
    """Setup: cg/, a cgroup tree of files for run/limited.py's --cgroup: this process in group
    box/run (v2 at the root, v1 under memory/), with its limit and usage, and its parent's limit."""
    def setup(ws):
        root = ws / "cg"
        base = root if v2 else root / "memory"
        files = ("memory.max", "memory.current") if v2 else ("memory.limit_in_bytes", "memory.usage_in_bytes")
        (base / "box" / "run").mkdir(parents=True)
        if v2:
            (root / "cgroup.controllers").write_text("cpu memory\n")
        (root / "self").write_text("0::/box/run\n" if v2 else "5:memory:/box/run\n1:cpu:/box/run\n")
        (base / "box" / "run" / files[0]).write_text(f"{limit}\n")
        (base / "box" / "run" / files[1]).write_text(f"{usage}\n")
        if parent_limit is not None:
            (base / "box" / files[0]).write_text(f"{parent_limit}\n")
            (base / "box" / files[1]).write_text(f"{usage}\n")
    return setup


def memory_cases(case, sweep):
    train = sweep.TRAIN
    huge = ["--layers", "64,1000000,4"]
    for name, limits, args, code, setup in [
        ("ulimit_v_1g_huge_layer", ["--as", str(GIB)], huge, 2, None),
        ("ulimit_v_1g_small_run", ["--as", str(GIB)], [], 0, None),
        ("ulimit_v_1g_wide_layer_fits", ["--as", str(GIB)], ["--layers", "64,20000,4", "--dtype", "float64"], 0, None),
        ("ulimit_v_1g_huge_batch_float64", ["--as", str(GIB)],
         ["--layers", "64,200000,4", "--batch-size", "280", "--dtype", "float64"], 2, None),
        # 4 million units: 1.1 GB of float32 parameters, 4.4 GB with gradients and Adam's moments
        ("ulimit_v_3g_numba_huge_layer", ["--as", str(3 * GIB)], ["--layers", "64,4000000,4", "--backend", "numba"], 2,
         None),
        # a million units fits in 3 GB once the run evaluates only its validation and test rows
        ("ulimit_v_3g_numba_wide_layer_fits", ["--as", str(3 * GIB)], huge + ["--backend", "numba"], 0, None),
        ("ulimit_v_3g_numba_small_run", ["--as", str(3 * GIB)], ["--backend", "numba"], 0, None),
        ("ulimit_d_1g_huge_layer", ["--data", str(GIB)], huge, 2, None),
        ("ulimit_v_1g_resume", ["--as", str(GIB)], ["--resume", "model.npz", "--epochs", "2", "--save", "r.npz"],
         0, None),
        ("ulimit_v_600m_gzip_bomb_consistent_header", ["--as", str(600 << 20)], [], 2,
         lambda ws: ((ws / sweep.TI).unlink(), sweep.put(ws, sweep.TI + ".gz", _gzip_zeros(600 << 20)))),
        ("ulimit_v_600m_npz_bomb_consistent_sizes", ["--as", str(600 << 20)], ["--data-dir", "d.npz"], 2,
         _npz_bomb(sweep, 600 << 20)),
        ("cgroup_v2_limit_huge_layer", ["--cgroup", "cg"], huge, 2, fake_cgroup()),
        ("cgroup_v2_limit_small_run", ["--cgroup", "cg"], [], 0, fake_cgroup()),
        ("cgroup_v2_parent_limit_huge_layer", ["--cgroup", "cg"], ["--layers", "64,100000,4"], 2,
         fake_cgroup(limit="max", parent_limit=300 << 20)),
        ("cgroup_v2_already_full", ["--cgroup", "cg"], [], 2, fake_cgroup(limit=GIB, usage=2 * GIB)),
        ("cgroup_v1_limit_huge_layer", ["--cgroup", "cg"], huge, 2, fake_cgroup(v2=False)),
        ("cgroup_v1_unlimited_small_run", ["--cgroup", "cg"], [], 0, fake_cgroup(v2=False, limit=9223372036854771712)),
        ("cgroup_v2_and_ulimit_v", ["--cgroup", "cg", "--as", str(GIB)], huge, 2, fake_cgroup(limit=8 * GIB)),
    ]:
        writes = ("r.npz",) if "resume" in name else ()
        case(f"mem_{name}", "memory limits", LIMITED + limits + train + args, code, setup=setup, writes=writes,
             timeout=120 if "numba" in name else 60, fast=name == "ulimit_v_1g_huge_layer")


def _gzip_zeros(nbytes):
    """An IDX file of nbytes zero pixels (nbytes // 64 images of 8x8), gzip-compressed (~1 KB per MB)."""
    import gzip

    n = nbytes // 64
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (8).to_bytes(4, "big") + (8).to_bytes(4, "big"))
        block = bytes(1 << 20)
        for _ in range(nbytes >> 20):
            f.write(block)
    return out.getvalue()


def _npz_bomb(sweep, nbytes):
    """Setup: d.npz whose X_train is nbytes of zero pixels, deflated (~1 KB per MB), its zip entry
    and .npy header both honest; the other members the workspace's. Run with --data-dir d.npz."""
    def setup(ws):
        raw_npz(sweep)(ws)
        head = header((nbytes // 64, 64))
        packer, crc, body = zlib.compressobj(1, zlib.DEFLATED, -15), zlib.crc32(head), [b""]
        body.append(packer.compress(head))
        block = bytes(1 << 20)
        for _ in range(nbytes >> 20):
            crc = zlib.crc32(block, crc)
            body.append(packer.compress(block))
        body.append(packer.flush())
        import zipfile

        with zipfile.ZipFile(ws / "d.npz") as zf:
            others = [dict(name=i.filename, data=zf.read(i), crc=i.CRC) for i in zf.infolist()
                      if i.filename != "X_train.npy"]
        (ws / "d.npz").write_bytes(zip_bytes([dict(name="X_train.npy", data=b"".join(body), method=8, crc=crc,
                                                   size=len(head) + nbytes), *others]))
    return setup
