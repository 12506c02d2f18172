"""Fashion-MNIST as uint8 tensors in memory, batched by indexing (d2l ch. 4.2)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from d2lexp.data.augment import Augment, BatchGenerators
from d2lexp.data.base import DataModule
from d2lexp.data.idx import extract_gz, read_idx
from d2lexp.data.loader import TensorBatchLoader, seeded_generator
from d2lexp.data.transforms import ImageBatchTransform
from d2lexp.errors import ConfigError, DataError

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


class FashionMNISTDataModule(DataModule):
    """Fashion-MNIST held as one uint8 tensor per split; batches are gathered by index.

    Validation uses the test split, as the book reports "test acc" every epoch,
    unless `val_size` > 0 holds out that many training images instead. Images
    reach the model as float32 in [0, 1] (optionally normalised and resized),
    converted on the model's device after transfer. On a GPU (`on_device="auto"`)
    the splits live there, and batches are gathered there.
    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        resize: int | None = None,
        normalize: bool = False,
        mean: float = 0.2860,
        std: float = 0.3530,
        train_subset: int | None = None,
        test_subset: int | None = None,
        download: bool = True,
        seed: int = 0,
        on_device: bool | str = "auto",
        augment: Augment | None = None,
    ) -> None:
        """`augment`: random changes to training batches, on their device (d2lexp.data.augment)."""
        super().__init__()
        _check_positive("data.batch_size", batch_size)
        _check_positive("data.eval_batch_size", eval_batch_size, allow_none=True)
        _check_positive("data.resize", resize, allow_none=True)
        _check_positive("data.train_subset", train_subset, allow_none=True)
        _check_positive("data.test_subset", test_subset, allow_none=True)
        if not 0 <= val_size < SPLIT_SIZES["train"]:
            raise ConfigError(f"data.val_size must be in [0, {SPLIT_SIZES['train']}), got {val_size}.")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.download = download
        self.seed = seed
        self.on_device = on_device
        self.transform = ImageBatchTransform(
            resize=resize, mean=mean if normalize else None, std=std if normalize else None
        )
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.augment = augment if augment is not None and augment.active else None
        self._generators = BatchGenerators()

    def prepare_data(self) -> None:
        ensure_fashion_mnist(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = ensure_fashion_mnist(self.data_dir, self.download)
        train_x, train_y = load_split(raw, "train")
        test_x, test_y = load_split(raw, "test")
        if self.val_size:
            order = torch.randperm(len(train_y), generator=seeded_generator(self.seed, 1))
            val_idx, train_idx = order[: self.val_size].sort().values, order[self.val_size :].sort().values
            self.splits["val"] = (train_x[val_idx], train_y[val_idx])
            train_x, train_y = train_x[train_idx], train_y[train_idx]
        if self.train_subset:
            train_x, train_y = train_x[: self.train_subset], train_y[: self.train_subset]
        if self.test_subset:
            test_x, test_y = test_x[: self.test_subset], test_y[: self.test_subset]
        self.splits["train"] = (train_x, train_y)
        self.splits["test"] = (test_x, test_y)
        self.splits.setdefault("val", self.splits["test"])
        device = self.data_device(self.on_device)
        if device.type != "cpu":  # each split crosses to the accelerator once, as uint8
            self.splits = {name: tuple(t.to(device) for t in split) for name, split in self.splits.items()}

    def train_dataloader(self) -> TensorBatchLoader:
        # Lightning's overfit_batches means: the same first batches every epoch.
        shuffle = not (self.trainer is not None and self.trainer.overfit_batches)
        return TensorBatchLoader(self.splits["train"], self.batch_size, shuffle=shuffle, seed=self.seed)

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.splits["val"], self.eval_batch_size)

    def test_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.splits["test"], self.eval_batch_size)

    def predict_dataloader(self) -> TensorBatchLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # images alone (prediction, the model summary's example)
            return self.transform(batch)
        images, labels = batch
        return self.transform(images, self._training_augment(images.device)), labels

    def _training_augment(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The augmentation of the training batch being transferred, its draws seeded by (seed, epoch,
        batch): Lightning counts the epoch's batches, and restores the count when a run resumes."""
        trainer = self.trainer
        if self.augment is None or trainer is None or not trainer.training:
            return None
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # this batch's index in the epoch
        generator = self._generators.for_batch(device, self.seed, trainer.current_epoch, batch)
        return lambda images: self.augment(images, generator)

    def augmented_samples(self, n: int = 18) -> tuple[torch.Tensor, list[str]] | None:
        """The book's figure of augmentation: the first training image, then `n - 1` draws of it."""
        if self.augment is None or not self.splits:
            return None
        image = self.splits["train"][0][:1].float().cpu() / 255.0
        draws = self.augment(image.expand(n - 1, -1, -1, -1), torch.Generator().manual_seed(self.seed))
        return torch.cat([image, draws])[:, 0], ["original"] + [f"draw {i}" for i in range(1, n)]

    def train_examples(self) -> int:
        available = SPLIT_SIZES["train"] - self.val_size
        return min(available, self.train_subset) if self.train_subset else available

    def example_input(self) -> torch.Tensor:
        """One blank image as a loader yields it (uint8, before the device-side transform)."""
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def sample_images(self, n: int = 18) -> tuple[torch.Tensor, list[str]]:
        """The first `n` training images as floats [n, H, W] and their text labels (the book's names)."""
        images, labels = self.splits["train"]
        return images[:n, 0].float().cpu() / 255.0, [self.class_names[int(i)] for i in labels[:n].tolist()]


def _check_positive(key: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
