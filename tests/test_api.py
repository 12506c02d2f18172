"""d2lexp from Python (d2lexp.api): compose and run, again and again in one process, into run folders
the command line resumes and the report reads."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from d2lexp import compose, run
from d2lexp.errors import ConfigError
from d2lexp.metrics_file import read_metrics
from tests.helpers.cli import run_cli

TINY = ["experiment=d2l/softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
        "data.batch_size=100", "callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.test_pictures=null"]  # fmt: skip


def test_importing_d2lexp_and_composing_load_no_torch():
    probe = "import sys, d2lexp; cfg = d2lexp.compose('model=vgg11'); print(cfg.model._target_, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["d2lexp.models.vgg.VGG", "False"]


def test_run_again_and_again_in_one_process(tmp_path, data_dir):
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from d2lexp.data.fashion_mnist import load_split, raw_folder
    from d2lexp.run_folder import _claimed

    handlers = list(logging.getLogger().handlers)
    overrides = [*TINY, f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={data_dir}"]
    cfg = compose(*overrides)
    first = run(cfg)
    cfg.trainer.max_epochs = 2  # changed after compose: run as it is, and recorded as an override
    second = run(cfg)
    assert first.status == second.status == "done" and first.folder != second.folder
    for result in (first, second):
        assert result.folder.parent.parent == tmp_path / "outputs"  # outputs/<date>/<time>, as the command line's
        assert read_metrics(result.folder)["test/acc"] == result["test/acc"] and result["output_dir"] == str(
            result.folder
        )
        assert "softmax: done" in (result.folder / "train.log").read_text()
        config = yaml.safe_load((result.folder / ".hydra" / "config.yaml").read_text())
        assert config["model"]["_target_"] == "d2lexp.models.softmax.SoftmaxRegression"
        assert config["paths"]["output_dir"] == str(result.folder)
        saved = torch.load(result.folder / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["d2lexp_overrides"] == yaml.safe_load((result.folder / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((first.folder / ".hydra" / "overrides.yaml").read_text()) == overrides
    assert yaml.safe_load((second.folder / ".hydra" / "overrides.yaml").read_text()) == [
        *overrides,
        "trainer.max_epochs=2",
    ]
    assert first.record["epochs"] == 1 and second.record["epochs"] == 2 and second.history["epoch"] == [0, 1]
    assert first.history["train/loss"][0] == second.history["train/loss"][0]  # same seed, same first epoch
    assert OmegaConf.to_container(cfg.paths)["output_dir"] == "${hydra:runtime.output_dir}"  # the caller's, as it was
    # The net returned is the one trained: it scores the test slice as the run did.
    images, labels = load_split(raw_folder(data_dir), "test")
    with torch.no_grad():
        predicted = second.net(images[:500].float() / 255).argmax(dim=1)
    assert (predicted == labels[:500]).float().mean().item() == pytest.approx(second["test/acc"], abs=1e-6)
    assert second.metrics["test/acc"] == second["test/acc"] > 0.5
    # Resumed from Python as the command line resumes it: in its own folder, its own settings, longer.
    resumed = run(f"ckpt_path={first.folder}", *TINY[-3:], "trainer.max_epochs=2")  # (callbacks: not from files)
    assert resumed.folder == first.folder and resumed.record["epochs"] == 2
    assert resumed.history["train/loss"] == second.history["train/loss"]  # exactly where it stopped
    assert (
        yaml.safe_load((first.folder / ".hydra" / "resume_1" / "overrides.yaml").read_text())[-1]
        == "trainer.max_epochs=2"
    )
    # Nothing is left set: Hydra, the folders' claims, the logging.
    assert not GlobalHydra.instance().is_initialized() and not HydraConfig.initialized()
    assert first.folder not in _claimed and second.folder not in _claimed
    assert logging.getLogger().handlers == handlers


@pytest.mark.slow  # a second process; the resume from Python (above) takes the same path through with_recorded_settings
def test_the_command_line_resumes_a_run_started_from_python(tmp_path, data_dir):
    started = run(*TINY, f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={data_dir}")
    result = run_cli(f"ckpt_path={started.folder}", "trainer.max_epochs=2", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_metrics(started.folder)  # resumed in its own folder
    assert record["status"] == "done" and record["epochs"] == 2 and record["history"]["epoch"] == [0, 1]
    assert record["history"]["train/loss"][0] == started.history["train/loss"][0]
    assert (started.folder / ".hydra" / "resume_1" / "overrides.yaml").is_file()
    # A second run from Python in the same second gets a folder of its own, claimed beside it.
    again = run(*TINY, f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={data_dir}")
    assert again.folder != started.folder and read_metrics(started.folder)["epochs"] == 2


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["trainer.max_epoch=3"], "Did you mean trainer.max_epochs"),
        (["seed=1,2"], "Ambiguous value for argument 'seed=1,2'"),
        (["-m", "seed=1"], "not the command line's -m"),
        (["hydra.job.chdir=true"], "Hydra's own settings are the command line's"),
        (["model=nosuchnet"], "Could not find 'model/nosuchnet'"),
    ],
)
def test_compose_refuses_in_one_paragraph(overrides, says):
    with pytest.raises(ConfigError, match=says) as refused:
        compose(*overrides)
    assert "\n" not in str(refused.value).strip()
