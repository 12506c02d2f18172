"""Files from outside, as an attacker (or bad luck) makes them: crafted checkpoints, run folders and
sweep folders, given to every entry point that reads them (resume by file, by folder, `last`,
`auto`, load_net, eval, predict, report). Whatever they hold, a tree outside the run stays the same
byte for byte, nothing is called out to, memory and time stay bounded, every record stays whole,
and each refusal is one paragraph.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch

from d2lexp.checkpoint import load_checkpoint, load_net
from d2lexp.errors import CheckpointError, ConfigError, D2lexpError, DataError, RunInterrupted
from d2lexp.metrics_file import read_metrics, write_metrics
from d2lexp.run_folder import OutputError, claim, release
from d2lexp.train import train
from tests.helpers.cli import run_cli
from tests.helpers.folders import tree_digest

TINY = ["experiment=d2l/softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
        "data.batch_size=100"]  # fmt: skip


@pytest.fixture
def victim(tmp_path):
    """A user's files outside any run: nothing a crafted file says may change them."""
    root = tmp_path / "victim"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "sub" / "data.bin").write_bytes(os.urandom(1000))
    (root / "sub" / "deeper" / ".bashrc").write_text("export PATH=/usr/bin\n")
    before = tree_digest(root)
    yield root
    assert root.is_dir() and tree_digest(root) == before, "a file from outside changed the user's files"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A real finished run (its folder is copied and altered by each test) and its record."""
    from tests.helpers.configs import test_config

    folder = tmp_path_factory.mktemp("finished") / "run"
    record = train(test_config(folder, data_dir, *TINY))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in TINY))
    return folder, record


def copy_run(finished, where: Path) -> Path:
    folder, _ = finished
    target = where / "shared_run"
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".run.lock"))
    return target


def rewrite_checkpoint(path: Path, change) -> Path:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    return path


def model_checkpoint_states(checkpoint):
    return [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]


# ------------------------------------------------------------------------------------------------
# A shared checkpoint or run folder cannot delete, write or call out anywhere


def test_a_shared_checkpoint_cannot_delete_a_folder_or_redirect_the_run(tmp_path, data_dir, finished, victim):
    """The reported attack: the file's recorded overrides send the run's folder next to a victim,
    and its checkpoint callbacks' bookkeeping names the victim as the "previous best" to remove;
    with it, the file asks for a logger that calls a server. The run resumes in its own folder with
    the file's model and training settings only, removes nothing outside it, calls nobody."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    decoy = tmp_path / "x"

    def poison(checkpoint):
        checkpoint["d2lexp_overrides"] = [*TINY, f"paths.output_dir={decoy}", "logger=mlflow",
                                          f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"]  # fmt: skip
        for state in model_checkpoint_states(checkpoint):
            hostile = f"{decoy}/checkpoints/../../victim"
            state.update(dirpath=f"{decoy}/checkpoints", best_model_path=hostile, kth_best_model_path=hostile,
                         last_model_path=hostile, best_k_models={hostile: torch.tensor(0.0)},
                         best_model_score=torch.tensor(0.0))  # fmt: skip

    shared = tmp_path / "shared.ckpt"
    shutil.copy(finished[0] / "checkpoints" / "last.ckpt", shared)
    rewrite_checkpoint(shared, poison)
    result = run_cli("ckpt_path=shared.ckpt", "trainer.max_epochs=3", "callbacks.progress_bar=null",
                     cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Not taken from its files" in result.stderr and "paths.output_dir" in result.stderr
    assert "logger.mlflow.tracking_uri" in result.stderr
    (run,) = (tmp_path / "outputs").glob("*/*")  # its own folder, not the file's
    record = read_metrics(run)
    assert record["status"] == "done" and record["epochs"] == 3 and record["history"]["epoch"] == [0, 1, 2]
    assert not decoy.exists() and not (tmp_path / "mlruns").exists()
    with pytest.raises(BlockingIOError):
        server.accept()  # no connection was attempted
    server.close()


def test_a_shared_run_folder_cannot_steer_a_resume_in_it(tmp_path, data_dir, finished, victim):
    """The same through a run folder: its .hydra/overrides.yaml and its checkpoint's bookkeeping."""
    from d2lexp.overrides import with_recorded_settings

    run = copy_run(finished, tmp_path)
    (run / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in [*TINY, f"paths.output_dir={tmp_path}/x", "callbacks=early_stopping"])
    )

    def poison(checkpoint):
        for state in model_checkpoint_states(checkpoint):
            state["best_k_models"] = {f"{run}/checkpoints/../../victim": torch.tensor(0.0)}
            state["best_model_path"] = str(victim / "notes.txt")

    rewrite_checkpoint(run / "checkpoints" / "last.ckpt", poison)
    args = with_recorded_settings([f"ckpt_path={run}", "trainer.max_epochs=3"])
    assert not any(a.startswith(("paths.", "callbacks")) for a in args)
    from tests.helpers.configs import compose_config

    cfg = compose_config([*args[:-1], f"paths.data_dir={data_dir}", f"paths.output_dir={run}",
                          "trainer.accelerator=cpu", "callbacks.progress_bar=null"])  # fmt: skip
    record = train(cfg)
    assert record["status"] == "done" and record["history"]["epoch"] == [0, 1, 2]
    assert all(Path(p).parent == run / "checkpoints" for p in (record["best_checkpoint"], record["last_checkpoint"]))


def test_checkpoint_bookkeeping_is_rebuilt_from_the_runs_own_folder(tmp_path, finished, make_cfg):
    """Only names are taken from a file's bookkeeping, and only of checkpoints in the run's own folder."""
    from d2lexp import build
    from d2lexp.resume import checked_for_resume

    run = copy_run(finished, tmp_path)
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    for state in model_checkpoint_states(checkpoint):
        state["best_k_models"] = {
            "/etc/passwd": torch.tensor(1.0),
            f"{run}/checkpoints/../../x.ckpt": torch.tensor(1.0),
        }
        state["best_model_path"] = "/home/someone/epoch000.ckpt"
    built = build.run(make_cfg(*TINY, output_dir=run))
    checked = checked_for_resume(checkpoint, built.task, built.trainer, "shared.ckpt")
    named = [p for s in model_checkpoint_states(checked) for p in [s["best_model_path"], s["last_model_path"],
             s["kth_best_model_path"], *s["best_k_models"]] if p]  # fmt: skip
    assert named and all(Path(p).parent == run / "checkpoints" and Path(p).is_file() for p in named)
    assert not any("passwd" in p or "x.ckpt" in p for p in named)
    assert set(checked) <= {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "optimizer_states",
                            "lr_schedulers", "loops", "callbacks", "d2lexp_random_state", "d2lexp_task", "d2lexp_history"}  # fmt: skip


def test_lightning_removes_only_files_inside_the_run(tmp_path, victim):
    from d2lexp.resume import RunCheckpointIO

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch000.ckpt").write_bytes(b"old")
    io_ = RunCheckpointIO(run)
    for target in (victim, victim / "notes.txt", run / "checkpoints" / ".." / ".." / "victim", "/etc/hostname"):
        io_.remove_checkpoint(target)
    io_.remove_checkpoint(run / "checkpoints" / "epoch000.ckpt")
    assert not (run / "checkpoints" / "epoch000.ckpt").exists()


# ------------------------------------------------------------------------------------------------
# Links in run and sweep folders


@pytest.mark.parametrize("planted", [".run.lock", "train.log", "metrics.json", "checkpoints", "tensorboard"])
def test_a_run_folder_holding_a_link_is_not_resumed_in(tmp_path, finished, victim, planted):
    run = copy_run(finished, tmp_path)
    target = run / planted
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    target.symlink_to(victim / "sub" if planted in ("checkpoints", "tensorboard") else victim / "notes.txt")
    with pytest.raises(OutputError, match=f"it holds a link or special file, {run / planted}"):
        claim(run, suffix_on_collision=False, resuming=True)


def test_writes_replace_links_instead_of_following_them(tmp_path, victim):
    from d2lexp import files

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").symlink_to(victim / "notes.txt")
    write_metrics(folder, {"status": "done"})
    assert not (folder / "metrics.json").is_symlink() and read_metrics(folder) == {"status": "done", "non_finite": None}
    (folder / "train.log").symlink_to(victim / "sub" / "deeper" / ".bashrc")
    with pytest.raises(OSError):
        files.open_append(folder / "train.log")
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())


