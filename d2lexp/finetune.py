"""Starting a run from a trained net: fine-tuning (d2l 1.0 ch. 14.2).

The book copies a pretrained net's weights into a new net whose output layer fits the new data's
classes, gives that new layer Xavier weights, and trains it ten times faster than the rest. Here:

- `init=from_run init.ckpt_path=<run folder or .ckpt>` (`FromRun`): another d2lexp run's net,
  read as data and rebuilt from d2lexp's registry (d2lexp.checkpoint.load_net: nothing in the file
  is run or imported);
- `init=torchvision init.weights=IMAGENET1K_V1` (`TorchvisionWeights`): torchvision's trained
  weights for a net of torchvision's architecture (model=resnet18_tv), fetched by torchvision (a
  network is needed), or `init.weights_path=<file>`: the same weights saved with torch.save.

Either way every weight of the configured net is taken from the trained one (names and shapes
must match), except its output layer where the class counts differ (`new_output`: "auto"), or
always (`new_output: true`: the book's fine-tuning, where the new classes are other classes).
The output layer is found without knowing the architecture: the parameters whose shapes change
with `model.num_classes` (`class_dependent`). `optimizer.output_lr_scale` (d2lexp.build) trains
those `output_lr_scale` times faster (the book's 10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from d2lexp.errors import CheckpointError, ConfigError

log = logging.getLogger("d2lexp")

NEW_OUTPUT = ("auto", True, False)


def class_dependent(build: Callable[[int], nn.Module], num_classes: int) -> set[str]:
    """The names of the parameters and buffers whose shapes depend on the class count: the net's
    output layer(s), found by building it (on the meta device: no memory) for `num_classes` and
    for one more."""
    with torch.device("meta"):
        these = {k: v.shape for k, v in build(num_classes).state_dict().items()}
        more = {k: v.shape for k, v in build(num_classes + 1).state_dict().items()}
    return {k for k, shape in these.items() if more.get(k) != shape}


class StartFrom:
    """An init that starts the net from trained weights (not a per-module function)."""

    def __init__(self, new_output: bool | str = "auto") -> None:
        if new_output not in NEW_OUTPUT:
            raise ConfigError(f"init.new_output is auto, true or false; got {new_output!r}.")
        self.new_output = new_output

    def trained_weights(self) -> tuple[dict[str, torch.Tensor], str]:
        """The trained net's weights by name, and where they came from (for messages)."""
        raise NotImplementedError

    def load_into(self, net: nn.Module, output: set[str]) -> list[str]:
        """Copy the trained weights into `net`, but the output layer's (`output`: its tensors'
        names) where it is new; the new layer gets Xavier-uniform weights, as the book's. Returns
        the names of the tensors left new."""
        source, where = self.trained_weights()
        target = net.state_dict()
        differs = any(k in source and source[k].shape != target[k].shape for k in output) or any(
            k not in source for k in output
        )
        new = set(output) if self.new_output is True or (self.new_output == "auto" and differs) else set()
        if differs and not new:
            raise ConfigError(
                f"{where}'s output layer is shaped for another number of classes than model.num_classes gives. Set "
                "init.new_output=auto (or true) to start a new output layer, or model.num_classes to the trained net's."
            )
        unknown = sorted(set(source) - set(target) - new)
        for name, tensor in target.items():
            if name in new:
                continue
            weight = source.get(name)
            if weight is not None and weight.shape != tensor.shape:
                weight = grey_from_colour(weight, tensor)
            if weight is None or weight.shape != tensor.shape or weight.dtype != tensor.dtype:
                there = "missing" if name not in source else f"{tuple(source[name].shape)}"
                raise CheckpointError(
                    f"{where} holds another net than the configured one: its {name} is {there}, the configured net's is "
                    f"{tuple(tensor.shape)}{f' (and it has {unknown[0]}, which this one has not)' if unknown else ''}. "
                    "Start from a run of the same model (model=... as it was trained, model.num_classes aside)."
                )
            with torch.no_grad():
                tensor.copy_(weight)
        if unknown:
            raise CheckpointError(
                f"{where} holds weights the configured net has no place for ({', '.join(unknown[:3])}): it is another "
                "net. Start from a run of the same model."
            )
        modules = dict(net.named_modules())
        for owner in sorted({name.rpartition(".")[0] for name in new}):  # the new layer: the book's Xavier weights
            from d2lexp.models.init import xavier_uniform

            xavier_uniform()(modules[owner])
        log.info(
            "Started from %s: %d tensors taken%s.", where, len(target) - len(new),
            f"; a new output layer ({', '.join(sorted(new))})" if new else "",
        )  # fmt: skip
        return sorted(new)


