"""Reading and writing d2lexp checkpoints. A checkpoint is data: one may come from anyone, so
reading it is bounded at every step, before anything else touches it.

- The file must be the zip archive `torch.save` writes, whose entries inflate to at most a few
  times their stored size (`MAX_INFLATION`): a megabyte of compressed zeros never becomes gigabytes.
- It is unpickled under `weights_only=True`: tensors and plain values only, no code.
- What it holds is copied into a plain tree (dicts, lists, strings, numbers, tensors), bounded in
  nodes and depth (shared references cannot multiply it); every tensor is dense, on the CPU, and
  holds no more elements than its stored data (no stride-0 views that expand when touched).
- A net is rebuilt from d2lexp's registry (d2lexp.nets) by the settings the file stores, on the
  meta device, and abandoned the moment it would hold more values than the file's tensors do; its
  weights must then fit it exactly, and be finite.

Resuming restores more than weights, after checks against the run (d2lexp.resume).
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from d2lexp import files
from d2lexp.callbacks.run_config import CONFIG_KEY
from d2lexp.errors import CHECKPOINT_HOW_TO_FIX, CheckpointError
from d2lexp.trust import MAX_DEPTH, MAX_STRING, UntrustedFileError, read_yaml

_HOW_TO_FIX = CHECKPOINT_HOW_TO_FIX

# A zip entry may inflate to at most this many times its stored size (torch.save stores entries
# uncompressed: a ratio of 1), plus a little for tiny entries.
MAX_INFLATION = 4
_INFLATION_SLACK = 1 << 20
MAX_ENTRIES = 1_000_000  # tensors in one checkpoint
# Values of plain data a checkpoint may hold per byte of its pickle (each takes at least one opcode).
_NODES_PER_PICKLE_BYTE = 1
_NODE_SLACK = 10_000
_TENSOR_DTYPES = {
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
}  # fmt: skip
# Where `ckpt_path=last` looks: at most this many entries under the runs' folder, and the newest runs' settings.
_MAX_SCANNED = 200_000
_MAX_CANDIDATES = 100

# The settings that make a run what it is: a run resumed with `ckpt_path=last` must share them.
# (Where the data lives, how long to train and on which device may differ.)
DEFINING = ("model", "init", "data", "augment", "task", "optimizer", "scheduler", "seed")
_NOT_DEFINING = {"data.data_dir", "data.download", "data.on_device"}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def defining_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's defining settings (`DEFINING`), flattened to dotted keys, from its config as a
    container (interpolations unresolved, as Hydra records it in .hydra/config.yaml)."""
    flat = _flat({key: config.get(key) for key in DEFINING})
    return {k: v for k, v in flat.items() if k not in _NOT_DEFINING}


@functools.lru_cache(maxsize=256)
def _constructor_default(target: str, name: str) -> Any:
    """The default of argument `name` of the callable `target` names (a config's own `_target_`, from
    the user's conf/: trusted); `_NO_DEFAULT` where it has none."""
    import hydra.utils

    try:
        builder = hydra.utils.get_object(target)
        parameter = inspect.signature(builder).parameters.get(name)
    except (ImportError, AttributeError, ValueError, TypeError):
        return _NO_DEFAULT
    if parameter is None or parameter.default is parameter.empty:
        return _NO_DEFAULT
    default = parameter.default
    return list(default) if isinstance(default, tuple) else default


_NO_DEFAULT = object()


