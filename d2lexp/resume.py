"""What a resumed run takes from its checkpoint: state, after validation; never paths.

A checkpoint carries, beside the weights, the optimizer's and scheduler's state, the loops'
position, random states, running metrics, the history, and the checkpoint callbacks' own
bookkeeping, which names files (the best checkpoint, the top k) that Lightning later *removes*.
A file someone gave you could name any file there. So Lightning is handed a new checkpoint made
from an allow-list (`checked_for_resume`):

- the task's tensors: exactly the names, shapes and dtypes of this run's, the net's finite;
- optimizer and scheduler states: the structure of fresh ones built for this run, numbers in
  their places, state tensors shaped like their parameters;
- the loops' counters: the structure of this trainer's, whole numbers; the loaders' positions
  (checked by the loaders);
- random states, the epoch history and the task's own notes: in the formats d2lexp writes;
- with weight averaging (`callbacks=ema`): the trained weights kept beside the averaged ones, checked
  as the weights are, and the average's count; a checkpoint of averaged weights resumed without it
  is refused (its net's weights are the average: training would go on from them);
- each checkpoint callback's bookkeeping rebuilt from the run's own folder: a file it names is kept
  only if a checkpoint of that name is in this run's checkpoint folder; scores must be numbers;
- nothing else (other keys are dropped).

Lightning reads checkpoints only through `RunCheckpointIO`, which hands it such a checkpoint (the
one d2lexp checked before fitting, or any other after the same checks), writes atomically, and
removes only files inside the run's own folder.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, WeightAveraging
from torch import nn

from d2lexp import files
from d2lexp.callbacks.history import HISTORY_KEY
from d2lexp.callbacks.resume import KEY as RANDOM_STATE_KEY
from d2lexp.callbacks.resume import random_state_problem
from d2lexp.checkpoint import check_finite, load_checkpoint, save
from d2lexp.errors import CheckpointError

TASK_KEY = "d2lexp_task"
# What Lightning's WeightAveraging adds to a checkpoint: the trained weights (`state_dict` holds the
# average) and the average's own state (its count).
CURRENT_WEIGHTS_KEY, AVERAGING_KEY = "current_model_state", "averaging_state"
_CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]*\.ckpt$")
_MAX_COUNTER = 1 << 53


class _Refused(Exception):
    """Where in the checkpoint, and why, a value does not fit this run."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _like(value: Any, template: Any, where: str, finite: bool = True) -> Any:
    """`value` if it has `template`'s structure: the same keys, lengths, strings, booleans and
    None; a number where it has a number (finite, if `finite`); a tensor of the same shape and
    dtype where it has a tensor. `_Refused` otherwise."""
    if isinstance(template, dict):
        if not isinstance(value, dict) or set(value) != set(template):
            raise _Refused(
                where,
                f"has keys {sorted(map(str, value))[:8] if isinstance(value, dict) else type(value).__name__}, not this run's",
            )
        return {k: _like(value[k], template[k], f"{where}.{k}", finite) for k in template}
    if isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            raise _Refused(where, "does not have this run's length")
        items = [_like(v, t, f"{where}[{i}]", finite) for i, (v, t) in enumerate(zip(value, template))]
        return tuple(items) if isinstance(template, tuple) else items
    if isinstance(template, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.shape != template.shape or value.dtype != template.dtype:
            raise _Refused(where, f"is not a {template.dtype} tensor of shape {tuple(template.shape)}")
        if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _Refused(where, "holds NaN or infinite values")
        return value
    if _is_number(template):
        if not _is_number(value) or (finite and not math.isfinite(value)) or abs(value) >= _MAX_COUNTER * 2**64:
            raise _Refused(where, f"is {value!r}, not a number{' that is finite' if finite else ''}")
        return value
    if value != template or type(value) is not type(template):
        raise _Refused(where, f"is {str(value)[:60]!r}, where this run has {str(template)[:60]!r}")
    return value


def _counter(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_COUNTER:
        raise _Refused(where, f"is {str(value)[:40]!r}, not a count")
    return value


# ------------------------------------------------------------------------------------------------
# The parts of a checkpoint


def _state_dict(saved: Any, task: pl.LightningModule, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
        raise _Refused("state_dict", "is not a mapping of names to tensors")
    expected = task.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    nets_match = {k for k in expected if k.startswith("net.")} == {k for k in saved if k.startswith("net.")}
    if nets_match and (missing or unexpected):  # the same net; the task's running sums kept otherwise
        raise CheckpointError(
            f"ckpt_path={source} holds this net's weights, but its task's running state ({', '.join((missing + unexpected)[:4])}) "
            "as another version of d2lexp kept it, so the run cannot go on exactly where it stopped. Its net still "
            "loads: score it with python -m d2lexp.eval, or start a new run from it."
        )
    if missing or unexpected:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {', '.join(map(str, unexpected[:3]))}{' ...' if len(unexpected) > 3 else ''}"
                if unexpected
                else "",
            )
            if part
        )
        raise CheckpointError(
            f"ckpt_path={source} holds the weights of another net, which do not fit the configured model ({details}). "
            "Resume with the same model settings the checkpoint was trained with."
        )
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(
                f"ckpt_path={source} holds {name} of shape {shape}, but the configured model's is "
                f"{tuple(tensor.shape)}: it was trained with other model settings. Resume with the settings it was "
                "trained with."
            )
        if value.dtype != tensor.dtype and not (value.is_floating_point() and tensor.is_floating_point()):
            raise _Refused(f"state_dict.{name}", f"is {value.dtype}, where the model has {tensor.dtype}")
    check_finite({k[4:]: v for k, v in saved.items() if k.startswith("net.")}, f"ckpt_path={source}")
    return {name: saved[name] for name in expected}


def _meta_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"), requires_grad=p.requires_grad)
            for p in net.parameters()]  # fmt: skip


