"""d2lexp from Python (a notebook, a script): compose a run's config and run it, as the command line does.

    from d2lexp import compose, run

    cfg = compose("model=lenet", "trainer.max_epochs=2")   # the command line's overrides
    result = run(cfg)                                      # or run("model=lenet", "trainer.max_epochs=2")
    result["test/acc"], result.history, result.folder, result.net

A run started here is the command line's run: the same config (conf/, composed by Hydra's compose
API), the same checks of the overrides (a misspelt key is named), a new folder of its own under
`paths.log_dir` (`outputs/<date>/<time>/`, claimed: `<time>_2` when taken), with
`.hydra/config.yaml` and `.hydra/overrides.yaml` as Hydra writes them and the run's `train.log`, so
`python -m d2lexp ckpt_path=<that folder>` resumes it and `python -m d2lexp.report` reads it. In a
Jupyter kernel the book's figure (its Animator: loss and accuracy per epoch) is drawn under the
cell and redrawn in place as each epoch ends; elsewhere nothing is drawn but curves.png.

It may be called again and again in one process: Hydra's global state is set only inside the
compose call and cleared after it (HydraConfig is never set), the run's folder is released when it
ends (another process may resume it), and the logging it adds is removed.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from d2lexp.config import CONF_DIR, ComposedJob, composed_job
from d2lexp.errors import ConfigError
from d2lexp.overrides import command_line_problem, hydra_quoted, unknown_key_message, with_recorded_settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

log = logging.getLogger("d2lexp")

# What conf/paths/default.yaml leaves paths.output_dir to: the folder Hydra makes (here: run() claims one).
_HYDRA_OUTPUT_DIR = "${hydra:runtime.output_dir}"
_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # conf/hydra/job_logging/run.yaml's
LOG_FILE = "train.log"  # the command line's: Hydra names it after the job, d2lexp/train.py


@dataclasses.dataclass
class _Composition:
    """What compose() knows of a config it made, and Hydra would record: the overrides, the
    config-group choices, an explicit run folder (hydra.run.dir), and the config as composed (a
    config changed afterwards records its changes as overrides too)."""

    overrides: list[str]
    choices: dict[str, str]
    run_dir: str | None
    snapshot: Any


# compose()'s configs, by id, while they live (a DictConfig hashes by content, so no weak dictionary).
_compositions: dict[int, tuple[weakref.ref, _Composition]] = {}
_lock = threading.Lock()


def _remember(cfg: DictConfig, composition: _Composition) -> None:
    key = id(cfg)

    def forget(_: Any) -> None:
        with _lock:
            if key in _compositions and _compositions[key][0]() is None:
                del _compositions[key]

    with _lock:
        _compositions[key] = (weakref.ref(cfg, forget), composition)


def _composition_of(cfg: DictConfig) -> _Composition | None:
    with _lock:
        found = _compositions.get(id(cfg))
    return found[1] if found is not None and found[0]() is cfg else None


def _strings(overrides: Iterable[Any]) -> list[str]:
    """The overrides as strings; a list or tuple among them is spread (compose(["a=1", "b=2"]))."""
    flat: list[str] = []
    for item in overrides:
        if isinstance(item, (list, tuple)):
            flat += _strings(item)
        elif isinstance(item, str):
            flat.append(item)
        else:
            raise ConfigError(f'compose() takes overrides as strings ("model=lenet"), got a {type(item).__name__}.')
    return flat


def _hydra_value(override: str) -> str:
    """The value of a `key=value` override as Hydra reads it (a quoted path read back)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return str(OverridesParser.create().parse_overrides([override])[0].value()).replace("\\${", "${")


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """The config `python -m d2lexp <overrides>` would run: conf/ composed with the overrides
    (strings, or lists of them), after the command line's checks (a misspelt key is named, with
    the keys it may have meant). `ckpt_path=<run folder>` takes that run's own recorded settings
    first, as the command line does, and resumes it in its own folder. ConfigError (one
    paragraph) for an override that does not compose.

    Hydra is initialised only for the call, and cleared after it: compose and run may be called
    any number of times, and the command line still works in the same process.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = _strings(overrides)
    problem = command_line_problem(args)
    if problem:
        raise ConfigError(problem)
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise ConfigError(
            f"compose() takes overrides (key=value, group=option), not the command line's {flags[0]}. A sweep from "
            'Python is a loop: [run(f"model={m}") for m in ("lenet", "alexnet")]; or use python -m d2lexp -m ...'
        )
    args = with_recorded_settings(args)  # a resumed run's own settings first, and its folder (hydra.run.dir)
    run_dir = None
    kept = []
    for arg in args:
        key = arg.split("=", 1)[0]
        if key == "hydra.run.dir":
            run_dir = _hydra_value(arg)
        elif key.lstrip("+~").startswith("hydra"):
            raise ConfigError(
                f"{arg.split('=', 1)[0]}: Hydra's own settings are the command line's. From Python a run goes into a "
                "new folder under paths.log_dir (paths.log_dir=/some/folder), or into paths.output_dir=<a new folder>."
            )
        else:
            kept.append(arg)
    message = unknown_key_message(config_name, kept)
    if message:
        raise ConfigError(message)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train"):
            cfg = hydra_compose(config_name=config_name, overrides=kept, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise ConfigError(" ".join(str(e).split()) or type(e).__name__) from None
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra") and v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    _remember(cfg, _Composition(kept, choices, run_dir, OmegaConf.to_container(cfg, resolve=False)))
    return cfg


def _value(value: Any) -> str:
    """A config value as a Hydra override's value that reads back as it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # an interpolation stays one; any other text is taken literally
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" if "${" in value else hydra_quoted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    return hydra_quoted(str(value))


def _edits(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """The overrides that make config `before` into `after` (both containers, unresolved)."""
    found = []
    for key, value in after.items():
        path = f"{prefix}{key}"
        if key not in before:
            found.append(f"+{path}={_value(value)}")
        elif isinstance(before[key], dict) and isinstance(value, dict):
            found += _edits(before[key], value, f"{path}.")
        elif before[key] != value:
            found.append(f"{path}={_value(value)}")
    found += [f"~{prefix}{key}" for key in before if key not in after]
    return found


def in_notebook() -> bool:
    """Whether this is a Jupyter kernel (IPython with a kernel: the figures can be drawn inline)."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it already
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _inline_curves(title: str) -> Any:
    """A callback drawing the book's figure under the notebook's cell, updated in place at each
    epoch's end (as the book's Animator does), from the run's own epoch history."""
    import lightning.pytorch as pl

    from d2lexp.callbacks.history import EpochHistory

    class InlineCurves(pl.Callback):
        def __init__(self) -> None:
            self.handle: Any = None

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            # The history tells its listener of each epoch once every metric of it is logged: this
            # figure listens beside the run's record (EpochHistory runs after callbacks given first).
            history = next((c for c in trainer.callbacks if isinstance(c, EpochHistory)), None)
            if history is None:
                return
            previous = history.on_epoch

            def on_epoch(row: dict[str, float], columns: dict[str, list]) -> None:
                if previous is not None:
                    previous(row, columns)
                self.draw(columns)

            history.on_epoch = on_epoch

        def draw(self, columns: dict[str, list]) -> None:
            from IPython.display import Image, display

            from d2lexp.plotting import curves_figure

            image = Image(data=figure_png(curves_figure(columns, title)), format="png")
            if self.handle is None:
                self.handle = display(image, display_id=True)
            else:
                self.handle.update(image)

    return InlineCurves()


def _net_keeper() -> Any:
    """A callback that keeps the run's net (trained in place) for the result."""
    import lightning.pytorch as pl

    class KeepNet(pl.Callback):
        net: Any = None

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.net = getattr(pl_module, "net", None)

    return KeepNet()


@contextmanager
def _run_logging(folder: Path) -> Iterator[None]:
    """The run's log as the command line's (conf/hydra/job_logging/run.yaml): every record in the
    run's train.log, and on the console (progress on stdout, warnings on stderr) unless the caller
    has handlers of its own; control characters escaped. All of it removed afterwards."""
    from d2lexp.console import BelowWarnings, EscapeArguments, EscapingFormatter, RunLogFile

    root = logging.getLogger()
    handlers: list[logging.Handler] = [RunLogFile(str(folder / LOG_FILE))]
    if not root.handlers:
        out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
        out.addFilter(BelowWarnings())
        err.setLevel(logging.WARNING)
        handlers += [out, err]
    for handler in handlers:
        handler.setFormatter(EscapingFormatter(_LOG_FORMAT))
        handler.addFilter(EscapeArguments())
        root.addHandler(handler)
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


@dataclasses.dataclass
class RunResult:
    """What a run left: its record (metrics.json's content: status, final metrics, history, ...),
    its folder, and its trained net (on the CPU, in eval mode). `result["test/acc"]` reads the record."""

    record: dict[str, Any]
    folder: Path
    net: nn.Module | None
    config: DictConfig

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def history(self) -> dict[str, list]:
        """Per epoch: {"epoch": [0, 1, ...], "train/loss": [...], "val/acc": [...], ...}."""
        return self.record.get("history") or {}

    @property
    def metrics(self) -> dict[str, float]:
        """The final metrics: train/..., val/..., test/..."""
        return {
            k: v
            for k, v in self.record.items()
            if k.startswith(("train/", "val/", "test/")) and isinstance(v, (int, float))
        }

    @property
    def pictures(self) -> dict[str, Path]:
        """The run's pictures by name (curves, predictions, confusion, misclassified, ...)."""
        return {p.stem: p for p in sorted(self.folder.glob("*.png"))}

    def curves(self) -> Figure:
        """The book's figure of the run (as curves.png)."""
        from d2lexp.plotting import curves_figure

        return curves_figure(self.history, str(self.record.get("model", "")))

    def __repr__(self) -> str:
        from d2lexp.record.metrics import summary_line

        return f"RunResult({summary_line(self.record)} -> {self.folder})"


def run(config: DictConfig | str | None = None, *overrides: str, show: bool | None = None) -> RunResult:
    """Train and test the run `config` describes (a config from `compose`, or overrides as
    `compose` takes them; nothing: the book's LeNet), exactly as `python -m d2lexp` would, into a new
    folder of its own; return what it left (`RunResult`).

    `show`: draw the book's figure under the notebook cell, updated at each epoch's end (None: when
    running in a Jupyter kernel). A config changed after `compose` runs as it is, and its changes are
    recorded as overrides (`.hydra/overrides.yaml`), so that resuming it composes it again. A run
    that cannot start or fails raises d2lexp's error (D2lexpError: one paragraph), its folder
    saying how it ended.
    """
    from d2lexp.run_folder import claim, holds_a_run, release, resumes_folder
    from d2lexp.train import train

    if config is None or isinstance(config, str):
        cfg = compose(*([config] if config is not None else []), *overrides)
    elif overrides:
        raise ConfigError("run(cfg) runs a composed config as it is: put further overrides into compose(...).")
    elif isinstance(config, DictConfig):
        cfg = config
    else:
        raise ConfigError(
            f"run() takes a config from compose(), or overrides as strings; got a {type(config).__name__}."
        )
    composition = _composition_of(cfg)
    if composition is None:
        log.warning(
            "This config was not made by d2lexp.compose(): its run records no overrides (.hydra/overrides.yaml is "
            "empty), so resuming it needs its settings given again."
        )
        composition = _Composition([], {}, None, OmegaConf.to_container(cfg, resolve=False))
    current = OmegaConf.to_container(cfg, resolve=False)
    recorded = composition.overrides + _edits(composition.snapshot, current)

    # The run's folder, claimed as Hydra's resolver claims the command line's (d2lexp.run_folder).
    named = current.get("paths", {}).get("output_dir") if isinstance(current.get("paths"), dict) else None
    explicit = str(cfg.paths.output_dir) if named not in (None, _HYDRA_OUTPUT_DIR) else composition.run_dir
    if explicit is not None:
        folder = Path(explicit).expanduser()
        resuming = resumes_folder(cfg.get("ckpt_path"), folder) and holds_a_run(folder)
        folder = claim(folder, suffix_on_collision=False, resuming=resuming)
    else:
        now = datetime.now()
        resuming = False
        folder = claim(
            Path(str(cfg.paths.log_dir)).expanduser() / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S"),
            suffix_on_collision=True,
        )
    folder = folder.absolute()
    try:
        cfg = copy.deepcopy(cfg)  # the caller's config stays as it was: run(cfg) again makes another run
        with open_dict(cfg):
            cfg.paths.output_dir = str(folder)
        _write_hydra_files(folder, cfg, recorded, resuming)
        keeper = _net_keeper()
        callbacks = [keeper]
        if show or (show is None and in_notebook()):
            callbacks.append(_inline_curves(composition.choices.get("model", "")))
        token = composed_job.set(ComposedJob(dict(composition.choices), list(recorded)))
        try:
            with _run_logging(folder):
                record = train(cfg, callbacks=callbacks)
        finally:
            composed_job.reset(token)
    finally:
        release(folder)
    net = keeper.net.cpu().eval() if keeper.net is not None else None
    return RunResult(record, folder, net, cfg)


def _write_hydra_files(folder: Path, cfg: DictConfig, overrides: list[str], resuming: bool) -> None:
    """`.hydra/config.yaml` and `.hydra/overrides.yaml` as Hydra writes them (a resumed run's in
    `.hydra/resume_N/`, as d2lexp.run_folder.RunFolderCheck places them), never through a link."""
    from d2lexp import files

    subdir = folder / ".hydra"
    if resuming and subdir.is_dir():
        number = 1
        while (subdir / f"resume_{number}").exists():
            number += 1
        subdir = subdir / f"resume_{number}"
    files.make_folder(subdir)
    files.write_text(subdir / "config.yaml", OmegaConf.to_yaml(cfg))
    files.write_text(subdir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


@dataclasses.dataclass
class Comparison:
    """Runs side by side in the sweep report's table (d2lexp.report): shown as Markdown in a
    notebook, as text elsewhere. `rows`: one per run, as the report reads its folder."""

    rows: list[dict[str, Any]]

    def _repr_markdown_(self) -> str:
        from d2lexp.report import markdown_table

        return markdown_table(self.rows)

    def __str__(self) -> str:
        from d2lexp.report import console_text, markdown_table

        return markdown_table(self.rows, console_text)

    __repr__ = __str__


def compare(*runs: RunResult | str | Path) -> Comparison:
    """The sweep report's table of the given runs (results of `run`, or run folders)."""
    from d2lexp.report import collect_runs

    folders = [r.folder if isinstance(r, RunResult) else Path(r) for r in runs]
    return Comparison(collect_runs(folders))