def setting_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys whose values differ between a recorded run's defining settings and this run's.
    One rule for settings added after a run was made: a setting the recorded run does not have
    counts as its constructor's default (so an older run matches a run that leaves the new setting
    at its default); a setting only the recorded run has is one this run no longer has."""
    differing = []
    for key, value in wanted.items():
        if key in recorded:
            if recorded[key] != value:
                differing.append(key)
            continue
        group, _, name = key.rpartition(".")
        if name == "_target_" and not any(k.startswith(f"{group}.") for k in recorded):
            continue  # a group the recorded run lacks as a whole: its settings alone decide
        target = wanted.get(f"{group}._target_")
        default = _constructor_default(target, name) if isinstance(target, str) and "." not in name else _NO_DEFAULT
        if default is _NO_DEFAULT or default != value:
            differing.append(key)
    return sorted(differing)


def _recorded_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The defining settings of the run that wrote `checkpoint`, as its run folder's
    .hydra/config.yaml records them (read as bounded data: d2lexp.trust.read_yaml), interpolations
    left unresolved (resolving a file's interpolations could run resolvers with side effects), so
    compare them with a config's unresolved settings. None if they cannot be read."""
    config_file = checkpoint.parent.parent / ".hydra" / "config.yaml"
    try:
        config = read_yaml(config_file)
    except (OSError, UnicodeDecodeError, UntrustedFileError):
        return None
    return defining_settings(config) if isinstance(config, dict) else None


def _differences(found: dict[str, Any], wanted: dict[str, Any], limit: int = 4) -> str:
    keys = setting_differences(found, wanted)
    shown = [f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} here" for k in keys[:limit]]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


def _last_checkpoints(root: Path, skip: Path | None) -> Iterator[Path]:
    """Every `<run>/checkpoints/last.ckpt` under `root` (links are not followed; at most
    `_MAX_SCANNED` entries are looked at)."""
    seen = 0
    for folder, subfolders, names in os.walk(root, followlinks=False):
        seen += len(subfolders) + len(names)
        if seen > _MAX_SCANNED:
            return
        here = Path(folder)
        if skip is not None and (here == skip or skip in here.parents):
            subfolders.clear()
            continue
        if here.name == "checkpoints" and "last.ckpt" in names and not (here / "last.ckpt").is_symlink():
            yield here / "last.ckpt"


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
        root, skip = Path(log_dir).expanduser(), Path(exclude).absolute() if exclude else None
        found = list(_last_checkpoints(root, skip))
        if not found:
            raise CheckpointError(
                f"ckpt_path=last: no run under {root} has a checkpoints/last.ckpt to resume from. "
                "Give the checkpoint file or the run folder instead (ckpt_path=outputs/<date>/<time>)."
            )
        newest_first = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
        if settings is None:
            return newest_first[0].absolute()
        for candidate in newest_first[:_MAX_CANDIDATES]:  # each costs a bounded YAML read
            recorded = _recorded_settings(candidate)
            if recorded is not None and not setting_differences(recorded, settings):
                return candidate.absolute()
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


# ------------------------------------------------------------------------------------------------
# Loading, bounded


