"""TinySSD (d2l 1.0 ch. 14.7): the shapes the book prints, its anchors, and how predictions line up with them."""

import pytest
import torch
import torch.nn.functional as F

from d2lexp.models.ssd import (
    RATIOS,
    SIZES,
    TinySSD,
    base_net,
    bbox_predictor,
    cls_predictor,
    concat_preds,
    down_sample_blk,
)
from d2lexp.scratch import multibox_prior, multibox_target


def test_the_books_component_shapes():
    """14.7.1.1-14.7.1.5: two scales' class predictions, their concatenation, a down-sampling block, the base network."""
    Y1 = cls_predictor(8, 5, 10)(torch.zeros((2, 8, 20, 20)))
    Y2 = cls_predictor(16, 3, 10)(torch.zeros((2, 16, 10, 10)))
    assert (Y1.shape, Y2.shape) == (torch.Size([2, 55, 20, 20]), torch.Size([2, 33, 10, 10]))
    assert concat_preds([Y1, Y2]).shape == torch.Size([2, 25300])
    assert down_sample_blk(3, 10)(torch.zeros((2, 3, 20, 20))).shape == torch.Size([2, 10, 10, 10])
    with torch.device("meta"):
        assert base_net()(torch.zeros((2, 3, 256, 256))).shape == torch.Size([2, 64, 32, 32])
        assert bbox_predictor(64, 4)(torch.zeros((2, 64, 32, 32))).shape == (2, 16, 32, 32)


def test_the_books_tinyssd_shapes():
    """14.7.1.6: output anchors torch.Size([1, 5444, 4]), class preds torch.Size([32, 5444, 2]),
    bbox preds torch.Size([32, 21776]) for 32 images of 256x256 (on the meta device: shapes only)."""
    with torch.device("meta"):
        anchors, cls_preds, bbox_preds = TinySSD(num_classes=1)(torch.zeros((32, 3, 256, 256)))
    assert anchors.shape == torch.Size([1, 5444, 4])
    assert cls_preds.shape == torch.Size([32, 5444, 2])
    assert bbox_preds.shape == torch.Size([32, 21776])


def down_sample_params(c_in: int, c_out: int) -> int:
    return (9 * c_in * c_out + c_out) + 2 * c_out + (9 * c_out * c_out + c_out) + 2 * c_out  # conv, BN, conv, BN


def test_parameter_count_by_hand():
    """The book prints no count: this one is the layers' own arithmetic, 1,010,376 for one class."""
    blocks = down_sample_params(3, 16) + down_sample_params(16, 32) + down_sample_params(32, 64)
    blocks += down_sample_params(64, 128) + 2 * down_sample_params(128, 128)
    heads = sum(9 * c * 4 * 2 + 4 * 2 + 9 * c * 16 + 16 for c in (64, 128, 128, 128, 128))  # 4 anchors, 2 classes
    assert blocks + heads == 1_010_376
    assert sum(p.numel() for p in TinySSD(num_classes=1).parameters()) == 1_010_376
    grey = TinySSD(num_classes=10, in_channels=1, base_channels=(8, 16, 32), channels=64)
    assert grey.blk_0[0][0].in_channels == 1 and grey.cls_0.out_channels == 4 * 11 and grey.bbox_4.in_channels == 64


def test_anchors_and_predictions_line_up():
    """Scale 0's anchors are multibox_prior's on its map (16x16 for 128x128 inputs), and the class
    scores of anchor a of cell (i, j) sit at row (i * 16 + j) * 4 + a: the predictions follow the
    anchors' order."""
    torch.manual_seed(0)
    net = TinySSD(num_classes=2).eval()
    X = torch.rand(2, 3, 128, 128)
    anchors, cls_preds, bbox_preds = net(X)
    assert anchors.shape == (1, (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 4, 4)
    assert torch.equal(anchors[:, : 16 * 16 * 4], multibox_prior(torch.zeros(1, 1, 16, 16), SIZES[0], RATIOS[0]))
    assert torch.equal(anchors[:, -4:], multibox_prior(torch.zeros(1, 1, 1, 1), SIZES[4], RATIOS[4]))
    features0 = net.blk_0(X)
    scale0 = net.cls_0(features0)  # (2, 4 * 3, 16, 16): anchor a's 3 scores in channels 3a..3a+2
    i, j, a = 5, 11, 2
    row = (i * 16 + j) * 4 + a
    torch.testing.assert_close(cls_preds[:, row], scale0[:, 3 * a : 3 * a + 3, i, j])
    torch.testing.assert_close(bbox_preds[:, 4 * row : 4 * row + 4], net.bbox_0(features0)[:, 4 * a : 4 * a + 4, i, j])


@pytest.mark.parametrize("in_channels, side", [(1, 64), (3, 96)])
def test_a_few_training_steps_on_one_canvas_lower_the_loss(in_channels, side):
    """The book's loss (cross-entropy over anchors' classes, masked L1 over offsets) falls as TinySSD
    fits one batch with one box each, on grey canvases and colour images alike."""
    torch.manual_seed(1)
    net = TinySSD(num_classes=1, in_channels=in_channels, base_channels=(8, 16, 32), channels=32)
    X = torch.rand(4, in_channels, side, side)
    labels = torch.tensor([[[0, 0.1, 0.1, 0.5, 0.6]], [[0, 0.4, 0.3, 0.9, 0.8]]] * 2)

    def loss() -> torch.Tensor:
        anchors, cls_preds, bbox_preds = net(X)
        bbox_labels, bbox_masks, cls_labels = multibox_target(anchors, labels)
        cls = F.cross_entropy(cls_preds.reshape(-1, 2), cls_labels.reshape(-1))
        return cls + F.l1_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks)

    optimizer = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)  # the book's
    before = loss().item()
    for _ in range(5):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < before


def test_five_scales_are_required():
    with pytest.raises(ValueError, match="five sizes and five ratios, got 4 and 5"):
        TinySSD(sizes=SIZES[:4])
    with pytest.raises(ValueError, match="as many anchors per cell"):
        TinySSD(ratios=[[1, 2, 0.5]] * 4 + [[1, 2]])
