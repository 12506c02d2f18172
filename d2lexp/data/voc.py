"""Pascal VOC 2012 semantic segmentation (d2l 1.0 ch. 14.9), its colour map, and its loader.

The layout is VOC's own: `<data_dir>/VOCdevkit/VOC2012/` with `JPEGImages/<name>.jpg`,
`SegmentationClass/<name>.png` (each pixel's class as a colour of `VOC_COLORMAP`) and
`ImageSets/Segmentation/train.txt` and `val.txt` (one name a line). As the book's
`VOCSegDataset`, images smaller than the crop are left out, and each remaining image and its
label image are cut to `crop` (height, width); the book draws a new random crop each epoch, here
each image's crop is drawn once, seeded, when the data is read (the splits are tensors of one
size). Every file is read bounded and checked (d2lexp.data.files): a damaged or altered data set
ends in one paragraph. Without the files and with `download`, torchvision's downloader fetches
VOC's archive (2 GB) from its own address.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from d2lexp.data.files import MAX_FILES, read_image, read_text, safe_name
from d2lexp.data.images import ImageDataModule
from d2lexp.data.loader import seeded_generator
from d2lexp.errors import DataError

log = logging.getLogger(__name__)

# The colour of each of the 21 classes in VOC's label images, index = class (d2l 14.9.2).
VOC_COLORMAP = [
    [0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
    [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0], [64, 0, 128], [192, 0, 128],
    [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0], [0, 192, 0], [128, 192, 0], [0, 64, 128],
]  # fmt: skip

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv/monitor",
]  # fmt: skip

SPLITS = {"train": "train.txt", "test": "val.txt"}  # the book trains on train and tests on val


def voc_colormap2label() -> torch.Tensor:
    """A lookup table from a colour's index (R * 256 + G) * 256 + B to its VOC class (0 elsewhere)."""
    colormap2label = torch.zeros(256**3, dtype=torch.long)
    for i, (r, g, b) in enumerate(VOC_COLORMAP):
        colormap2label[(r * 256 + g) * 256 + b] = i
    return colormap2label


def voc_label_indices(colormap: torch.Tensor, colormap2label: torch.Tensor) -> torch.Tensor:
    """The class of every pixel of a VOC label image (3, H, W) of RGB values: (H, W). Colours
    outside the map (VOC's object borders) are background, as in the book."""
    rgb = colormap.long()
    return colormap2label[(rgb[0] * 256 + rgb[1]) * 256 + rgb[2]]


def voc_folder(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "VOCdevkit" / "VOC2012"


def _download(data_dir: Path) -> None:
    """VOC 2012 with torchvision's downloader (its address and checksum), into a temporary folder
    first: a failed download leaves nothing behind."""
    import shutil
    import tempfile

    from torchvision.datasets import VOCSegmentation

    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="d2lexp-download-", dir=data_dir) as scratch:
        try:
            VOCSegmentation(root=scratch, year="2012", image_set="train", download=True)
        except Exception as e:  # no network, a proxy, a full disk: all end the same way
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            raise DataError(
                f"Pascal VOC 2012 is not in {voc_folder(data_dir)} and downloading it failed ({reason}). Point the run "
                "at a copy (paths.data_dir=... holding VOCdevkit/VOC2012/), or run once where the network is reachable."
            ) from None
        (data_dir / "VOCdevkit").mkdir(exist_ok=True)
        shutil.move(str(Path(scratch) / "VOCdevkit" / "VOC2012"), voc_folder(data_dir))


def read_voc_split(folder: Path, list_name: str, crop: tuple[int, int], generator: torch.Generator,
                   max_images: int = MAX_FILES) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One split as (images [N, 3, h, w] uint8, class masks [N, h, w] uint8), (h, w) = `crop`,
    images smaller than the crop left out (the book's `filter`)."""
    listing = folder / "ImageSets" / "Segmentation" / list_name
    names = [line.strip() for line in read_text(listing).splitlines() if line.strip()]
    if len(names) > max_images:
        raise DataError(f"{listing} lists more than {max_images:,} images: it is not VOC's list. Replace it.")
    colormap2label = voc_colormap2label()
    height, width = crop
    images, masks = [], []
    for name in names:
        safe_name(name, listing)
        image = read_image(folder / "JPEGImages" / f"{name}.jpg", "RGB")
        label = read_image(folder / "SegmentationClass" / f"{name}.png", "RGB")
        if image.shape != label.shape:
            raise DataError(
                f"{folder / 'SegmentationClass' / name}.png is {label.shape[2]}x{label.shape[1]} pixels, but its image is "
                f"{image.shape[2]}x{image.shape[1]}: the data set is damaged. Replace it."
            )
        if image.shape[1] < height or image.shape[2] < width:
            continue  # the book's filter: too small to crop
        top = int(torch.randint(0, image.shape[1] - height + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[2] - width + 1, (1,), generator=generator))
        window = (slice(None), slice(top, top + height), slice(left, left + width))
        images.append(image[window])
        masks.append(voc_label_indices(label[window], colormap2label).to(torch.uint8))
    if not images:
        raise DataError(
            f"{listing} lists no image of at least {height}x{width} pixels: nothing to train on. Lower data.crop, or "
            "point paths.data_dir at VOC's own files."
        )
    log.info("VOC %s: %d of %d images read (%d smaller than the crop left out)", list_name, len(images), len(names),
             len(names) - len(images))  # fmt: skip
    return torch.stack(images), torch.stack(masks)


class VOCSegmentationDataModule(ImageDataModule):
    """Pascal VOC 2012's segmentation data (d2l 14.9): 1,464 training and 1,449 validation images
    (the book tests on the latter), 21 classes with background, cut to `crop` pixels."""

    target_kind = "masks"
    num_classes = len(VOC_CLASSES)
    class_names = tuple(VOC_CLASSES)
    mean, std = 0.45, 0.225  # about ImageNet's, as the book normalises
    targets_follow_geometry = False  # the masks would have to move with the image

    def __init__(self, data_dir: str = "./data", download: bool = True, crop: tuple[int, int] = (320, 480),
                 **options: Any) -> None:  # fmt: skip
        """`data_dir`: a folder holding VOCdevkit/VOC2012/; `download`: fetch it (2 GB) where it is
        missing; `crop`: (height, width), the book's 320x480. `options`: ImageDataModule's."""
        from d2lexp.errors import ConfigError

        if len(crop) != 2 or not all(isinstance(c, int) and 32 <= c <= 2048 for c in crop):
            raise ConfigError(f"data.crop is a (height, width) pair of 32 to 2048 pixels, got {crop!r}.")
        self.image_shape = (3, crop[0], crop[1])
        super().__init__(**options)
        self.data_dir, self.download, self.crop = data_dir, download, (crop[0], crop[1])

    def prepare_data(self) -> None:
        if self.download and not voc_folder(self.data_dir).is_dir():
            _download(Path(self.data_dir).expanduser())

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        folder = voc_folder(self.data_dir)
        if not folder.is_dir():
            if not self.download:
                raise DataError(
                    f"Pascal VOC 2012 is not in {folder}. Set paths.data_dir=... to a folder holding VOCdevkit/VOC2012/ "
                    "(JPEGImages, SegmentationClass, ImageSets/Segmentation), or allow data.download=true."
                )
            _download(Path(self.data_dir).expanduser())
        return {
            split: read_voc_split(folder, name, self.crop, seeded_generator(self.seed, 11, i))
            for i, (split, name) in enumerate(SPLITS.items())
        }
