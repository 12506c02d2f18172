"""Reading IDX files, the format of MNIST and Fashion-MNIST, raw or gzip'd.

Every file is checked against its own header (magic number, dimensions, size),
so a truncated download fails with a message instead of a garbled tensor.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from d2lexp.errors import DataError

# The largest IDX file d2lexp reads, inflated (Fashion-MNIST's largest is 47 MB).
MAX_IDX_BYTES = 512 << 20
# Third byte of the magic number: element type. Fashion-MNIST only uses unsigned bytes.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(
        f"The data file {path} is corrupt or truncated ({why}). Delete it (and its .gz, if any) "
        "and run again to download a fresh copy, or point paths.data_dir / D2LEXP_DATA at a folder "
        "with intact files."
    )


def parse_idx(buffer: bytes, path: Path) -> torch.Tensor:
    """Turn the bytes of one IDX file into a tensor, checking header and length."""
    if len(buffer) < 4:
        raise _corrupt(path, f"only {len(buffer)} bytes")
    zero, _, type_code, ndim = buffer[0], buffer[1], buffer[2], buffer[3]
    if zero != 0 or buffer[1] != 0 or type_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise _corrupt(path, "not an IDX file: bad magic number")
    header = 4 + 4 * ndim
    if len(buffer) < header:
        raise _corrupt(path, "header cut short")
    shape = tuple(int.from_bytes(buffer[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(buffer) != expected:
        raise _corrupt(path, f"header promises {expected:,} bytes for shape {shape}, file has {len(buffer):,}")
    array = np.frombuffer(buffer, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def _gunzip(path: Path) -> bytes:
    """The file's bytes, inflated; refused past `MAX_IDX_BYTES` (a small .gz can inflate to gigabytes)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except (EOFError, OSError, zlib.error) as e:
        raise _corrupt(path, f"gzip: {e}") from None
    if len(data) > MAX_IDX_BYTES:
        raise _corrupt(
            path, f"it inflates to more than {MAX_IDX_BYTES:,} bytes, more than any IDX data set d2lexp reads"
        )
    return data


def extract_gz(gz_path: Path) -> Path | None:
    """Extract `x.gz` to `x` beside it, atomically; None if the folder is read-only."""
    target = gz_path.with_suffix("")
    if not os.access(gz_path.parent, os.W_OK):
        return None
    data = _gunzip(gz_path)
    fd, tmp = tempfile.mkstemp(dir=gz_path.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        shutil.move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_idx(path: Path) -> torch.Tensor:
    """Read `path`, or `path.gz` when only the compressed file is there."""
    path = Path(path)
    if path.exists():
        if path.stat().st_size > MAX_IDX_BYTES:
            raise _corrupt(path, f"it holds more than {MAX_IDX_BYTES:,} bytes, more than any IDX data set d2lexp reads")
        return parse_idx(path.read_bytes(), path)
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return parse_idx(_gunzip(gz), gz)
    raise DataError(f"Missing data file {path} (nor {gz.name} beside it).")
