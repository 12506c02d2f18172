"""A trained net as standard files, for use outside d2lexp:

    python -m d2lexp.export ckpt_path=outputs/<date>/<time>            # a run folder: its last checkpoint
    python -m d2lexp.export ckpt_path=<run or .ckpt> format=onnx       # or safetensors, torch_export, a list

Everything goes into a folder of the export's own, outputs/export/<date>/<time>/ (claimed, as an
eval's; the run's own files are not touched):

- model.safetensors: the weights (safetensors: a JSON header and raw tensors, no code). d2lexp
  reads it back with d2lexp.checkpoint.load_safetensors_net(folder), through its registry.
- model.json: the net's registry name and plain settings, its input (shape, dtype, and how an
  image is prepared for it: size, scaling, normalisation) and its class names.
- model.onnx: the net as an ONNX graph (torch.onnx's dynamo exporter), any batch size.
- model.pt2: the net as a torch.export program (torch.export.save), any batch size.
- export.json: what was written, and each file checked against the net: the largest difference
  of their outputs on `check_examples` inputs (ONNX through ONNX Runtime, when it is installed).

The checkpoint is read as data (d2lexp.checkpoint: bounded, weights only, the net rebuilt from
d2lexp's registry) and the run's inputs from its recorded settings (d2lexp.overrides), as an eval
reads them. Nothing read from a file runs. ONNX needs `pip install 'd2lexp[export]'` (onnx,
onnxscript, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from d2lexp.cli import Command, checkpoint_tool_line, fail, guarded
from d2lexp.config import CONFIG_PATH
from d2lexp.console import printable
from d2lexp.errors import ConfigError, D2lexpError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from d2lexp.data.base import DataModule

log = logging.getLogger("d2lexp")

FORMATS = ("safetensors", "onnx", "torch_export")
GRAPH_FILES = {"onnx": "model.onnx", "torch_export": "model.pt2"}
EXPORT_FILE = "export.json"
# What the ONNX exporter needs (the `export` extra); ONNX Runtime only checks what it wrote.
ONNX_PACKAGES = ("onnx", "onnxscript")


class ExportError(D2lexpError):
    """A net that cannot be exported in a format asked for (one paragraph: why, and what was written)."""


def requested_formats(value: Any) -> list[str] | None:
    """The formats a `format` setting asks for; None for `all`. ConfigError for an unknown one."""
    values = [value] if isinstance(value, str) else list(value or [])
    if [str(v) for v in values] == ["all"]:
        return None
    unknown = [str(v) for v in values if v not in FORMATS]
    if unknown or not values:
        raise ConfigError(
            f"format={printable(unknown[0] if unknown else '[]')!s} is not one d2lexp exports: give all, or one or a "
            f"list of {', '.join(FORMATS)} (format=onnx, format=[safetensors,torch_export])."
        )
    return list(dict.fromkeys(str(v) for v in values))


def missing_onnx_packages() -> list[str]:
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def net_settings(checkpoint: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The net's registry name and its settings, as d2lexp.nets checks them (plain values only)."""
    from d2lexp.callbacks.run_config import CONFIG_KEY
    from d2lexp.nets import checked_net_config

    model = (checkpoint.get(CONFIG_KEY) or {}).get("model")
    _, arguments = checked_net_config(model, str(source))
    return {"_target_": model["_target_"], **arguments}


def input_description(data: DataModule, example: torch.Tensor) -> dict[str, Any]:
    """What the net takes, for model.json: its input's shape (the batch free) and dtype, and for image
    data how an image becomes that input (as the run's data module prepared its own)."""
    from d2lexp.data.images import ImageDataModule

    described: dict[str, Any] = {
        "name": input_name(example),
        "shape": ["batch", *example.shape[1:]],
        "dtype": str(example.dtype).removeprefix("torch."),
    }
    if isinstance(data, ImageDataModule):
        channels, height, width = data.image_shape
        transform = data.transform
        described["preprocessing"] = {
            "image": {"mode": "grayscale" if channels == 1 else "RGB", "height": height, "width": width},
            "scale": "pixel values / 255, to [0, 1]",
            "normalize": {"mean": transform.mean, "std": transform.std} if transform.mean is not None else None,
            "resize": (
                {"size": transform.resize, "mode": "bilinear, antialiased when shrinking"} if transform.resize else None
            ),
        }
    return described