def test_a_sweep_report_replaces_a_planted_link(tmp_path, victim):
    from d2lexp.report import main

    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        write_metrics(sweep / job, {"status": "done", "model": "mlp", "test/acc": 0.5})
    for name in ("report.md", "report.csv", "report.png"):
        (sweep / name).symlink_to(victim / "notes.txt")
    main([str(sweep)])
    assert not any((sweep / name).is_symlink() for name in ("report.md", "report.csv", "report.png"))
    assert "| mlp |" in (sweep / "report.md").read_text()


def test_an_explicit_output_folder_of_another_run_is_refused(tmp_path, data_dir, finished):
    """paths.output_dir goes through the same claim as hydra.run.dir."""
    run = copy_run(finished, tmp_path)
    before = tree_digest(run)
    result = run_cli(*TINY, f"paths.output_dir={run}", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode == 1 and "is the folder of another run" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and tree_digest(run) == before


# ------------------------------------------------------------------------------------------------
# Small files that would take large memory or time


def alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def compressed_checkpoint(path: Path, values: int) -> Path:
    """A real checkpoint whose zip entries are deflated: a few hundred KB on disk, `values` floats inside."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {"net.weight": torch.zeros(values)}}, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as plain, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as packed:
        for info in plain.infolist():
            packed.writestr(info.filename, plain.read(info.filename))
    return path


def oversized_model_checkpoint(path: Path, model: dict) -> Path:
    from d2lexp.models.lenet import LeNet

    state = {f"net.{k}": v for k, v in LeNet().state_dict().items()}
    torch.save({"state_dict": state, "d2lexp_config": {"model": model}}, path)
    return path


@pytest.mark.slow  # every crafted file in processes of its own (12 s): CI runs it after the suite (.ci/run)
def test_crafted_small_files_end_within_seconds_and_a_few_hundred_mb(tmp_path):
    """Each crafted file below 2 MB goes through load_net (and `ckpt_path=last`'s reading of run
    folders) in a fresh process, whose peak memory is measured after each."""
    files = {
        "resnet": oversized_model_checkpoint(
            tmp_path / "resnet.ckpt", {"_target_": "d2lexp.models.resnet.ResNet", "stages": [200000]}
        ),  # fmt: skip
        "vgg": oversized_model_checkpoint(
            tmp_path / "vgg.ckpt", {"_target_": "d2lexp.models.vgg.VGG", "arch": [[200000, 8]]}
        ),  # fmt: skip
        "compressed": compressed_checkpoint(tmp_path / "compressed.ckpt", 200_000_000),
    }
    expanded = tmp_path / "expanded.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(1).expand(2_000_000_000)}}, expanded)
    files["expanded"] = expanded
    runs = tmp_path / "outputs" / "bomb"
    (runs / ".hydra").mkdir(parents=True)
    (runs / ".hydra" / "config.yaml").write_text(alias_bomb())
    (runs / "checkpoints").mkdir()
    shutil.copy(files["resnet"], runs / "checkpoints" / "last.ckpt")
    assert all(p.stat().st_size < 2_000_000 for p in files.values())
    probe = textwrap.dedent(f"""
        import json, resource, sys, time
        from d2lexp.checkpoint import find_checkpoint, load_net
        from d2lexp.errors import D2lexpError
        results = {{}}
        def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["baseline"] = (peak(), 0.0, "")
        for name, path in {json.dumps({k: str(v) for k, v in files.items()})}.items():
            start = time.perf_counter()
            try:
                load_net(path); said = "loaded"
            except D2lexpError as e:
                said = str(e)
            results[name] = (peak(), time.perf_counter() - start, said)
        start = time.perf_counter()
        try:
            find_checkpoint("last", "{tmp_path / "outputs"}", settings={{"seed": 1}}); said = "found"
        except D2lexpError as e:
            said = str(e)
        results["last"] = (peak(), time.perf_counter() - start, said)
        print(json.dumps(results))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    baseline = results.pop("baseline")[0]
    for name, (peak_mb, seconds, _) in results.items():
        assert peak_mb - baseline < 300 and seconds < 5, (name, peak_mb - baseline, seconds)
    assert "larger than the weights the file holds" in results["resnet"][2]
    assert "larger than the weights the file holds" in results["vgg"][2]
    assert "would inflate" in results["compressed"][2]
    assert "backed by only 4 bytes" in results["expanded"][2]
    assert "differs (its settings cannot be read)" in results["last"][2]


@pytest.mark.parametrize(
    "tensor, why",
    [
        (torch.zeros(3, 3).to_sparse(), "a torch.sparse_coo tensor"),
        (torch.empty(10, device="meta"), "a tensor on the meta device"),
    ],
)
def test_tensors_that_are_not_data_are_refused(tmp_path, tensor, why):
    torch.save({"state_dict": {"net.weight": tensor}}, tmp_path / "odd.ckpt")
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(tmp_path / "odd.ckpt")


def test_shared_references_cannot_multiply_a_checkpoint(tmp_path):
    """A list that holds itself ten times, nested sixty deep: 10**60 values if walked naively."""
    node: list = ["leaf"]
    for _ in range(60):
        node = [node] * 10
    torch.save({"state_dict": {}, "loops": node}, tmp_path / "laughs.ckpt")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="shared references multiplied"):
        load_checkpoint(tmp_path / "laughs.ckpt")
    assert time.perf_counter() - start < 5


