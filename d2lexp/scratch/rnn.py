"""Recurrent cells by hand (d2l ch. 9.5, 10.1, 10.2) and a character-level language model on them.

Parameters have the book's shapes (W_x*: (inputs, hiddens), W_h*: (hiddens, hiddens)) and
init (N(0, 0.01^2) weights, zero biases); inputs are one-hot vectors, and the time loop is
the Python loop the book writes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.models.registry import register_net

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _weight(rows: int, cols: int, sigma: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(rows, cols) * sigma)


def _bias(size: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(size))


class RNNCellScratch(nn.Module):
    """H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)."""

    def __init__(self, num_inputs: int, num_hiddens: int, sigma: float = 0.01) -> None:
        super().__init__()
        self.W_xh, self.W_hh, self.b_h = (
            _weight(num_inputs, num_hiddens, sigma),
            _weight(num_hiddens, num_hiddens, sigma),
            _bias(num_hiddens),
        )

    def forward(self, X: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        return torch.tanh(X @ self.W_xh + H @ self.W_hh + self.b_h)


class GRUCellScratch(nn.Module):
    """Update gate Z, reset gate R, candidate H~, and H_t = Z * H_{t-1} + (1 - Z) * H~.

    The book computes the candidate as tanh(X W_xh + (R * H) W_hh + b_h). With
    `reset_after=True` it is tanh(X W_xh + b_h + R * (H W_hh + b_hn)) instead: the variant
    PyTorch and cuDNN implement (one more bias), which equals nn.GRUCell exactly.
    """

    def __init__(self, num_inputs: int, num_hiddens: int, sigma: float = 0.01, reset_after: bool = False) -> None:
        super().__init__()
        self.reset_after = reset_after
        for gate in ("z", "r", "h"):
            setattr(self, f"W_x{gate}", _weight(num_inputs, num_hiddens, sigma))
            setattr(self, f"W_h{gate}", _weight(num_hiddens, num_hiddens, sigma))
            setattr(self, f"b_{gate}", _bias(num_hiddens))
        self.b_hn = _bias(num_hiddens) if reset_after else None

    def forward(self, X: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        Z = torch.sigmoid(X @ self.W_xz + H @ self.W_hz + self.b_z)
        R = torch.sigmoid(X @ self.W_xr + H @ self.W_hr + self.b_r)
        if self.reset_after:
            H_tilde = torch.tanh(X @ self.W_xh + self.b_h + R * (H @ self.W_hh + self.b_hn))
        else:
            H_tilde = torch.tanh(X @ self.W_xh + (R * H) @ self.W_hh + self.b_h)
        return Z * H + (1 - Z) * H_tilde


class LSTMCellScratch(nn.Module):
    """Input, forget and output gates, a candidate memory C~; C_t = F * C_{t-1} + I * C~,
    H_t = O * tanh(C_t)."""

    def __init__(self, num_inputs: int, num_hiddens: int, sigma: float = 0.01) -> None:
        super().__init__()
        for gate in ("i", "f", "o", "c"):
            setattr(self, f"W_x{gate}", _weight(num_inputs, num_hiddens, sigma))
            setattr(self, f"W_h{gate}", _weight(num_hiddens, num_hiddens, sigma))
            setattr(self, f"b_{gate}", _bias(num_hiddens))

    def forward(self, X: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        H, C = state
        I = torch.sigmoid(X @ self.W_xi + H @ self.W_hi + self.b_i)  # noqa: E741  (the book's name)
        F_ = torch.sigmoid(X @ self.W_xf + H @ self.W_hf + self.b_f)
        O = torch.sigmoid(X @ self.W_xo + H @ self.W_ho + self.b_o)  # noqa: E741
        C_tilde = torch.tanh(X @ self.W_xc + H @ self.W_hc + self.b_c)
        C = F_ * C + I * C_tilde
        return O * torch.tanh(C), C


CELLS = {"rnn": RNNCellScratch, "gru": GRUCellScratch, "lstm": LSTMCellScratch}


@register_net
class RNNLMScratch(nn.Module):
    """One-hot tokens through a hand-written cell, step by step, then H W_hq + b_q per step.

    forward(X (batch, steps) token ids, state) -> (logits (batch, steps, vocab), new state).
    """

    def __init__(
        self, vocab_size: int, num_hiddens: int = 512, cell: str = "rnn", sigma: float = 0.01, **cell_options: bool
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.vocab_size, self.num_hiddens, self.cell_kind = vocab_size, num_hiddens, cell
        self.cell = CELLS[cell](vocab_size, num_hiddens, sigma, **cell_options)
        self.W_hq, self.b_q = _weight(num_hiddens, vocab_size, sigma), _bias(vocab_size)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        zeros = torch.zeros(batch_size, self.num_hiddens, device=device)
        return (zeros, zeros.clone()) if self.cell_kind == "lstm" else zeros

    def forward(self, X: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.begin_state(X.shape[0], X.device)
        hidden = []
        for x in F.one_hot(X.T, self.vocab_size).float():  # one time step: (batch, vocab)
            state = self.cell(x, state)
            hidden.append(state[0] if isinstance(state, tuple) else state)
        H = torch.stack(hidden, dim=1)  # (batch, steps, hiddens)
        return H @ self.W_hq + self.b_q, state
