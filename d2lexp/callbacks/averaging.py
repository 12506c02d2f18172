"""Weight averaging: an exponential moving average (EMA) of the net's weights, kept beside the
trained ones (`callbacks=ema`, conf/callbacks/ema.yaml).

Lightning's `EMAWeightAveraging` does the bookkeeping: validation runs with the averaged weights;
every checkpoint holds them as the net's (`state_dict`: what `d2lexp.checkpoint.load_net` and
`d2lexp.eval` read), with the trained weights as `current_model_state` and the average's count as
`averaging_state` (a resumed run restores both: d2lexp.resume checks them); and when fitting ends
they replace the trained ones, so the test pass scores the average.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from d2lexp.errors import ConfigError


class EMA(EMAWeightAveraging):
    """W_ema <- decay * W_ema + (1 - decay) * W after every `update_every_n_steps`-th optimizer step
    (from step `update_starting_at_step` on); the first update copies W. Parameters and buffers
    (batch norm's running statistics) are averaged, as Lightning does by default.

    What differs from Lightning's: an update reads nothing from the device (torch's
    `AveragedModel.update_parameters` asks `n_averaged == 0` and `> 0` on the host: two GPU syncs a
    step; whether the average has begun is known here from the step of the last update, restored
    with the callback's state), updates in one fused `lerp` per dtype, and the average lives on
    the net's device (Lightning makes it in `setup`, before the net is moved there)."""

    def __init__(
        self,
        decay: float = 0.99,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ConfigError(f"callbacks.ema.decay must be in [0, 1), got {decay!r}.")
        if (
            isinstance(update_every_n_steps, bool)
            or not isinstance(update_every_n_steps, int)
            or update_every_n_steps < 1
        ):
            raise ConfigError(f"callbacks.ema.update_every_n_steps must be at least 1, got {update_every_n_steps!r}.")
        super().__init__(
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        self.decay = float(decay)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._average_model is not None:  # made in setup on the CPU; the net is on its device now
            self._average_model.to(pl_module.device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint written between an optimizer step and this callback's update for it (Ctrl-C, or
        # another callback stopping the run in its own on_train_batch_end) holds the average one update
        # behind: a resumed run makes that update first, from the same restored weights.
        self.on_train_batch_end(trainer, pl_module, None, None, -1)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Lightning's condition (one update per optimizer step, as should_update says), our update.
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """No updates at epoch ends (Lightning's are for `update_starting_at_epoch`, whose progress
        its checkpoints do not keep)."""

    @torch.no_grad()
    def _update(self, pl_module: pl.LightningModule) -> None:
        average = self._average_model
        assert average is not None
        if self._use_buffers:
            mine = list(itertools.chain(average.module.parameters(), average.module.buffers()))
            theirs = list(itertools.chain(pl_module.parameters(), pl_module.buffers()))
        else:
            mine, theirs = list(average.module.parameters()), list(pl_module.parameters())
        started = self._latest_update_step > 0  # on the host: restored with the callback's state
        floats = [(m, t) for m, t in zip(mine, theirs) if m.is_floating_point()]
        others = [(m, t) for m, t in zip(mine, theirs) if not m.is_floating_point()]  # counters: the latest
        if started and floats:
            torch._foreach_lerp_([m for m, _ in floats], [t.detach() for _, t in floats], 1.0 - self.decay)
        else:
            others += floats
        if others:
            torch._foreach_copy_([m for m, _ in others], [t.detach() for _, t in others])
        average.n_averaged += 1