# ------------------------------------------------------------------------------------------------
# Resuming restores state only after checking it, each problem one paragraph


def corrupt_and_resume(finished, tmp_path, make_cfg, change) -> str:
    run = copy_run(finished, tmp_path)
    rewrite_checkpoint(run / "checkpoints" / "last.ckpt", change)
    before = tree_digest(run / "checkpoints")
    with pytest.raises(D2lexpError) as refused:
        train(make_cfg(*TINY, "trainer.max_epochs=2", f"ckpt_path={run}", output_dir=run))
    assert tree_digest(run / "checkpoints") == before  # refused before anything was trained or written there
    assert read_metrics(run)["status"] == "failed"
    return str(refused.value)


@pytest.mark.parametrize(
    "change, said",
    [
        (lambda c: c["d2lexp_random_state"].update(torch=torch.zeros(5056, dtype=torch.uint8)), "d2lexp_random_state holds a random state its generator refuses"),
        (lambda c: c["d2lexp_random_state"].update(python=[3, [1, 2], None]), "d2lexp_random_state holds no valid state of Python's"),
        (lambda c: c["optimizer_states"][0]["param_groups"].append(dict(c["optimizer_states"][0]["param_groups"][0])), "optimizer_states[0].param_groups does not have this run's length"),
        (lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr=float("nan")), "is nan, not a number that is finite"),
        (lambda c: c["optimizer_states"][0]["state"].update({0: {"momentum_buffer": torch.zeros(7)}}), "optimizer_states[0].state[0] is state this run's optimizer does not keep"),
        (lambda c: c["loops"]["fit_loop"]["epoch_progress"]["total"].update(ready="many"), "is 'many', not a count"),
        (lambda c: c["loops"]["fit_loop"].pop("epoch_progress"), "does not have this trainer's structure"),
        (lambda c: c["state_dict"].update({"net.0.weight": torch.full_like(c["state_dict"]["net.1.weight"], float("nan"))}), "net.0.weight"),
        (lambda c: c["state_dict"]["net.1.weight"].fill_(float("nan")), "holds NaN or infinite values"),
    ],
)  # fmt: skip
def test_a_resume_checks_every_part_of_the_state(tmp_path, finished, make_cfg, change, said):
    message = corrupt_and_resume(finished, tmp_path, make_cfg, change)
    assert said in message and "\n" not in message


