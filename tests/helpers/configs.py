"""Configs composed from the real conf/, with settings that keep tests quick and quiet."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from d2lexp.config import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
# Quiet, quick settings for test runs; each test adds its own.
TEST_OVERRIDES = ["trainer.accelerator=cpu"]
# (The pictures of a classifier's test pass cost a tiny run half its time: their own tests turn them on.)
QUIET_OVERRIDES = [
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.test_pictures=null",
    "callbacks.vision_pictures=null",
]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_config(output_dir: Path, data_dir: Path, *overrides: str, quiet: bool = True) -> DictConfig:
    """The real config, with test-friendly overrides, writing into `output_dir`."""
    quiet_overrides = QUIET_OVERRIDES if quiet else []
    return compose_config(
        [f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}", *TEST_OVERRIDES, *quiet_overrides, *overrides]
    )


test_config.__test__ = False  # a helper, not a test
