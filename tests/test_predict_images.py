"""A user's own images classified (python -m d2lexp.predict images=...): converted as the run's data
was, scored as the net scores them, and unreadable or crafted files refused before decoding, in
one paragraph. (The trained classifier: tests/conftest.py.)"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from d2lexp.checkpoint import load_net
from d2lexp.data.fashion_mnist import CLASS_NAMES
from d2lexp.errors import D2lexpError
from d2lexp.image_files import ImageError, read_image


def test_predict_classifies_images_as_the_net_does(classifier, test_images, tmp_path):
    images, labels, inputs = test_images
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(images[i, 0].numpy()).save(folder / f"{i}.png")  # 28x28 grayscale, as the data's
    # A colour copy three times the size: made grayscale and shrunk back to 28x28, exactly the same pixels.
    Image.fromarray(images[4, 0].numpy()).convert("RGB").resize((84, 84), Image.NEAREST).save(folder / "4.png")
    Image.fromarray(images[5, 0].numpy()).save(folder / "evil\x1b]52;c;eA==\x07name.png")
    (folder / "notes.txt").write_text("not an image, and not named like one\n")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    result = subprocess.run([sys.executable, "-m", "d2lexp.predict", f"ckpt_path={classifier.folder}",
                             f"images={folder}", "top=3"], capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("[")]  # not the log's
    net = load_net(classifier.folder / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        probabilities = torch.softmax(net(inputs[:6]), dim=1)
    for line in lines:
        index = 5 if "evil" in line else int(Path(line.split(":")[0]).stem)
        best = probabilities[index].topk(3)
        shown = ", ".join(f"{CLASS_NAMES[c]} {p:.3f}" for p, c in zip(best.values.tolist(), best.indices.tolist()))
        assert line.endswith(f": {shown}"), (line, shown)
    assert len(lines) == 6 and "\x1b" not in result.stdout + result.stderr and "\\x1b]52" in result.stdout
    # The damaged file: one paragraph, after the others, and the command says it failed.
    assert result.returncode == 1 and "broken.png is not an image d2lexp reads" in result.stderr
    assert "Skipped (not images by their names): notes.txt" in result.stdout and "Traceback" not in result.stderr


def _png(width: int, height: int, data: bytes = b"") -> bytes:
    """A PNG's signature, its header (the size PIL reads first) and one data chunk holding `data`."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)


@pytest.mark.parametrize(
    "name, make, says",
    [
        ("bomb.png", lambda p: p.write_bytes(_png(100_000, 100_000)), "refused by PIL's decompression-bomb guard"),
        ("text.png", lambda p: p.write_text("hello"), "is not an image d2lexp reads"),
        (
            "truncated.png",
            lambda p: p.write_bytes(_png(28, 28, zlib.compress(os.urandom(812))[:100])),
            "cannot be decoded as an image",
        ),
        ("huge.png", lambda p: (p.touch(), os.truncate(p, 60 << 20)), "is refused: 62,914,560 bytes"),
        ("fifo.png", lambda p: os.mkfifo(p), "is not a regular file"),
    ],
)
def test_unreadable_images_are_refused_before_decoding(tmp_path, name, make, says):
    path = tmp_path / name
    make(path)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=says) as refused:
        read_image(path, 1, (28, 28))
    assert time.perf_counter() - start < 1 and "\n" not in str(refused.value)


def test_predict_refuses_a_language_model_for_images(tmp_path):
    from d2lexp.models.rnn import RNNLM
    from d2lexp.predict import classify

    net = RNNLM(vocab_size=28, num_hiddens=8)
    config = {"model": {"_target_": "d2lexp.models.rnn.RNNLM", "vocab_size": 28, "num_hiddens": 8}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "d2lexp_config": config},
               tmp_path / "lm.ckpt")  # fmt: skip
    with pytest.raises(D2lexpError, match="is a language model's: it continues text"):
        classify(tmp_path / "lm.ckpt", tmp_path)
