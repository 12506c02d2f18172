"""The detection functions (d2l 1.0 ch. 14.3-14.8) against torchvision's and the book's printed examples.

The book's numbers are those the d2l-en 1.0.3 PyTorch pages print (torch.set_printoptions(2)):
the tolerances are half a unit of the last printed digit.
"""

import pytest
import torch
import torchvision

from d2lexp.scratch import (
    assign_anchor_to_bbox,
    box_center_to_corner,
    box_corner_to_center,
    box_iou,
    multibox_detection,
    multibox_prior,
    multibox_target,
    nms,
    offset_boxes,
    offset_inverse,
    roi_pool,
)


def random_boxes(n: int, seed: int, max_side: float = 0.4) -> torch.Tensor:
    """n boxes (x1, y1, x2, y2) with positive sides, many overlapping, some apart."""
    generator = torch.Generator().manual_seed(seed)
    upper_left = torch.rand(n, 2, generator=generator) * 0.8
    sides = torch.rand(n, 2, generator=generator) * max_side + 0.01
    return torch.cat((upper_left, upper_left + sides), dim=1)


# 14.3 (Object Detection and Bounding Boxes): the dog and the cat, in pixels.
DOG_AND_CAT = torch.tensor([[60.0, 45.0, 378.0, 516.0], [400.0, 112.0, 655.0, 493.0]])


def test_box_conversions_match_torchvision_box_convert():
    boxes = torch.cat((random_boxes(50, seed=0), DOG_AND_CAT))
    centers = box_corner_to_center(boxes)
    torch.testing.assert_close(centers, torchvision.ops.box_convert(boxes, "xyxy", "cxcywh"))
    torch.testing.assert_close(box_center_to_corner(centers), torchvision.ops.box_convert(centers, "cxcywh", "xyxy"))
    torch.testing.assert_close(box_center_to_corner(centers), boxes)  # 14.3.1: the round trip gives the boxes back
    assert box_corner_to_center(DOG_AND_CAT)[0].tolist() == [219.0, 280.5, 318.0, 471.0]


def test_box_iou_and_conversions_have_torchvisions_gradients():
    """The same weighted sum of IoUs (and of converted boxes) differentiated through ours and through
    torchvision's: the same gradient for every corner."""
    generator = torch.Generator().manual_seed(3)
    boxes1, boxes2 = random_boxes(12, seed=3), random_boxes(9, seed=4)
    weights = torch.rand(12, 9, generator=generator)
    grads = []
    for iou in (box_iou, torchvision.ops.box_iou):
        a, b = boxes1.clone().requires_grad_(), boxes2.clone().requires_grad_()
        (iou(a, b) * weights).sum().backward()
        grads.append((a.grad, b.grad))
    for ours, theirs in zip(*grads):
        assert ours.abs().sum() > 0
        torch.testing.assert_close(ours, theirs)
    coefficients = torch.rand(12, 4, generator=generator)
    for ours, (source, target) in (
        (box_corner_to_center, ("xyxy", "cxcywh")),
        (box_center_to_corner, ("cxcywh", "xyxy")),
    ):
        a, b = boxes1.clone().requires_grad_(), boxes1.clone().requires_grad_()
        (ours(a) * coefficients).sum().backward()
        (torchvision.ops.box_convert(b, source, target) * coefficients).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


def test_box_iou_matches_torchvision():
    boxes1, boxes2 = random_boxes(30, seed=1), random_boxes(20, seed=2)
    iou = box_iou(boxes1, boxes2)
    assert iou.shape == (30, 20) and (iou == 0).any() and (iou > 0.3).any()  # disjoint pairs and overlapping ones
    torch.testing.assert_close(iou, torchvision.ops.box_iou(boxes1, boxes2))
    # Two unit squares overlapping by half: intersection 1/2, union 3/2.
    assert box_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.5, 0.0, 1.5, 1.0]])).item() == pytest.approx(
        1 / 3
    )


def test_the_books_anchors_for_the_catdog_image():
    """14.4.1: a 561x728 image, sizes [0.75, 0.5, 0.25], ratios [1, 2, 0.5]: five anchors per pixel."""
    h, w = 561, 728
    Y = multibox_prior(torch.rand(1, 3, h, w), sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5])
    assert Y.shape == torch.Size([1, 2042040, 4])
    boxes = Y.reshape(h, w, 5, 4)
    # The book prints boxes[250, 250, 0, :] as tensor([0.06, 0.07, 0.63, 0.82]).
    torch.testing.assert_close(boxes[250, 250, 0], torch.tensor([0.06, 0.07, 0.63, 0.82]), atol=0.005, rtol=0)
    # All five are centred on the pixel; in pixels, (s, r) is s*sqrt(r)*h wide and s/sqrt(r)*h high.
    at_pixel = box_corner_to_center(boxes[250, 250]) * torch.tensor([w, h, w, h])
    torch.testing.assert_close(at_pixel[:, :2], torch.tensor([[250.5, 250.5]]).expand(5, 2))
    s_r = torch.tensor([[0.75, 1], [0.5, 1], [0.25, 1], [0.75, 2], [0.75, 0.5]])
    expected_sides = torch.stack((s_r[:, 0] * s_r[:, 1].sqrt() * h, s_r[:, 0] / s_r[:, 1].sqrt() * h), dim=1)
    torch.testing.assert_close(at_pixel[:, 2:], expected_sides)


