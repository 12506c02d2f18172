"""Object detection by hand (d2l 1.0 ch. 14.3-14.8): boxes, anchors, labelling, NMS, RoI pooling.

Boxes are rows (x1, y1, x2, y2) ("corner") or (cx, cy, w, h) ("center"), in fractions of the
image's width and height unless said otherwise. The functions keep the book's names, arguments
and results, vectorised where the book is; `roi_pool` (which the book takes from torchvision)
is written here as well. Each is tested equal to torchvision's `box_convert`, `box_iou`, `nms`
and `roi_pool`, and to the book's printed examples.
"""

from __future__ import annotations

import math

import torch


def box_corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) rows to (cx, cy, w, h) rows."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) rows to (x1, y1, x2, y2) rows."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def multibox_prior(data: torch.Tensor, sizes: list[float], ratios: list[float]) -> torch.Tensor:
    """Anchor boxes centred on every pixel of `data`'s last two dims (H, W): (1, H * W * n, 4).

    Each pixel gets n = len(sizes) + len(ratios) - 1 boxes: every size with the first ratio,
    then the first size with every other ratio. A box of size s and ratio r is s * sqrt(r) of
    the image's height wide and s / sqrt(r) of it high (so r = 1 gives a square in pixels).
    The pixel's boxes are consecutive, pixels in row-major order.
    """
    in_height, in_width = data.shape[-2:]
    device = data.device
    size_tensor = torch.tensor(sizes, dtype=torch.float32, device=device)
    ratio_tensor = torch.tensor(ratios, dtype=torch.float32, device=device)
    # (s_i, r_1) for every size, then (s_1, r_j) for the other ratios.
    box_sizes = torch.cat((size_tensor, size_tensor[:1].expand(len(ratios) - 1)))
    box_ratios = torch.cat((ratio_tensor[:1].expand(len(sizes)), ratio_tensor[1:]))
    # Widths are fractions of the image's width: s * sqrt(r) * H pixels, divided by W.
    widths = box_sizes * torch.sqrt(box_ratios) * in_height / in_width
    heights = box_sizes / torch.sqrt(box_ratios)
    half_extent = torch.stack((-widths, -heights, widths, heights), dim=1) / 2  # (n, 4)

    # Pixel centres, 0.5 into each pixel, as fractions of the image.
    center_h = (torch.arange(in_height, device=device) + 0.5) / in_height
    center_w = (torch.arange(in_width, device=device) + 0.5) / in_width
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    centers = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)  # (H * W, 1, 4)
    return (centers + half_extent).reshape(1, -1, 4)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in `boxes1` (N, 4) with every box in `boxes2` (M, 4): (N, M)."""

    def area(boxes: torch.Tensor) -> torch.Tensor:
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    upper_lefts = torch.max(boxes1[:, None, :2], boxes2[:, :2])  # (N, M, 2)
    lower_rights = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    sides = (lower_rights - upper_lefts).clamp(min=0)  # disjoint boxes: no overlap, not a negative one
    inter = sides[..., 0] * sides[..., 1]
    return inter / (area(boxes1)[:, None] + area(boxes2) - inter)


def assign_anchor_to_bbox(
    ground_truth: torch.Tensor, anchors: torch.Tensor, device: torch.device | str, iou_threshold: float = 0.5
) -> torch.Tensor:
    """For each anchor, the index of the ground-truth box it is assigned, or -1 (background).

    First every anchor whose best IoU reaches `iou_threshold` takes that box. Then, as many
    times as there are ground-truth boxes, the largest IoU left in the (anchor, box) matrix
    assigns its box to its anchor, and that anchor's row and box's column are discarded: every
    ground-truth box gets at least the anchor closest to it, whatever the threshold.
    """
    num_anchors, num_gt_boxes = anchors.shape[0], ground_truth.shape[0]
    jaccard = box_iou(anchors, ground_truth)  # (anchors, ground truth)
    anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    max_ious, indices = jaccard.max(dim=1)
    above = max_ious >= iou_threshold
    anchors_bbox_map[above] = indices[above]
    for _ in range(num_gt_boxes):
        flat = int(torch.argmax(jaccard))
        anc_idx, box_idx = divmod(flat, num_gt_boxes)
        anchors_bbox_map[anc_idx] = box_idx
        jaccard[:, box_idx] = -1  # below any IoU: never the largest again
        jaccard[anc_idx, :] = -1
    return anchors_bbox_map


def offset_boxes(anchors: torch.Tensor, assigned_bb: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The offsets the book labels an anchor with: its box's centre shift in tenths of the anchor's
    size, and the log of the size ratio times 5 (means 0, standard deviations 0.1 and 0.2)."""
    c_anc = box_corner_to_center(anchors)
    c_assigned_bb = box_corner_to_center(assigned_bb)
    offset_xy = 10 * (c_assigned_bb[:, :2] - c_anc[:, :2]) / c_anc[:, 2:]
    offset_wh = 5 * torch.log(eps + c_assigned_bb[:, 2:] / c_anc[:, 2:])
    return torch.cat((offset_xy, offset_wh), dim=1)


