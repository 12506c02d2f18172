import pytest
import torch
import torch.nn.functional as F

from d2lexp.scratch import data_iter, linreg, squared_loss, synthetic_data


def test_synthetic_data_follows_the_model():
    w, b = torch.tensor([2.0, -3.4]), 4.2
    X, y = synthetic_data(w, b, 5000, noise=0.01, generator=torch.Generator().manual_seed(0))
    assert X.shape == (5000, 2) and y.shape == (5000, 1)
    residual = y.flatten() - (X @ w + b)
    assert residual.std().item() == pytest.approx(0.01, rel=0.05) and abs(residual.mean()) < 1e-3


def test_data_iter_shuffles_and_covers_every_example_once():
    X, y = torch.arange(23.0).reshape(-1, 1), torch.arange(23.0)
    batches = list(data_iter(5, X, y, generator=torch.Generator().manual_seed(0)))
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    assert all(torch.equal(bx.flatten(), by) for bx, by in batches)  # features stay with their labels


@pytest.mark.parametrize("n, d", [(1, 1), (7, 3), (64, 2)])
def test_linreg_and_squared_loss_match_torch_in_value_and_gradient(n, d):
    torch.manual_seed(n + d)
    X, y = torch.randn(n, d), torch.randn(n, 1)
    w, b = torch.randn(d, 1, requires_grad=True), torch.randn(1, requires_grad=True)
    mine = squared_loss(linreg(X, w, b), y)
    mine.sum().backward()
    grads = w.grad.clone(), b.grad.clone()
    w.grad = b.grad = None
    theirs = 0.5 * F.mse_loss(F.linear(X, w.T, b), y, reduction="none")
    theirs.sum().backward()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(grads, (w.grad, b.grad))
