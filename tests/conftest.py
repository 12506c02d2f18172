"""Shared fixtures: the real Fashion-MNIST, and configs composed from the real conf/."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from d2lexp.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
# Where the tests look for data, in order: $D2LEXP_DATA, ./data (after a first run).
DATA_CANDIDATES = [os.environ.get("D2LEXP_DATA"), REPO / "data"]

# Quiet, quick settings for test runs; each test adds its own.
TEST_OVERRIDES = ["trainer.accelerator=cpu"]
# (The pictures of a classifier's test pass cost a tiny run half its time: their own tests turn them on.)
QUIET_OVERRIDES = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.test_pictures=null"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    for candidate in DATA_CANDIDATES:
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return Path(candidate)
    pytest.fail(
        "Fashion-MNIST not found: set D2LEXP_DATA to a folder holding FashionMNIST/raw/ "
        "(or run `python -m d2lexp` once to download it into ./data)."
    )


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


@pytest.fixture
def make_cfg(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose the real config with test-friendly overrides, writing into a fresh folder."""

    def make(*overrides: str, output_dir: Path | None = None, quiet: bool = True) -> DictConfig:
        return test_config(output_dir or tmp_path / "run", data_dir, *overrides, quiet=quiet)

    return make
