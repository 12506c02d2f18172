"""Every option of every config group composes and instantiates; bad overrides fail clearly."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
)
from omegaconf import OmegaConf
from torch import nn

from d2lexp import build
from d2lexp.callbacks.averaging import EMA
from d2lexp.callbacks.history import EpochHistory
from d2lexp.callbacks.predictions import ClassifierPictures
from d2lexp.callbacks.resume import RandomState
from d2lexp.callbacks.run_config import RunConfigInCheckpoint
from d2lexp.callbacks.samples import LogSampleImages
from d2lexp.callbacks.throughput import Throughput
from d2lexp.callbacks.vision import VisionPictures
from d2lexp.config import CONF_DIR, SCHEMAS, schema_of
from d2lexp.measure import meta_model

CONF = Path(CONF_DIR)


def options(group: str) -> list[str]:
    root = CONF / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def test_the_default_run_is_the_books_lenet(make_cfg):
    """`python -m d2lexp` with nothing else: the book's LeNet recipe (d2l ch. 7.6), lr 0.9 included."""
    cfg = make_cfg()
    assert cfg.model._target_.endswith("LeNet") and cfg.data._target_.endswith("FashionMNISTDataModule")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.9 and cfg.data.batch_size == 256
    assert cfg.trainer.max_epochs == 10 and cfg.init._target_.endswith("xavier_uniform")


# Models that do not take Fashion-MNIST images, and the data they go with.
MODEL_DATA = {
    "linreg": "synthetic_regression", "linreg_scratch": "synthetic_regression", "edge_kernel_scratch": "edge_detection",
    "sequence_mlp": "sine", **{f"{cell}{kind}": "time_machine" for cell in ("rnn", "gru", "lstm") for kind in ("", "_scratch")},
}  # fmt: skip


# The vision chapter's dense predictors and an input (C, H, W) of their data: Fashion-MNIST canvases
# (TinySSD, the small FCN), the book's 320x480 VOC crops (FCN).
DENSE_INPUTS = {"tiny_ssd": (1, 64, 64), "fcn": (3, 320, 480), "fcn_small": (1, 64, 64)}


@pytest.mark.parametrize("option", options("model"))
def test_model_options(make_cfg, option):
    cfg = make_cfg("~experiment", f"model={option}", f"data={MODEL_DATA.get(option, 'fashion_mnist')}")
    net = meta_model(
        lambda: build.net(cfg, start=False)
    )  # shapes only (no trained weights fetched): the big CNNs cost nothing
    if option in DENSE_INPUTS:
        example = torch.empty(1, *DENSE_INPUTS[option], device="meta")
    else:
        example = build.data(cfg).model_input().to("meta")  # at the resolution the model is built for
    output = net(torch.cat([example, example]))
    if option == "tiny_ssd":  # anchors, class scores and box offsets per anchor
        anchors, class_scores, offsets = output
        assert class_scores.shape == (2, anchors.shape[1], cfg.model.num_classes + 1)
        assert offsets.shape == (2, 4 * anchors.shape[1])
        return
    if option in DENSE_INPUTS:  # a class map per pixel
        assert output.shape == (2, cfg.model.num_classes, *DENSE_INPUTS[option][1:])
        return
    output = output[0] if isinstance(output, tuple) else output  # language models also return their state
    assert output.shape[0] == 2
    if "num_classes" in cfg.model:
        assert output.shape == (2, cfg.model.num_classes)


def weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))])


INIT_CHECKS = {  # what each option leaves in LeNet's weights
    "constant": lambda w: bool((w == 1.0).all()),
    "d2l_custom": lambda w: bool(((w == 0) | (w.abs() >= 5)).all()) and (w != 0).any() and (w == 0).any(),
    "normal": lambda w: abs(float(w.std()) - 0.01) < 0.001 and abs(float(w.mean())) < 0.001,
    "pytorch": lambda w: (
        float(w.abs().max()) <= 1 / 5**0.5 + 1e-6
    ),  # Kaiming-uniform: |w| <= 1/sqrt(fan_in), fan_in >= 5*5
    "xavier_uniform": lambda w: float(w.abs().max()) <= (6 / (120 + 84)) ** 0.5 * 2 and float(w.std()) > 0.01,
}


