"""The pictures of a classifier's test pass: each opened and checked against the net itself."""

from __future__ import annotations

import torch
from PIL import Image

from d2lexp.checkpoint import load_net
from d2lexp.data.fashion_mnist import CLASS_NAMES, ensure_fashion_mnist, load_split
from d2lexp.train import train


def test_the_pictures_show_what_the_net_predicts(make_cfg, data_dir, tmp_path):
    record = train(make_cfg("experiment=d2l/softmax", "data.train_subset=3000", "data.test_subset=500",
                            "trainer.max_epochs=2", "callbacks.progress_bar=null", quiet=False))  # fmt: skip
    pictures = record["pictures"]
    run = tmp_path / "run"
    grid = Image.open(run / "predictions.png")
    assert grid.size == (9 * 84, 2 * (84 + 26))  # 18 images of 84 pixels, under two lines of title each
    assert Image.open(run / "confusion.png").size[0] > 500 and Image.open(run / "misclassified.png").size[0] == 9 * 84

    # The labels drawn are the net's own predictions for the first 18 test images, and their truth.
    net = load_net(record["last_checkpoint"])
    images, labels = load_split(ensure_fashion_mnist(data_dir, download=False), "test")
    with torch.no_grad():
        predicted = net(images[:18].float() / 255).argmax(dim=1)
    assert pictures["predictions"]["predicted"] == [CLASS_NAMES[int(p)] for p in predicted]
    assert pictures["predictions"]["true"] == [CLASS_NAMES[int(t)] for t in labels[:18]]

    matrix = torch.tensor(pictures["confusion"]["matrix"])
    assert int(matrix.sum()) == 500 and float(matrix.trace() / matrix.sum()) == torch.tensor(record["test/acc"]).item()
    wrong = pictures["misclassified"]
    assert len(wrong["true"]) == 18 and all(t != p for t, p in zip(wrong["true"], wrong["predicted"]))
    assert wrong["confidence"] == sorted(wrong["confidence"], reverse=True) and wrong["confidence"][0] > 0.5