def offset_inverse(anchors: torch.Tensor, offset_preds: torch.Tensor) -> torch.Tensor:
    """The boxes that predicted offsets (as `offset_boxes` makes them) put on the anchors."""
    anc = box_corner_to_center(anchors)
    pred_bbox_xy = offset_preds[:, :2] * anc[:, 2:] / 10 + anc[:, :2]
    pred_bbox_wh = torch.exp(offset_preds[:, 2:] / 5) * anc[:, 2:]
    return box_center_to_corner(torch.cat((pred_bbox_xy, pred_bbox_wh), dim=1))


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label anchors (1, A, 4) from ground truth `labels` (B, G, 5) whose rows are (class, x1, y1, x2, y2).

    Returns (offsets (B, 4A), mask (B, 4A), classes (B, A)): an anchor's class is its box's
    class + 1 (0 is background); a background anchor's offsets are 0 and masked out. Rows whose
    class is negative pad images with fewer boxes (-1 rows, as a batch of several boxes per image
    holds them) and are left out; an image with no box left is all background.
    """
    anchors = anchors.squeeze(0)
    device, num_anchors = anchors.device, anchors.shape[0]
    batch_offset, batch_mask, batch_class_labels = [], [], []
    for label in labels:
        label = label[label[:, 0] >= 0]  # padding rows are no boxes (the book's banana images have none)
        if len(label):
            anchors_bbox_map = assign_anchor_to_bbox(label[:, 1:], anchors, device)
        else:
            anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
        positive = anchors_bbox_map >= 0
        bbox_mask = positive.float().unsqueeze(-1).repeat(1, 4)
        class_labels = torch.zeros(num_anchors, dtype=torch.long, device=device)
        assigned_bb = torch.zeros((num_anchors, 4), dtype=torch.float32, device=device)
        bb_idx = anchors_bbox_map[positive]
        class_labels[positive] = label[bb_idx, 0].long() + 1
        assigned_bb[positive] = label[bb_idx, 1:].float()
        offset = offset_boxes(anchors, assigned_bb) * bbox_mask
        batch_offset.append(offset.reshape(-1))
        batch_mask.append(bbox_mask.reshape(-1))
        batch_class_labels.append(class_labels)
    return torch.stack(batch_offset), torch.stack(batch_mask), torch.stack(batch_class_labels)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Non-maximum suppression: the indices of the boxes kept, by decreasing score.

    Take the best-scoring box left, keep it, drop every box left overlapping it by more than
    `iou_threshold`; repeat until none is left.
    """
    B = torch.argsort(scores, dim=-1, descending=True)
    keep = []
    while B.numel() > 0:
        i = B[0]
        keep.append(int(i))
        if B.numel() == 1:
            break
        iou = box_iou(boxes[i].reshape(-1, 4), boxes[B[1:]].reshape(-1, 4)).reshape(-1)
        B = B[1:][iou <= iou_threshold]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def multibox_detection(
    cls_probs: torch.Tensor,
    offset_preds: torch.Tensor,
    anchors: torch.Tensor,
    nms_threshold: float = 0.5,
    pos_threshold: float = 0.009999999,
) -> torch.Tensor:
    """Predicted boxes from class probabilities (B, 1 + C, A), offsets (B, 4A) and anchors (1, A, 4).

    Returns (B, A, 6) rows (class, confidence, x1, y1, x2, y2): each anchor's most likely
    non-background class and its box; the boxes NMS keeps come first (by decreasing
    confidence), then the suppressed ones with class -1. A kept box whose confidence is below
    `pos_threshold` is background too (class -1, confidence 1 - its own).
    """
    anchors = anchors.squeeze(0)
    num_anchors = cls_probs.shape[2]
    out = []
    for cls_prob, offset_pred in zip(cls_probs, offset_preds):
        conf, class_id = torch.max(cls_prob[1:], dim=0)
        predicted_bb = offset_inverse(anchors, offset_pred.reshape(-1, 4))
        keep = nms(predicted_bb, conf, nms_threshold)
        suppressed = torch.ones(num_anchors, dtype=torch.bool, device=cls_prob.device)
        suppressed[keep] = False
        non_keep = torch.nonzero(suppressed).reshape(-1)
        order = torch.cat((keep, non_keep))
        class_id = torch.where(suppressed, -1, class_id)[order]
        conf, predicted_bb = conf[order], predicted_bb[order]
        below = conf < pos_threshold
        class_id[below] = -1
        conf = torch.where(below, 1 - conf, conf)
        out.append(torch.cat((class_id.unsqueeze(1).to(conf.dtype), conf.unsqueeze(1), predicted_bb), dim=1))
    return torch.stack(out)


