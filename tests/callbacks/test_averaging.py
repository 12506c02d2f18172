"""Weight averaging (callbacks=ema): the averaged weights are what is validated, tested, checkpointed
and loaded, and a run with them resumes exactly."""

import lightning.pytorch as pl
import pytest
import torch

from d2lexp.checkpoint import load_checkpoint, load_net
from d2lexp.data.fashion_mnist import FashionMNISTDataModule
from d2lexp.errors import CheckpointError, RunInterrupted
from d2lexp.train import train

EMA = ["experiment=d2l/mlp", "optimizer=adam", "optimizer.lr=0.002", "data.train_subset=1000", "data.test_subset=500",
       "data.batch_size=100", "trainer.max_epochs=2", "seed=3", "callbacks=ema", "callbacks.ema.decay=0.9"]  # fmt: skip


def accuracy(net: torch.nn.Module, data_dir) -> float:
    """The net's accuracy on the run's 500 test images, computed here, not by the task."""
    data = FashionMNISTDataModule(data_dir=str(data_dir), download=False, test_subset=500)
    data.setup()
    images, labels = data.splits["test"]
    with torch.no_grad():
        return (net(images.float() / 255).argmax(1) == labels).float().mean().item()


def test_the_averaged_weights_are_tested_checkpointed_loaded_and_resumed_exactly(make_cfg, tmp_path, data_dir):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    straight = train(make_cfg(*EMA, output_dir=tmp_path / "straight"))
    last = tmp_path / "straight" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)
    averaged, trained = saved["state_dict"], saved["current_model_state"]
    assert int(saved["averaging_state"]["n_averaged"]) == 20  # one update per step: 2 epochs of 10 batches
    assert max((averaged[k] - trained[k]).abs().max().item() for k in averaged if k.startswith("net.")) > 1e-3
    net = load_net(last)  # the exported net is the average...
    assert all(torch.equal(v, averaged[f"net.{k}"]) for k, v in net.state_dict().items())
    assert straight["test/acc"] == accuracy(net, data_dir) > 0.6  # ...and the test pass scored it
    net.load_state_dict({k[4:]: v for k, v in trained.items() if k.startswith("net.")})
    assert accuracy(net, data_dir) != straight["test/acc"]  # not the trained weights
    best = load_checkpoint(straight["best_checkpoint"])
    assert "current_model_state" in best and best["state_dict"].keys() == averaged.keys()

    class Terminate(pl.Callback):  # a SIGTERM in the middle of the second epoch
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 4:
                raise SIGTERMException(1)

    with pytest.raises(RunInterrupted):
        train(make_cfg(*EMA, output_dir=tmp_path / "stopped"), callbacks=[Terminate()])
    stopped = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="callbacks=ema"):  # without averaging it would train on from the average
        train(make_cfg(*EMA[:-2], f"ckpt_path={stopped}", output_dir=tmp_path / "refused"))
    resumed = train(make_cfg(*EMA, f"ckpt_path={stopped}", output_dir=tmp_path / "resumed"))
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert resumed[key] == straight[key], key
