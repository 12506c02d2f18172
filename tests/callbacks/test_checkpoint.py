"""d2lexp's ModelCheckpoint: one write per state, atomic files, on real runs."""

import os

import lightning.pytorch as pl
import torch

from d2lexp.train import train


class FilesAtEpochStart(pl.Callback):
    """What the checkpoint folder holds when each epoch after the first starts (the previous
    epoch's saves are done by then) and when fitting ends."""

    def __init__(self, folder) -> None:
        self.folder, self.seen = folder, []

    def _look(self) -> None:
        last, best = self.folder / "last.ckpt", self.folder / "epoch000.ckpt"
        self.seen.append((last.is_file() and best.is_file() and os.path.samefile(last, best), sorted(os.listdir(self.folder))))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch:
            self._look()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._look()


def test_a_state_saved_twice_is_written_once_and_later_writes_leave_it_alone(make_cfg, tmp_path):
    # lr 0: the weights never change, so epoch 0 is the best (the first) and no later epoch beats it
    folder = tmp_path / "run" / "checkpoints"
    look = FilesAtEpochStart(folder)
    cfg = make_cfg("experiment=d2l/softmax", "optimizer.lr=0", "data.train_subset=1024", "data.test_subset=256",
                   "data.batch_size=256", "trainer.max_epochs=3")  # fmt: skip
    record = train(cfg, callbacks=[look])
    assert record["status"] == "done" and record["global_step"] == 12
    # After epoch 0 the best checkpoint and last.ckpt were one file (a hard link), not two writes:
    assert look.seen[0] == (True, ["epoch000.ckpt", "last.ckpt"])
    # Epochs 1 and 2 did not improve: last.ckpt was written anew, atomically (no .tmp left), and the
    # best epoch's file still holds epoch 0's state, untouched by the writes to the name it had shared.
    assert look.seen[-1] == (False, ["epoch000.ckpt", "last.ckpt"])
    best = torch.load(folder / "epoch000.ckpt", weights_only=True)
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert (best["epoch"], best["global_step"]) == (0, 4) and (last["epoch"], last["global_step"]) == (2, 12)
    assert record["best_checkpoint"] == str(folder / "epoch000.ckpt")
