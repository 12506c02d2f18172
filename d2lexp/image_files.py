"""A user's own image files, read for a classifier (python -m d2lexp.predict images=...), as data
from anywhere: bounded before anything is decoded.

- Only regular files are read (a FIFO or a device would block or never end), at most
  `MAX_FILE_BYTES` of them, and only in the common formats (`FORMATS`): PIL's other decoders are
  never reached.
- An image's size is read from its header and refused past `MAX_PIXELS` before its pixels are
  decoded; PIL's own decompression-bomb guard stays on beneath (its warning is an error here).
- Each image is then made what the run's data was: grayscale or RGB as the data's images, a
  transparent background black (Fashion-MNIST's), resized as a whole to the data's size (box
  filter when shrinking: each pixel the mean of the area it covers), as uint8 pixels; the run's
  data module prepares them from there as it prepared its own (scaling, normalising, resizing).
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from d2lexp.errors import D2lexpError

MAX_FILE_BYTES = 50 << 20  # a 48-megapixel phone photo is about 15 MB as JPEG
MAX_PIXELS = 50_000_000  # decoded as RGBA: 200 MB
MAX_IMAGES = 10_000  # in one folder
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "PPM")
SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".ppm", ".pgm", ".pbm", ".pnm")


class ImageError(D2lexpError):
    """An image file that cannot be read: missing, too large, not an image, damaged."""


def image_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The images `path` names: itself (a file), or the files of a folder (not its subfolders)
    whose names end as images do, sorted; and the folder's other files, skipped."""
    path = Path(path).expanduser()
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and not p.is_dir())
        images = [p for p in entries if p.suffix.lower() in SUFFIXES]
        if len(images) > MAX_IMAGES:
            raise ImageError(f"{path} holds {len(images):,} images; give at most {MAX_IMAGES:,} at a time.")
        if not images:
            raise ImageError(
                f"{path} holds no images (files ending in {', '.join(SUFFIXES[:5])}, ...): give an image file or a "
                "folder of them."
            )
        return images, [p for p in entries if p.suffix.lower() not in SUFFIXES]
    if not path.exists():
        raise ImageError(f"images={path} does not exist: give an image file or a folder of them.")
    return [path], []


def _read_bounded(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ImageError(f"{path} cannot be read: {e.strerror or e}.") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{path} is not a regular file (a FIFO, a device or a folder): it is not read.")
        if info.st_size > MAX_FILE_BYTES:
            raise ImageError(
                f"{path} is refused: {info.st_size:,} bytes is more than an image d2lexp reads "
                f"({MAX_FILE_BYTES:,}). Give a smaller copy of it."
            )
        return file.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]


@contextmanager
def _bomb_guard() -> Iterator[None]:
    """PIL's decompression-bomb guard on, at d2lexp's bound, its warning an error."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS if previous is None else min(previous, MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """The image at `path` as uint8 pixels [channels, height, width] (`size`: (height, width)), made
    what the data's images are (see the module's docstring); ImageError (one paragraph) for a file
    that is not a readable image within the bounds."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    data = _read_bounded(path)
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path} is refused: {width:,}x{height:,} pixels is more than d2lexp decodes ({MAX_PIXELS:,}). "
                    "Give a smaller copy of it."
                )
            image.draft("L" if channels == 1 else "RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale
            image = ImageOps.exif_transpose(image)  # a phone's photo, the right way up
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image.convert("RGBA"))
            image = image.convert("L" if channels == 1 else "RGB")
            shrinking = image.width > size[1] or image.height > size[0]
            image = image.resize((size[1], size[0]), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8).copy()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not an image d2lexp reads ({', '.join(FORMATS)}): it may be another kind of file, or damaged."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path} is refused by PIL's decompression-bomb guard: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:  # PIL's errors of a damaged file
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise ImageError(
            f"{path} cannot be decoded as an image ({reason}): the file is damaged or truncated."
        ) from None
    tensor = torch.from_numpy(pixels)
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()
