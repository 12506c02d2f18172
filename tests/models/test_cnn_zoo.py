"""The modern CNNs of the book: parameter counts, shapes at their preset resolutions, and
a few real training steps each on real Fashion-MNIST images (at reduced resolution)."""

import pytest
import torch
import torch.nn.functional as F

from d2lexp import build
from d2lexp.measure import inspect_model, meta_model
from d2lexp.models.googlenet import Inception
from d2lexp.models.vgg import VGG, VGG11, VGG11_NARROW, VGGBlock

# (model config, the book's parameter count at 1 channel / 10 classes, preset resolution)
BOOK_MODELS = [
    ("lenet", 61_706, 28),
    ("lenet_bn", 44_878, 28),
    ("alexnet", 46_764_746, 224),
    ("vgg11", 128_806_154, 224),
    ("vgg11_narrow", 43_093_322, 224),
    ("nin", 1_992_166, 224),
    ("googlenet", 5_977_530, 96),
    ("resnet18", 11_178_378, 96),
    ("densenet", 758_226, 96),
]


@pytest.mark.parametrize("name, params, resolution", BOOK_MODELS, ids=[m[0] for m in BOOK_MODELS])
def test_parameter_count_and_shape_at_the_preset_resolution(make_cfg, name, params, resolution):
    cfg = make_cfg("~experiment", f"model={name}")
    assert (cfg.data.resize or 28) == resolution
    net = meta_model(lambda: build.net(cfg))  # the real config's net, on the meta device
    assert sum(p.numel() for p in net.parameters()) == params
    stats = inspect_model(net, torch.empty(2, 1, resolution, resolution, device="meta"))
    assert stats.output_shape == (2, 10)


# The fast recipes' small VGGs with batch normalisation, at 28x28: parameters and MACs by hand
# (convs without bias, BN's weight and bias, the linear head; MACs of the convs and the head).
SMALL_VGG_BN = {
    "vgg_bn_small": (288 + 64 + 18_432 + 128 + 3136 * 10 + 10, 784 * 32 * 9 + 196 * 32 * 64 * 9 + 3136 * 10),
    "vgg_bn_medium": (
        288 + 64 + 9_216 + 64 + 18_432 + 128 + 36_864 + 128 + 73_728 + 256 + 147_456 + 256 + 1152 * 10 + 10,
        784 * 32 * 9 * 33 + 196 * 64 * 9 * 96 + 49 * 128 * 9 * 192 + 1152 * 10,
    ),
    # Blocks of two convs (widths a, b, c) pooling after their first conv: each block's second conv at
    # half the resolution (28 -> 14, 14 -> 7, 7 -> 3). Same weights as vgg_bn_medium at (32, 64, 128).
    "vgg_bn_pool_first": (298_410, 12_402_432),  # pool_first_counts(32, 64, 128)
}


def pool_first_counts(a: int, b: int, c: int) -> tuple[int, int]:
    """(parameters, MACs) of the pool-first VGG with block widths a, b, c, at 28x28, by hand."""
    convs = [(1, a, 784), (a, a, 196), (a, b, 196), (b, b, 49), (b, c, 49), (c, c, 9)]  # (in, out, output pixels)
    params = sum(i * o * 9 + 2 * o for i, o, _ in convs) + c * 9 * 10 + 10
    return params, sum(i * o * 9 * pixels for i, o, pixels in convs) + c * 9 * 10


def test_pool_first_counts_by_hand():
    assert pool_first_counts(32, 64, 128) == SMALL_VGG_BN["vgg_bn_pool_first"]
    assert pool_first_counts(32, 96, 192) == (636_330, 22_647_168)  # the wider net docs/recipes.md measured
    assert pool_first_counts(32, 64, 128)[0] == SMALL_VGG_BN["vgg_bn_medium"][0]


@pytest.mark.parametrize("name", SMALL_VGG_BN)
def test_the_fast_recipes_small_vggs(make_cfg, name):
    params, macs = SMALL_VGG_BN[name]
    cfg = make_cfg("~experiment", f"model={name}")
    assert cfg.data.resize == 28
    net = build.net(cfg)
    assert sum(p.numel() for p in net.parameters()) == params
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == sum(n for n, _ in cfg.model.arch)
    stats = inspect_model(net, torch.zeros(2, 1, 28, 28))
    assert stats.output_shape == (2, 10) and stats.macs == macs


def test_vgg_variants_are_data():
    assert VGG11_NARROW == ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))
    layers = [type(m).__name__ for m in VGGBlock(2, 1, 8, batch_norm=True, pool_first=True)]
    assert layers == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    layers = [type(m).__name__ for m in VGGBlock(2, 1, 8, batch_norm=True)]
    assert layers == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    net = VGG(VGG11, input_size=224)
    blocks = [m for m in net if isinstance(m, VGGBlock)]
    assert [sum(isinstance(l, torch.nn.Conv2d) for l in b) for b in blocks] == [1, 1, 2, 2, 2]
    assert net[6].in_features == 512 * 7 * 7  # sized for 224 by the model itself
    assert VGG(VGG11, input_size=96)[6].in_features == 512 * 3 * 3


def test_inception_concatenates_its_four_paths():
    block = Inception(192, 64, (96, 128), (16, 32), 32)
    assert block(torch.rand(2, 192, 28, 28)).shape == (2, 256, 28, 28)


# Reduced resolutions that every architecture still accepts (AlexNet and NiN need ~64+).
SMALL = {"alexnet": 96, "vgg11": 32, "vgg11_narrow": 32, "nin": 96, "googlenet": 48, "resnet18": 32, "densenet": 32}


# GoogLeNet's two forms take the longest (their structure is tested above): slow.
@pytest.mark.parametrize(
    "name",
    [
        *(n if n != "googlenet" else pytest.param(n, marks=pytest.mark.slow) for n in ["lenet_bn", *SMALL]),
        pytest.param("googlenet_v3", marks=pytest.mark.slow),
    ],
    ids=lambda n: n,
)
def test_a_few_real_training_steps_lower_the_loss(make_cfg, data_dir, name):
    if name == "googlenet_v3":  # Inception-V3's factorised blocks
        overrides = ["model=googlenet", "model.inception=v3", "model.input_size=48"]
    else:
        overrides = [f"model={name}"] + ([f"model.input_size={SMALL[name]}"] if name in SMALL else [])
    cfg = make_cfg("~experiment", *overrides, "data.batch_size=16")
    torch.manual_seed(0)
    net = build.net(cfg)
    datamodule = build.data(cfg)
    datamodule.setup()
    x, y = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)

    def loss() -> float:
        # Training mode (batch statistics, which 8 steps cannot put into BN's running averages),
        # with the same dropout masks before and after.
        torch.manual_seed(1)
        with torch.no_grad():
            return F.cross_entropy(net(x), y).item()

    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    before = loss()
    for _ in range(8):  # fit one batch of real images
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    after = loss()
    assert torch.isfinite(torch.tensor(after)) and after < before, (before, after)
