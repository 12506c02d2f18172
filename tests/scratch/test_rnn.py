"""Hand-written recurrent cells against PyTorch's, weights copied across."""

import pytest
import torch
from torch import nn

from d2lexp.scratch.rnn import GRUCellScratch, LSTMCellScratch, RNNCellScratch, RNNLMScratch

I, H = 7, 5


def copy_rnn(cell: RNNCellScratch, ref: nn.RNNCell) -> None:
    ref.weight_ih.copy_(cell.W_xh.T)
    ref.weight_hh.copy_(cell.W_hh.T)
    ref.bias_ih.copy_(cell.b_h)
    ref.bias_hh.zero_()


def copy_gru(cell: GRUCellScratch, ref: nn.GRUCell) -> None:
    # PyTorch stacks the gates as (reset, update, new); its two biases add up, except b_hn
    ref.weight_ih.copy_(torch.cat([cell.W_xr.T, cell.W_xz.T, cell.W_xh.T]))
    ref.weight_hh.copy_(torch.cat([cell.W_hr.T, cell.W_hz.T, cell.W_hh.T]))
    ref.bias_ih.copy_(torch.cat([cell.b_r, cell.b_z, cell.b_h]))
    ref.bias_hh.copy_(torch.cat([torch.zeros(H), torch.zeros(H), cell.b_hn]))


def copy_lstm(cell: LSTMCellScratch, ref: nn.LSTMCell) -> None:
    # PyTorch stacks the gates as (input, forget, cell candidate, output)
    ref.weight_ih.copy_(torch.cat([cell.W_xi.T, cell.W_xf.T, cell.W_xc.T, cell.W_xo.T]))
    ref.weight_hh.copy_(torch.cat([cell.W_hi.T, cell.W_hf.T, cell.W_hc.T, cell.W_ho.T]))
    ref.bias_ih.copy_(torch.cat([cell.b_i, cell.b_f, cell.b_c, cell.b_o]))
    ref.bias_hh.zero_()


CASES = {
    "rnn": (lambda: RNNCellScratch(I, H, sigma=0.5), lambda: nn.RNNCell(I, H), copy_rnn),
    "gru": (lambda: GRUCellScratch(I, H, sigma=0.5, reset_after=True), lambda: nn.GRUCell(I, H), copy_gru),
    "lstm": (lambda: LSTMCellScratch(I, H, sigma=0.5), lambda: nn.LSTMCell(I, H), copy_lstm),
}


def unroll(cell: nn.Module, X: torch.Tensor, lstm: bool) -> torch.Tensor:
    batch = X.shape[1]
    state = (torch.zeros(batch, H), torch.zeros(batch, H)) if lstm else torch.zeros(batch, H)
    hs = []
    for x in X:
        state = cell(x, state)
        hs.append(state[0] if lstm else state)
    return torch.stack(hs)


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_cell_equals_torch_in_outputs_and_gradients(kind, batch):
    make, make_ref, copy = CASES[kind]
    torch.manual_seed(batch)
    cell, ref = make(), make_ref()
    with torch.no_grad():
        for p in cell.parameters():  # non-zero biases, so every term is exercised
            p.add_(torch.randn_like(p) * 0.3)
        copy(cell, ref)
    X = torch.randn(4, batch, I)  # four time steps, gradients flow through all of them
    outputs = []
    for module in (cell, ref):
        hs = unroll(module, X, kind == "lstm")
        hs.pow(2).sum().backward()
        outputs.append(hs)
    torch.testing.assert_close(outputs[0], outputs[1])
    # The scratch gradients, laid out as PyTorch's by the same copy, equal PyTorch's gradients.
    grads, grads_ref = make(), make_ref()
    with torch.no_grad():
        for p, q in zip(grads.parameters(), cell.parameters()):
            p.copy_(q.grad)
        copy(grads, grads_ref)
    torch.testing.assert_close(grads_ref.weight_ih, ref.weight_ih.grad)
    torch.testing.assert_close(grads_ref.weight_hh, ref.weight_hh.grad)
    torch.testing.assert_close(grads_ref.bias_ih, ref.bias_ih.grad)  # PyTorch's two biases get the same gradient


def test_books_gru_form_follows_its_equations():
    torch.manual_seed(0)
    cell = GRUCellScratch(I, H, sigma=0.5)
    X, Hp = torch.randn(2, I), torch.randn(2, H)
    Z = torch.sigmoid(X @ cell.W_xz + Hp @ cell.W_hz + cell.b_z)
    R = torch.sigmoid(X @ cell.W_xr + Hp @ cell.W_hr + cell.b_r)
    H_tilde = torch.tanh(X @ cell.W_xh + (R * Hp) @ cell.W_hh + cell.b_h)
    torch.testing.assert_close(cell(X, Hp), Z * Hp + (1 - Z) * H_tilde)
    assert cell.b_hn is None and sum(p.numel() for p in cell.parameters()) == 3 * (I * H + H * H + H)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_language_model_shapes_and_state(kind):
    net = RNNLMScratch(vocab_size=28, num_hiddens=16, cell=kind)
    X = torch.randint(0, 28, (3, 35))
    logits, state = net(X)
    assert logits.shape == (3, 35, 28)
    logits2, _ = net(X, state)  # carrying the state changes the outputs
    assert not torch.allclose(logits, logits2)
    assert net.W_hq.shape == (16, 28) and torch.all(net.b_q == 0)
