"""A run resumes from its own recorded settings, with the command's on top, without retyping them
(what a file may set: tests/test_trust.py)."""

from __future__ import annotations

import pytest

from d2lexp.metrics_file import read_metrics
from d2lexp.train import train
from tests.helpers.cli import run_cli


@pytest.mark.slow  # three processes; tests/test_api.py resumes through the same with_recorded_settings in one
def test_a_run_resumes_from_its_own_settings_without_retyping(tmp_path, data_dir, make_cfg):
    """`ckpt_path=<run> trainer.max_epochs=4` alone: the run's own settings, in its own folder, whose
    .hydra/ keeps what it was started with, to the numbers of a run that trained 4 epochs straight."""
    settings = ["experiment=d2l/mlp", "data.train_subset=2000", "data.test_subset=500", "optimizer.lr=0.2",
                "data.batch_size=100"]  # fmt: skip
    first = run_cli(*settings, "trainer.max_epochs=2", "callbacks.progress_bar=null", "hydra.run.dir=outputs/run",
                    cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "outputs" / "run"
    started_with = (run / ".hydra" / "overrides.yaml").read_text()
    resumed = run_cli("ckpt_path=outputs/run", "trainer.max_epochs=4", cwd=tmp_path, data_dir=data_dir)  # only these
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run / ".hydra" / "overrides.yaml").read_text() == started_with  # the run's own settings stay
    this_time = (run / ".hydra" / "resume_1" / "overrides.yaml").read_text()
    assert "trainer.max_epochs=4" in this_time and "optimizer.lr=0.2" in this_time  # its own, under the command's
    a = read_metrics(run)
    b = train(make_cfg(*settings, "trainer.max_epochs=4", output_dir=tmp_path / "straight"))
    assert a["epochs"] == 4 and a["history"]["epoch"] == [0, 1, 2, 3]  # in its own folder, the whole history
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert a[key] == b[key], key


def test_a_refused_command_line_never_imports_torch(tmp_path):
    """Hydra's checks and d2lexp's own end a mistyped command in a moment: torch is imported only
    when a run starts (or resumes)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from d2lexp.overrides import unknown_key_message, with_recorded_settings\n"
        "args = with_recorded_settings(['trainer.max_epoch=3'])\n"
        "assert unknown_key_message('config', args)\n"
        "print('torch' in sys.modules, 'lightning' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False False", result.stderr[-2000:]