def _check_archive(path: Path) -> int:
    """The size of the archive's pickle; CheckpointError for a file that is not torch.save's zip
    archive, whose entries would inflate past `MAX_INFLATION` times their stored size, or that is
    sparse (its length far beyond what it holds on disk: reading it would make up the difference)."""
    info = path.stat()
    on_disk = getattr(info, "st_blocks", None)
    if on_disk is not None and info.st_size > _INFLATION_SLACK and on_disk * 512 * MAX_INFLATION < info.st_size:
        raise CheckpointError(
            f"ckpt_path={path} is refused: it is {info.st_size:,} bytes long but holds only {on_disk * 512:,} on disk (a "
            "sparse file). torch.save writes no such file; this one was made to take memory when read, or was altered."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(
            f"ckpt_path={path} cannot be read as a checkpoint ({type(e).__name__}: {str(e)[:200]}): it is not the zip "
            f"archive torch.save writes (the file may be truncated, or not a PyTorch checkpoint). {_HOW_TO_FIX}"
        ) from None
    if len(entries) > MAX_ENTRIES:
        raise CheckpointError(f"ckpt_path={path} holds more than {MAX_ENTRIES:,} entries; it is not a checkpoint.")
    stored = sum(e.compress_size for e in entries)
    inflated = sum(e.file_size for e in entries)
    if inflated > MAX_INFLATION * stored + _INFLATION_SLACK:
        raise CheckpointError(
            f"ckpt_path={path} is refused: its {stored:,} stored bytes would inflate to {inflated:,} "
            f"(more than {MAX_INFLATION}x). torch.save writes checkpoints uncompressed; this file was not written by "
            "a d2lexp run, or was altered."
        )
    pickles = [e.file_size for e in entries if e.filename.endswith("data.pkl")]
    return max(pickles, default=0)


def _tensor_problem(tensor: torch.Tensor) -> str | None:
    if tensor.layout != torch.strided:
        return f"a {tensor.layout} tensor"
    if tensor.device.type != "cpu" or tensor.is_meta:
        return f"a tensor on the {tensor.device.type} device"
    if tensor.dtype not in _TENSOR_DTYPES or tensor.is_quantized:
        return f"a tensor of type {tensor.dtype}"
    if any(size < 0 for size in tensor.shape):
        return "a tensor of negative size"
    available = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    if tensor.numel() * tensor.element_size() > available:
        return f"a tensor of {tuple(tensor.shape)} values backed by only {max(available, 0):,} bytes"
    return None


def plain_tree(value: Any, source: str, max_nodes: int) -> Any:
    """`value` (an unpickled checkpoint) copied as a tree of dicts (string keys), lists, strings,
    numbers, booleans, None and checked tensors, at most `max_nodes` values and `MAX_DEPTH`... deep
    (a shared reference is copied each time it is met, so a file cannot multiply its size);
    CheckpointError for anything else."""
    budget = [max_nodes]

    def refuse(where: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"ckpt_path={source} is refused: {where or 'it'} holds {why}. A checkpoint holds tensors and plain values; "
            "this file was not written by a d2lexp run, or was altered."
        )

    def copy(node: Any, where: str, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise refuse("", f"more than {max_nodes:,} values for its size (shared references multiplied)")
        if depth > MAX_DEPTH * 2:
            raise refuse(where, f"data nested more than {MAX_DEPTH * 2} levels deep")
        if node is None or isinstance(node, (bool, int, float)):
            if isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 1 << 64:
                raise refuse(where, "a number too large for any counter or setting")
            return node
        if isinstance(node, str):
            if len(node) > MAX_STRING * 16:
                raise refuse(where, f"a string of {len(node):,} characters")
            return node
        if isinstance(node, torch.Tensor):
            problem = _tensor_problem(node)
            if problem:
                raise refuse(where, problem)
            return node.detach()
        if isinstance(node, (torch.dtype, torch.device, torch.Size)):
            return node
        if isinstance(node, dict):
            copied = {}
            for key, item in node.items():
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise refuse(where, f"a mapping keyed by a {type(key).__name__}")
                copied[key] = copy(item, f"{where}.{key}" if where else str(key), depth + 1)
            return copied
        if isinstance(node, (list, tuple)):
            items = [copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node)]
            return items if isinstance(node, list) else tuple(items)
        raise refuse(where, f"a {type(node).__name__}")

    return copy(value, "", 0)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file as checked plain data (see the module's docstring), on the CPU; one
    paragraph (CheckpointError) for a file that is missing, unreadable or refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist or is not a file. {_HOW_TO_FIX}")
    pickle_bytes = _check_archive(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"ckpt_path={path} cannot be read as a checkpoint ({type(e).__name__}: {reason[:200]}). "
            f"The file may be truncated or not a PyTorch checkpoint. {_HOW_TO_FIX}"
        ) from None
    checkpoint = plain_tree(loaded, str(path), pickle_bytes * _NODES_PER_PICKLE_BYTE + _NODE_SLACK)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"ckpt_path={path} is a PyTorch file but not a Lightning checkpoint. {_HOW_TO_FIX}")
    return checkpoint


# ------------------------------------------------------------------------------------------------
# Writing


class _WriteErrors:
    """A file's `write` and `flush`, remembering the OSError one raised: torch.save reports a
    failed write as a RuntimeError without its cause, so a full disk would read as a bug."""

    def __init__(self, file: IO[bytes]) -> None:
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
    """torch.save, atomically and durably, never through a link (d2lexp.files): a crash never
    leaves half a file where a good one was. A write that fails (a full disk, a read-only folder)
    raises the OSError that stopped it, with its errno, and leaves no partial file behind."""
    path = Path(path).expanduser()
    files.make_folder(path.parent)

    def write(file: IO[bytes]) -> None:
        writer = _WriteErrors(file)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise

    return files.write_atomic(path, write)


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


# ------------------------------------------------------------------------------------------------
# The net


def load_net(path: str | Path) -> nn.Module:
    """The trained net of a d2lexp checkpoint as a bare `nn.Module` (eval mode, CPU), no Lightning needed."""
    return net_from_checkpoint(load_checkpoint(path), path)


def net_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The net's tensors in a (checked) checkpoint, by their names in the net."""
    prefix = "net."
    return {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if isinstance(k, str) and k.startswith(prefix)
    }


def check_finite(weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """CheckpointError if a floating-point weight is NaN or infinite (a diverged run's)."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{source}: its weight {name} holds NaN or infinite values: the run that wrote it diverged, so its "
                "net computes nothing meaningful. Use a checkpoint from before it diverged (its best epoch's), or "
                "train again with a lower optimizer.lr."
            )


def net_from_checkpoint(checkpoint: dict[str, Any], source: str | Path) -> nn.Module:
    """The net of a loaded checkpoint (`load_checkpoint`), with its weights, in eval mode.

    The architecture is looked up in d2lexp's own registry (`d2lexp.nets`) by the model config
    saved in the checkpoint, whose settings must be plain values: nothing the file names is
    imported or called. The net is first built on the meta device, abandoned the moment it would
    hold more values than the file's tensors (`d2lexp.nets.rebuild`'s budget), and its shapes
    checked against the stored weights, which must be finite.
    """
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{source} holds no d2lexp config, so the architecture is unknown. {_HOW_TO_FIX}")
    state = net_weights(checkpoint)
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    _check_net_fits(config["model"], shapes, source)
    return _built_with(config["model"], state, source)


def _check_net_fits(model: Any, stored: dict[str, tuple[int, ...]], source: str | Path) -> dict[str, torch.dtype]:
    """CheckpointError unless the net the stored `model` settings describe, built on the meta device
    within the budget of the stored weights (`d2lexp.nets.rebuild`), has exactly their names and
    shapes; the dtypes of its tensors, by name."""
    from d2lexp.nets import rebuild

    budget = sum(math.prod(shape) for shape in stored.values())
    with torch.device("meta"):
        state = rebuild(model, str(source), budget, len(stored)).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != stored:
        different = sorted(set(shapes) ^ set(stored)) or [k for k in shapes if shapes[k] != stored[k]]
        raise CheckpointError(
            f"{source}: its weights do not fit the net its config describes (first difference: {different[0]}). "
            "The file may be damaged or altered."
        )
    return {k: v.dtype for k, v in state.items()}


def _built_with(model: Any, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """The net `model` describes, with the weights `state` (checked to fit it: `_check_net_fits`),
    which must be finite; in eval mode."""
    from d2lexp.nets import rebuild

    check_finite(state, source)
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    net = rebuild(model, str(source), sum(t.numel() for t in tensors), len(tensors))
    net.load_state_dict(state)
    return net.eval()


# ------------------------------------------------------------------------------------------------
# Exported nets: model.safetensors and model.json (d2lexp.export)

WEIGHTS_FILE = "model.safetensors"
SETTINGS_FILE = "model.json"
EXPORT_FORMAT = "d2lexp-net/1"  # what model.json's "format" says: its layout, for readers of other versions
MAX_SETTINGS_BYTES = 256 << 10  # model.json: a net's settings, input, preprocessing and class names are a few KB
MAX_SAFETENSORS_HEADER = 1 << 20  # a net of 10,000 tensors has a header of about 1 MB


def read_export_settings(folder: str | Path) -> dict[str, Any]:
    """An export folder's model.json as bounded plain data (d2lexp.trust.read_json); CheckpointError
    (one paragraph) for a file that is missing, too large, too deep, not JSON or not an export's."""
    from d2lexp.trust import read_json

    path = Path(folder).expanduser() / SETTINGS_FILE
    try:
        settings = read_json(path, limit=MAX_SETTINGS_BYTES)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path.parent} holds no {SETTINGS_FILE}: it is not a folder python -m d2lexp.export wrote."
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is refused: {str(e)[:300]}. It is not a model.json d2lexp wrote.") from None
    if not isinstance(settings, dict) or settings.get("format") != EXPORT_FORMAT or "model" not in settings:
        raise CheckpointError(
            f"{path} is refused: it is not the settings of a d2lexp export (format {EXPORT_FORMAT}, with the net's "
            "model settings). It was not written by python -m d2lexp.export, or was altered."
        )
    return settings


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensors' names and shapes a safetensors file declares, read without reading its data:
    its header's length first (at most `MAX_SAFETENSORS_HEADER`), within a regular file that is not
    sparse, then the header itself through the safetensors library, which checks every offset."""
    from safetensors import safe_open

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read: {e.strerror or e}.") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file (a FIFO, a device or a folder): it is not read.")
        _refuse_sparse(path, info)
        length = int.from_bytes(file.read(8).ljust(8, b"\0"), "little")
    if info.st_size < 8 or length > MAX_SAFETENSORS_HEADER or 8 + length > info.st_size:
        raise CheckpointError(
            f"{path} is refused: its header says it is {length:,} bytes long, in a file of {info.st_size:,} bytes "
            f"(d2lexp reads headers of at most {MAX_SAFETENSORS_HEADER:,}). It is not a safetensors file d2lexp "
            "wrote, or was altered."
        )
    try:
        with safe_open(str(path), framework="pt") as weights:
            return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
    except Exception as e:  # the library's own refusal (SafetensorError): a bad offset, dtype, or JSON
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise CheckpointError(f"{path} is refused by the safetensors reader: {reason}.") from None


def load_safetensors_net(folder: str | Path) -> nn.Module:
    """The net a `python -m d2lexp.export` folder holds, as a bare `nn.Module` (eval mode, CPU), from
    its model.safetensors and model.json only.

    Both files are data from outside, read as such: model.json as bounded JSON, whose `model` names
    a net of d2lexp's registry with plain settings (`d2lexp.nets`: nothing it names is imported or
    called); the net is built on the meta device within the budget of the weights the safetensors
    header declares (read first, bounded), and must have exactly their names and shapes before any
    weight is read; the weights are then read by the safetensors library (no pickle: nothing runs),
    must have the net's dtypes and be finite. CheckpointError (one paragraph) for anything else.
    """
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    settings = read_export_settings(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} holds no {WEIGHTS_FILE}: export the net with format=safetensors.")
    dtypes = _check_net_fits(settings["model"], _safetensors_shapes(path), path)
    try:
        state = load_file(str(path))
    except Exception as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise CheckpointError(f"{path} is refused by the safetensors reader: {reason}.") from None
    wrong = next((k for k, v in state.items() if v.dtype != dtypes[k]), None)
    if wrong is not None:
        raise CheckpointError(
            f"{path}: its tensor {wrong} is {state[wrong].dtype}, where the net has {dtypes[wrong]}. The file was "
            "not written by d2lexp, or was altered."
        )
    return _built_with(settings["model"], state, path)


def _refuse_sparse(path: Path, info: os.stat_result) -> None:
    """CheckpointError for a file far longer than what it holds on disk (a sparse file): reading it
    would make up the difference in memory."""
    on_disk = getattr(info, "st_blocks", None)
    if on_disk is not None and info.st_size > _INFLATION_SLACK and on_disk * 512 * MAX_INFLATION < info.st_size:
        raise CheckpointError(
            f"{path} is refused: it is {info.st_size:,} bytes long but holds only {on_disk * 512:,} on disk (a sparse "
            "file). d2lexp writes no such file; this one was made to take memory when read, or was altered."
        )