def _fresh_optimizer(task: pl.LightningModule) -> tuple[torch.optim.Optimizer, Any, list[nn.Parameter]]:
    """An optimizer (and scheduler) as this run builds them, for its net's parameters on the meta
    device (no memory): its state after one step is the shape a checkpoint's must have."""
    parameters = _meta_parameters(task.net)
    optimizer = task.optimizer_factory(parameters)
    scheduler = getattr(task, "scheduler", None)
    built = None
    if scheduler is not None:  # a scheduler adds to the optimizer's groups (initial_lr, max_lr, ...)
        length = {scheduler.total_steps_arg: 1000} if scheduler.total_steps_arg else {}
        built = scheduler.factory(optimizer, **length)
    return optimizer, built, parameters


def _stepped_state(
    optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter]
) -> dict[int, dict[str, Any]] | None:
    """What the optimizer keeps per parameter once it has stepped (momentum buffers, Adam's moments;
    nothing for plain SGD); None where a step cannot be taken on the meta device."""
    for parameter in parameters:
        parameter.grad = torch.empty_like(parameter)
    try:
        optimizer.step()
        return {i: dict(s) for i, s in optimizer.state_dict()["state"].items()}
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
    finally:
        for parameter in parameters:
            parameter.grad = None


def _optimizer_states(saved: Any, task: pl.LightningModule) -> tuple[list[dict[str, Any]], Any]:
    """The optimizer's state, checked against a fresh optimizer for this run's net (on the meta
    device: no memory), its groups as this run's scheduler leaves them, its per-parameter state as
    one step leaves it, and loaded into it as a trial."""
    fresh, scheduler, parameters = _fresh_optimizer(task)
    groups_template = fresh.state_dict()["param_groups"]
    stepped = _stepped_state(fresh, parameters)
    if not isinstance(saved, list) or len(saved) != 1 or not isinstance(saved[0], dict):
        raise _Refused("optimizer_states", "is not one optimizer's state")
    state = saved[0]
    if set(state) != {"state", "param_groups"}:
        raise _Refused("optimizer_states[0]", "is not an optimizer's state")
    groups = _like(state["param_groups"], groups_template, "optimizer_states[0].param_groups")
    per_parameter = state["state"]
    if not isinstance(per_parameter, dict):
        raise _Refused("optimizer_states[0].state", "is not a mapping")
    checked: dict[int, dict[str, Any]] = {}
    for index, values in per_parameter.items():
        where = f"optimizer_states[0].state[{index!r}]"
        if not isinstance(index, int) or not 0 <= index < len(parameters) or not isinstance(values, dict):
            raise _Refused(where, "is not the state of one of the net's parameters")
        if stepped is not None:  # the keys and shapes one step leaves; numbers and tensors in their places
            if index not in stepped:
                raise _Refused(where, "is state this run's optimizer does not keep")
            values = _like(values, stepped[index], where)
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise _Refused(f"{where}.{key}", "holds NaN or infinite values")
        checked[index] = values
    if [g["params"] for g in groups] != [g["params"] for g in groups_template]:
        raise _Refused("optimizer_states[0].param_groups", "does not list this net's parameters")
    trial, _, _ = _fresh_optimizer(task)
    try:  # torch's own checks, on the meta device
        trial.load_state_dict({"state": {i: {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
                                         for i, values in checked.items()}, "param_groups": groups})  # fmt: skip
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise _Refused("optimizer_states", f"does not load into this run's optimizer ({str(e)[:200]})") from None
    return [{"state": checked, "param_groups": groups}], scheduler


def _scheduler_states(saved: Any, task: pl.LightningModule, scheduler: Any) -> list[dict[str, Any]]:
    if scheduler is None:
        if saved not in (None, []):
            raise _Refused("lr_schedulers", "holds a scheduler's state, but this run has no scheduler")
        return []
    template = scheduler.state_dict()
    if not isinstance(saved, list) or len(saved) != 1:
        raise _Refused("lr_schedulers", "is not one scheduler's state")
    state = saved[0]
    if not isinstance(state, dict) or set(state) != set(template):
        raise _Refused("lr_schedulers[0]", "is not the state of this run's scheduler")
    return [{k: _like(state[k], template[k], f"lr_schedulers[0].{k}", finite=False) for k in template}]


def _loops(saved: Any, trainer: pl.Trainer) -> dict[str, Any]:
    """The loops' counters in this trainer's structure; the loaders' positions, plain data that
    the loaders check themselves."""
    if not isinstance(saved, dict):
        raise _Refused("loops", "is not a mapping")
    checked = {}
    for name in ("fit_loop", "validate_loop", "test_loop", "predict_loop"):
        template = getattr(trainer, name).state_dict()
        value = saved.get(name)
        if not isinstance(value, dict) or set(value) != set(template):
            raise _Refused(f"loops.{name}", "does not have this trainer's structure")
        loop = {}
        for key, part in template.items():
            where = f"loops.{name}.{key}"
            if key.endswith("state_dict") and part == {}:
                loop[key] = _loader_positions(value[key], where)
            else:
                loop[key] = _counters_like(value[key], part, where)
        checked[name] = loop
    return checked


def _counters_like(value: Any, template: Any, where: str) -> Any:
    if isinstance(template, dict):
        if not isinstance(value, dict) or set(value) != set(template):
            raise _Refused(where, "does not have this trainer's structure")
        return {k: _counters_like(value[k], template[k], f"{where}.{k}") for k in template}
    if isinstance(template, bool):
        if not isinstance(value, bool):
            raise _Refused(where, f"is {str(value)[:40]!r}, not true or false")
        return value
    if isinstance(template, int):
        return _counter(value, where)
    return _like(value, template, where)


def _loader_positions(value: Any, where: str) -> dict[str, Any]:
    if value == {}:
        return {}
    if (
        not isinstance(value, dict)
        or set(value) != {"combined_loader"}
        or not isinstance(value["combined_loader"], list)
    ):
        raise _Refused(where, "is not the position of this run's loaders")
    positions = []
    for i, state in enumerate(value["combined_loader"]):
        if not isinstance(state, dict) or set(state) != {"epoch", "batches"}:
            raise _Refused(f"{where}.combined_loader[{i}]", "is not a d2lexp loader's position")
        positions.append({k: _counter(state[k], f"{where}.combined_loader[{i}].{k}") for k in ("epoch", "batches")})
    return {"combined_loader": positions}


def _own_checkpoint(path: Any, folder: Path | None) -> str:
    """The checkpoint of that name in the callback's own folder `folder`, if it is there as a file;
    "" otherwise. Only a name is taken from the file; the folder is always the run's own."""
    if folder is None or not isinstance(path, str) or not path:
        return ""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if not _CHECKPOINT_NAME.match(name):
        return ""
    candidate = folder / name
    return str(candidate) if candidate.is_file() and not candidate.is_symlink() else ""


def _score(value: Any, where: str) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return value.reshape(())
    raise _Refused(where, "is not a score")


def _model_checkpoint_state(callback: ModelCheckpoint, saved: Any, where: str) -> dict[str, Any]:
    """A ModelCheckpoint's bookkeeping with every file it names looked up in its own folder."""
    if not isinstance(saved, dict):
        raise _Refused(where, "is not a mapping")
    folder = Path(callback.dirpath).absolute() if callback.dirpath else None
    best_k = {}
    if isinstance(saved.get("best_k_models"), dict):
        for path, score in saved["best_k_models"].items():
            own = _own_checkpoint(path, folder)
            if own:
                best_k[own] = _score(score, f"{where}.best_k_models")
    kept_best = _own_checkpoint(saved.get("best_model_path"), folder)
    fresh_kth = callback.kth_value
    state = {
        "monitor": callback.monitor,
        "best_model_score": _score(saved.get("best_model_score"), f"{where}.best_model_score") if kept_best else None,
        "best_model_path": kept_best,
        "current_score": _score(saved.get("current_score"), f"{where}.current_score"),
        "dirpath": callback.dirpath,
        "best_k_models": best_k,
        "kth_best_model_path": _own_checkpoint(saved.get("kth_best_model_path"), folder) if best_k else "",
        "kth_value": (_score(saved.get("kth_value"), f"{where}.kth_value") if best_k else None) or fresh_kth,
        "last_model_path": _own_checkpoint(saved.get("last_model_path"), folder),
    }
    return state


def _callback_states(saved: Any, trainer: pl.Trainer) -> dict[str, Any]:
    """The callbacks' own states: ModelCheckpoint's rebuilt from the run's folder; any other's in the
    structure the run's own callback has, where the values of its constructor's arguments (its
    configuration: EarlyStopping's patience, say) are the run's own, never the file's."""
    import inspect

    if saved is None:
        return {}
    if not isinstance(saved, dict):
        raise _Refused("callbacks", "is not a mapping")
    states = {}
    for callback in trainer.callbacks:
        key = callback.state_key
        if key not in saved:
            continue
        where = f"callbacks[{key[:60]!r}]"
        if isinstance(callback, ModelCheckpoint):
            states[key] = _model_checkpoint_state(callback, saved[key], where)
        elif isinstance(callback, WeightAveraging):  # the step of its last update: a count
            if not isinstance(saved[key], dict) or set(saved[key]) != {"latest_update_step"}:
                raise _Refused(where, "does not have the state of this run's weight averaging")
            states[key] = {
                "latest_update_step": _counter(saved[key]["latest_update_step"], f"{where}.latest_update_step")
            }
        elif isinstance(callback, Checkpoint):
            continue  # another kind of checkpoint callback: it starts its bookkeeping afresh
        else:
            template = callback.state_dict()
            if not template:
                continue
            configuration = set(inspect.signature(type(callback).__init__).parameters)
            if not isinstance(saved[key], dict) or set(saved[key]) != set(template):
                raise _Refused(where, "does not have the state of this run's callback")
            states[key] = {
                k: v if k in configuration else _like(saved[key][k], v, f"{where}.{k}", finite=False)
                for k, v in template.items()
            }
    return states


def _averaging(
    checkpoint: dict[str, Any], task: pl.LightningModule, trainer: pl.Trainer, source: str
) -> dict[str, Any]:
    """The trained weights and the average's count of a checkpoint written with weight averaging,
    checked like the weights; nothing for one written without (a run with averaging starts its
    average from the checkpoint's weights)."""
    averages = any(isinstance(c, WeightAveraging) for c in trainer.callbacks)
    held = [key for key in (CURRENT_WEIGHTS_KEY, AVERAGING_KEY) if key in checkpoint]
    if not held:
        return {}
    if not averages:
        raise CheckpointError(
            f"ckpt_path={source} was trained with weight averaging: its net's weights are the average, and the "
            "trained ones are kept beside them. Resume it with the averaging too (callbacks=ema, as it was trained), "
            "or score or export its averaged net (python -m d2lexp.eval, d2lexp.checkpoint.load_net)."
        )
    if len(held) != 2:
        raise _Refused(held[0], "is there without the rest of the weight averaging's state")
    count = _like(checkpoint[AVERAGING_KEY], {"n_averaged": torch.zeros((), dtype=torch.long)}, AVERAGING_KEY)
    if int(count["n_averaged"]) < 0:
        raise _Refused(f"{AVERAGING_KEY}.n_averaged", "is negative, not a count")
    return {CURRENT_WEIGHTS_KEY: _state_dict(checkpoint[CURRENT_WEIGHTS_KEY], task, source), AVERAGING_KEY: count}


def _task_notes(saved: Any) -> dict[str, Any] | None:
    if saved is None:
        return None
    if not isinstance(saved, dict):
        raise _Refused(TASK_KEY, "is not a mapping")
    epoch, first = saved.get("epoch"), saved.get("first_loss")
    if epoch is not None:
        _counter(epoch, f"{TASK_KEY}.epoch")
    if first is not None and (not isinstance(first, float) or not math.isfinite(first)):
        raise _Refused(f"{TASK_KEY}.first_loss", "is not a finite number")
    return {"epoch": epoch, "first_loss": first}


_MAX_METRICS = 200  # per epoch of a history


def _history_row(row: Any, where: str) -> dict[str, float]:
    if not isinstance(row, dict) or len(row) > _MAX_METRICS:
        raise _Refused(where, "is not an epoch of a history")
    numbers = {}
    for key, value in row.items():
        if not isinstance(key, str) or len(key) > 200 or not _is_number(value) or not math.isfinite(value):
            raise _Refused(f"{where}.{str(key)[:60]}", "is not a metric's finite value")
        numbers[key] = value
    if "epoch" in numbers:
        numbers["epoch"] = _counter(numbers["epoch"], f"{where}.epoch")
    return numbers


def _history(saved: Any) -> dict[str, Any] | None:
    """The epochs' metrics, finite numbers by name, and the epoch now running."""
    if saved is None:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("epochs", []), list):
        raise _Refused(HISTORY_KEY, "is not an epoch history")
    epochs = [_history_row(row, f"{HISTORY_KEY}.epochs[{i}]") for i, row in enumerate(saved.get("epochs") or [])]
    pending = saved.get("pending")
    return {"epochs": epochs, "pending": None if pending is None else _history_row(pending, f"{HISTORY_KEY}.pending")}