def input_name(example: torch.Tensor) -> str:
    return "images" if example.dim() == 4 else "inputs"


def check_inputs(data: DataModule, count: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """`count` inputs to compare the exported files with the net on, made like the data's own (random
    pixels for images, prepared as the run's data prepares its batches), and what they are."""
    import torch

    raw = data.example_input()
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *raw.shape[1:])
    if raw.dtype == torch.uint8:
        batch, what = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator), "random images"
    elif raw.is_floating_point():
        batch, what = torch.rand(shape, generator=generator, dtype=raw.dtype), "random inputs in [0, 1)"
    else:
        batch, what = raw.expand(shape).clone(), "copies of the data's example input"
    return data.on_after_batch_transfer(batch, 0), f"{count} {what}, prepared as the run's data"


def _first_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _largest_difference(a: Any, b: Any) -> float:
    import torch

    return float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(error).__name__


def write_safetensors(net: nn.Module, folder: Path, inputs: torch.Tensor, expected: torch.Tensor) -> dict[str, Any]:
    """model.safetensors, read back through the loader users take (load_safetensors_net) and checked."""
    import torch
    from safetensors.torch import save

    from d2lexp import files
    from d2lexp.checkpoint import EXPORT_FORMAT, WEIGHTS_FILE, load_safetensors_net

    # Copies: safetensors refuses tensors that share memory (a tied net's), and each name gets its own.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    path = files.write_bytes(folder / WEIGHTS_FILE, save(tensors, metadata={"format": "pt", "d2lexp": EXPORT_FORMAT}))
    with torch.no_grad():
        reloaded = _first_output(load_safetensors_net(folder)(inputs))
    return {"file": WEIGHTS_FILE, "bytes": path.stat().st_size, "max_abs_diff": _largest_difference(reloaded, expected)}


def _batch_dimension() -> tuple[dict[int, Any], ...]:
    """The first dimension of the net's one input, free: the exported graphs take any batch size."""
    import torch

    return ({0: torch.export.Dim("batch", min=1)},)


def write_onnx(net: nn.Module, folder: Path, example: torch.Tensor, inputs: torch.Tensor, expected: torch.Tensor,
               output_name: str) -> dict[str, Any]:  # fmt: skip
    """model.onnx through torch.onnx's dynamo exporter, any batch size; checked with ONNX Runtime
    when it is installed."""
    import torch

    from d2lexp import files

    missing = missing_onnx_packages()
    if missing:
        raise ExportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'd2lexp[export]' (or leave it out: "
            "format=[safetensors,torch_export])."
        )
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their passes log each step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                net, (example,), dynamo=True, input_names=[input_name(example)], output_names=[output_name],
                dynamic_shapes=_batch_dimension(), verbose=False, report=False,
            )  # fmt: skip
    except Exception as e:  # the exporter's errors are of many kinds; each is this net's, not the user's input
        raise ExportError(f"torch.onnx could not export {type(net).__name__}: {_reason(e)}") from None
    model = program.model_proto
    data = model.SerializeToString()
    path = files.write_bytes(folder / GRAPH_FILES["onnx"], data)
    record: dict[str, Any] = {
        "file": GRAPH_FILES["onnx"],
        "bytes": path.stat().st_size,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }
    if importlib.util.find_spec("onnxruntime") is None:
        record["checked"] = "not checked: onnxruntime is not installed"
        return record
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (output, *_) = session.run(None, {input_name(example): inputs.cpu().numpy()})
    record["max_abs_diff"] = _largest_difference(output, expected)
    return record


