"""d2lexp's ModelCheckpoint: one write per state, atomic files, written in the background."""

import errno
import os
import threading

import lightning.pytorch as pl
import pytest
import torch

from d2lexp.speed.checkpoints import BackgroundCheckpointIO
from d2lexp.train import train


class FilesAtEpochStart(pl.Callback):
    """What the checkpoint folder holds when each epoch after the first starts and when fitting
    ends, once the background writer has done the saves asked for by then."""

    def __init__(self, folder) -> None:
        self.folder, self.seen = folder, []

    def _look(self, trainer) -> None:
        trainer.strategy.checkpoint_io.wait()
        last, best = self.folder / "last.ckpt", self.folder / "epoch000.ckpt"
        self.seen.append(
            (last.is_file() and best.is_file() and os.path.samefile(last, best), sorted(os.listdir(self.folder)))
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch:
            self._look(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._look(trainer)


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


def test_a_run_writes_its_checkpoints_on_the_background_thread(make_cfg, monkeypatch):
    threads = []
    save = torch.save

    def recording_save(obj, f, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", recording_save)
    cfg = make_cfg("experiment=d2l/softmax", "data.train_subset=1024", "data.test_subset=256", "trainer.max_epochs=2")
    record = train(cfg)
    assert record["status"] == "done"
    # two epochs: each wrote last.ckpt, and the best epoch's file either anew or as a hard link of it
    assert 2 <= len(threads) <= 4 and all(name.startswith("d2lexp-checkpoint") for name in threads), threads
    assert torch.load(record["last_checkpoint"], weights_only=True)["global_step"] == 8


def test_the_background_writer_saves_the_state_of_the_moment_in_order(tmp_path):
    io = BackgroundCheckpointIO(tmp_path)  # the run's folder: it removes files there only
    weights = torch.zeros(1000)
    first, linked, second = tmp_path / "a" / "first.ckpt", tmp_path / "a" / "linked.ckpt", tmp_path / "second.ckpt"
    with io.writing_in_background():
        io.save_checkpoint({"w": weights, "tied": weights.detach()}, first)
        weights += 1  # training goes on: the file must hold the zeros
        io.link_checkpoint(str(first), str(linked))
        io.save_checkpoint({"w": weights}, second)
    io.remove_checkpoint(first)  # after the link: linked.ckpt keeps the data
    io.wait()
    assert not first.exists() and not list(tmp_path.glob("**/*.tmp"))
    saved = torch.load(linked, weights_only=True)
    assert torch.equal(saved["w"], torch.zeros(1000))
    assert saved["tied"].untyped_storage().data_ptr() == saved["w"].untyped_storage().data_ptr()  # still one tensor
    assert torch.equal(torch.load(second, weights_only=True)["w"], torch.ones(1000))
    io.save_checkpoint({"w": weights * 2}, second)  # outside writing_in_background: done on return
    assert torch.equal(torch.load(second, weights_only=True)["w"], torch.full((1000,), 2.0))
    io.teardown()


def test_a_failed_background_write_is_raised_and_stops_later_operations(tmp_path, monkeypatch):
    io = BackgroundCheckpointIO()
    kept = tmp_path / "epoch000.ckpt"
    torch.save({"w": torch.zeros(1)}, kept)
    queued = threading.Event()

    def disk_full(obj, f, *args, **kwargs):
        queued.wait(timeout=10)  # fail only once the removal below waits behind this write
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", disk_full)
    with io.writing_in_background():
        io.save_checkpoint({"w": torch.ones(1)}, tmp_path / "epoch001.ckpt")
    io.remove_checkpoint(kept)  # what ModelCheckpoint does with the worse epoch after saving a better one
    queued.set()
    with pytest.raises(OSError, match="No space left"):
        io.teardown()
    # the writer failed, so it removed nothing: the older checkpoint stays, the newer was never written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch000.ckpt"]


def test_a_tied_weight_is_one_tensor_in_the_runs_checkpoint(make_cfg):
    """The parameter-tying MLP of d2l ch. 6.2: its shared layer appears under two names in the
    state dict, and the checkpoint written in the background keeps it one tensor, as torch.save
    keeps it in a synchronous write."""
    record = train(
        make_cfg(
            "~experiment", "model=tied_mlp", "data.train_subset=512", "data.test_subset=256", "trainer.max_epochs=1"
        )
    )
    state = torch.load(record["last_checkpoint"], weights_only=True)["state_dict"]
    shared = [key for key in state if key.endswith("weight") and state[key].shape == (256, 256)]
    assert len(shared) == 2, list(state)
    assert state[shared[0]].untyped_storage().data_ptr() == state[shared[1]].untyped_storage().data_ptr()
