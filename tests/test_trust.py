"""What a file from outside may set, and how it is read: the allow-list of settings, bounded YAML
and JSON (d2lexp.trust)."""

from __future__ import annotations

import json
import time

import pytest

from d2lexp.config import CONF_DIR
from d2lexp.trust import (
    MAX_DEPTH,
    UntrustedFileError,
    plain_value_problem,
    read_json,
    read_yaml,
    setting_allowed,
    settings_from_file,
)


def test_a_file_sets_the_defining_settings_and_nothing_else():
    recorded = [
        "experiment=d2l/lenet", "~experiment", "model=mlp", "optimizer.lr=0.5", "data.batch_size=64",
        "+trainer.max_time=null", "model.arch=[[1,16],[1,32]]", "trainer.max_epochs=3", "seed=7",
        "scheduler=cosine", "~scheduler",
        # never from a file: paths, loggers, callbacks, launchers, devices, where data comes from, what is "best"
        "paths.output_dir=/tmp/x", "paths.data_dir=/data", "logger=mlflow", "logger.mlflow.tracking_uri=http://x",
        "callbacks.progress_bar=null", "callbacks=early_stopping", "hydra/launcher=parallel", "trainer.devices=4",
        "trainer=ddp_sim", "data.data_dir=/elsewhere", "data.download=true", "init.ckpt_path=somewhere",
        "speed.compile=true", "objective.metric=val/acc",
    ]  # fmt: skip
    settings = settings_from_file(recorded, "run/.hydra/overrides.yaml", CONF_DIR)
    assert settings.taken == recorded[:11]
    assert settings.left_out == recorded[11:]


@pytest.mark.parametrize(
    "override, why",
    [
        ("+model@hydra.callbacks.x=mlp", "uses package syntax"),
        ("+paths@hydra.job.env_set=default", "uses package syntax"),
        ("model._target_=builtins.open", "sets a key of Hydra's instantiate"),
        ("hydra.callbacks.x._target_=os.system", "sets a key of Hydra's instantiate"),
        ("+model.evil={_target_:builtins.open,file:x}", "holds a dict"),
        ("model.num_classes=${oc.env:HOME}", "holds an interpolation"),
        ("data.pipeline='\\${oc.env:HOME}'", "holds an interpolation"),
        ("seed=1,2", "is a sweep"),
        ("experiment=../../elsewhere", "does not name an option"),
        ("model=no_such_net", "is not an option of conf/model/"),
        ("data.pipeline=file:///etc/passwd", "names a place"),
        ("task.loss_name=/etc/passwd", "names a place"),
        ("optimizer.lr=" + "9" * 50, "more than 40 digits"),
        ("model.arch=[" + ",".join(["1"] * 2_001) + "]", "is longer than 2,000 characters"),
        ("~data", "removes the data group, which a run needs"),
    ],
)
def test_what_no_run_records_is_refused(override, why):
    with pytest.raises(UntrustedFileError, match="run/.hydra/overrides.yaml is refused") as refused:
        settings_from_file(["model=lenet", override], "run/.hydra/overrides.yaml", CONF_DIR)
    assert why in str(refused.value) and "nothing else" in str(refused.value)


def test_setting_names_that_hold_places_are_never_taken():
    assert setting_allowed("optimizer.lr") and setting_allowed("trainer.max_epochs")
    for key in ("data.data_dir", "init.ckpt_path", "model.weights_path", "data.root", "data.url", "paths.log_dir",
                "trainer.default_root_dir", "trainer.devices", "logger.tensorboard.save_dir", "model._target_"):  # fmt: skip
        assert not setting_allowed(key), key


def test_plain_values():
    assert plain_value_problem([[1, 64], [2, 128]]) is None and plain_value_problem("bf16-mixed") is None
    assert "dict" in plain_value_problem({"a": 1})
    assert "nested" in plain_value_problem([[[[[1]]]]])
    assert "place" in plain_value_problem("s3://bucket/x") and "place" in plain_value_problem("~/x")
    assert "more than 10,000 values" in plain_value_problem([[1] * 5000, [2] * 5001])


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    """803 bytes that a plain safe_load expands to billions of nodes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "config.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(UntrustedFileError, match="anchors or aliases"):
        read_yaml(bomb)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "text, why",
    [
        ("[" * 5000 + "]" * 5000, "nested more than"),
        ("x: " + "1" * 5000, "more than 4,096 characters"),
        ("x: !!python/object/apply:os.system [true]", "could not determine a constructor"),
    ],
)
def test_hostile_yaml_is_one_paragraph(tmp_path, text, why):
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    with pytest.raises(UntrustedFileError, match=why):
        read_yaml(path)


def test_a_large_yaml_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("- seed=1\n" * 20_000)
    with pytest.raises(UntrustedFileError, match="is larger than 131,072 bytes"):
        read_yaml(path)


def test_hostile_json_is_one_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested"):
        read_json(path)
    path.write_text('{"x": ' + "7" * 5000 + "}")
    with pytest.raises(ValueError, match="more than 40 digits"):
        read_json(path)
    path.write_text(json.dumps({"a": [[[[1]]]]}))
    assert read_json(path) == {"a": [[[[1]]]]} and MAX_DEPTH >= 5
