"""The banana (d2l 14.6) and Pascal VOC (d2l 14.9) loaders, on tiny data sets each test writes in
their layouts; damaged or altered files end in one paragraph (DataError), never a traceback."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from d2lexp.data.bananas import BananasDataModule, read_data_bananas
from d2lexp.data.voc import VOC_COLORMAP, VOCSegmentationDataModule, read_voc_split, voc_folder
from d2lexp.errors import DataError
from d2lexp.train import train


def write_bananas(root: Path, boxes: dict[str, list[tuple[int, int, int, int]]], side: int = 32) -> Path:
    """banana-detection/<split>/label.csv and images/, as d2l's archive holds them; pixel (x, y) of
    image i is (i, x, y), so the images read back can be told apart."""
    folder = root / "banana-detection"
    for split, rows in boxes.items():
        (folder / split / "images").mkdir(parents=True)
        lines = ["img_name,label,xmin,ymin,xmax,ymax"]
        for i, (x1, y1, x2, y2) in enumerate(rows):
            pixels = np.zeros((side, side, 3), dtype=np.uint8)
            pixels[..., 0] = i
            pixels[..., 1] = np.arange(side)[None, :]
            pixels[..., 2] = np.arange(side)[:, None]
            Image.fromarray(pixels).save(folder / split / "images" / f"{i}.png")
            lines.append(f"{i}.png,0,{x1},{y1},{x2},{y2}")
        (folder / split / "label.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_banana_layout_reads_as_the_books_loader(tmp_path):
    write_bananas(tmp_path, {"bananas_train": [(0, 8, 16, 24), (4, 4, 32, 12), (1, 2, 3, 4)],
                             "bananas_val": [(16, 16, 32, 32)]})  # fmt: skip
    dm = BananasDataModule(data_dir=str(tmp_path), download=False, batch_size=2)
    dm.setup()
    images, targets = dm.splits["train"]
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and targets.shape == (3, 1, 5)
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2] and images[0, 1, 0, 5] == 5 and images[0, 2, 7, 0] == 7
    torch.testing.assert_close(targets[1, 0], torch.tensor([0, 4 / 32, 4 / 32, 1.0, 12 / 32]))  # corners / 32
    assert dm.splits["test"][1].tolist() == [[[0.0, 0.5, 0.5, 1.0, 1.0]]]
    assert dm.target_kind == "boxes" and dm.num_classes == 1 and dm.image_shape == (3, 32, 32)
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and float(x.max()) <= 1


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda f: (f / "label.csv").write_text("name,label\n0.png,0\n"), "does not start with the columns"),
        (lambda f: (f / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,99,4\n"), "not a box inside"),
        (lambda f: (f / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,x,4\n"), "not a number"),
        (lambda f: (f / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n../0.png,0,1,2,3,4\n"), "not a plain file name"),
        (lambda f: (f / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n0.png,0,1,2,3\n"), "has 5 fields"),
        (lambda f: (f / "label.csv").write_text("img_name,label,xmin,ymin,xmax,ymax\n7.png,0,1,2,3,4\n"), "cannot be read"),
        (lambda f: (f / "images" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "cannot be read as an image"),
        (lambda f: (f / "label.csv").write_bytes(b"\xff\xfe" * 10), "is not text"),
    ],
)  # fmt: skip
def test_a_damaged_banana_file_is_one_paragraph(tmp_path, damage, said):
    folder = write_bananas(tmp_path, {"bananas_train": [(0, 8, 16, 24)]}) / "bananas_train"
    damage(folder)
    with pytest.raises(DataError, match=said) as refused:
        read_data_bananas(folder)
    assert "\n" not in str(refused.value)


def test_a_banana_image_claiming_a_huge_size_is_not_decoded(tmp_path):
    folder = write_bananas(tmp_path, {"bananas_train": [(0, 8, 16, 24)]}) / "bananas_train"
    Image.new("L", (5000, 5000)).save(folder / "images" / "0.png")  # 25 M pixels: a few KB compressed
    with pytest.raises(DataError, match="claims 5000x5000 pixels"):
        read_data_bananas(folder)


def test_missing_bananas_without_download_say_where(tmp_path):
    with pytest.raises(DataError, match="label.csv is missing"):
        BananasDataModule(data_dir=str(tmp_path), download=False).setup()


def write_voc(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClass (colours of VOC_COLORMAP: the top half
    class 15, person, the bottom half background, a border colour between) and the two lists."""
    folder = voc_folder(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True)
    for split, shapes in sizes.items():
        names = []
        for i, (h, w) in enumerate(shapes):
            name = f"2007_{split}{i:03d}"
            Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(folder / "JPEGImages" / f"{name}.jpg")
            label = np.zeros((h, w, 3), dtype=np.uint8)
            label[: h // 2] = VOC_COLORMAP[15]
            label[h // 2] = (224, 224, 192)  # VOC's object border: background, as the book reads it
            Image.fromarray(label).save(folder / "SegmentationClass" / f"{name}.png")
            names.append(name)
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return folder


def test_the_voc_layout_reads_as_the_books_loader(tmp_path):
    write_voc(tmp_path, {"train": [(40, 48), (20, 48), (32, 32)], "val": [(36, 40)]})
    dm = VOCSegmentationDataModule(data_dir=str(tmp_path), download=False, crop=[32, 32])
    dm.setup()
    images, masks = dm.splits["train"]
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)  # the 20x48 image is too small: left out
    assert set(masks.unique().tolist()) <= {0, 15} and dm.num_classes == 21 and dm.class_names[15] == "person"
    test_images, test_masks = dm.splits["test"]
    assert test_images.shape == (1, 3, 32, 32)
    # Each crop's rows come from the label image: person above row 18 of the 36, background from there.
    full = torch.zeros(36, dtype=torch.long)
    full[:18] = 15
    rows = test_masks[0, :, 0].long()
    assert any(torch.equal(rows, full[top : top + 32]) for top in range(5))
    assert (test_masks[0] == test_masks[0, :, :1]).all()  # every row one class: the crop kept the layout


def test_damaged_voc_files_are_one_paragraph(tmp_path):
    folder = write_voc(tmp_path, {"train": [(40, 48)], "val": [(36, 40)]})
    listing = folder / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text("../../../etc/passwd\n")
    with pytest.raises(DataError, match="not a plain file name"):
        read_voc_split(folder, "train.txt", (32, 32), torch.Generator())
    listing.write_text("2007_train000\n")
    Image.new("RGB", (10, 10)).save(folder / "SegmentationClass" / "2007_train000.png")
    with pytest.raises(DataError, match="but its image is 48x40"):
        read_voc_split(folder, "train.txt", (32, 32), torch.Generator())
    with pytest.raises(DataError, match="no image of at least 64x64"):
        read_voc_split(folder, "val.txt", (64, 64), torch.Generator())
    with pytest.raises(DataError, match="Pascal VOC 2012 is not in"):
        VOCSegmentationDataModule(data_dir=str(tmp_path / "elsewhere"), download=False).setup()


def test_the_books_runs_go_through_the_pipeline_on_files_of_their_formats(make_cfg, tmp_path):
    """experiment=d2l/ssd_bananas and model=fcn (the book's ResNet-18 FCN, VOC data) for one epoch on
    tiny data sets written in the bananas' and VOC's layouts: colour images and their targets reach
    the net, its scores are recorded and the pictures drawn (no download: data.download=false)."""
    data = tmp_path / "data"
    write_bananas(data, {"bananas_train": [(8, 8, 40, 40), (0, 16, 64, 48)] * 4, "bananas_val": [(4, 4, 60, 30)] * 2},
                  side=64)  # fmt: skip
    write_voc(data, {"train": [(64, 72)] * 4, "val": [(64, 64)] * 2})
    common = [f"paths.data_dir={data}", "data.download=false", "trainer.max_epochs=1", "data.batch_size=4"]
    pictures = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.test_pictures=null"]
    bananas = train(
        make_cfg("experiment=d2l/ssd_bananas", *common, *pictures, output_dir=tmp_path / "ssd", quiet=False)
    )
    assert bananas["status"] == "done", bananas.get("error")
    assert 0 <= bananas["test/map_50"] <= 1 and bananas["vision_pictures"]["detections"]["found"] is not None
    assert (tmp_path / "ssd" / "data_boxes.png").is_file() and (tmp_path / "ssd" / "detections.png").is_file()
    voc = train(
        make_cfg("model=fcn", "data.crop=[64,64]", *common, *pictures, output_dir=tmp_path / "fcn", quiet=False)
    )
    assert voc["status"] == "done", voc.get("error")
    assert 0 <= voc["test/miou"] <= 1 and 0 <= voc["test/pixel_acc"] <= 1
    assert (tmp_path / "fcn" / "segmentation.png").is_file()