@pytest.mark.parametrize(
    "option", [o for o in options("init") if o not in ("from_run", "torchvision")]
)  # tests/test_finetune.py
def test_init_options(make_cfg, option):
    assert INIT_CHECKS[option](weights(build.net(make_cfg(f"init={option}")))), option


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_options(make_cfg, option):
    cfg = make_cfg(f"optimizer={option}")
    task = build.task(cfg, build.net(cfg))
    assert isinstance(task.configure_optimizers(), torch.optim.Optimizer)


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(make_cfg, option):
    cfg = make_cfg(f"scheduler={option}")
    task = build.task(cfg, build.net(cfg))
    if task.scheduler.total_steps_arg:  # a schedule over the run: its length comes from a trainer (tests/tasks)
        optimizer = task.optimizer_factory(task.net.parameters())
        assert task.scheduler.factory(optimizer, **{task.scheduler.total_steps_arg: 100}).total_steps == 100
        return
    config = task.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Optimizer) and config["lr_scheduler"]["scheduler"]


@pytest.mark.parametrize("option", options("data"))
def test_data_options(make_cfg, option):
    model = next((m for m, d in MODEL_DATA.items() if d == option), "lenet")  # a model whose recipe fits the data
    data = build.data(make_cfg(f"model={model}", f"data={option}"))
    assert isinstance(data, pl.LightningDataModule) and data.example_input().shape[0] == 1


@pytest.mark.parametrize("option", [o for o in options("trainer") if o not in ("slurm", "slurm_cpu", "gpu", "ddp")])
def test_trainer_options(make_cfg, option):
    cfg = make_cfg(f"trainer={option}")
    assert isinstance(build.trainer(cfg, [], []), pl.Trainer)


