import shutil

import pytest
import torch

from d2lexp.data.fashion_mnist import CLASS_NAMES, FashionMNISTDataModule, ensure_fashion_mnist, raw_folder
from d2lexp.errors import ConfigError, DataError

GZ_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def test_real_splits_as_uint8_tensors(data_dir):
    dm = FashionMNISTDataModule(data_dir=str(data_dir), download=False)
    dm.setup()
    train_x, train_y = dm.splits["train"]
    test_x, test_y = dm.splits["test"]
    assert train_x.shape == (60_000, 1, 28, 28) and train_x.dtype == torch.uint8
    assert test_x.shape == (10_000, 1, 28, 28) and test_y.dtype == torch.int64
    # Known facts of the real data: balanced classes, mean pixel 0.2861 (train) / 0.2869 (test).
    assert torch.bincount(train_y).tolist() == [6000] * 10
    assert torch.bincount(test_y).tolist() == [1000] * 10
    assert train_x.float().mean().item() / 255 == pytest.approx(0.2861, abs=1e-4)
    assert test_x.float().mean().item() / 255 == pytest.approx(0.2869, abs=1e-4)
    assert dm.splits["val"] is dm.splits["test"]  # the book validates on the test split


def test_batches_are_scaled_on_the_device_side(data_dir):
    dm = FashionMNISTDataModule(data_dir=str(data_dir), batch_size=32, resize=96, download=False)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (32, 1, 28, 28)
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and x.shape == (32, 1, 96, 96)
    assert x.min() >= 0.0 and x.max() <= 1.0 and torch.equal(y, labels)
    assert len(dm.train_dataloader()) == 1875 and len(dm.val_dataloader()) == 313  # 10,000 / 32, rounded up


def test_val_size_holds_out_training_images(data_dir):
    dm = FashionMNISTDataModule(data_dir=str(data_dir), val_size=5000, download=False, seed=3)
    dm.setup()
    assert len(dm.splits["train"][1]) == 55_000 and len(dm.splits["val"][1]) == 5_000
    assert len(dm.splits["test"][1]) == 10_000
    again = FashionMNISTDataModule(data_dir=str(data_dir), val_size=5000, download=False, seed=3)
    again.setup()
    assert torch.equal(again.splits["val"][0], dm.splits["val"][0])  # same seed, same split


def test_gz_only_layout_is_extracted(data_dir, tmp_path):
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in GZ_NAMES:
        shutil.copy(raw_folder(data_dir) / name, raw / name)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    dm.setup()
    assert len(dm.splits["train"][1]) == 60_000
    assert sorted(p.name for p in raw.iterdir() if not p.name.endswith(".gz")) == sorted(
        n.removesuffix(".gz") for n in GZ_NAMES
    )
    reference = FashionMNISTDataModule(data_dir=str(data_dir), download=False)
    reference.setup()
    assert torch.equal(dm.splits["test"][0], reference.splits["test"][0])


def test_missing_data_without_download_says_how_to_fix(tmp_path):
    with pytest.raises(DataError) as err:
        ensure_fashion_mnist(tmp_path, download=False)
    message = str(err.value)
    assert str(raw_folder(tmp_path)) in message and "D2LEXP_DATA" in message and "\n" not in message


def test_truncated_file_is_a_clear_error(data_dir, tmp_path):
    raw = raw_folder(tmp_path)
    raw.mkdir(parents=True)
    for name in GZ_NAMES:
        shutil.copy(raw_folder(data_dir) / name.removesuffix(".gz"), raw / name.removesuffix(".gz"))
    broken = raw / "train-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:1_000_000])
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match="train-images-idx3-ubyte is corrupt or truncated"):
        dm.setup()


@pytest.mark.parametrize("key, value", [("batch_size", -1), ("batch_size", 0), ("resize", 0), ("val_size", -5)])
def test_bad_values_are_rejected_before_loading(key, value):
    with pytest.raises(ConfigError, match=f"data.{key}"):
        FashionMNISTDataModule(**{key: value})


def test_sample_images_carry_the_book_labels(data_dir):
    dm = FashionMNISTDataModule(data_dir=str(data_dir), download=False)
    dm.setup()
    images, titles = dm.sample_images(18)
    assert images.shape == (18, 28, 28) and len(titles) == 18 and set(titles) <= set(CLASS_NAMES)
    assert titles[0] == CLASS_NAMES[int(dm.splits["train"][1][0])]


def test_a_failed_download_creates_nothing(tmp_path, monkeypatch):
    """Where the download cannot reach a server, nothing appears where the data was to go: no
    empty FashionMNIST/raw/ left to puzzle over. (The mirror is a closed local port, so the
    connection really fails, whatever this machine's network.)"""
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    target = tmp_path / "data"
    with pytest.raises(DataError, match="downloading it failed") as failed:
        ensure_fashion_mnist(target, download=True)
    assert "\n" not in str(failed.value) and "D2LEXP_DATA" in str(failed.value)
    assert not target.exists()
