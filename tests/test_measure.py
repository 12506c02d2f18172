"""Shapes, parameters and MACs on the meta device (d2lexp.measure), and the inspect command over them."""

import subprocess
import sys

import pytest
import torch

from d2lexp.inspect import inception_comparison
from d2lexp.measure import inspect_model, meta_model, model_stats
from d2lexp.models.lenet import LeNet
from d2lexp.models.vgg import VGG, VGG11


def test_lenet_table_layer_by_layer():
    stats = inspect_model(LeNet(), torch.zeros(1, 1, 28, 28))
    rows = {layer.name: layer for layer in stats.layers}
    assert rows["0"].output_shape == (1, 6, 28, 28) and rows["0"].params == 156
    assert rows["0"].macs == 6 * 5 * 5 * 28 * 28  # out channels x kernel x output pixels
    assert rows["3"].output_shape == (1, 16, 10, 10) and rows["3"].macs == 16 * 6 * 25 * 100
    assert rows["5"].output_shape == (1, 16, 5, 5) and rows["5"].params == 0
    assert rows["7"].macs == 400 * 120 and rows["11"].output_shape == (1, 10)
    assert stats.params == 61_706 and stats.macs == 416_520 == sum(l.macs for l in stats.layers)


def test_macs_are_per_example_and_free_on_meta():
    stats = model_stats(LeNet, torch.zeros(4, 1, 28, 28))
    assert stats.macs == 416_520 and stats.output_shape == (4, 10) and stats.params == 61_706
    vgg = meta_model(lambda: VGG(VGG11))
    assert next(vgg.parameters()).is_meta
    assert inspect_model(vgg, torch.empty(1, 1, 224, 224, device="meta")).macs == 7_547_232_256


def test_inception_comparison_matches_the_course():
    assert inception_comparison() == [
        ("Inception(192 -> 64 + 128 + 32 + 32)", 163_328, 128_049_152),
        ("Conv2d 3x3, 192 -> 256", 442_368, 346_816_512),
        ("Conv2d 5x5, 192 -> 256", 1_228_800, 963_379_200),
    ]


@pytest.mark.slow  # the command in a process of its own; its tables are tested in-process above, its help and refusals in test_commands.py
def test_inspect_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "d2lexp.inspect", "experiment=d2l/resnet18", "inspect.parameters=true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ResNet: input 1x1x96x96" in out and "11,178,378 parameters" in out
    assert "1x512x3x3" in out  # the last stage's output at 96x96
    assert "1.stem" not in out and "0.0.weight" in out and "7x7" not in out.split("parameter")[0]
    assert list(tmp_path.iterdir()) == []  # inspecting writes nothing


def test_inception_v3_factorisations_cost_what_the_course_computes():
    """Each replacement on its own in the course's block, then single layers at equal channels:
    weights without biases, MACs per example (= weights x 28 x 28, every layer at 28x28)."""
    from d2lexp.inspect import inception_v3_comparison

    blocks, layers = inception_v3_comparison()
    assert blocks == [
        ("GoogLeNet's block (5x5, 3x3)", 163_328, 128_049_152),
        ("5x5 -> 3x3 + 3x3", 164_352, 128_851_968),  # 16*32*9 + 32*32*9 in place of 16*32*25: wider in the middle
        ("5x5 -> 1x7 + 7x1", 161_280, 126_443_520),  # 16*32*7 + 32*32*7
        ("3x3 -> 1x3 + 3x1", 138_752, 108_781_568),  # 96*128*3 + 128*128*3 in place of 96*128*9
    ]
    assert layers == [
        ("5x5, 256 -> 256", 1_638_400, 1_284_505_600),
        ("3x3 + 3x3, 256 -> 256", 1_179_648, 924_844_032),
        ("3x3, 256 -> 256", 589_824, 462_422_016),
        ("1x3 + 3x1, 256 -> 256", 393_216, 308_281_344),
        ("7x7, 256 -> 256", 3_211_264, 2_517_630_976),
        ("1x7 + 7x1, 256 -> 256", 917_504, 719_323_136),
    ]


def test_googlenet_v3_is_googlenet_with_factorised_blocks():
    from d2lexp.models.googlenet import GoogLeNet

    v1 = model_stats(lambda: GoogLeNet(input_size=96), torch.zeros(1, 1, 96, 96))
    v3 = model_stats(lambda: GoogLeNet(input_size=96, inception="v3"), torch.zeros(1, 1, 96, 96))
    assert (v1.params, v1.macs) == (5_977_530, 276_066_304) and (v3.params, v3.macs) == (6_214_074, 278_056_960)
    assert v3.output_shape == (1, 10)
