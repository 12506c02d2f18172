"""The tasks' running means, checked against torchmetrics' general metrics."""

import pytest
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from d2lexp.tasks.metrics import RunningMean, correct


def batches(seed: int = 0, count: int = 5):
    generator = torch.Generator().manual_seed(seed)
    for size in (64, 64, 64, 64, 17)[:count]:  # the last batch smaller, as an epoch's last is
        yield torch.randn(size, 10, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def test_running_means_match_torchmetrics_mean_and_accuracy():
    loss, acc = RunningMean(), RunningMean()
    reference_loss, reference_acc = MeanMetric(), MulticlassAccuracy(10, average="micro")
    for logits, labels in batches():
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        loss.update(losses), reference_loss.update(losses)
        acc.update(correct(logits, labels)), reference_acc.update(logits, labels)
    assert loss.compute() == pytest.approx(reference_loss.compute().item(), rel=1e-6)
    assert acc.compute() == pytest.approx(reference_acc.compute().item(), abs=1e-7)
    assert 0.0 < acc.compute() < 0.3  # random scores: about chance, 0.1
    loss.reset()
    assert loss.count == 0 and loss.total == 0
    assert 0.0 < acc.compute() < 0.3  # random scores: about chance, 0.1
    loss.reset()
    assert loss.count == 0 and loss.total == 0
