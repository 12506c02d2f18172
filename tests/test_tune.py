"""The learning-rate range test, `python -m d2lexp.tune`: Lightning's lr_find on d2lexp's own data and
task, into a folder of its own, suggesting a rate for the book's LeNet."""

import json
import math

from tests.helpers.cli import run_cli


def test_the_range_test_suggests_the_books_rate_for_its_sigmoid_lenet_and_writes_its_files(tmp_path, data_dir):
    result = run_cli("experiment=d2l_1/lenet", "data.train_subset=12800", "lr_find.num_training=100",
                     f"paths.log_dir={tmp_path / 'outputs'}", cwd=tmp_path, data_dir=data_dir, module="d2lexp.tune")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "outputs" / "tune").glob("*/*")  # outputs/tune/<date>/<time>, like an eval's
    record = json.loads((folder / "lr_find.json").read_text())
    assert record["steps"] == 100 and record["lr"][0] < 2e-5 and record["lr"][-1] > 5
    # Each step's loss, recovered from Lightning's curve: a fresh 10-class net starts near ln 10 (Lightning's
    # own first point is about half of that)...
    assert abs(record["loss"][0] - math.log(10)) < 0.4
    # ...and the sigmoid LeNet's curve is nearly flat until about 0.1, where it falls (it learns): the steepest
    # point of it was one step's noise at 9e-5, the decade that falls most is the book's rate (0.1).
    assert min(record["smoothed_loss"]) < record["smoothed_loss"][10] - 0.03
    assert 0.02 <= record["suggested_lr"] <= 1
    assert (folder / "lr_find.png").stat().st_size > 10_000
    assert f"LeNet: suggested learning rate {record['suggested_lr']:.3g} (configured: 0.1)" in result.stdout
    assert not list(folder.rglob("*.ckpt"))  # lr_find's snapshot of the start stayed in memory
