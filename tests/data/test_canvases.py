"""The detection and segmentation canvases made of Fashion-MNIST items, and class selection."""

import pytest
import torch

from d2lexp.data.canvases import FashionMNISTCanvases, make_canvases
from d2lexp.data.fashion_mnist import CLASS_NAMES, FashionMNISTDataModule
from d2lexp.data.loader import seeded_generator
from d2lexp.errors import ConfigError


def test_boxes_are_the_items_non_zero_pixels_placed_apart():
    """Items whose non-zero pixels are known rectangles, not scaled (sides 28): each box is exactly
    that rectangle where the item landed, its mask its pixels, its class its label; boxes never overlap."""
    items = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    items[0, 0, 4:24, 8:20] = 200  # 12 wide, 20 high
    items[1, 0, 10:14, 2:26] = 90  # 24 wide, 4 high
    items[2, 0, 0:28, 0:28] = 255  # the whole item
    labels = torch.tensor([3, 7, 9])
    images, boxes, masks = make_canvases(items, labels, 200, 64, 3, (28, 28), seeded_generator(0, 1))
    sizes = {3: (12, 20), 7: (24, 4), 9: (28, 28)}
    for image, rows, mask in zip(images[:, 0], boxes, masks):
        valid = rows[rows[:, 0] >= 0]
        assert 1 <= len(valid) <= 3 and (rows[len(valid) :] == -1).all()  # padding rows after the boxes
        covered = torch.zeros(64, 64, dtype=torch.bool)
        for c, x1, y1, x2, y2 in valid.tolist():
            left, top, right, bottom = (round(v * 64) for v in (x1, y1, x2, y2))
            assert (right - left, bottom - top) == sizes[int(c)]
            assert not covered[top:bottom, left:right].any()  # apart from every other box
            covered[top:bottom, left:right] = True
            assert (mask[top:bottom, left:right] == c + 1).all()  # the mask: the item's class + 1
            assert (image[top:bottom, left:right] == {3: 200, 7: 90, 9: 255}[int(c)]).all()
        assert (mask[~covered] == 0).all() and (image[~covered] == 0).all()  # nothing outside the boxes
    assert set(boxes[..., 0].flatten().tolist()) == {-1.0, 3.0, 7.0, 9.0}


def test_canvases_of_real_items_are_seeded_and_split(data_dir):
    options = dict(data_dir=str(data_dir), download=False, train_canvases=300, test_canvases=100)
    boxes = FashionMNISTCanvases(**options)
    boxes.setup()
    images, targets = boxes.splits["train"]
    assert images.shape == (300, 1, 64, 64) and images.dtype == torch.uint8 and targets.shape == (300, 3, 5)
    valid = targets[..., 0] >= 0
    assert valid[:, 0].all() and valid.sum() > 400  # one to three items a canvas: 1.7 placed on average
    corners = targets[valid][:, 1:]
    sides = (corners[:, 2:] - corners[:, :2]) * 64
    assert (corners >= 0).all() and (corners <= 1).all() and (sides >= 1).all() and (sides <= 40).all()
    masks = FashionMNISTCanvases(**options, targets="masks")
    masks.setup()
    assert torch.equal(masks.splits["train"][0], images) and masks.splits["train"][1].shape == (300, 64, 64)
    assert masks.num_classes == 11 and masks.class_names[0] == "background" and boxes.num_classes == 10
    # An item's mask lies in its box, and its class there is the box's: the first box of each canvas.
    for (c, x1, y1, x2, y2), mask in zip(targets[:, 0].tolist(), masks.splits["train"][1]):
        inside = mask[round(y1 * 64) : round(y2 * 64), round(x1 * 64) : round(x2 * 64)]
        assert (inside == c + 1).float().mean() > 0.2
    background = (masks.splits["test"][1] == 0).float().mean()
    assert 0.75 < background < 0.9  # the share all-background scores in pixel accuracy
    again = FashionMNISTCanvases(**options, seed=123)  # the run's seed shuffles; the canvases are canvas_seed's
    again.setup()
    assert torch.equal(again.splits["test"][1], boxes.splits["test"][1])
    other = FashionMNISTCanvases(**options, canvas_seed=1)
    other.setup()
    assert not torch.equal(other.splits["train"][0], images)


@pytest.mark.parametrize(
    "options, key",
    [({"targets": "points"}, "targets"), ({"min_side": 50}, "min_side"), ({"max_objects": 0}, "max_objects"),
     ({"targets": "masks", "resize": 96}, "resize"), ({"canvas_seed": -1}, "canvas_seed")],
)  # fmt: skip
def test_bad_canvas_settings_are_refused(options, key):
    with pytest.raises(ConfigError, match=f"data.{key}"):
        FashionMNISTCanvases(**options)


def test_geometric_augmentation_is_refused_for_boxes():
    from d2lexp.data.augment import Augment

    with pytest.raises(ConfigError, match="boxes or masks"):
        FashionMNISTCanvases(augment=Augment(flip=0.5))


def test_classes_are_selected_and_relabelled(data_dir):
    dm = FashionMNISTDataModule(data_dir=str(data_dir), download=False, classes=[5, 6, 7, 8, 9])
    dm.setup()
    full = FashionMNISTDataModule(data_dir=str(data_dir), download=False)
    full.setup()
    (images, labels), (all_images, all_labels) = dm.splits["train"], full.splits["train"]
    assert dm.num_classes == 5 and dm.class_names == CLASS_NAMES[5:] and len(labels) == 30_000
    assert torch.bincount(labels).tolist() == [6000] * 5 and len(dm.splits["test"][1]) == 5000
    kept = all_labels >= 5
    assert torch.equal(images, all_images[kept]) and torch.equal(labels, all_labels[kept] - 5)
    assert FashionMNISTDataModule.num_classes == 10  # the class's own count is untouched
    reordered = FashionMNISTDataModule(data_dir=str(data_dir), download=False, classes=[9, 0], test_subset=50)
    reordered.setup()
    test_images, test_labels = reordered.splits["test"]
    assert reordered.class_names == ("ankle boot", "t-shirt") and set(test_labels.tolist()) == {0, 1}
    assert torch.equal(
        test_images[test_labels == 0],
        full.splits["test"][0][full.splits["test"][1] == 9][: int((test_labels == 0).sum())],
    )
    for bad in ([], [3, 3], [10], [1.5], "5"):
        with pytest.raises(ConfigError, match="data.classes"):
            FashionMNISTDataModule(classes=bad)
