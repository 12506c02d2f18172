"""Augmentation of training batches: each operation does what it says on real images, draws repeat
under a seed, nothing changes at zero strength, only training batches change, and a run with
augmentation learns and resumes exactly."""

from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from d2lexp.data.augment import Augment, BatchGenerators, affine_grid, batch_seed
from d2lexp.data.fashion_mnist import FashionMNISTDataModule
from d2lexp.metrics_file import read_metrics
from d2lexp.train import train
from tests.helpers.configs import compose_config

PRESETS = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "augment").glob("*.yaml"))


@pytest.fixture(scope="module")
def images(data_dir) -> torch.Tensor:
    """64 real training images as floats in [0, 1], [64, 1, 28, 28]."""
    dm = FashionMNISTDataModule(data_dir=str(data_dir), download=False, train_subset=64)
    dm.setup("fit")
    return dm.splits["train"][0][:64].float() / 255


def draw(augment: Augment, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The images as a training batch leaves the data module: changed, then mixed (with labels 0..9)."""
    changed = augment(images, torch.Generator().manual_seed(seed))
    return augment.mix(changed, torch.arange(len(images)) % 10, 10, seed)[0] if augment.mixing else changed


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_keeps_shape_and_range_and_repeats_under_a_seed(preset, images):
    augment = hydra.utils.instantiate(compose_config([f"augment={preset}"]).augment)
    out = draw(augment, images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, draw(augment, images))  # same seed, same draws
    if preset == "none":  # the default changes nothing
        assert torch.equal(out, images)
        return
    assert not torch.equal(out, draw(augment, images, seed=1))
    changed = (out - images).flatten(1).abs().amax(dim=1) > 1e-3
    assert changed.float().mean() > 0.4  # most images changed (a flip alone changes half)


def test_zero_strength_changes_nothing(images):
    assert torch.equal(draw(Augment(), images), images)
    # the geometric path at (nearly) the identity map: pixel centres land on pixel centres
    assert torch.allclose(draw(Augment(rotation=1e-9), images), images, atol=1e-5)


def test_the_sampling_grid_is_torchs_affine_grid():
    theta = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = nn.functional.affine_grid(theta, [16, 1, 20, 28], align_corners=False)
    assert torch.allclose(affine_grid(theta, 20, 28), expected, atol=1e-5)


def test_a_certain_flip_is_a_mirror_image(images):
    assert torch.allclose(draw(Augment(flip=1.0), images), images.flip(-1), atol=1e-5)


def test_a_crop_after_padding_is_a_whole_pixel_shift_filled_with_zeros(images):
    p = 2
    out = draw(Augment(crop_padding=p), images)
    padded = nn.functional.pad(images, (p, p, p, p))
    shifts = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)]
    crops = torch.stack([padded[..., p + dy : p + dy + 28, p + dx : p + dx + 28] for dy, dx in shifts])  # [S, B, ...]
    error = (crops - out).flatten(2).abs().amax(dim=2)  # [S, B]: how far each image is from each shift
    assert (error.min(dim=0).values < 1e-5).all()  # every image is exactly one of the crops
    assert len(set(error.argmin(dim=0).tolist())) > 10  # and the shifts vary from image to image


def test_rotation_turns_about_the_centre(images):
    """A round blob is the same under any rotation; an off-centre dot moves on a circle."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    blob = torch.exp(-(xs**2 + ys**2) / 40).expand(8, 1, 28, 28)
    assert torch.allclose(draw(Augment(rotation=45), blob), blob, atol=0.02)
    dot = torch.exp(-((xs - 8) ** 2 + ys**2) / 2).expand(8, 1, 28, 28)
    turned = draw(Augment(rotation=45), dot)
    radius = lambda x: (x[:, 0] * (xs**2 + ys**2).sqrt()).sum((1, 2)) / x[:, 0].sum((1, 2))  # noqa: E731
    assert torch.allclose(radius(turned), radius(dot), atol=0.1)  # same distance from the centre
    assert (turned - dot).abs().amax() > 0.3  # but elsewhere


def test_brightness_and_contrast_scale_each_image_by_one_factor_within_their_range(images):
    bright = draw(Augment(brightness=0.3), images)
    ratio = bright.flatten(1) / images.flatten(1).clamp(min=1e-6)
    inside = (images.flatten(1) > 0.05) & (bright.flatten(1) < 1)  # pixels not clamped
    for r, keep in zip(ratio, inside):
        assert r[keep].max() - r[keep].min() < 1e-4 and 0.7 - 1e-5 <= r[keep].mean() <= 1.3 + 1e-5
    contrast = draw(Augment(contrast=0.3), images)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    factor = ((contrast - mean) / (images - mean)).flatten(1)
    spread = ((images - mean).abs() > 0.2).flatten(1) & (contrast > 0).flatten(1) & (contrast < 1).flatten(1)
    assert all(
        f[k].max() - f[k].min() < 1e-3 and 0.7 - 1e-4 <= f[k].mean() <= 1.3 + 1e-4 for f, k in zip(factor, spread)
    )


def test_saturation_touches_colour_images_only(images):
    assert torch.equal(draw(Augment(saturation=0.5), images), images)
    colour = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = draw(Augment(saturation=0.5), colour)
    gray = lambda x: (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)  # noqa: E731
    assert not torch.allclose(out, colour) and torch.allclose(gray(out), gray(colour), atol=0.05)


def test_mixup_blends_each_image_with_the_next_and_its_label_alike(images):
    labels = torch.arange(64) % 10
    before = torch.get_rng_state()
    mixed, targets = Augment(mixup_alpha=0.4).mix(images, labels, 10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # torch's global generator is left as it was
    share = targets[1, labels[1]]  # one share for the whole batch
    assert 0 < share < 1 and targets.shape == (64, 10) and torch.allclose(targets.sum(1), torch.ones(64))
    one_hot = nn.functional.one_hot(labels, 10).float()
    assert torch.allclose(targets, share * one_hot + (1 - share) * one_hot.roll(1, 0))
    assert torch.allclose(mixed, share * images + (1 - share) * images.roll(1, 0), atol=1e-6)
    again, _ = Augment(mixup_alpha=0.4).mix(images, labels, 10, seed=7)
    other, _ = Augment(mixup_alpha=0.4).mix(images, labels, 10, seed=8)
    assert torch.equal(again, mixed) and not torch.equal(other, mixed)


def test_cutmix_pastes_one_box_of_the_next_image_and_weighs_the_label_by_its_area():
    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # no two pixels alike
    labels = torch.arange(16) % 10
    mixed, targets = Augment(cutmix_alpha=1.0).mix(images, labels, 10, seed=3)
    pasted = (mixed == images.roll(1, 0)) & (mixed != images)  # [16, 1, 28, 28]
    assert torch.equal(pasted | (mixed == images), torch.ones_like(pasted))  # every pixel: its own or the next's
    box = pasted[0, 0]
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    assert 0 < box.sum() < 28 * 28 and box.sum() == len(rows) * len(cols)  # a rectangle, the same in every image
    assert all(torch.equal(p[0], box) for p in pasted)
    kept = 1 - box.sum() / (28 * 28)
    assert torch.allclose(targets[1, labels[1]], kept) and torch.allclose(targets[1, labels[0]], 1 - kept)


def test_bad_strengths_are_refused():
    for bad in ({"flip": 1.5}, {"crop_padding": -1}, {"brightness": 1.0}, {"resized_crop": (0.5, 0.2)},
                {"mixup_alpha": -0.1}):  # fmt: skip
        with pytest.raises(ValueError, match="augment"):
            Augment(**bad)


def test_batch_seeds_depend_on_seed_epoch_and_batch_alone():
    seeds = {batch_seed(s, e, b) for s in (0, 1) for e in (0, 1) for b in (0, 1, 2)}
    assert len(seeds) == 12 and batch_seed(3, 2, 1) == batch_seed(3, 2, 1)
    generators = BatchGenerators()
    a = torch.rand(4, generator=generators.for_batch(torch.device("cpu"), 0, 1, 2))
    assert torch.equal(a, torch.rand(4, generator=generators.for_batch(torch.device("cpu"), 0, 1, 2)))


class Capture(pl.Callback):
    def __init__(self):
        self.train, self.val, self.train_targets, self.val_targets = [], [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(batch[0].clone())
        self.train_targets.append(batch[1].clone())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append(batch[0].clone())
        self.val_targets.append(batch[1].clone())


class Probe(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(784, 10)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def batches_seen(data_dir, augment):
    dm = FashionMNISTDataModule(
        data_dir=str(data_dir), download=False, batch_size=32, train_subset=256, augment=augment
    )
    capture = Capture()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[capture], num_sanity_val_steps=0)  # fmt: skip
    pl.seed_everything(0)
    trainer.fit(Probe(), datamodule=dm)
    return capture


def test_only_training_batches_are_augmented(data_dir):
    plain, flipped = batches_seen(data_dir, None), batches_seen(data_dir, Augment(flip=1.0))
    assert len(flipped.train) == 3 and len(flipped.val) == 2
    for a, b in zip(plain.train, flipped.train):  # the same examples, each mirrored
        assert torch.allclose(b, a.flip(-1), atol=1e-5)
    for a, b in zip(plain.val, flipped.val):
        assert torch.equal(a, b)
    mixed = batches_seen(data_dir, Augment(mixup_alpha=1.0))  # mixing: training batches and their targets only
    for a, b, labels, targets in zip(plain.train, mixed.train, plain.train_targets, mixed.train_targets):
        assert targets.shape == (32, 10) and not torch.equal(a, b) and torch.allclose(targets.sum(1), torch.ones(32))
        top = targets.argmax(1)
        assert ((top == labels) | (top == labels.roll(1))).all()  # its own class or the next image's
    assert all(torch.equal(a, b) for a, b in zip(plain.val + plain.val_targets, mixed.val + mixed.val_targets))


AUGMENTED = ["experiment=d2l/mlp", "augment=light", "augment.mixup_alpha=0.2", "augment.cutmix_alpha=1.0", "optimizer=adam", "optimizer.lr=0.002", "data.train_subset=3000",
             "data.test_subset=1000", "data.batch_size=100", "trainer.max_epochs=2", "seed=3"]  # fmt: skip


def test_an_augmented_run_learns_repeats_and_resumes_exactly_mid_epoch(make_cfg, tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from d2lexp.errors import RunInterrupted

    straight = train(make_cfg(*AUGMENTED, output_dir=tmp_path / "straight"))
    assert straight["test/acc"] > 0.6  # it learned (0.66 here; chance is 0.1), on real data, through the augmentation
    # (and through mixing: it trained on class probabilities)
    assert (tmp_path / "straight" / "augmentation.png").stat().st_size > 1000

    class Terminate(pl.Callback):  # a SIGTERM in the middle of the second epoch
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 12:
                raise SIGTERMException(1)

    with pytest.raises(RunInterrupted):
        train(make_cfg(*AUGMENTED, output_dir=tmp_path / "stopped"), callbacks=[Terminate()])
    stopped = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(stopped, weights_only=True)["global_step"] == 30 + 13
    resumed = train(make_cfg(*AUGMENTED, f"ckpt_path={stopped}", output_dir=tmp_path / "resumed"))
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert resumed[key] == straight[key], key
    plain = read_metrics(tmp_path / "straight")
    assert plain["train/loss"] == straight["train/loss"]
    unaugmented = train(make_cfg(*AUGMENTED, "augment=none", output_dir=tmp_path / "plain"))
    assert unaugmented["train/loss"] != straight["train/loss"]  # the augmentation did change training
