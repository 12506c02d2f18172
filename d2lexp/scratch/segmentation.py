"""Semantic segmentation by hand (d2l 1.0 ch. 14.9-14.11): transposed convolution and the bilinear
kernel that initialises an FCN's upsampling. The Pascal VOC colour map and the book's functions
reading it (`VOC_COLORMAP`, `voc_colormap2label`, `voc_label_indices`) are data, in
d2lexp.data.voc; `d2lexp.scratch` gives them under the book's names too.

`trans_conv` is the book's loop: each input element scatters a copy of the kernel, scaled by
it, into the output (a convolution gathers a window into one output element). `kernel2matrix`
shows why it is called *transposed*: with the convolution written as a matrix W, the
transposed convolution is W^T.
"""

from __future__ import annotations

import torch


def trans_conv(X: torch.Tensor, K: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Transposed convolution of one 2-D input with one kernel.

    Element (i, j) of X adds X[i, j] * K to the output window at (i * stride, j * stride); the
    output is (n - 1) * stride + k on each side, less `padding` rows and columns cut from each
    edge (padding here removes output, where a convolution's adds input).
    """
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"trans_conv expects a 2-D input and a 2-D kernel; got {tuple(X.shape)} and {tuple(K.shape)}")
    h, w = K.shape
    full_h, full_w = (X.shape[0] - 1) * stride + h, (X.shape[1] - 1) * stride + w
    if full_h <= 2 * padding or full_w <= 2 * padding:
        raise ValueError(f"trans_conv: padding {padding} cuts the whole {full_h}x{full_w} output away")
    Y = torch.zeros((full_h, full_w), dtype=torch.result_type(X, K), device=X.device)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i * stride : i * stride + h, j * stride : j * stride + w] += X[i, j] * K
    return Y[padding : full_h - padding, padding : full_w - padding]


def kernel2matrix(K: torch.Tensor, input_shape: tuple[int, int] = (3, 3)) -> torch.Tensor:
    """The matrix W with corr2d(X, K).flatten() == W @ X.flatten() for inputs of `input_shape`
    (the book's example: a 2x2 kernel on a 3x3 input gives W of shape (4, 9)); then
    trans_conv(Y, K).flatten() == W.T @ Y.flatten()."""
    h, w = K.shape
    in_h, in_w = input_shape
    out_h, out_w = in_h - h + 1, in_w - w + 1
    W = torch.zeros((out_h * out_w, in_h * in_w), dtype=K.dtype, device=K.device)
    for i in range(out_h):
        for j in range(out_w):
            window = torch.zeros((in_h, in_w), dtype=K.dtype, device=K.device)
            window[i : i + h, j : j + w] = K
            W[i * out_w + j] = window.reshape(-1)
    return W


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Transposed-convolution weights (in, out, k, k) that upsample by bilinear interpolation.

    Channel c maps to channel c alone (for c below both counts), through the outer product of
    a triangle that is 1 at the kernel's centre and falls linearly to 0 one `factor` away: with
    stride s = factor, kernel 2s and padding s / 2, the layer interpolates each channel s times
    larger, as F.interpolate(mode="bilinear", align_corners=False) does away from the borders.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    tent = 1 - torch.abs(og - center) / factor
    filt = tent.reshape(-1, 1) * tent.reshape(1, -1)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    diagonal = torch.arange(min(in_channels, out_channels))
    weight[diagonal, diagonal] = filt
    return weight
