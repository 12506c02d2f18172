"""Shared fixtures: the real Fashion-MNIST, and configs composed from the real conf/ (tests/helpers)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.configs import REPO, test_config


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker computes with its share of the CPU's threads, and so do the
    processes its tests start (a worker with every core's threads would slow the others down)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, threads)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


# A classifier trained once for the tests that use a trained net's files (tests/test_export.py,
# tests/test_predict_images.py): BN-LeNet on normalised images, so that convolutions, batch norm and
# the data's normalisation all have to come through an export or an image's conversion.
CLASSIFIER = ["model=lenet_bn", "data.normalize=true", "data.train_subset=2000", "data.test_subset=200",
              "trainer.max_epochs=1", "callbacks.progress_bar=null", "callbacks.model_summary=null",
              "callbacks.test_pictures=null", "callbacks.lr_monitor=null", "logger=[]"]  # fmt: skip


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """The run (d2lexp.api.RunResult) of a small trained classifier, in a folder of its own."""
    from d2lexp import run

    result = run(*CLASSIFIER, f"paths.log_dir={tmp_path_factory.mktemp('classifier') / 'outputs'}",
                 f"paths.data_dir={data_dir}")  # fmt: skip
    assert result.status == "done"
    return result


@pytest.fixture(scope="session")
def test_images(data_dir: Path):
    """The first 256 Fashion-MNIST test images (uint8 [N, 1, 28, 28]), their labels, and the images
    as `classifier` takes them (normalised, as its run's data was)."""
    from d2lexp.data.fashion_mnist import FashionMNISTDataModule, load_split, raw_folder

    images, labels = load_split(raw_folder(data_dir), "test")
    images, labels = images[:256], labels[:256]
    return images, labels, FashionMNISTDataModule(normalize=True).transform(images)