@pytest.mark.parametrize(
    "launcher, trainer, tasks, accelerator",
    [("slurm", "slurm", "hydra.launcher.gpus_per_node=4", "gpu"),
     ("slurm_cpu", "slurm_cpu", "hydra.launcher.tasks_per_node=4", "cpu")],
)  # fmt: skip
def test_slurm_trainer_follows_the_launcher(data_dir, tmp_path, launcher, trainer, tasks, accelerator):
    """trainer=slurm (slurm_cpu) takes its devices and nodes from hydra/launcher=slurm (slurm_cpu):
    one task per GPU (per process)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            f"hydra/launcher={launcher}", f"trainer={trainer}", "hydra.launcher.nodes=2", tasks,
            f"paths.output_dir={tmp_path}", "hydra.sweep.dir=sweep", "hydra.job.num=0",
        ])  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    try:
        assert cfg.hydra.launcher.tasks_per_node == 4 and cfg.hydra.launcher._target_.endswith("SlurmLauncher")
        assert cfg.trainer.devices == 4 and cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp"
        assert cfg.trainer.accelerator == accelerator
    finally:
        HydraConfig.instance().cfg = None  # the tests after this one run outside Hydra, as before it


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options(make_cfg, option):
    assert build.loggers(make_cfg(f"logger={option}"))


# The callbacks every run adds for its record and exact resumption (build.record_callbacks).
RECORD_TYPES = (Throughput, EpochHistory, RandomState, RunConfigInCheckpoint)
CALLBACKS = {  # the configured ones of each option; every run adds the record's (RECORD_TYPES)
    "default": [ModelCheckpoint] * 3
    + [RichModelSummary, RichProgressBar, LearningRateMonitor, LogSampleImages, ClassifierPictures, VisionPictures],
    "early_stopping": [ModelCheckpoint] * 3
    + [
        RichModelSummary,
        RichProgressBar,
        LearningRateMonitor,
        LogSampleImages,
        ClassifierPictures,
        VisionPictures,
        EarlyStopping,
    ],
    "ema": [ModelCheckpoint] * 3
    + [
        RichModelSummary,
        RichProgressBar,
        LearningRateMonitor,
        LogSampleImages,
        ClassifierPictures,
        VisionPictures,
        EMA,
    ],
    "none": [],
}


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_options(make_cfg, option):
    built = build.callbacks(make_cfg(f"callbacks={option}", quiet=False))
    record = [type(c) for c in built if isinstance(c, RECORD_TYPES)]
    configured = [c for c in built if not isinstance(c, RECORD_TYPES) and type(c).__module__ != "d2lexp.speed.autotune"]
    assert sorted(record, key=str) == sorted(RECORD_TYPES, key=str)
    assert len(configured) == len(CALLBACKS[option])
    assert all(isinstance(c, kind) for c, kind in zip(configured, CALLBACKS[option]))


# Presets that need a setting only the user can give: d2l/finetune starts from a run (its from-scratch twin here).
PRESET_NEEDS = {"d2l/finetune": ["init.ckpt_path=null"]}


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_presets_compose_and_build(make_cfg, option):
    cfg = make_cfg(f"experiment={option}", *PRESET_NEEDS.get(option, []))
    task = build.task(cfg, build.net(cfg))
    assert isinstance(build.data(cfg), pl.LightningDataModule) and isinstance(task, pl.LightningModule)


@pytest.mark.parametrize("option", options("debug"))
def test_debug_presets(make_cfg, option):
    cfg = make_cfg(f"debug={option}")
    assert isinstance(build.trainer(cfg, [], []), pl.Trainer)


@pytest.mark.parametrize(
    "preset, model, lr, init",
    [
        ("softmax", "SoftmaxRegression", 0.1, "normal"),
        ("mlp", "MLP", 0.1, "normal"),
        ("lenet", "LeNet", 0.9, "xavier_uniform"),
    ],
)
def test_book_presets_use_the_book_hyperparameters(make_cfg, preset, model, lr, init):
    cfg = make_cfg(f"experiment=d2l/{preset}")
    assert cfg.model._target_.endswith(model) and cfg.init._target_.endswith(init)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == lr and cfg.optimizer.momentum == 0
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 10 and cfg.get("scheduler") is None


def test_config_resolves_to_plain_types(make_cfg):
    container = OmegaConf.to_container(make_cfg(), resolve=True)
    assert container["paths"]["output_dir"].endswith("run")


def test_an_apple_gpu_where_there_is_none_is_one_paragraph(make_cfg):
    from d2lexp.errors import ConfigError

    cfg = make_cfg("trainer=mps", "trainer.accelerator=mps")  # the tests' cpu would outrank the option's
    assert cfg.trainer.accelerator == "mps" and cfg.trainer.precision == "32-true"
    if torch.backends.mps.is_available():
        assert isinstance(build.trainer(cfg, [], []), pl.Trainer)
    else:
        with pytest.raises(ConfigError, match="trainer.accelerator=mps, but PyTorch sees no such device"):
            build.trainer(cfg, [], [])


def test_early_stopping_watches_the_objective(make_cfg):
    from lightning.pytorch.callbacks import EarlyStopping

    cfg = make_cfg("callbacks=early_stopping", "callbacks.early_stopping.patience=2")
    (stopper,) = [c for c in build.callbacks(cfg) if isinstance(c, EarlyStopping)]
    assert stopper.monitor == "val/acc" and stopper.mode == "max" and stopper.patience == 2
    assert sum(isinstance(c, ModelCheckpoint) for c in build.callbacks(cfg)) == 3  # the default ones too


def test_a_debug_run_keeps_out_of_the_way(make_cfg, tmp_path):
    """debug=default: a few batches, anomaly detection, no loggers or checkpoints, under outputs/debug."""
    from d2lexp.train import train

    cfg = make_cfg("debug=default", "experiment=d2l/softmax")
    assert cfg.paths.log_dir == "outputs/debug" and cfg.get("logger") is None and cfg.trainer.detect_anomaly
    record = train(cfg)
    assert record["status"] == "done" and record["last_checkpoint"] is None and record["global_step"] == 5
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_schema_is_its_constructors_signature(name):
    """The schemas are read from the constructors' source without importing them; imported, each
    constructor has exactly those keyword arguments and defaults: a default is written once."""
    import dataclasses
    import inspect

    import hydra.utils

    target, options = SCHEMAS[name]
    schema = schema_of(target, **options)
    expected: dict = {}
    for cls in hydra.utils.get_object(target).__mro__:  # a constructor's **options go to its base class's
        parameters = inspect.signature(cls.__init__).parameters
        for k, p in parameters.items():
            if k != "self" and k not in options.get("exclude", ()) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                expected.setdefault(k, p.default if p.default is not p.empty else dataclasses.MISSING)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break
    extra = {
        key for key, _, _ in options.get("extra", ())
    }  # d2lexp's own settings of the group, after the constructor's
    fields = {f.name: f for f in dataclasses.fields(schema) if not f.name.startswith("_") and f.name not in extra}
    assert list(fields) == list(expected)
    for key, default in expected.items():
        field = fields[key]
        read = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if isinstance(default, (bool, int, float, str, type(None), tuple, list)) or default is dataclasses.MISSING:
            assert read == (list(default) if isinstance(default, tuple) else default), key
        else:  # an object default: the config holds None for it
            assert read is None, key


def test_a_wrong_type_names_the_key_and_the_type(make_cfg):
    from hydra.errors import ConfigCompositionException

    for override, said in (("data.batch_size=abc", "could not be converted to Integer"),
                           ("optimizer.lr=abc", "could not be converted to Float"),
                           ("trainer.max_epochs=abc", "could not be converted to Integer"),
                           ("speed.lean_profiler=maybe", "is not a valid bool")):  # fmt: skip
        with pytest.raises(ConfigCompositionException) as refused:
            make_cfg(override)
        assert said in str(refused.value.__cause__) and override.split("=")[0] in str(refused.value.__cause__)