def test_nan_weights_are_not_evaluated_as_done(tmp_path, finished):
    run = copy_run(finished, tmp_path)
    rewrite_checkpoint(run / "checkpoints" / "last.ckpt", lambda c: c["state_dict"]["net.1.weight"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match="holds NaN or infinite values: the run that wrote it diverged"):
        load_net(run / "checkpoints" / "last.ckpt")


# ------------------------------------------------------------------------------------------------
# No record lost


class SignalAt:
    """Sends this process a real signal when the test pass reaches its second batch."""

    def __init__(self, signum: int) -> None:
        import lightning.pytorch as pl

        class Sender(pl.Callback):
            def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
                if batch_idx == 1:
                    os.kill(os.getpid(), signum)

        self.callback = Sender()


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_run_stopped_in_its_test_pass_says_how_and_resumes_to_the_whole_record(
    tmp_path, finished, make_cfg, signum, code, said
):
    stopped = tmp_path / "stopped"
    with pytest.raises(RunInterrupted) as interrupted:
        train(make_cfg(*TINY, output_dir=stopped), callbacks=[SignalAt(signum).callback])
    assert interrupted.value.exit_code == code
    assert read_metrics(stopped)["status"] == "interrupted" and said in read_metrics(stopped)["error"]
    record = train(make_cfg(*TINY, "ckpt_path=auto", output_dir=stopped))
    _, whole = finished
    assert record["status"] == "done"
    for key in ("train/loss", "train/acc", "val/acc", "val/acc_best", "test/acc", "test/loss", "epochs"):
        assert record[key] == whole[key], key
    assert record["history"]["epoch"] == whole["history"]["epoch"]
    assert record["history"]["val/acc"] == whole["history"]["val/acc"]


def test_resuming_a_finished_run_keeps_its_record_whole(tmp_path, finished, make_cfg):
    run = copy_run(finished, tmp_path)
    _, whole = finished
    record = train(make_cfg(*TINY, f"ckpt_path={run}", output_dir=run))
    for key in ("train/loss", "val/acc", "test/acc", "epochs", "time_to_accuracy"):
        assert record[key] == whole[key], key
    timed = {"seconds", "train/examples_per_second"}  # measurements: the checkpoint holds them as saved
    assert {k: v for k, v in record["history"].items() if k not in timed} == {
        k: v for k, v in whole["history"].items() if k not in timed
    }
    assert abs(record["history"]["seconds"][-1] - whole["history"]["seconds"][-1]) < 1.0


# ------------------------------------------------------------------------------------------------
# Text from files is shown, never obeyed


def test_report_shows_hostile_text_as_text(tmp_path, capsys):
    from d2lexp.report import main

    sweep = tmp_path / "sweep"
    write_metrics(sweep / "0", {"status": "failed", "model": "<script>alert(1)</script>",
                                "error": "\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2J boom"})  # fmt: skip
    write_metrics(sweep / "job\nsecond line", {"status": "done", "model": '=HYPERLINK("http://x","y")'})
    main([str(sweep)])
    shown = capsys.readouterr().out
    md, table = (sweep / "report.md").read_text(), (sweep / "report.csv").read_text()
    for text in (shown, md, table):
        assert "\x1b" not in text and "\x07" not in text
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "job\\\\nsecond line" in md and "job\\nsecond line" in shown  # shown as \\n, in Markdown escaped again
    assert "'=HYPERLINK" in table and ",=HYPERLINK" not in table


def test_predict_shows_a_crafted_vocabulary_as_text(tmp_path, capsys):
    from d2lexp.models.rnn import RNNLM

    tokens = [" ", "<unk>", "\x1b[2J", "\x1b]52;c;x\x07", *"abcdefghijklmnopqrstuvwx"]
    net = RNNLM(vocab_size=len(tokens), num_hiddens=8)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    config = {"model": {"_target_": "d2lexp.models.rnn.RNNLM", "vocab_size": len(tokens), "num_hiddens": 8}}
    torch.save({"state_dict": state, "d2lexp_config": config, "TimeMachineDataModule": {"idx_to_token": tokens}},
               tmp_path / "lm.ckpt")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "d2lexp.predict", f"ckpt_path={tmp_path / 'lm.ckpt'}",
                             "prefix=ab", "num_chars=40"], capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout


