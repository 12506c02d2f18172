import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.scratch import SGD, sgd


def test_sgd_takes_the_same_steps_as_torch():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    mine, theirs = SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    for _step in range(5):
        X, y = torch.randn(8, 5), torch.randn(8, 3)
        for net, optimizer in ((a, mine), (b, theirs)):
            optimizer.zero_grad()
            F.mse_loss(net(X), y).backward()
            optimizer.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_update_in_place_works_and_rebinding_silently_does_not():
    """The course's lesson: `param -= lr * grad` changes the model's tensor; `param = param - lr * grad`
    only points a local name at a new tensor, and the model never changes."""
    net = nn.Linear(3, 1)
    before = [p.detach().clone() for p in net.parameters()]

    def rebinding_sgd(params, lr):
        with torch.no_grad():
            for param in params:
                param = param - lr * param.grad  # noqa: PLW2901  (the bug being demonstrated)

    F.mse_loss(net(torch.randn(4, 3)), torch.randn(4, 1)).backward()
    rebinding_sgd(net.parameters(), lr=0.1)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))  # nothing learned

    grads = [p.grad.clone() for p in net.parameters()]
    SGD(net.parameters(), lr=0.1).step()
    for p, q, g in zip(net.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), q - 0.1 * g)  # the model itself moved


def test_the_books_sgd_function_divides_by_the_batch_size():
    w = torch.ones(2, requires_grad=True)
    (w * torch.tensor([4.0, 8.0])).sum().backward()  # grad = [4, 8], as if summed over a batch of 4
    sgd([w], lr=0.5, batch_size=4)
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, 0.0]))
    assert torch.equal(w.grad, torch.zeros(2))
