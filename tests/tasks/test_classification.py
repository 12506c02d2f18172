"""The classification task's options beyond the book: label smoothing, test-time flips, and a
schedule over the whole run (one-cycle), each checked against what it must compute."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from d2lexp import build
from d2lexp.data.loader import TensorBatchLoader
from d2lexp.errors import ConfigError
from d2lexp.tasks.base import Scheduler
from d2lexp.tasks.classification import ClassificationTask


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def test_label_smoothing_trains_on_the_smoothed_targets_and_evaluates_plain():
    torch.manual_seed(0)
    net = nn.Linear(6, 4)
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    task = ClassificationTask(net, sgd, label_smoothing=0.2)
    log_p = F.log_softmax(net(x), dim=1)
    # (1 - eps) on the true class's log-probability, eps spread evenly over all four classes.
    smoothed = -(0.8 * log_p.gather(1, y[:, None]).squeeze(1) + 0.2 * log_p.mean(dim=1))
    task.train()
    task.log_step_loss = lambda loss: None  # no trainer attached: nothing to log to
    assert torch.allclose(task.training_step((x, y), 0), smoothed.mean(), atol=1e-6)
    losses, _, _ = task._shared_step((x, y))  # validation and test: plain cross-entropy
    assert torch.allclose(losses, -log_p.gather(1, y[:, None]).squeeze(1), atol=1e-6)


def test_label_smoothing_is_refused_where_it_cannot_apply():
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\)"):
        ClassificationTask(nn.Linear(2, 2), sgd, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="has its own task.loss"):
        ClassificationTask(nn.Linear(2, 2), sgd, loss=lambda out, y: out.sum(1), label_smoothing=0.1)


def test_mixed_images_train_on_class_probabilities_and_count_the_dominant_class_right():
    """Mixed training batches (augment.mixup_alpha, augment.cutmix_alpha) carry class probabilities."""
    torch.manual_seed(0)
    net = nn.Linear(6, 4)
    x, labels = torch.randn(8, 6), torch.randint(0, 4, (8,))
    targets = 0.7 * F.one_hot(labels, 4).float() + 0.3 * F.one_hot(labels.roll(1), 4).float()
    task = ClassificationTask(net, sgd)
    task.train()
    task.log_step_loss = lambda loss: None  # no trainer attached: nothing to log to
    log_p = F.log_softmax(net(x), dim=1)
    loss = task.training_step((x, targets), 0)
    assert torch.allclose(loss, -(targets * log_p).sum(1).mean(), atol=1e-6)
    assert task.train_acc.compute() == (net(x).argmax(1) == labels).float().mean()  # against the 0.7 class


def test_mixing_is_refused_to_a_task_whose_loss_takes_labels(data_dir):
    from types import SimpleNamespace

    from d2lexp.data.augment import Augment
    from d2lexp.data.fashion_mnist import FashionMNISTDataModule

    mixed = FashionMNISTDataModule(data_dir=str(data_dir), download=False, augment=Augment(mixup_alpha=0.2))
    task = ClassificationTask(nn.Linear(2, 2), sgd, loss=lambda out, y: out.sum(1))
    task._trainer = SimpleNamespace(datamodule=mixed)
    with pytest.raises(ConfigError, match="task.loss"):
        task.on_fit_start()
    default = ClassificationTask(nn.Linear(2, 2), sgd)
    default._trainer = SimpleNamespace(datamodule=mixed)
    default.on_fit_start()  # the default cross-entropy takes them


def test_test_time_flip_averages_the_mirror_images_logits_outside_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(5, 1, 3, 4)
    task = ClassificationTask(net, sgd, test_time_flip=True)
    task.eval()
    assert torch.allclose(task(x), (net(x) + net(torch.flip(x, dims=[3]))) / 2)
    assert not torch.allclose(task(x), net(x))
    task.train()
    assert torch.equal(task(x), net(x))


def test_test_time_shifts_average_the_logits_of_the_image_moved_each_way_edges_repeated():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(20, 3))
    x = torch.randn(5, 1, 4, 5)
    rows, cols = torch.arange(4), torch.arange(5)
    moved = [x[..., (rows - 1).clamp(0, 3), :], x[..., (rows + 1).clamp(max=3), :],  # down, up: edge rows repeated
             x[..., (cols - 1).clamp(0, 4)], x[..., (cols + 1).clamp(max=4)]]  # fmt: skip
    task = ClassificationTask(net, sgd, test_time_shift=1)
    task.eval()
    assert torch.allclose(task(x), sum(net(v) for v in [x, *moved]) / 5, atol=1e-6)
    flipped = ClassificationTask(net, sgd, test_time_shift=1, test_time_flip=True).eval()
    views = [x, *moved]
    assert torch.allclose(flipped(x), sum(net(v) + net(v.flip(-1)) for v in views) / 10, atol=1e-6)
    task.train()
    assert torch.equal(task(x), net(x))
    with pytest.raises(ConfigError, match="test_time_shift"):
        ClassificationTask(net, sgd, test_time_shift=-1)


def test_one_cycle_spans_the_runs_own_steps(make_cfg):
    cfg = make_cfg("experiment=fast/vgg_bn", "optimizer.lr=0.05")
    scheduler = instantiate(cfg.scheduler)
    assert isinstance(scheduler, Scheduler) and scheduler.total_steps_arg == "total_steps"
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    task = ClassificationTask(nn.Linear(3, 2), build.optimizer(cfg), scheduler)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(task, TensorBatchLoader((x, y), batch_size=8))  # 5 steps an epoch
    one_cycle = trainer.lr_scheduler_configs[0].scheduler
    assert one_cycle.total_steps == 15 and one_cycle.last_epoch == 15  # every step of the run, no more
    group = trainer.optimizers[0].param_groups[0]
    assert group["max_lr"] == 0.05 and group["initial_lr"] == pytest.approx(0.05 / 25)  # optimizer.lr is the peak


def test_a_schedule_over_the_run_needs_an_end():
    task = ClassificationTask(
        nn.Linear(3, 2),
        sgd,
        Scheduler(lambda opt, total_steps: torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=total_steps),
                  interval="step", total_steps_arg="total_steps"),
    )  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False)
    task.trainer = trainer
    with pytest.raises(ConfigError, match="set trainer.max_epochs or trainer.max_steps"):
        task.configure_optimizers()
