import gzip
import struct

import pytest
import torch

from d2lexp.data.idx import extract_gz, parse_idx, read_idx
from d2lexp.errors import DataError


def idx_bytes(array: torch.Tensor) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def test_parse_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    assert torch.equal(read_idx(path), images)


def test_reads_gz_when_only_compressed_file_exists(tmp_path):
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    (tmp_path / "y-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert torch.equal(read_idx(tmp_path / "y-idx1-ubyte"), labels)


def test_extract_gz_writes_the_raw_file(tmp_path):
    labels = torch.arange(10, dtype=torch.uint8)
    gz = tmp_path / "y-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(labels)))
    raw = extract_gz(gz)
    assert raw == tmp_path / "y-idx1-ubyte" and raw.read_bytes() == idx_bytes(labels)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    "mutilate, message",
    [
        (lambda b: b[:-100], "file has"),  # truncated download
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:6], "header cut short"),
    ],
)
def test_corrupt_files_name_the_path_and_the_fix(tmp_path, mutilate, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutilate(idx_bytes(torch.zeros(4, 28, 28, dtype=torch.uint8))))
    with pytest.raises(DataError, match=message) as err:
        parse_idx(path.read_bytes(), path)
    assert str(path) in str(err.value) and "Delete it" in str(err.value)


def test_truncated_gzip_is_reported(tmp_path):
    gz = tmp_path / "bad-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(torch.zeros(1000, dtype=torch.uint8)))[:-30])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "bad-idx1-ubyte")
