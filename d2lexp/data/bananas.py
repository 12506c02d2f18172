"""The book's banana detection data (d2l 1.0 ch. 14.6): 1,000 training and 100 validation images
of 256x256 pixels, one banana each, read as the book's `read_data_bananas` reads them.

Layout (d2l's `banana-detection.zip`): `<data_dir>/banana-detection/bananas_train/label.csv` and
`bananas_train/images/<img_name>`, the same under `bananas_val/`. Each CSV row is `img_name, label,
xmin, ymin, xmax, ymax` (pixels). Targets per image: [1, 5] rows (class, x1, y1, x2, y2), corners
in fractions of the image, as the book's loader returns them. Every file is read bounded and
checked (d2lexp.data.files); a damaged CSV or image ends in one paragraph naming it. Without the
files and with `download`, the archive is fetched from d2l's own address and its SHA-1 checked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
from pathlib import Path
from typing import Any

import torch

from d2lexp.data.files import MAX_FILES, read_image, read_text, safe_name
from d2lexp.data.images import ImageDataModule
from d2lexp.errors import DataError

log = logging.getLogger(__name__)

# d2l's DATA_HUB entry for the archive: its address and SHA-1 (d2l.DATA_HUB["banana-detection"]).
URL = "http://d2l-data.s3-accelerate.amazonaws.com/banana-detection.zip"
SHA1 = "5de26c8fce5ccdea9f91267273464dc968d20d72"
COLUMNS = ["img_name", "label", "xmin", "ymin", "xmax", "ymax"]
SPLITS = {"train": "bananas_train", "test": "bananas_val"}


def banana_folder(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "banana-detection"


def _download(data_dir: Path) -> None:
    """The archive from d2l's address, checked against its SHA-1, unpacked via a temporary folder."""
    import shutil
    import tempfile
    import urllib.request
    import zipfile

    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2lexp-download-", dir=data_dir) as scratch:
        archive = Path(scratch) / "banana-detection.zip"
        try:
            with urllib.request.urlopen(URL, timeout=60) as response, open(archive, "wb") as file:  # noqa: S310
                shutil.copyfileobj(response, file)
        except Exception as e:  # no network, a proxy, a full disk: all end the same way
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            raise DataError(
                f"The banana data is not in {banana_folder(data_dir)} and downloading it failed ({reason}). Point the "
                "run at a copy (paths.data_dir=... holding banana-detection/), or run once where the network is reachable."
            ) from None
        if hashlib.sha1(archive.read_bytes()).hexdigest() != SHA1:
            raise DataError(f"The banana archive from {URL} does not have d2l's checksum: it was not saved.")
        with zipfile.ZipFile(archive) as zipped:
            if any(Path(n).is_absolute() or ".." in Path(n).parts for n in zipped.namelist()):
                raise DataError(f"The banana archive from {URL} names files outside its folder: it was not unpacked.")
            zipped.extractall(scratch)
        shutil.move(str(Path(scratch) / "banana-detection"), banana_folder(data_dir))


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where} holds {text[:40]!r}, not a number: the file is damaged. Replace it.") from None
    if not math.isfinite(value):
        raise DataError(f"{where} holds {text[:40]!r}, not a finite number: the file is damaged. Replace it.")
    return value


def read_data_bananas(folder: Path, max_images: int = MAX_FILES) -> tuple[torch.Tensor, torch.Tensor]:
    """One split folder (`bananas_train`) as (images [N, 3, H, W] uint8, targets [N, 1, 5] float32):
    the book's `read_data_bananas`, checked row by row."""
    listing = folder / "label.csv"
    if not listing.is_file():
        raise DataError(
            f"{listing} is missing: the banana data set is incomplete. Point paths.data_dir at a folder holding "
            "banana-detection/ (bananas_train/ and bananas_val/, each with label.csv and images/)."
        )
    rows = list(csv.reader(io.StringIO(read_text(listing))))
    if not rows or [c.strip() for c in rows[0]] != COLUMNS:
        raise DataError(
            f"{listing} does not start with the columns {','.join(COLUMNS)}: it is not the banana data's label file."
        )
    rows = [r for r in rows[1:] if r]
    if not rows or len(rows) > max_images:
        raise DataError(f"{listing} lists {len(rows)} images; the banana data's lists hold 1 to {max_images:,}.")
    images, targets = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{listing}, line {line}"
        if len(row) != len(COLUMNS):
            raise DataError(
                f"{where} has {len(row)} fields, not {len(COLUMNS)} ({','.join(COLUMNS)}): the file is damaged."
            )
        name = safe_name(row[0].strip(), listing)
        label, *corners = (_number(v, where) for v in row[1:])
        image = read_image(folder / "images" / name, "RGB")
        height, width = image.shape[1:]
        x1, y1, x2, y2 = corners
        if label != int(label) or label < 0 or not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise DataError(
                f"{where} gives class {label:g} and the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}), which is not a box inside "
                f"the {width}x{height} image (or not a class): the file is damaged. Replace it."
            )
        if images and image.shape != images[0].shape:
            raise DataError(f"{folder / 'images' / name} is {width}x{height}, where the split's images are "
                            f"{images[0].shape[2]}x{images[0].shape[1]}: the data set is damaged.")  # fmt: skip
        images.append(image)
        targets.append([label, x1 / width, y1 / height, x2 / width, y2 / height])
    return torch.stack(images), torch.tensor(targets, dtype=torch.float32).unsqueeze(1)


class BananasDataModule(ImageDataModule):
    """The book's banana detection data (d2l 14.6): one class, one box an image, 256x256 colour images."""

    target_kind = "boxes"
    num_classes = 1
    class_names = ("banana",)
    image_shape = (3, 256, 256)
    train_size = 1000
    targets_follow_geometry = False  # the boxes would have to move with the image

    def __init__(self, data_dir: str = "./data", download: bool = True, **options: Any) -> None:
        """`data_dir`: a folder holding banana-detection/; `download`: fetch it (a 15 MB zip from d2l's
        address) where it is missing. `options`: ImageDataModule's."""
        super().__init__(**options)
        self.data_dir, self.download = data_dir, download

    def prepare_data(self) -> None:
        if self.download and not banana_folder(self.data_dir).is_dir():
            _download(Path(self.data_dir).expanduser())

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        folder = banana_folder(self.data_dir)
        if not folder.is_dir() and self.download:
            _download(Path(self.data_dir).expanduser())
        splits = {split: read_data_bananas(folder / name) for split, name in SPLITS.items()}
        if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
            raise DataError(f"{folder}'s training and validation images differ in size: the data set is damaged.")
        self.image_shape = tuple(splits["train"][0].shape[1:])
        return splits