def test_anchors_on_a_feature_map_are_spread_evenly():
    """14.5.1: a 4x4 feature map's anchors are centred on 16 evenly spaced points of the image."""
    anchors = multibox_prior(torch.zeros(1, 10, 4, 2), sizes=[0.15], ratios=[1, 2, 0.5])
    assert anchors.shape == (1, 4 * 2 * 3, 4)
    centers = box_corner_to_center(anchors[0])[:, :2].reshape(4, 2, 3, 2)
    expected_x, expected_y = (torch.arange(2) + 0.5) / 2, (torch.arange(4) + 0.5) / 4
    torch.testing.assert_close(centers[..., 0], expected_x.reshape(1, 2, 1).expand(4, 2, 3))
    torch.testing.assert_close(centers[..., 1], expected_y.reshape(4, 1, 1).expand(4, 2, 3))


# 14.4.3: the dog's and the cat's ground truth (class, corners) and five anchors A0..A4.
GROUND_TRUTH = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
ANCHORS = torch.tensor(
    [
        [0, 0.1, 0.2, 0.3],
        [0.15, 0.2, 0.4, 0.4],
        [0.63, 0.05, 0.88, 0.98],
        [0.66, 0.45, 0.8, 0.8],
        [0.57, 0.3, 0.92, 0.9],
    ]
)


def test_the_books_anchor_labels():
    """14.4.3: A4 takes the cat (largest IoU), A1 the dog (largest left), A2 the cat (IoU over 0.5);
    A0 and A3 are background. The book prints the labels, the mask and the offsets."""
    assert assign_anchor_to_bbox(GROUND_TRUTH[:, 1:], ANCHORS, "cpu").tolist() == [-1, 0, 1, -1, 1]
    offsets, mask, classes = multibox_target(ANCHORS.unsqueeze(0), GROUND_TRUTH.unsqueeze(0))
    assert classes.tolist() == [[0, 1, 2, 0, 2]]
    assert mask.tolist() == [[0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 4]
    printed = torch.tensor(
        [[-0.00e00, -0.00e00, -0.00e00, -0.00e00, 1.40e00, 1.00e01, 2.59e00, 7.18e00, -1.20e00, 2.69e-01,
          1.68e00, -1.57e00, -0.00e00, -0.00e00, -0.00e00, -0.00e00, -5.71e-01, -1.00e00, 4.17e-06, 6.26e-01]]
    )  # fmt: skip
    torch.testing.assert_close(offsets, printed, rtol=5e-3, atol=0)  # three significant digits


def test_every_ground_truth_box_gets_an_anchor_whatever_the_threshold():
    anchors = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9], [0.55, 0.5, 0.95, 0.9]])
    ground_truth = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.92, 0.9]])  # IoU with anchor 0: 0.16
    assert assign_anchor_to_bbox(ground_truth, anchors, "cpu").tolist() == [0, 1, 1]  # anchor 2 by threshold
    assert assign_anchor_to_bbox(ground_truth, anchors, "cpu", iou_threshold=0.99).tolist() == [0, 1, -1]


def test_offsets_invert():
    anchors, boxes = random_boxes(40, seed=3), random_boxes(40, seed=4)
    offsets = offset_boxes(anchors, boxes)
    torch.testing.assert_close(offset_inverse(anchors, offsets), boxes, atol=1e-5, rtol=0)
    # Scaled as the book labels them: centre shift over 0.1 of the anchor's side, log side ratio over 0.2.
    a, b = box_corner_to_center(anchors), box_corner_to_center(boxes)
    torch.testing.assert_close(offsets[:, 0], (b[:, 0] - a[:, 0]) / a[:, 2] / 0.1)
    torch.testing.assert_close(offsets[:, 3], torch.log(b[:, 3] / a[:, 3]) / 0.2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("iou_threshold", [0.1, 0.3, 0.5, 0.7])
def test_nms_keeps_what_torchvision_keeps(iou_threshold):
    boxes = random_boxes(80, seed=5)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(6))
    assert scores.unique().numel() == 80  # no ties: the order kept is the order of the scores
    kept = nms(boxes, scores, iou_threshold)
    expected = torchvision.ops.nms(boxes, scores, iou_threshold)
    assert 1 < kept.numel() < 80
    assert kept.tolist() == expected.tolist()


