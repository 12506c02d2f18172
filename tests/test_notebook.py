"""docs/lenet_chapter.ipynb, executed in a real Jupyter kernel (nbclient) on a slice of Fashion-MNIST:
its training cell draws the book's figure and updates it in place, its accuracy is the run's, its
pictures and comparison table are there."""

from __future__ import annotations

import base64
import re

import nbformat
import pytest
from nbclient import NotebookClient

from d2lexp.metrics_file import read_metrics
from tests.helpers.configs import REPO

NOTEBOOK = REPO / "docs" / "lenet_chapter.ipynb"


def _cell(nb, text: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and text in c.source]
    return cell


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _images(cell) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


@pytest.mark.slow  # a Jupyter kernel and two runs (12 s): CI runs it after the suite (.ci/run)
def test_the_lenet_chapter_runs_in_a_kernel(tmp_path, data_dir):
    from d2lexp.api import figure_png
    from d2lexp.plotting import curves_figure

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    # The slice: BN-LeNet leaves chance within two short epochs (the book's sigmoid LeNet needs about
    # three full ones), compared with softmax regression.
    settings = ["data.train_subset=3000", "data.test_subset=500", "trainer.max_epochs=2", f"paths.data_dir={data_dir}"]
    parameters.source = f'MODEL = "lenet_bn"\nSWEEP = ["softmax", "lenet_bn"]\nSETTINGS = {settings!r}'
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    training, summary = _cell(nb, "chapter = run(cfg)"), _cell(nb, "test acc {chapter")
    shown = re.search(r"lenet_bn: train loss [\d.]+, train acc [\d.]+, test acc ([\d.]+)", _text(summary))
    folder = tmp_path / _text(summary).split("its folder: ")[1].strip()
    record = read_metrics(folder)
    assert shown and float(shown.group(1)) == round(record["test/acc"], 3) and record["test/acc"] > 0.2  # chance: 0.1
    # One figure, updated in place each epoch: what it shows last is the run's whole history.
    (figure,) = _images(training)
    assert figure == figure_png(curves_figure(record["history"], "lenet_bn")) and len(record["history"]["epoch"]) == 2
    assert "epoch 2/2" in _text(training) and record["status"] == "done"
    assert len(_images(_cell(nb, "chapter.pictures[name]"))) == 3
    assert "total" in _text(_cell(nb, "format_model_stats")) and "0.weight" in _text(_cell(nb, "format_model_stats"))
    assert len(_text(_cell(nb, "CLASS_NAMES[truth]")).splitlines()) == 8
    comparison = _cell(nb, "compare(*runs.values())").outputs
    (table,) = [o.data["text/markdown"] for o in comparison if "text/markdown" in o.get("data", {})]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "| job |" not in line]
    assert len(rows) == 2 and "| softmax |" in rows[1] and "| lenet\\_bn |" in rows[0]  # Markdown-escaped
    assert f"{record['test/acc']:.4f}" in rows[0] and "| done |" in rows[1]
    assert len(list((tmp_path / "outputs").glob("*/*/metrics.json"))) == 2  # the chapter's run, reused, and softmax
