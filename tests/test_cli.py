"""The command line, as a user types it: bad input ends with one clear paragraph and a non-zero exit."""

import pytest

from tests.helpers.cli import run_cli


def test_unknown_model_lists_the_choices(tmp_path):
    result = run_cli("model=vgg12", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/vgg12'" in result.stderr and "lenet" in result.stderr
    assert not (tmp_path / "outputs").exists()  # nothing was written


def test_wrong_type_names_the_key(tmp_path):
    result = run_cli("trainer.max_epochs=abc", cwd=tmp_path)
    assert result.returncode != 0
    assert "trainer.max_epochs" in result.stderr and "abc" in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelt_key_is_refused(tmp_path):
    result = run_cli("data.batchsize=64", cwd=tmp_path)
    assert result.returncode != 0 and "data.batchsize" in result.stderr


def test_missing_data_offline_is_one_paragraph(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = run_cli(f"paths.data_dir={empty}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = [l for l in (result.stderr + result.stdout).splitlines() if "Fashion-MNIST is not in" in l]
    assert len(lines) == 1 and str(empty) in lines[0] and "D2LEXP_DATA" in lines[0]


@pytest.mark.slow  # test_faults.py's truncated checkpoint is refused the same way
def test_unreadable_checkpoint_leaves_earlier_runs_alone(tmp_path, data_dir):
    earlier = tmp_path / "outputs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text('{"status": "done"}\n')
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    result = run_cli(f"ckpt_path={bad}", "data.train_subset=1000", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"ckpt_path={bad} cannot be read" in output and "Traceback" not in output
    assert (earlier / "metrics.json").read_text() == '{"status": "done"}\n'
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["earlier"]  # refused before any folder was made


@pytest.mark.slow  # the command line's runs are those of test_eval, test_faults and the launcher's tests
def test_a_real_run_from_the_command_line(tmp_path, data_dir):
    result = run_cli("experiment=d2l/softmax", "data.train_subset=5000", "data.test_subset=1000", "trainer.max_epochs=2",
                     "callbacks.progress_bar=null", cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # outputs/YYYY-MM-DD/HH-MM-SS
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")) and (run_dir / ".hydra/config.yaml").is_file()
    assert "softmax: done, 2 epochs" in result.stderr + result.stdout
    # One line per epoch in the log, whatever the console is (here a pipe), and the book's figure.
    epochs = [line for line in (run_dir / "train.log").read_text().splitlines() if "] - epoch " in line]
    assert [line.split(" - ")[1].split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in line and "val acc" in line and "examples/s" in line for line in epochs)
    from PIL import Image

    assert Image.open(run_dir / "curves.png").size == (550, 380)


def test_help_is_d2lexps_own(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0 and "is powered by Hydra" not in out and "schema" not in out
    groups = out.split("Config groups")[1].split("A model brings its recipe")[0]
    assert all(f"  {group} " in groups for group in ("model", "optimizer", "speed", "trainer", "hydra/launcher"))
    assert all(option in groups for option in ("resnet18", "adamw", "parallel", "ddp_sim"))
    assert "  recipe " not in groups  # what models include, not a group to choose
    assert all(preset in out for preset in ("d2l/lenet", "d2l_1/lenet", "fast/vgg_bn"))
    assert "Examples:" in out and "python -m d2lexp model=vgg11" in out and "d2lexp-eval" in out