def write_torch_export(net: nn.Module, folder: Path, example: torch.Tensor, inputs: torch.Tensor,
                       expected: torch.Tensor) -> dict[str, Any]:  # fmt: skip
    """model.pt2: the torch.export program (any batch size), checked as exported."""
    import torch

    from d2lexp import files

    try:
        program = torch.export.export(net, (example,), dynamic_shapes=_batch_dimension())
    except Exception as e:  # as for ONNX: the tracer's errors are this net's
        raise ExportError(f"torch.export could not export {type(net).__name__}: {_reason(e)}") from None
    path = files.write_atomic(folder / GRAPH_FILES["torch_export"], lambda file: torch.export.save(program, file))
    with torch.no_grad():
        output = _first_output(program.module()(inputs))
    return {
        "file": GRAPH_FILES["torch_export"],
        "bytes": path.stat().st_size,
        "max_abs_diff": _largest_difference(output, expected),
    }


def export_net(
    net: nn.Module,
    folder: str | Path,
    data: DataModule,
    settings: dict[str, Any],
    formats: Sequence[str] | None = None,
    check_examples: int = 64,
) -> dict[str, Any]:
    """Write `net` into `folder` in `formats` (None: all the net allows) with model.json, whose
    `model` is its registry `settings`; return the export's record (what was written, and how
    close each file's outputs came to the net's). ExportError, after the others are written, for a
    format the net cannot take."""
    import torch

    from d2lexp import files
    from d2lexp.checkpoint import EXPORT_FORMAT, SETTINGS_FILE

    net = net.cpu().eval()
    example = data.model_input().cpu()
    example = example.expand(2, *example.shape[1:]).clone()  # a batch of 2: the exporters keep the batch free
    with torch.no_grad():
        one_output = isinstance(net(example), torch.Tensor)  # a language model's is (logits, state)
    asked = list(formats) if formats is not None else None
    if asked is None:
        asked = list(FORMATS) if one_output else ["safetensors"]
        if not one_output:
            log.info("%s returns more than one tensor: its weights are exported, not its graph.", type(net).__name__)
    graphs = [f for f in asked if f in GRAPH_FILES]
    if graphs and not one_output:
        raise ExportError(
            f"{type(net).__name__} returns more than one tensor (a language model's logits and state): d2lexp exports "
            f"the graphs of nets that map one tensor to one ({', '.join(graphs)} asked). Export its weights: "
            "format=safetensors."
        )
    if "onnx" in asked and missing_onnx_packages():
        raise ExportError(
            f"ONNX export needs {' and '.join(missing_onnx_packages())}: pip install 'd2lexp[export]' (or leave it "
            "out: format=[safetensors,torch_export])."
        )
    folder = files.make_folder(folder)
    output_name = "logits" if data.num_classes is not None else "outputs"
    inputs, what = check_inputs(data, check_examples)
    with torch.no_grad():
        expected = _first_output(net(inputs))
    described = {
        "format": EXPORT_FORMAT,
        "model": settings,
        "input": input_description(data, example),
        "output": {"name": output_name, "shape": ["batch", *expected.shape[1:]]},
        "classes": list(data.class_names) if data.class_names else None,
    }
    files.write_text(folder / SETTINGS_FILE, json.dumps(described, indent=2) + "\n")
    writers: dict[str, Callable[[], dict[str, Any]]] = {
        "safetensors": lambda: write_safetensors(net, folder, inputs, expected),
        "onnx": lambda: write_onnx(net, folder, example, inputs, expected, output_name),
        "torch_export": lambda: write_torch_export(net, folder, example, inputs, expected),
    }
    record: dict[str, Any] = {"settings": SETTINGS_FILE, "checked_on": what, "formats": {}}
    failed = []
    for name in asked:
        try:
            record["formats"][name] = writers[name]()
        except ExportError as e:
            record["formats"][name] = {"error": str(e)}
            failed.append(str(e))
    files.write_text(folder / EXPORT_FILE, json.dumps(record, indent=2) + "\n")
    if failed:
        written = [n for n in asked if "error" not in record["formats"][n]]
        raise ExportError(
            f"{' '.join(failed)} Written into {folder}: {', '.join(written) or 'nothing but model.json'}."
        )
    return record


