"""Shared fixtures: the real Fashion-MNIST, and configs composed from the real conf/ (tests/helpers)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.configs import REPO, test_config

# Where the tests look for data, in order: $D2LEXP_DATA, ./data (after a first run).
DATA_CANDIDATES = [os.environ.get("D2LEXP_DATA"), REPO / "data"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    for candidate in DATA_CANDIDATES:
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return Path(candidate)
    pytest.fail(
        "Fashion-MNIST not found: set D2LEXP_DATA to a folder holding FashionMNIST/raw/ "
        "(or run `python -m d2lexp` once to download it into ./data)."
    )


@pytest.fixture
def make_cfg(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose the real config with test-friendly overrides, writing into a fresh folder."""

    def make(*overrides: str, output_dir: Path | None = None, quiet: bool = True) -> DictConfig:
        return test_config(output_dir or tmp_path / "run", data_dir, *overrides, quiet=quiet)

    return make