def grey_from_colour(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A first convolution for grey images from one for colour images (3 input channels to 1): the
    sum over R, G and B, which gives a grey image the response the colour kernel gives the same
    grey in colour. Any other mismatch is returned as it was (and refused by the caller)."""
    colour_to_grey = weight.dim() == 4 and target.dim() == 4 and (weight.shape[1], target.shape[1]) == (3, 1)
    if colour_to_grey and weight.shape[0] == target.shape[0] and weight.shape[2:] == target.shape[2:]:
        return weight.sum(dim=1, keepdim=True)
    return weight


class FromRun(StartFrom):
    """`init=from_run`: start from another d2lexp run's trained net (see the module's docstring).
    `ckpt_path`: its run folder (its checkpoints/last.ckpt) or a .ckpt file; null: no run to start
    from, the whole net Xavier-uniform: the same settings trained from scratch, for a sweep
    `init.ckpt_path=<run>,null` that compares the two."""

    def __init__(self, ckpt_path: str | None = None, new_output: bool | str = "auto") -> None:
        super().__init__(new_output)
        self.ckpt_path = ckpt_path

    def trained_weights(self) -> tuple[dict[str, torch.Tensor], str]:
        from d2lexp.checkpoint import find_checkpoint, load_net

        path = Path(str(self.ckpt_path)).expanduser()
        if not path.exists():
            raise CheckpointError(
                f"init.ckpt_path={path} does not exist. Give the run folder (outputs/<date>/<time>) or the .ckpt file "
                "of the run to start from."
            )
        found = find_checkpoint(path, path)  # a run folder: its last checkpoint
        return load_net(found).state_dict(), f"init.ckpt_path={found}"

    def load_into(self, net: nn.Module, output: set[str]) -> list[str]:
        if self.ckpt_path is None:
            from d2lexp.models.init import xavier_uniform

            net.apply(xavier_uniform())
            log.info("init=from_run with init.ckpt_path=null: no trained net; the net starts from scratch (Xavier).")
            return []
        return super().load_into(net, output)


class TorchvisionWeights(StartFrom):
    """`init=torchvision`: torchvision's trained weights for a net of its architecture (model=resnet18_tv).
    `weights`: the name of torchvision's weights for that net (IMAGENET1K_V1: fetched by torchvision
    into its cache, which needs a network); `weights_path`, where given, instead: those weights
    saved with `torch.save(model.state_dict())`, read as data (tensors only)."""

    def __init__(self, weights: str | None = "IMAGENET1K_V1", weights_path: str | None = None,
                 new_output: bool | str = "auto") -> None:  # fmt: skip
        super().__init__(new_output)
        if weights is None and weights_path is None:
            raise ConfigError(
                "init=torchvision needs init.weights (torchvision's name, e.g. IMAGENET1K_V1: downloaded) or "
                "init.weights_path (a file of those weights saved with torch.save)."
            )
        self.weights, self.weights_path = weights, weights_path
        self.weights_enum: str | None = None  # set by load_into: the net's torchvision weights class

    def trained_weights(self) -> tuple[dict[str, torch.Tensor], str]:
        from d2lexp.checkpoint import check_finite, load

        if self.weights_path is not None:
            state = load(self.weights_path)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise CheckpointError(
                    f"init.weights_path={self.weights_path} is not a state dict (names to tensors), as "
                    "torch.save(model.state_dict()) writes it."
                )
            check_finite(state, self.weights_path)
            return state, f"init.weights_path={self.weights_path}"
        import torchvision

        try:
            weights = torchvision.models.get_weight(f"{self.weights_enum}.{self.weights}")
        except (ValueError, KeyError, AttributeError):
            raise ConfigError(
                f"init.weights={self.weights} is not one of torchvision's weights for this net ({self.weights_enum}: "
                "e.g. IMAGENET1K_V1)."
            ) from None
        try:
            return weights.get_state_dict(progress=False), f"torchvision's {self.weights_enum}.{self.weights}"
        except Exception as e:  # no network, a proxy, a full disk
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise CheckpointError(
                f"torchvision's {self.weights_enum}.{self.weights} could not be fetched ({reason}). Where there is no "
                "network, save the weights elsewhere with torch.save(model.state_dict()) and pass init.weights_path=..."
            ) from None

    def load_into(self, net: nn.Module, output: set[str]) -> list[str]:
        self.weights_enum = getattr(net, "torchvision_weights", None)
        if self.weights_path is None and self.weights_enum is None:
            raise ConfigError(
                f"init=torchvision: the model {type(net).__name__} is not one of torchvision's (use model=resnet18_tv)."
            )
        return super().load_into(net, output)


class OutputLayerLR:
    """An optimizer factory that trains some parameters faster: those at `positions` in the list
    it is given (the net's output layer, in `net.parameters()` order) get `scale` times the learning
    rate (the book's fine-tuning: 10). Given the same list order, it builds the same groups, on any
    device (a resumed run's check builds it on the meta device)."""

    def __init__(
        self, factory: Callable[..., torch.optim.Optimizer], lr: float, positions: set[int], scale: float
    ) -> None:
        self.factory, self.lr, self.positions, self.scale = factory, lr, positions, scale

    def __call__(self, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        listed = list(parameters)
        rest = [p for i, p in enumerate(listed) if i not in self.positions]
        output = [p for i, p in enumerate(listed) if i in self.positions]
        groups: list[dict[str, Any]] = [{"params": rest}, {"params": output, "lr": self.lr * self.scale}]
        return self.factory([g for g in groups if g["params"]])
