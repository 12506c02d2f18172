"""Every option of every config group composes and instantiates; bad overrides fail clearly."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from d2lexp.inspect import meta_model, model_example
from d2lexp.train import CONF_DIR, build_callbacks, build_loggers, build_net, build_task

CONF = Path(CONF_DIR)


def options(group: str) -> list[str]:
    root = CONF / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def test_default_config_is_lenet_on_fashion_mnist(make_cfg):
    cfg = make_cfg()
    assert cfg.model._target_.endswith("LeNet") and cfg.data._target_.endswith("FashionMNISTDataModule")
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.trainer.max_epochs == 10


# Models that do not take Fashion-MNIST images, and the data they go with.
MODEL_DATA = {
    "linreg": "synthetic_regression", "linreg_scratch": "synthetic_regression", "edge_kernel_scratch": "edge_detection",
    "sequence_mlp": "sine", **{f"{cell}{kind}": "time_machine" for cell in ("rnn", "gru", "lstm") for kind in ("", "_scratch")},
}  # fmt: skip


@pytest.mark.parametrize("option", options("model"))
def test_model_options(make_cfg, option):
    cfg = make_cfg(f"model={option}", f"data={MODEL_DATA.get(option, 'fashion_mnist')}")
    net = meta_model(lambda: build_net(cfg))  # shapes only: the big CNNs cost nothing here
    example = model_example(cfg).to("meta")  # at the resolution the model config asks for
    output = net(torch.cat([example, example]))
    output = output[0] if isinstance(output, tuple) else output  # language models also return their state
    assert output.shape[0] == 2
    if "num_classes" in cfg.model:
        assert output.shape == (2, cfg.model.num_classes)


@pytest.mark.parametrize("option", options("init"))
def test_init_options(make_cfg, option):
    build_net(make_cfg(f"init={option}"))


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_options(make_cfg, option):
    cfg = make_cfg(f"optimizer={option}")
    task = build_task(cfg, build_net(cfg))
    assert isinstance(task.configure_optimizers(), torch.optim.Optimizer)


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(make_cfg, option):
    cfg = make_cfg(f"scheduler={option}")
    task = build_task(cfg, build_net(cfg))
    config = task.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Optimizer) and config["lr_scheduler"]["scheduler"]


@pytest.mark.parametrize("option", options("data"))
def test_data_options(make_cfg, option):
    assert isinstance(instantiate(make_cfg(f"data={option}").data), pl.LightningDataModule)


@pytest.mark.parametrize("option", [o for o in options("trainer") if o != "slurm"])
def test_trainer_options(make_cfg, option):
    cfg = make_cfg(f"trainer={option}")
    assert isinstance(instantiate(cfg.trainer, logger=False), pl.Trainer)


def test_slurm_trainer_follows_the_launcher(data_dir, tmp_path):
    """trainer=slurm takes its devices and nodes from hydra/launcher=slurm: one task per GPU."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "trainer=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
            f"paths.output_dir={tmp_path}", "hydra.sweep.dir=sweep", "hydra.job.num=0",
        ])  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.launcher.tasks_per_node == 4 and cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.trainer.devices == 4 and cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp"


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options(make_cfg, option):
    assert build_loggers(make_cfg(f"logger={option}"))


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_options(make_cfg, option):
    assert all(isinstance(c, pl.Callback) for c in build_callbacks(make_cfg(f"callbacks={option}", quiet=False)))


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_presets_compose_and_build(make_cfg, option):
    cfg = make_cfg(f"experiment={option}")
    task = build_task(cfg, build_net(cfg))
    instantiate(cfg.data)
    assert isinstance(task, pl.LightningModule)


@pytest.mark.parametrize("option", options("debug"))
def test_debug_presets(make_cfg, option):
    cfg = make_cfg(f"debug={option}")
    assert isinstance(instantiate(cfg.trainer, logger=False), pl.Trainer)


@pytest.mark.parametrize(
    "preset, model, lr, init",
    [("softmax", "SoftmaxRegression", 0.1, "normal"), ("mlp", "MLP", 0.1, "normal"), ("lenet", "LeNet", 0.9, "xavier_uniform")],
)
def test_book_presets_use_the_book_hyperparameters(make_cfg, preset, model, lr, init):
    cfg = make_cfg(f"experiment=d2l/{preset}")
    assert cfg.model._target_.endswith(model) and cfg.init._target_.endswith(init)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == lr and cfg.optimizer.momentum == 0
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 10 and cfg.get("scheduler") is None


def test_config_resolves_to_plain_types(make_cfg):
    container = OmegaConf.to_container(make_cfg(), resolve=True)
    assert container["paths"]["output_dir"].endswith("run")
