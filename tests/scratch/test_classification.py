import pytest
import torch
import torch.nn.functional as F

from d2lexp.scratch import Accumulator, accuracy, cross_entropy, softmax


@pytest.mark.parametrize("shape", [(1, 2), (5, 10), (256, 10), (3, 1000)])
def test_softmax_matches_torch(shape):
    torch.manual_seed(shape[0])
    X = (torch.randn(shape) * 3).requires_grad_()
    weights = torch.randn(shape)  # a random downstream use, so the gradient is not trivially zero
    (softmax(X) * weights).sum().backward()
    mine = X.grad.clone()
    X.grad = None
    (torch.softmax(X, dim=1) * weights).sum().backward()
    torch.testing.assert_close(softmax(X), torch.softmax(X, dim=1))
    torch.testing.assert_close(mine, X.grad)
    torch.testing.assert_close(softmax(X).sum(1), torch.ones(shape[0]))


@pytest.mark.parametrize("n, k", [(1, 3), (8, 10), (256, 10)])
def test_cross_entropy_of_softmax_matches_framework_cross_entropy(n, k):
    torch.manual_seed(n * k)
    logits, y = torch.randn(n, k, requires_grad=True), torch.randint(0, k, (n,))
    mine = cross_entropy(softmax(logits), y)
    mine.mean().backward()
    grad = logits.grad.clone()
    logits.grad = None
    theirs = F.cross_entropy(logits, y, reduction="none")
    theirs.mean().backward()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(grad, logits.grad)


def test_the_books_example():
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    y = torch.tensor([0, 2])
    torch.testing.assert_close(cross_entropy(y_hat, y), torch.tensor([2.3026, 0.6931]), atol=1e-4, rtol=0)
    assert accuracy(y_hat, y) == 1.0


def test_accumulator():
    metric = Accumulator(3)
    metric.add(1.5, 2, 3)
    metric.add(torch.tensor(0.5), 1, 1)
    assert (metric[0], metric[1], metric[2]) == (2.0, 3.0, 4.0)
    metric.reset()
    assert metric[0] == 0.0