# ------------------------------------------------------------------------------------------------
# Paths and values that used to end in tracebacks or silently wrong


@pytest.mark.parametrize("name", ["run,a", "it's", "x[1]=#2", "${oc.env:HOME}"])
def test_a_run_folder_named_with_hydra_syntax_resumes(tmp_path, finished, name):
    from d2lexp.overrides import with_recorded_settings
    from tests.helpers.configs import compose_config

    run = tmp_path / name
    shutil.copytree(finished[0], run, ignore=shutil.ignore_patterns(".run.lock"))
    args = with_recorded_settings([f"ckpt_path={run}", "trainer.max_epochs=2"])
    cfg = compose_config(args)
    assert cfg.ckpt_path == str(run)
    assert [a for a in args if a.startswith("hydra.run.dir=")]


def test_idx_labels_out_of_range_are_one_paragraph(tmp_path):
    from d2lexp.data.fashion_mnist import load_split

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for images, labels in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        (raw / images).write_bytes(
            bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(2 * 784)
        )
        (raw / labels).write_bytes(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 10]))  # uint8: 3, 10
    with pytest.raises(DataError, match="has label 10; Fashion-MNIST's labels are 0 to 9"):
        load_split(raw, "train")
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 9, 1]) + (2).to_bytes(4, "big") + bytes([3, 255]))
    with pytest.raises(DataError, match="holds torch.int8 labels, not Fashion-MNIST's unsigned bytes"):
        load_split(raw, "train")  # int8: 3, -1


@pytest.mark.parametrize(
    "override, said",
    [
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be at least 1"),
        ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch must be at least 1"),
        ("seed=-5", "seed must be a whole number from 0 to 4294967295"),
        ("augment.rotation=inf", "augment.rotation must be a finite number"),
    ],
)
def test_values_that_used_to_crash_are_one_paragraph(make_cfg, override, said):
    from d2lexp import build

    with pytest.raises(ConfigError, match=said):
        build.run(make_cfg(*TINY, override))


def test_a_huge_number_on_the_command_line_is_one_paragraph(tmp_path):
    result = run_cli("seed=" + "9" * 5000, cwd=tmp_path)
    assert result.returncode == 1 and "more than 1,000 digits" in result.stderr and "Traceback" not in result.stderr


def test_claims_are_released_for_the_next_command(tmp_path):
    folder = claim(tmp_path / "run", suffix_on_collision=False)
    release(folder)
    assert claim(folder, suffix_on_collision=False, resuming=True) == folder
    release(folder)
