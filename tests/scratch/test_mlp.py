import pytest
import torch
import torch.nn.functional as F

from d2lexp.scratch import dropout_layer, relu


def test_relu_matches_torch():
    X = torch.randn(50, 7, requires_grad=True)
    relu(X).pow(2).sum().backward()
    mine = X.grad.clone()
    X.grad = None
    F.relu(X).pow(2).sum().backward()
    torch.testing.assert_close(relu(X), F.relu(X))
    torch.testing.assert_close(mine, X.grad)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_match_torch(p):
    X = torch.ones(1000, 1000)
    mine = dropout_layer(X, p, generator=torch.Generator().manual_seed(0))
    theirs = F.dropout(X, p, training=True)
    for out in (mine, theirs):
        assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.005)
        assert out.mean().item() == pytest.approx(1.0, abs=0.01)  # expectation kept
        assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))


def test_dropout_edge_cases():
    X = torch.randn(4, 5)
    assert torch.equal(dropout_layer(X, 0.0), X) and torch.equal(dropout_layer(X, 1.0), torch.zeros_like(X))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_layer(X, 1.5)
