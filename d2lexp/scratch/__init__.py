"""The pieces the book writes by hand, with the book's names, each tested against PyTorch's own.

They are real components: the scratch models train through the same Hydra + Lightning
pipeline as their framework twins (`experiment=d2l/softmax_scratch`, ...).
"""

from d2lexp.scratch.batch_norm import BatchNorm, batch_norm
from d2lexp.scratch.classification import Accumulator, accuracy, cross_entropy, softmax
from d2lexp.scratch.conv import (
    Conv2D,
    Pool2D,
    corr2d,
    corr2d_batched,
    corr2d_multi_in,
    corr2d_multi_in_out,
    pool2d,
    pool2d_batched,
)
from d2lexp.scratch.detection import (
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
from d2lexp.scratch.linear_regression import data_iter, linreg, squared_loss, synthetic_data
from d2lexp.scratch.mlp import dropout_layer, relu
from d2lexp.scratch.optim import SGD, sgd
from d2lexp.scratch.segmentation import bilinear_kernel, kernel2matrix, trans_conv

__all__ = [
    "Accumulator", "BatchNorm", "Conv2D", "Pool2D", "SGD", "accuracy",
    "assign_anchor_to_bbox", "batch_norm", "bilinear_kernel", "box_center_to_corner", "box_corner_to_center",
    "box_iou", "corr2d", "corr2d_batched", "corr2d_multi_in", "corr2d_multi_in_out", "cross_entropy", "data_iter",
    "dropout_layer", "kernel2matrix", "linreg", "multibox_detection", "multibox_prior", "multibox_target", "nms",
    "offset_boxes", "offset_inverse", "pool2d", "pool2d_batched", "relu", "roi_pool", "sgd", "softmax",
    "squared_loss", "synthetic_data", "trans_conv",
]  # fmt: skip