def _round_half_away(value: float) -> int:
    """C's round(): halves go away from zero (torch.round and Python's round go to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _bin_mask(start: int, end: int, bins: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(bins, length) booleans: which of `length` positions each of `bins` near-equal bins of the
    pixels start..end (inclusive) covers. Bin p runs from start + floor(p * s) up to, not including,
    start + ceil((p + 1) * s), s = span / bins: neighbouring bins may share a pixel; positions off
    the map are dropped."""
    span = max(end - start + 1, 1)  # a degenerate RoI still covers its one pixel
    # In the features' precision, as torchvision's kernel computes it: a bin edge at 6.9999995 or 7.0000001 moves.
    bin_size = torch.tensor(span, dtype=dtype, device=device) / bins
    p = torch.arange(bins, device=device, dtype=dtype)
    lo = (torch.floor(p * bin_size) + start).clamp(0, length)
    hi = (torch.ceil((p + 1) * bin_size) + start).clamp(0, length)
    positions = torch.arange(length, device=device)
    return (positions >= lo[:, None]) & (positions < hi[:, None])


def roi_pool(
    features: torch.Tensor,
    rois: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Region-of-interest max pooling (Fast R-CNN; d2l 14.8.2): (K, C, h, w) from features (N, C, H, W).

    `rois` is (K, 5) rows (image index, x1, y1, x2, y2) in input-image coordinates, or a list
    of (L_i, 4) boxes per image. Each RoI is scaled by `spatial_scale` onto the feature map,
    its corners rounded to whole pixels, its extent cut into an h x w grid of near-equal bins,
    and each bin's maximum taken (0 for a bin that falls off the map). The gradient reaches the
    maximum of each bin, as in max pooling (tied maxima share it, where torchvision gives it to
    the first).
    """
    if isinstance(rois, (list, tuple)):
        rois = torch.cat([torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(rois)])
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool expects rois (K, 5) rows (image index, x1, y1, x2, y2); got {tuple(rois.shape)}")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = features.shape[-2:]
    pooled = []
    scaled = (rois[:, 1:].detach() * spatial_scale).tolist()  # scaled in the RoIs' precision, as torchvision does
    for index, (x1, y1, x2, y2) in zip(rois[:, 0].tolist(), scaled):
        x_start, y_start, x_end, y_end = (_round_half_away(v) for v in (x1, y1, x2, y2))
        rows = _bin_mask(y_start, y_end, out_h, height, features.dtype, features.device)  # (h, H)
        cols = _bin_mask(x_start, x_end, out_w, width, features.dtype, features.device)  # (w, W)
        in_bin = rows[:, None, :, None] & cols[None, :, None, :]  # (h, w, H, W)
        fmap = features[int(index)][:, None, None]  # (C, 1, 1, H, W)
        maxima = fmap.masked_fill(~in_bin, -math.inf).amax(dim=(-2, -1))  # (C, h, w)
        pooled.append(torch.where(in_bin.any(dim=(-2, -1)), maxima, torch.zeros_like(maxima)))
    if not pooled:
        return features.new_zeros((0, features.shape[1], out_h, out_w))
    return torch.stack(pooled)
