"""Fashion-MNIST (d2l ch. 4.2): its files found or fetched, read and checked; an in-memory image data set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from d2lexp.data.idx import extract_gz, read_idx
from d2lexp.data.images import ImageDataModule
from d2lexp.errors import DataError

log = logging.getLogger(__name__)

# The book's text labels (d2l.get_fashion_mnist_labels), in class-index order.
CLASS_NAMES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


def raw_folder(data_dir: str | Path) -> Path:
    """Where torchvision keeps the files: `<data_dir>/FashionMNIST/raw/`."""
    return Path(data_dir).expanduser() / "FashionMNIST" / "raw"


def _missing_files(raw: Path) -> list[str]:
    names = [name for pair in SPLIT_FILES.values() for name in pair]
    return [n for n in names if not (raw / n).exists() and not (raw / f"{n}.gz").exists()]


def _download(raw: Path, missing: list[str]) -> None:
    """Fetch the files with torchvision's downloader into a temporary folder, then move the
    missing ones into `raw`: a download that fails leaves nothing behind, not even empty folders."""
    import shutil
    import tempfile

    from torchvision.datasets import FashionMNIST

    with tempfile.TemporaryDirectory(prefix="d2lexp-download-") as scratch:
        try:
            FashionMNIST(root=scratch, train=True, download=True)
        except Exception as e:  # no network, a proxy, a full disk: all end the same way
            reason = " ".join(f"{type(e).__name__}: {e}".split())  # one paragraph
            raise DataError(
                f"Fashion-MNIST is not in {raw} and downloading it failed ({reason}). "
                "Point the run at a copy: set D2LEXP_DATA=/path/to/datasets or pass paths.data_dir=..., "
                "a folder holding FashionMNIST/raw/ with the four IDX files (extracted or .gz); "
                "or run once where the network is reachable."
            ) from None
        fetched = Path(scratch) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in missing:
            for candidate in (fetched / f"{name}.gz", fetched / name):
                if candidate.exists() and not (raw / candidate.name).exists():
                    shutil.move(str(candidate), raw / candidate.name)


def ensure_fashion_mnist(data_dir: str | Path, download: bool = True) -> Path:
    """Make sure the four IDX files are in `<data_dir>/FashionMNIST/raw/`; return that folder.

    Files that are there only as `.gz` are extracted beside it (when the folder is
    writable; otherwise they are read compressed). Missing files are fetched with
    torchvision's own downloader.
    """
    raw = raw_folder(data_dir)
    missing = _missing_files(raw)
    if missing and download:
        log.info("Fashion-MNIST not found in %s: downloading it with torchvision", raw)
        _download(raw, missing)
        missing = _missing_files(raw)
    if missing:
        raise DataError(
            f"Fashion-MNIST is not in {raw}: missing {', '.join(missing)}. Set D2LEXP_DATA=/path/to/datasets "
            "or pass paths.data_dir=... (a folder holding FashionMNIST/raw/), or allow data.download=true "
            "where the network is reachable."
        )
    for names in SPLIT_FILES.values():
        for name in names:
            if not (raw / name).exists():
                extract_gz(raw / f"{name}.gz")
    return raw


def load_split(raw: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 images [N, 1, 28, 28], int64 labels [N]), checked for consistency."""
    image_file, label_file = SPLIT_FILES[split]
    images, labels = read_idx(raw / image_file), read_idx(raw / label_file)
    if images.dim() != 3 or images.dtype != torch.uint8 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{raw / image_file} holds {tuple(images.shape)} {images.dtype}, not 28x28 uint8 images.")
    if labels.dtype != torch.uint8:
        raise DataError(
            f"{raw / label_file} holds {labels.dtype} labels, not Fashion-MNIST's unsigned bytes: replace it."
        )
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataError(
            f"{raw / label_file} has {len(labels)} labels for {len(images)} images in {raw / image_file}: "
            "the two files come from different downloads. Replace both."
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(CLASS_NAMES)):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(
            f"{raw / label_file} has label {bad}; Fashion-MNIST's labels are 0 to {len(CLASS_NAMES) - 1}. "
            "The file is damaged or not Fashion-MNIST's: replace it."
        )
    return images.unsqueeze(1), labels.long()


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (d2l ch. 4.2): 60,000 training and 10,000 test images, 28x28 grayscale, in
    10 classes, held as uint8 tensors (ImageDataModule: batches, splits, subsets, augmentation)."""

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    image_shape = (1, 28, 28)
    train_size = SPLIT_SIZES["train"]
    mean, std = 0.2860, 0.3530  # of the training images' pixels, in [0, 1]
    targets_follow_geometry = True  # a shifted or mirrored shirt is still a shirt

    def __init__(self, data_dir: str = "./data", download: bool = True, **options: Any) -> None:
        """`data_dir`: a folder holding FashionMNIST/raw/ (torchvision's layout); `download`: fetch
        the files with torchvision's downloader when they are missing. `options`: ImageDataModule's
        (batch_size, val_size, resize, normalize, train_subset, augment, ...)."""
        super().__init__(**options)
        self.data_dir, self.download = data_dir, download

    def prepare_data(self) -> None:
        ensure_fashion_mnist(self.data_dir, self.download)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raw = ensure_fashion_mnist(self.data_dir, self.download)
        return {"train": load_split(raw, "train"), "test": load_split(raw, "test")}