# 14.4.4: four predicted boxes (offsets 0: the anchors themselves) and their class probabilities.
NMS_ANCHORS = torch.tensor(
    [[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95], [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]]
)
CLS_PROBS = torch.tensor([[0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])  # background, dog, cat


def test_the_books_detection_example():
    offset_preds = torch.tensor([0] * NMS_ANCHORS.numel())
    output = multibox_detection(CLS_PROBS.unsqueeze(0), offset_preds.unsqueeze(0), NMS_ANCHORS.unsqueeze(0), 0.5)
    printed = torch.tensor(
        [[[0.00, 0.90, 0.10, 0.08, 0.52, 0.92],
          [1.00, 0.90, 0.55, 0.20, 0.90, 0.88],
          [-1.00, 0.80, 0.08, 0.20, 0.56, 0.95],
          [-1.00, 0.70, 0.15, 0.30, 0.62, 0.91]]]
    )  # fmt: skip
    torch.testing.assert_close(output, printed, atol=0.005, rtol=0)


def test_a_kept_box_below_the_positive_threshold_is_background():
    probs = CLS_PROBS.clone()
    probs[1:, 3] = torch.tensor([0.001, 0.005])  # the cat's box, now barely anything
    offset_preds = torch.zeros(1, 16)
    output = multibox_detection(probs.unsqueeze(0), offset_preds, NMS_ANCHORS.unsqueeze(0), nms_threshold=0.5)[0]
    # Kept: the dog at 0.9, then the box at 0.005 (it overlaps nothing), which falls below 0.01.
    torch.testing.assert_close(output[:2, :2], torch.tensor([[0.0, 0.9], [-1.0, 0.995]]))
    torch.testing.assert_close(output[1, 2:], NMS_ANCHORS[3])


def test_the_books_roi_pooling_example():
    """14.8.2: a 4x4 feature map of a 40x40 image, two RoIs, 2x2 output, spatial_scale 0.1."""
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32)
    printed = torch.tensor([[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]])
    assert torch.equal(roi_pool(X, rois, output_size=(2, 2), spatial_scale=0.1), printed)


# In image pixels for spatial_scale 0.25 (a 48x40 image over a 12x10 map): a large RoI, the whole
# image, one running off the map, a one-pixel one, and corners landing on halves (2 * 0.25 = 0.5
# rounds to 1, 6 * 0.25 = 1.5 to 2, as C's round does; round-half-to-even would give 0 and 2).
ROIS = torch.tensor(
    [
        [0, 4, 6, 30, 40],
        [1, 0, 0, 47, 39],
        [1, 20, 10, 70, 60],
        [0, 13, 13, 13, 13],
        [0, 2, 2, 6, 10],
        [1, 26, 2, 38, 46],
    ],
    dtype=torch.float32,
)


@pytest.mark.parametrize("output_size, spatial_scale", [((2, 2), 0.25), ((3, 4), 0.25), (5, 0.25), ((2, 3), 0.5)])
def test_roi_pool_matches_torchvision_in_value_and_gradient(output_size, spatial_scale):
    torch.manual_seed(7)
    features = torch.randn(2, 3, 12, 10, requires_grad=True)
    rois = ROIS if spatial_scale == 0.25 else ROIS / 2  # the same regions of a 24x20 image
    mine = roi_pool(features, rois, output_size, spatial_scale)
    weights = torch.randn_like(mine)
    (mine * weights).sum().backward()
    my_grad, features.grad = features.grad.clone(), None
    theirs = torchvision.ops.roi_pool(features, rois, output_size, spatial_scale)
    (theirs * weights).sum().backward()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(my_grad, features.grad)
    if output_size == 5:  # the RoI running off the map has bins with nothing under them: 0
        assert (mine[2] == 0).any()


def test_roi_pool_takes_boxes_per_image_too():
    features = torch.randn(2, 3, 12, 10)
    per_image = [ROIS[ROIS[:, 0] == i, 1:] for i in range(2)]
    grouped = torch.cat([ROIS[ROIS[:, 0] == i] for i in range(2)])
    torch.testing.assert_close(roi_pool(features, per_image, 3, 0.25), roi_pool(features, grouped, 3, 0.25))
    with pytest.raises(ValueError, match=r"rois \(K, 5\).*got \(6, 4\)"):
        roi_pool(features, ROIS[:, 1:], 3)
