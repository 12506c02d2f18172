"""Reading d2lexp checkpoints: checked before resuming, and usable without Lightning."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from d2lexp.callbacks.run_config import CHECKPOINT_KEY
from d2lexp.errors import CheckpointError

_HOW_TO_FIX = (
    "Point ckpt_path at a .ckpt file that a d2lexp run wrote (e.g. outputs/<date>/<time>/checkpoints/last.ckpt), "
    "a run folder, or `last` (the newest run's last checkpoint); or leave ckpt_path out to start from scratch."
)


# The settings that make a run what it is: a run resumed with `ckpt_path=last` must share them.
# (Where the data lives, how long to train and on which device may differ.)
DEFINING = ("model", "init", "data", "augment", "task", "optimizer", "scheduler", "seed")
_NOT_DEFINING = {"data.data_dir", "data.download", "data.on_device"}
# Settings added after runs were made, at the values that change nothing: a run made before they
# existed still matches a run that has them so.
_ADDED_NEUTRAL = {
    "task.label_smoothing": 0.0,
    "task.test_time_flip": False,
    "data.pipeline": "course",
    "data.num_train": 10_000,
    "data.num_val": 5_000,
}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def defining_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's defining settings (`DEFINING`), flattened to dotted keys, from its config as a
    container (interpolations unresolved, as Hydra records it in .hydra/config.yaml)."""
    flat = _flat({key: config.get(key) for key in DEFINING})
    if not any(v for k, v in flat.items() if k.startswith("augment.") and k != "augment._target_"):
        flat = {k: v for k, v in flat.items() if not k.startswith("augment")}  # none: as runs made before augment
    return {
        k: v for k, v in flat.items() if k not in _NOT_DEFINING and not (k in _ADDED_NEUTRAL and v == _ADDED_NEUTRAL[k])
    }


def _recorded_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The defining settings of the run that wrote `checkpoint`, as its run folder's
    .hydra/config.yaml records them: plain YAML, interpolations left unresolved (resolving a
    file's interpolations could run resolvers with side effects), so compare them with a
    config's unresolved settings."""
    import yaml

    config_file = checkpoint.parent.parent / ".hydra" / "config.yaml"
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return defining_settings(config) if isinstance(config, dict) else None


def _differences(found: dict[str, Any], wanted: dict[str, Any], limit: int = 4) -> str:
    keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    shown = [f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} here" for k in keys[:limit]]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


def find_checkpoint(
    spec: str | Path, log_dir: str | Path, exclude: str | Path | None = None, settings: dict[str, Any] | None = None
) -> Path:
    """The checkpoint a `ckpt_path` value means.

    - "last": the newest `checkpoints/last.ckpt` under `log_dir` (but `exclude`, the run being
      started) of a run with the same defining `settings` (`defining_settings`) as this one;
      when the newest run differs, the newest one that matches; none: CheckpointError naming
      the newest run and how it differs;
    - a run folder: its `checkpoints/last.ckpt`;
    - a file: itself.
    """
    if str(spec) == "last":
        root, skip = Path(log_dir).expanduser(), Path(exclude).resolve() if exclude else None
        found = [p for p in root.glob("**/checkpoints/last.ckpt") if not (skip and skip in p.resolve().parents)]
        if not found:
            raise CheckpointError(
                f"ckpt_path=last: no run under {root} has a checkpoints/last.ckpt to resume from. "
                "Give the checkpoint file or the run folder instead (ckpt_path=outputs/<date>/<time>)."
            )
        newest_first = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
        if settings is None:
            return newest_first[0].resolve()
        for candidate in newest_first:
            if _recorded_settings(candidate) == settings:
                return candidate.resolve()
        newest = newest_first[0]
        recorded = _recorded_settings(newest)
        how = _differences(recorded, settings) if recorded is not None else "its settings cannot be read"
        raise CheckpointError(
            f"ckpt_path=last: no run under {root} was trained with this run's settings, so none can be resumed "
            f"exactly. The newest, {newest.parent.parent}, differs ({how}). Resume a run with its own settings, "
            f"or give its folder: ckpt_path={newest.parent.parent} with the same overrides it was started with."
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"ckpt_path={path} is a folder without checkpoints/last.ckpt. {_HOW_TO_FIX}")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU under `weights_only=True`, with a clear error if it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist or is not a file. {_HOW_TO_FIX}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"ckpt_path={path} cannot be read as a checkpoint ({type(e).__name__}: {reason[:200]}). "
            f"The file may be truncated or not a PyTorch checkpoint. {_HOW_TO_FIX}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path={path} is a PyTorch file but not a Lightning checkpoint. {_HOW_TO_FIX}")
    return checkpoint


def check_fits(checkpoint: dict[str, Any], module: nn.Module, path: str | Path) -> None:
    """Fail clearly if the checkpoint's weights are not those of `module` (another model or size)."""
    saved = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    expected = {k: v for k, v in module.state_dict().items() if k.startswith("net.")}
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    reshaped = [
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or reshaped:
        saved_model = checkpoint.get(CHECKPOINT_KEY, {}).get("model", {}).get("_target_", "an unknown model")
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else "",
                "; ".join(reshaped[:3]),
            )
            if part
        )
        raise CheckpointError(
            f"ckpt_path={path} holds weights of {saved_model}, which do not fit the configured model ({details}). "
            "Resume with the same model settings the checkpoint was trained with."
        )


class _WriteErrors:
    """A file's `write` and `flush`, remembering the OSError one raised: torch.save reports a
    failed write as a RuntimeError without its cause, so a full disk would read as a bug."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = e
            raise


def save(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically: a crash never leaves half a file where a good one was.

    The file is written beside its name and renamed into place. A write that fails (a full disk,
    a read-only folder) raises the OSError that stopped it, with its errno, and leaves no partial
    file behind.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as file:
            writer = _WriteErrors(file)
            try:
                torch.save(obj, writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)  # give a full disk its space back
        raise
    return path


def load(path: str | Path) -> Any:
    """torch.load on the CPU under `weights_only=True` (tensors, dicts of tensors, state_dicts),
    with a clear error for a missing or unreadable file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch file ({type(e).__name__}: {str(e).strip()[:200]}); "
            "it may be truncated, or not written by torch.save."
        ) from None


def load_net(path: str | Path) -> nn.Module:
    """The trained net of a d2lexp checkpoint as a bare `nn.Module` (eval mode, CPU), no Lightning needed."""
    return net_from_checkpoint(load_checkpoint(path), path)


def net_from_checkpoint(checkpoint: dict[str, Any], source: str | Path) -> nn.Module:
    """The net of a loaded checkpoint (`load_checkpoint`), with its weights, in eval mode.

    The architecture is looked up in d2lexp's own registry (`d2lexp.nets`) by the model config
    saved in the checkpoint, whose settings must be plain values: nothing the file names is
    imported or called. The net is first built on the meta device (no memory) and its shapes
    checked against the stored weights, so a file cannot make the loader allocate more than the
    weights it holds.
    """
    from d2lexp.nets import rebuild

    config = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{source} holds no d2lexp config, so the architecture is unknown. {_HOW_TO_FIX}")
    prefix = "net."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in rebuild(config["model"], str(source)).state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if shapes != stored:
        different = sorted(set(shapes) ^ set(stored)) or [k for k in shapes if shapes[k] != stored[k]]
        raise CheckpointError(
            f"{source}: its weights do not fit the net its config describes (first difference: {different[0]}). "
            "The file may be damaged or altered."
        )
    net = rebuild(config["model"], str(source))
    net.load_state_dict(state)
    return net.eval()
