"""cuDNN autotuning kept to the shapes a run is made of (`speed.autotune_main_shapes`), checked on
the CPU, where the flag is only a flag: what is checked is its value while each batch runs."""

import lightning.pytorch as pl
import torch

from d2lexp import speed
from d2lexp.speed.autotune import AutotuneMainShapes
from d2lexp.train import train
from tests.helpers.configs import compose_config


def test_autotuning_is_kept_to_main_shapes_where_it_can_act():
    """On a CUDA trainer with `benchmark` on (every callback costs Lightning hook calls each step)."""
    gpu = compose_config(["trainer=gpu"])
    assert speed.autotunes(gpu.trainer) and any(
        isinstance(c, AutotuneMainShapes) for c in speed.callbacks(gpu.speed, gpu.trainer)
    )
    assert not speed.autotunes(compose_config(["trainer=gpu", "trainer.deterministic=true"]).trainer)
    assert not speed.autotunes(compose_config(["trainer=cpu"]).trainer)
    off = compose_config(["trainer=gpu", "speed.autotune_main_shapes=false"])
    assert not any(isinstance(c, AutotuneMainShapes) for c in speed.callbacks(off.speed, off.trainer))


class AutotuneProbe(pl.Callback):
    """Records, as the net runs, cuDNN's autotuning flag: (pass, batch size, flag) for each
    forward, backward and optimizer step (batch size -1)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []

    def on_fit_start(self, trainer, task):
        def forward(module, args):
            self.seen.append(("train" if module.training else "eval", args[0].shape[0], torch.backends.cudnn.benchmark))

        def backward(module, grad_input, grad_output):
            self.seen.append(("backward", grad_output[0].shape[0], torch.backends.cudnn.benchmark))

        task.net.register_forward_pre_hook(forward)
        task.net.register_full_backward_hook(backward)

    def on_before_optimizer_step(self, trainer, task, optimizer):
        self.seen.append(("optimizer step", -1, torch.backends.cudnn.benchmark))


def probe_autotuning(make_cfg, *overrides: str) -> list[tuple[str, int, bool]]:
    """LeNet on 600 training images in batches of 256 (256, 256, 88) and 300 test images (256,
    44), for two epochs: what `AutotuneProbe` saw. Leaves torch's global flags as it found them."""
    probe = AutotuneProbe()
    flags = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()
    try:
        cfg = make_cfg("experiment=d2l/lenet", "data.train_subset=600", "data.test_subset=300", "trainer.max_epochs=2",
                       "callbacks.progress_bar=null", *overrides)  # fmt: skip
        # What a CUDA run adds by itself: a CPU trainer leaves it out, as it would do nothing there.
        assert train(cfg, callbacks=[AutotuneMainShapes(), probe])["status"] == "done"
        probe.seen.append(("after the run", 0, torch.backends.cudnn.benchmark))
    finally:
        torch.backends.cudnn.benchmark = flags[0]
        torch.use_deterministic_algorithms(flags[1])
    return probe.seen


def test_cudnn_autotunes_only_the_shapes_a_run_is_made_of(make_cfg):
    """By default (on a GPU: `trainer.accelerator=gpu` alone and `trainer=gpu`) each loop's
    full batches run with cuDNN autotuning, and an epoch's smaller last batch (forward, backward
    and optimizer step) and the model summary's one-example forward with autotuning paused:
    tuning their shapes would cost seconds for one step an epoch, or one forward a run.
    Autotuning is as it was after the run. On the CPU the flag is only a flag: what is checked
    is its value while each batch runs."""
    seen = probe_autotuning(make_cfg)
    assert seen[-1] == ("after the run", 0, True), "autotuning was left paused after the run"
    steps = [s for s in seen if s[0] == "optimizer step"]
    assert len(steps) == 6 and [b for *_, b in steps] == [True, True, False] * 2, steps
    runs = [s for s in seen[:-1] if s[0] != "optimizer step"]
    assert {s for s in runs if s[1] == 256} == {("train", 256, True), ("backward", 256, True), ("eval", 256, True)}
    assert {s for s in runs if s[1] != 256} == {("train", 88, False), ("backward", 88, False), ("eval", 44, False),
                                                ("eval", 1, False)}  # fmt: skip
    # validation after each epoch and the final test each ran both shapes
    assert sum(s == ("eval", 44, False) for s in runs) == 3 and sum(s == ("train", 88, False) for s in runs) == 2


def test_deterministic_runs_do_without_autotuning(make_cfg):
    """Autotuning picks cuDNN's algorithms by timing them, so a run asked to be deterministic
    never autotunes (PyTorch would ignore `deterministic` for cuDNN if it did)."""
    seen = probe_autotuning(make_cfg, "trainer.deterministic=true")
    assert len(seen) > 20 and not any(flag for *_, flag in seen), seen