def _holder_state(saved: Any, holder: Any, where: str) -> Any:
    """The state of the data module or the precision plugin: in the structure of its own, numbers in
    their places (a loss scaler's); a language model's vocabulary, checked by its data module."""
    from d2lexp.data.text import Vocab

    if isinstance(saved, dict) and set(saved) == {"idx_to_token"}:  # a language model's data: its vocabulary
        problem = Vocab.tokens_problem(saved["idx_to_token"])
        if problem:
            raise _Refused(f"{where}.idx_to_token", problem)
        return saved
    template = holder.state_dict()
    if not template:
        return None
    return _like(saved, template, where, finite=False)


def checked_for_resume(
    checkpoint: dict[str, Any], task: pl.LightningModule, trainer: pl.Trainer, source: str | Path, data: Any = None
) -> dict[str, Any]:
    """A new checkpoint made of what `checkpoint` (loaded by d2lexp.checkpoint.load_checkpoint)
    may restore in this run, checked (see the module's docstring); CheckpointError, one
    paragraph naming the file and the part, for anything that does not fit."""
    import lightning

    source = str(source)
    try:
        state_dict = _state_dict(checkpoint.get("state_dict"), task, source)
        optimizer_states, fresh_scheduler = _optimizer_states(checkpoint.get("optimizer_states"), task)
        checked: dict[str, Any] = {
            "epoch": _counter(checkpoint.get("epoch"), "epoch"),
            "global_step": _counter(checkpoint.get("global_step"), "global_step"),
            "pytorch-lightning_version": lightning.__version__,  # this structure: no migration applies
            "state_dict": state_dict,
            "optimizer_states": optimizer_states,
            "lr_schedulers": _scheduler_states(checkpoint.get("lr_schedulers"), task, fresh_scheduler),
            "loops": _loops(checkpoint.get("loops"), trainer),
            "callbacks": _callback_states(checkpoint.get("callbacks"), trainer),
            **_averaging(checkpoint, task, trainer, source),
        }
        random_state = checkpoint.get(RANDOM_STATE_KEY)
        if random_state is not None:
            problem = random_state_problem(random_state)
            if problem:
                raise _Refused(RANDOM_STATE_KEY, problem)
            checked[RANDOM_STATE_KEY] = random_state
        for key, value in (
            (TASK_KEY, _task_notes(checkpoint.get(TASK_KEY))),
            (HISTORY_KEY, _history(checkpoint.get(HISTORY_KEY))),
        ):
            if value is not None:
                checked[key] = value
        for holder in (data if data is not None else trainer.datamodule, trainer.precision_plugin):
            name = type(holder).__qualname__ if holder is not None else None
            if name in checkpoint:
                state = _holder_state(checkpoint[name], holder, name)
                if state is not None:
                    checked[name] = state
    except _Refused as e:
        raise CheckpointError(
            f"ckpt_path={source} cannot be resumed in this run: its {e.where} {e.why}. The checkpoint was written by "
            "another configuration or version, or was altered; resume it with the settings it was trained with, or "
            "start afresh (leave ckpt_path out)."
        ) from None
    return checked