def export(cfg: DictConfig) -> dict[str, Any]:
    """The export `cfg` describes (conf/export.yaml): the checkpoint's net, written into the export's
    folder; its record (also in export.json)."""
    from d2lexp import build, files
    from d2lexp.checkpoint import find_checkpoint, load_checkpoint, net_from_checkpoint
    from d2lexp.console import quiet_lightning
    from d2lexp.train import hydra_choices

    quiet_lightning()
    formats = requested_formats(cfg.format)
    if not isinstance(cfg.check_examples, int) or not 1 <= cfg.check_examples <= 10_000:
        raise ConfigError(f"check_examples must be a whole number from 1 to 10000, got {cfg.check_examples!r}.")
    start = time.perf_counter()
    path = find_checkpoint(cfg.ckpt_path, cfg.paths.log_dir)
    checkpoint = load_checkpoint(path)
    net = net_from_checkpoint(checkpoint, path)
    data = build.data(cfg)
    build.check_net_takes_data(net, data.model_input())  # the run's data settings against the net: before writing
    folder = Path(cfg.paths.output_dir)
    record = {
        "status": "done",
        "checkpoint": str(path),
        "model": hydra_choices().get("model", type(net).__name__.lower()),
        **export_net(net, folder, data, net_settings(checkpoint, path), formats, cfg.check_examples),
        "seconds": time.perf_counter() - start,
    }
    files.write_text(folder / EXPORT_FILE, json.dumps(record, indent=2) + "\n")
    checks = ", ".join(
        f"{name} {entry['max_abs_diff']:.1e}" for name, entry in record["formats"].items() if "max_abs_diff" in entry
    )
    log.info(
        "%s: exported %s -> %s (largest output difference from the net, on %s: %s)",
        record["model"], ", ".join(record["formats"]), folder, record["checked_on"], checks or "none checked",
    )  # fmt: skip
    return record


COMMAND = Command(
    script="d2lexp-export",
    module="d2lexp.export",
    purpose="a trained net as standard files (safetensors weights, ONNX, a torch.export program), each checked "
    "against the net, into a folder of its own.",
    usage="d2lexp-export ckpt_path=<run folder or .ckpt> [format=...] [key=value ...]",
    options=(
        ("ckpt_path=PATH", "a run folder (its last checkpoint), a .ckpt file, or last (the newest run's); required"),
        ("format=NAME", "all (default), safetensors, onnx or torch_export, or a list: format=[safetensors,onnx]"),
        ("check_examples=N", "inputs each exported file is checked on against the net (default 64)"),
    ),
    examples=(
        (
            "d2lexp-export ckpt_path=outputs/2026-11-30/12-00-00",
            "everything the net allows: outputs/export/<date>/<time>",
        ),
        ("d2lexp-export ckpt_path=last format=safetensors", "the newest run's weights only"),
    ),
)
WHICH = "Which checkpoint? Give a run folder or a .ckpt file: python -m d2lexp.export ckpt_path=outputs/<date>/<time>"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    if not cfg.ckpt_path:
        fail(WHICH)
    guarded(lambda: export(cfg))


def main() -> None:
    """`python -m d2lexp.export` and `d2lexp-export`: the run's own settings under the command's."""
    sys.argv[1:] = checkpoint_tool_line(COMMAND, "export", WHICH)
    hydra_main()


if __name__ == "__main__":
    main()
