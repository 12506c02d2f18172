"""Character-level language models with PyTorch's recurrent layers (d2l ch. 9.6, 10.1, 10.2),
and the book's way of writing text with any of them (`predict_chars`).

nn.RNN / nn.GRU / nn.LSTM run the whole sequence in one fused kernel (cuDNN on a GPU);
inputs are one-hot vectors made on the device, as in the book.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.models.registry import register_net

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@register_net
class RNNLM(nn.Module):
    """One-hot tokens -> recurrent layer -> linear head over the vocabulary.

    forward(X (batch, steps) token ids, state) -> (logits (batch, steps, vocab), new state).
    """

    def __init__(self, vocab_size: int, num_hiddens: int = 256, cell: str = "rnn", num_layers: int = 1) -> None:
        super().__init__()
        if cell not in _LAYERS:
            raise ValueError(f"cell must be one of {sorted(_LAYERS)}, got {cell!r}")
        self.vocab_size, self.num_hiddens, self.cell, self.num_layers = vocab_size, num_hiddens, cell, num_layers
        self.rnn = _LAYERS[cell](vocab_size, num_hiddens, num_layers=num_layers)  # time-major, like the book
        self.linear = nn.Linear(num_hiddens, vocab_size)

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        zeros = torch.zeros(self.num_layers, batch_size, self.num_hiddens, device=device)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def forward(self, X: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.begin_state(X.shape[0], X.device)
        inputs = F.one_hot(X.T, self.vocab_size).float()  # (steps, batch, vocab)
        Y, state = self.rnn(inputs, state)
        return self.linear(Y).transpose(0, 1), state


@torch.no_grad()
def predict_chars(net: nn.Module, vocab: Any, prefix: str, num_chars: int, device: torch.device | str = "cpu") -> str:
    """The book's `predict_ch8`: read `prefix` through the net (warm-up), then append the most
    likely next character `num_chars` times, feeding each back in."""
    was_training = net.training
    net.eval()
    try:
        state = net.begin_state(batch_size=1, device=device)
        outputs = [vocab[prefix[0]]]
        for char in prefix[1:]:
            _, state = net(torch.tensor([[outputs[-1]]], device=device), state)
            outputs.append(vocab[char])
        for _ in range(num_chars):
            logits, state = net(torch.tensor([[outputs[-1]]], device=device), state)
            outputs.append(int(logits.reshape(-1).argmax()))
        return "".join(vocab.to_tokens(outputs))
    finally:
        net.train(was_training)
