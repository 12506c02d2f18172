"""Training a character-level language model (d2l ch. 9.5): cross-entropy over the
vocabulary, perplexity, and the hidden state carried across minibatches when they continue
each other."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.errors import ConfigError
from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task
from d2lexp.tasks.metrics import RunningMean

State = torch.Tensor | tuple[torch.Tensor, ...]


def detach_state(state: State, device: torch.device | None = None) -> State:
    """The state cut from the graph (gradients stop here), on `device` if given."""
    if isinstance(state, (tuple, list)):
        return tuple(s.detach().to(device) if device else s.detach() for s in state)
    return state.detach().to(device) if device else state.detach()


def _batch_size(state: State) -> int:
    first = state[0] if isinstance(state, tuple) else state
    return first.shape[-2]


class LanguageModelTask(Task):
    """Next-token cross-entropy for nets with `forward(X, state) -> (logits, state)` and `begin_state`.

    When the data says its minibatches continue each other (`datamodule.sequential`, the
    book's sequential partitioning) the hidden state carries over from one minibatch to the
    next, detached so gradients stop at the boundary; otherwise (random sampling) it starts
    from zeros every minibatch. Logs train/loss and train/ppl (perplexity = exp of the mean
    per-token loss), and val/ loss and ppl when there is validation text. Gradient clipping
    is Lightning's own (`trainer.gradient_clip_val`). The test pass scores the final weights on
    the data's test text (test/loss, test/ppl).
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: Scheduler | None = None) -> None:
        super().__init__(net, optimizer, scheduler)
        self.train_loss, self.val_loss, self.test_loss = RunningMean(), RunningMean(), RunningMean()
        self.track_train_metrics(self.train_loss)
        self._state: dict[str, State | None] = {"train": None, "val": None, "test": None}

    def setup(self, stage: str) -> None:
        vocab = self.data.vocab if self.data is not None else None
        size = getattr(self.net, "vocab_size", None)
        if vocab is not None and size is not None and size != len(vocab):
            raise ConfigError(
                f"model.vocab_size={size} but the data's vocabulary has {len(vocab)} tokens; "
                f"set model.vocab_size={len(vocab)}."
            )

    def _carries_state(self) -> bool:
        return self.data is not None and self.data.sequential

    def forward(self, X: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.apply_net(X, state)

    def _token_losses(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        X, Y = batch
        state = self._state[stage]
        if state is None or not self._carries_state() or _batch_size(state) != X.shape[0]:
            state = None  # the net starts from zeros
        else:
            state = detach_state(state, X.device)
        logits, self._state[stage] = self(X, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1), reduction="none")

    def on_train_epoch_start(self) -> None:
        if not self.resuming_mid_epoch():  # else: the state restored with the checkpoint carries on
            self._state["train"] = None
        super().on_train_epoch_start()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._state["train"] is not None and self._carries_state():
            checkpoint["d2lexp_task"]["hidden_state"] = detach_state(self._state["train"])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._state["train"] = checkpoint.get("d2lexp_task", {}).get("hidden_state")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self._token_losses(batch, "train")
        self.train_loss.update(losses.detach())
        loss = losses.mean()
        self.log_step_loss(loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        mean = self.log_epoch_loss(self.train_loss)
        self.log("train/ppl", torch.exp(mean), prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self._state["val"] = None

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_loss.update(self._token_losses(batch, "val"))

    def on_validation_epoch_end(self) -> None:
        mean = self.val_loss.compute()
        self.log("val/loss", mean)
        self.log("val/ppl", torch.exp(mean), prog_bar=True)
        self.val_loss.reset()

    def on_test_epoch_start(self) -> None:
        self._state["test"] = None

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.test_loss.update(self._token_losses(batch, "test"))

    def on_test_epoch_end(self) -> None:
        mean = self.test_loss.compute()
        self.log("test/loss", mean)
        self.log("test/ppl", torch.exp(mean))
        self.test_loss.reset()
