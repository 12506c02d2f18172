"""Reading a user's image files for the data sets of d2lexp (bananas, VOC): bounded and checked.

Data folders are shared and unpacked like any files: a listed name may try to leave its folder,
an image may claim a size that takes gigabytes once decoded, a CSV may be endless. Everything
here refuses such files with one paragraph (DataError) before decoding them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from d2lexp.errors import DataError
from d2lexp.files import NotRegularFile, read_regular

MAX_FILE_BYTES = 32 << 20  # one image or list file
MAX_PIXELS = 4096 * 4096  # one decoded image
MAX_FILES = 100_000  # images in one split
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,200}$")


def safe_name(name: str, source: Path) -> str:
    """A file name read from a list (`source`): a plain name inside its folder, or DataError."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise DataError(
            f"{source} names the file {name[:80]!r}, which is not a plain file name (letters, digits, '_', '-', "
            "'.', '+'; no folders): the data is damaged or was altered. Replace it with the data set's own files."
        )
    return name


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Up to `limit` bytes of a regular file, not through a link; DataError for anything else."""
    try:
        data = read_regular(path, limit)
    except NotRegularFile:
        raise DataError(f"{path} is not a regular file: the data set is damaged. Replace it.") from None
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror}): the data set is incomplete. Replace it.") from None
    if len(data) > limit:
        raise DataError(f"{path} is larger than {limit:,} bytes: it is not one of the data set's files. Replace it.")
    return data


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not text (UTF-8): the data set is damaged. Replace it.") from None


def read_image(path: Path, mode: str = "RGB") -> torch.Tensor:
    """An image file as uint8 [C, H, W] (`mode` "RGB" or "L"), its size checked before it is decoded."""
    import io

    from PIL import Image, UnidentifiedImageError

    data = read_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS or width < 1 or height < 1:
                raise DataError(
                    f"{path} claims {width}x{height} pixels, more than the {MAX_PIXELS:,} d2lexp decodes: it is not one "
                    "of the data set's images. Replace it."
                )
            import numpy as np

            pixels = np.asarray(image.convert(mode)).copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{path} cannot be read as an image ({type(e).__name__}): the data set is damaged. Replace it."
        ) from None
    tensor = torch.from_numpy(pixels)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
