"""The tasks' running means, checked against torchmetrics' general metrics."""

import pytest
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from d2lexp.tasks.metrics import RunningMean, correct, upgrade_metric_states


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


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric RunningMean was called before")
def test_checkpoints_with_torchmetrics_states_resume_into_running_means():
    """A checkpoint written before RunningMean holds MeanMetric's and MulticlassAccuracy's states;
    renamed, they load into RunningMeans that go on with the same sums."""
    reference_loss, reference_acc = MeanMetric(), MulticlassAccuracy(10, average="micro")
    for module in (reference_loss, reference_acc):
        module.persistent(True)
    for logits, labels in batches(count=3):
        reference_loss.update(torch.nn.functional.cross_entropy(logits, labels, reduction="none"))
        reference_acc.update(logits, labels)
    state = {"net.0.weight": torch.zeros(2), "net.0.mean_value": torch.zeros(1), "net.0.weight_sum": torch.zeros(1)}
    state |= {f"train_loss.{k}": v for k, v in reference_loss.state_dict().items()}
    state |= {f"train_acc.{k}": v for k, v in reference_acc.state_dict().items()}
    upgrade_metric_states(state)
    assert sorted(state) == sorted(["net.0.weight", "net.0.mean_value", "net.0.weight_sum", "train_loss.total",
                                    "train_loss.count", "train_acc.total", "train_acc.count"])  # fmt: skip
    loss, acc = RunningMean(), RunningMean()
    for module, name in ((loss, "train_loss"), (acc, "train_acc")):
        module.persistent(True)
        module.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(name)})
    assert loss.count == acc.count == 192
    assert loss.compute() == pytest.approx(reference_loss.compute().item(), rel=1e-6)
    assert acc.compute() == pytest.approx(reference_acc.compute().item(), abs=1e-7)
