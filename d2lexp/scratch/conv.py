"""Cross-correlation and pooling by hand (d2l ch. 7.2-7.5).

`corr2d` and `pool2d` are the book's loops over output positions, for one 2-D input: the
lesson. `corr2d_batched` and `pool2d_batched` compute the same sums over the same windows
for whole minibatches at once (the windows are strided views of the input, then one
contraction), which is what lets the `Conv2D` and `Pool2D` layers built on them train a
LeNet in minutes instead of hours.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from d2lexp.models.registry import register_net


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def corr2d(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """2-D cross-correlation of one input with one kernel: Y[i, j] = sum(X[i:i+h, j:j+w] * K)."""
    if X.dim() != 2 or K.dim() != 2 or K.shape[0] > X.shape[0] or K.shape[1] > X.shape[1]:
        raise ValueError(
            f"corr2d expects a 2-D input (H, W) and a 2-D kernel (h, w) with h <= H and w <= W; "
            f"got input {tuple(X.shape)} and kernel {tuple(K.shape)}"
        )
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y


def corr2d_multi_in(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Several input channels: cross-correlate each channel with its kernel slice and sum."""
    if X.dim() != 3 or K.dim() != 3 or X.shape[0] != K.shape[0]:
        raise ValueError(
            f"corr2d_multi_in expects input (C, H, W) and kernel (C, h, w) with the same C; "
            f"got input {tuple(X.shape)} and kernel {tuple(K.shape)}"
        )
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Several output channels: one multi-input cross-correlation per kernel, stacked."""
    if K.dim() != 4:
        raise ValueError(f"corr2d_multi_in_out expects a kernel (O, C, h, w); got {tuple(K.shape)}")
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)


def _windows(X: torch.Tensor, size: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """All (h, w) windows of a (B, C, H, W) tensor as a view (B, C, OH, OW, h, w)."""
    return X.unfold(2, size[0], stride[0]).unfold(3, size[1], stride[1])


def _pad(X: torch.Tensor, padding: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    if padding == (0, 0):
        return X
    ph, pw = padding
    out = X.new_full((*X.shape[:2], X.shape[2] + 2 * ph, X.shape[3] + 2 * pw), value)
    out[:, :, ph : ph + X.shape[2], pw : pw + X.shape[3]] = X
    return out


def corr2d_batched(X: torch.Tensor, K: torch.Tensor, stride: int | tuple[int, int] = 1) -> torch.Tensor:
    """corr2d_multi_in_out for a minibatch: X (B, C, H, W), K (O, C, h, w) -> (B, O, OH, OW)."""
    if X.dim() != 4 or K.dim() != 4 or X.shape[1] != K.shape[1] or K.shape[2] > X.shape[2] or K.shape[3] > X.shape[3]:
        raise ValueError(
            f"corr2d_batched expects input (B, C, H, W) and kernel (O, C, h, w) with the same C and a kernel "
            f"no larger than the input; got input {tuple(X.shape)} and kernel {tuple(K.shape)}"
        )
    windows = _windows(X, (K.shape[2], K.shape[3]), _pair(stride))
    return torch.einsum("bcijhw,ochw->boij", windows, K)


def pool2d(X: torch.Tensor, pool_size: tuple[int, int], mode: str = "max") -> torch.Tensor:
    """The book's pooling of one 2-D input, stride 1: the max or mean of each window."""
    if mode not in ("max", "avg"):
        raise ValueError(f"pool2d mode must be 'max' or 'avg', got {mode!r}")
    p_h, p_w = pool_size
    if X.dim() != 2 or p_h > X.shape[0] or p_w > X.shape[1]:
        raise ValueError(f"pool2d expects a 2-D input at least {pool_size}; got {tuple(X.shape)}")
    Y = torch.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1), dtype=X.dtype, device=X.device)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i : i + p_h, j : j + p_w]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


def pool2d_batched(
    X: torch.Tensor,
    pool_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    mode: str = "max",
) -> torch.Tensor:
    """pool2d for a minibatch (B, C, H, W), with stride (default: the window) and padding
    (ignored by max, counted as zeros by the mean, as PyTorch's pooling does by default)."""
    if mode not in ("max", "avg"):
        raise ValueError(f"pool2d mode must be 'max' or 'avg', got {mode!r}")
    size = _pair(pool_size)
    stride = _pair(stride) if stride is not None else size
    X = _pad(X, _pair(padding), value=-math.inf if mode == "max" else 0.0)
    windows = _windows(X, size, stride)
    return windows.amax(dim=(-2, -1)) if mode == "max" else windows.mean(dim=(-2, -1))


@register_net
class Conv2D(nn.Module):
    """A convolutional layer built on cross-correlation: weight (O, C, h, w), bias (O,).

    Weights start Xavier-uniform, as the book's `train_ch6` initialises its conv layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        stride: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.in_channels, self.padding, self.stride = in_channels, _pair(padding), _pair(stride)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        fan_in, fan_out = in_channels * kh * kw, out_channels * kh * kw
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != 4 or X.shape[1] != self.in_channels:
            raise ValueError(f"Conv2D expects input (N, {self.in_channels}, H, W); got input of shape {tuple(X.shape)}")
        Y = corr2d_batched(_pad(X, self.padding), self.weight, self.stride)
        return Y if self.bias is None else Y + self.bias.reshape(1, -1, 1, 1)

    def get_w_b(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The kernel (flattened) and the bias: lets a task compare a learned kernel with a known one."""
        return self.weight.detach().flatten(), None if self.bias is None else self.bias.detach()


class Pool2D(nn.Module):
    """A pooling layer built on `pool2d_batched`."""

    def __init__(
        self,
        pool_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        mode: str = "max",
    ) -> None:
        super().__init__()
        self.pool_size, self.stride, self.padding, self.mode = pool_size, stride, padding, mode

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return pool2d_batched(X, self.pool_size, self.stride, self.padding, self.mode)
