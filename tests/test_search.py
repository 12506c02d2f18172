"""The book's hyperparameter search (d2lexp.search): ASHA's pruning at epoch ends, recorded as
`pruned`; the settings a shared storage may set; 2 workers sharing a study; synchronous successive
halving going on by resuming exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from d2lexp.config import CONF_DIR
from d2lexp.errors import ConfigError
from d2lexp.metrics_file import read_metrics
from d2lexp.search.command import schedule_name, search_job
from d2lexp.search.halving import rung_levels
from d2lexp.search.report import write_search_report
from d2lexp.search.space import overrides, parse_space, suggest
from d2lexp.search.trial import SearchJob, compose_search, open_storage, trial_config, work
from d2lexp.trust import UntrustedFileError, read_yaml, settings_from_file
from tests.helpers.cli import run_cli
from tests.helpers.configs import QUIET_OVERRIDES, compose_config

SPACE = {"optimizer.lr": {"low": 0.01, "high": 1.0, "log": True}, "data.batch_size": {"low": 32, "high": 256}}
# Softmax regression on 1,000 images: it learns within an epoch, so trials differ early.
TINY = ["experiment=d2l_1/softmax", "data.train_subset=1000", "data.val_size=1000", "data.test_subset=500",
        "trainer.max_epochs=2", "trainer.accelerator=cpu"]  # fmt: skip


def test_a_shared_storage_sets_only_the_spaces_own_settings_within_their_ranges(tmp_path):
    space = parse_space(SPACE)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "study.journal"))))
    # Anyone who can write the journal can enqueue trials: a key of its own is never set...
    study.enqueue_trial({"optimizer.lr": 0.1, "data.batch_size": 64, "paths.log_dir": "/etc"})
    assert overrides(suggest(study.ask(), space)) == ["optimizer.lr=0.1", "data.batch_size=64"]
    # ...and a value outside the space is refused, not trained with.
    study.enqueue_trial({"optimizer.lr": 50.0, "data.batch_size": 64})
    with pytest.warns(UserWarning), pytest.raises(UntrustedFileError, match=r"optimizer.lr='50.0'.*outside"):
        suggest(study.ask(), space)
    for key in ("paths.log_dir", "hydra.run.dir", "callbacks.ema._target_", "data.data_dir"):  # not a run's setting
        with pytest.raises(ConfigError, match="search.params"):
            parse_space({key: {"choices": [1, 2]}})
    assert rung_levels(2, 10, 2) == [2, 4, 8, 10]  # the book's rungs for r_min 2, r_max 10, eta 2
    # Nested or dotted alike; nested, the command line reaches a range and adds a setting.
    assert (
        parse_space({"optimizer": {"lr": SPACE["optimizer.lr"]}, "data.batch_size": SPACE["data.batch_size"]}) == space
    )
    cfg = compose_search(["hparams_search=d2l_random", "experiment=d2l_1/mlp", "search.params.optimizer.lr.low=0.05",
                          "+search.params.model.num_hiddens={choices: [64, 128]}"])  # fmt: skip
    searched = parse_space(OmegaConf.to_container(cfg.search.params))
    assert [(p.key, p.low, p.choices) for p in searched] == [("optimizer.lr", 0.05, None), ("data.batch_size", 32, None),
                                                             ("model.num_hiddens", None, (64, 128))]  # fmt: skip


@pytest.mark.parametrize(
    "preset, schedule, trials",
    [("d2l_random", "random search", 6), ("d2l_successive_halving", "successive halving", 8),
     ("d2l_asha", "random search, ASHA", 12)],
)  # fmt: skip
def test_the_presets_search_the_books_space_for_its_lenet(tmp_path, preset, schedule, trials):
    cfg = compose_search([f"hparams_search={preset}"])
    job = search_job(cfg, tmp_path, [f"hparams_search={preset}"])
    assert schedule_name(cfg) == schedule and job.trials == trials and job.maximize and job.metric == "val/acc"
    assert [(p.key, p.low, p.high, p.log) for p in job.space] == [("optimizer.lr", 0.01, 1.0, True),
                                                                  ("data.batch_size", 32, 256, False)]  # fmt: skip
    assert job.space[1].integer and cfg.model._target_.endswith("LeNet") and cfg.trainer.max_epochs == 10
    assert cfg.data.val_size == 10000 and cfg.data.get("train_subset") is None  # the book's other 50,000 train
    if cfg.search.halving is not None:
        halving = cfg.search.halving
        assert rung_levels(halving.min_epochs, halving.max_epochs, halving.eta) == [2, 4, 8, 10]


def test_asha_stops_trials_at_epoch_ends_as_pruned_by_its_rule(tmp_path, data_dir):
    """One worker, in this process: trials in order, so ASHA's every decision can be checked here.
    Rungs after epochs 1 and 2; a trial that reaches its last, the 3rd, completes (the book's r_max)."""
    folder = tmp_path / "search"
    folder.mkdir()
    job = SearchJob(
        folder=str(folder), overrides=("hparams_search=d2l_asha", *TINY, "trainer.max_epochs=3",
                                       f"paths.data_dir={data_dir}", *QUIET_OVERRIDES),
        study_name="asha", storage=None, metric="val/acc", maximize=True, space=tuple(parse_space(SPACE)), trials=4,
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},
        pruner={"_target_": "optuna.pruners.SuccessiveHalvingPruner", "min_resource": 1, "reduction_factor": 2},
    )  # fmt: skip
    study = optuna.create_study(study_name="asha", storage=open_storage(job), direction="maximize")
    work(job, worker=0)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3] and (folder / "study.journal").is_file()
    reached: dict[int, list[float]] = {1: [], 2: []}  # each rung's scores so far: after epochs 1 and 2
    for trial in trials:
        record = read_metrics(folder / "trials" / f"{trial.number:03d}")
        curve = record["history"]["val/acc"]
        assert trial.intermediate_values == {e + 1: v for e, v in enumerate(curve)}  # reported each epoch
        stopped = None
        for step in (1, 2):  # ASHA's rule: go on only in the best max(1, n // 2) of the n that reached the rung
            if step > len(curve):
                break
            reached[step].append(curve[step - 1])
            kept = sorted(reached[step], reverse=True)[: max(1, len(reached[step]) // 2)]
            if curve[step - 1] < kept[-1]:
                stopped = step
                break
        if stopped is None:
            assert trial.state == TrialState.COMPLETE and record["status"] == "done" and len(curve) == 3
            assert trial.value == record["val/acc"] and "test/acc" in record
        else:  # stopped at that epoch's end: no more epochs, no test pass
            assert trial.state == TrialState.PRUNED and record["status"] == "pruned" and len(curve) == stopped
            assert record["pruned_at_epoch"] == stopped and "test/acc" not in record
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    summary = write_search_report(folder, study, job, "ASHA", 1.0)
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert summary["best"]["trial"] == best.number and summary["pruned"] == sum(
        t.state == TrialState.PRUNED for t in trials
    )
    assert summary["epochs_trained"] == sum(len(t.intermediate_values) for t in trials)
    assert (folder / "search.png").stat().st_size > 10_000 and "| pruned |" in (folder / "report.md").read_text()
    # A trial's folder is a run's: its recorded settings (the preset's spelled out) compose its run again.
    recorded = settings_from_file(read_yaml(folder / "trials" / "000" / ".hydra" / "overrides.yaml"), "trial", CONF_DIR)
    assert not [o for o in recorded.taken + recorded.left_out if o.startswith("hparams_search")]
    again, trial = compose_config(recorded.taken), trial_config(job, trials[0].params, folder / "again")
    for key in ("model", "data", "init", "optimizer", "trainer.max_epochs"):
        assert OmegaConf.select(again, key) == OmegaConf.select(trial, key), key


@pytest.mark.parametrize("epochs, state, trained", [(2, TrialState.PRUNED, 1), (1, TrialState.COMPLETE, 1)])
def test_a_trial_is_pruned_at_an_epochs_end_but_not_at_its_last(tmp_path, data_dir, epochs, state, trained):
    """A pruner that gives up on every trial (all scores below 2): it stops a trial after its first epoch,
    unless that is its last (the book's r_max: the trial completed what it was to train)."""
    job = SearchJob(
        folder=str(tmp_path), overrides=(*TINY, f"trainer.max_epochs={epochs}", f"paths.data_dir={data_dir}",
                                         *QUIET_OVERRIDES, "hparams_search=d2l_asha"),
        study_name="all", storage=None, metric="val/acc", maximize=True, space=tuple(parse_space(SPACE)), trials=1,
        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0},  # lr 0.125, batch 192
        pruner={"_target_": "optuna.pruners.ThresholdPruner", "lower": 2.0},
    )  # fmt: skip
    study = optuna.create_study(study_name="all", storage=open_storage(job), direction="maximize")
    work(job, worker=0)
    (trial,) = study.get_trials()
    record = read_metrics(tmp_path / "trials" / "000")
    assert trial.state == state and len(record["history"]["val/acc"]) == trained
    assert ("test/acc" in record) == (state == TrialState.COMPLETE) and record["val/acc"] > 0.3  # it learned


def _search(tmp_path: Path, data_dir: Path, *args: str) -> tuple[Path, dict]:
    result = run_cli(*TINY, *args, *QUIET_OVERRIDES, f"paths.log_dir={tmp_path / 'outputs'}", cwd=tmp_path,
                     data_dir=data_dir, module="d2lexp.search", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "outputs" / "search").glob("*/*")  # outputs/search/<date>/<time>: the search's own
    return folder, json.loads((folder / "search.json").read_text())


@pytest.mark.slow  # two worker processes training (17 s): CI runs it after the suite (.ci/run)
def test_two_worker_processes_share_one_study_and_learn(tmp_path, data_dir):
    """The one-machine form of a parallel search: `search.workers=2` processes, one journal."""
    folder, summary = _search(tmp_path, data_dir, "hparams_search=d2l_asha", "search.trials=4", "search.workers=2",
                              "search.pruner.min_resource=1")  # fmt: skip
    study = optuna.load_study(study_name=f"search-{folder.parent.name}-{folder.name}",
                              storage=JournalStorage(JournalFileBackend(str(folder / "study.journal"))))  # fmt: skip
    trials = study.get_trials()
    assert len(trials) >= 4 and summary["trials"] == len(trials) and summary["failed"] == 0
    records = {t.number: read_metrics(folder / "trials" / f"{t.number:03d}") for t in trials}
    for trial in trials:
        assert (
            records[trial.number]["status"] == {TrialState.COMPLETE: "done", TrialState.PRUNED: "pruned"}[trial.state]
        )
    assert len({r["pid"] for r in records.values()}) == 2  # trained in the two workers' processes...
    spans = sorted((r["started_at"], r["finished_at"]) for r in records.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # ...two at the same time
    best = max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert summary["best"]["value"] == best > 0.5  # softmax regression learned (chance: 0.1)
    assert {"report.md", "report.csv", "search.png", "search.json", "study.journal", "search.log"} <= {
        p.name for p in folder.iterdir()
    }


@pytest.mark.slow  # about a minute on 2 cores
def test_successive_halving_goes_on_by_resuming_exactly(tmp_path, data_dir, make_cfg):
    from d2lexp.train import train

    folder, summary = _search(
        tmp_path,
        data_dir,
        "hparams_search=d2l_successive_halving",
        "search.trials=4",
        "search.halving.min_epochs=1",
        "trainer.max_epochs=3",
    )  # fmt: skip  (rungs 1, 2, 3)
    epochs = sorted(len(read_metrics(p)["history"]["val/acc"]) for p in (folder / "trials").iterdir())
    assert epochs == [1, 1, 2, 3] and (summary["complete"], summary["pruned"]) == (1, 3)  # 4 trials, then 2, then 1
    best = read_metrics(Path(summary["best"]["folder"]))
    assert best["resumed_from"].endswith("last.ckpt")  # trained 1 + 1 + 1 epochs...
    settings = [*TINY, "trainer.max_epochs=3", *summary["best"]["settings"]]
    straight = train(make_cfg(*settings, output_dir=tmp_path / "straight"))
    for key in ("train/loss", "val/acc", "test/acc"):  # ...it is the run trained 3 epochs straight
        assert best[key] == straight[key], key
    assert math.isclose(summary["best"]["value"], straight["val/acc"])


def test_the_training_command_refuses_a_search_preset(tmp_path, data_dir):
    result = run_cli("hparams_search=d2l_asha", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode == 1 and "run it with python -m d2lexp.search hparams_search=d2l_asha" in result.stderr
    assert not (tmp_path / "outputs").exists()