# ------------------------------------------------------------------------------------------------
# Lightning's reading and writing of checkpoints in a d2lexp run


class RunCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for a d2lexp run in `folder`: loads only checked checkpoints
    (`checked_for_resume`), writes atomically (d2lexp.checkpoint.save), and removes only files
    inside the run's folder, one at a time, never a folder."""

    def __init__(self, folder: str | Path | None = None) -> None:
        super().__init__()
        self.folder = Path(folder).absolute() if folder is not None else None
        self._task: pl.LightningModule | None = None
        self._trainer: pl.Trainer | None = None
        self._data: Any = None
        self._checked: tuple[str, dict[str, Any]] | None = None

    def attach(self, task: pl.LightningModule, trainer: pl.Trainer, data: Any = None) -> None:
        """The run whose checkpoints this reads (for `checked_for_resume`)."""
        self._task, self._trainer, self._data = task, trainer, data

    def resume_from(self, path: str | Path, checkpoint: dict[str, Any]) -> None:
        """The checkpoint `path` holds, already checked: Lightning is given it, not the file again."""
        self._checked = (str(path), checkpoint)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if self._checked is not None and self._checked[0] == str(path):
            checked, self._checked = self._checked[1], None
            return checked
        if self._task is None or self._trainer is None:
            raise CheckpointError(f"{path}: d2lexp reads checkpoints only for a run it has built.")
        return checked_for_resume(load_checkpoint(path), self._task, self._trainer, path, self._data)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:  # as TorchCheckpointIO does
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}.")
        save(checkpoint, str(path))

    def remove_checkpoint(self, path: Any) -> None:
        path = Path(str(path))
        if self.folder is None or path.name in ("", ".", ".."):
            return
        parent, folder = path.parent.resolve(), self.folder.resolve()  # `..` and links resolved first
        if parent == folder or folder in parent.parents:
            files.remove_file(parent / path.name, parent)
