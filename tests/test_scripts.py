"""The benchmark and the GPU check run end to end (timings are not tested: they are the
scripts' output, measured side by side, never asserted)."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.helpers.configs import REPO


def run(args: list[str], data_dir, tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # the benchmarks are tools of d2lexp's developers: `pytest -m slow` runs them
def test_cnn_benchmark_runs_and_writes_json(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = run([sys.executable, "scripts/benchmark.py", "cnn", "--presets", "lenet", "--batches", "3",
                  "--profile-steps", "3", "--odd-batch", "--lightning-floor", "--json", str(out)], data_dir, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())["cnn"]["presets"]["lenet"]
    assert row["resolution"] == 28 and row["batch_size"] == 256 and row["forward_flops_per_example"] == 833_040
    assert row["batches_per_epoch"] == 3
    assert all(row[k] > 0 for k in ("d2lexp", "ceiling", "book_style"))
    # d2lexp's three timed epochs (--rounds' default) took turns with four ceiling blocks, one each side of each
    assert len(row["d2lexp_epochs"]) == 3 and len(row["ceiling_blocks"]) == 4
    assert row["d2lexp"] == statistics.median(row["d2lexp_epochs"])
    assert row["ceiling"] == statistics.median(row["ceiling_blocks"])
    assert "| lenet | 28 |" in result.stdout and row["compiled"] is None  # eager
    # Lightning's floor took turns with the ceiling the same way; d2lexp/floor is the two ratios to the ceiling, divided
    floor = row["lightning_floor"]
    assert (
        len(floor["epochs"]) == 3
        and len(floor["ceiling_blocks"]) == 4
        and floor["rate"] == statistics.median(floor["epochs"])
    )
    assert all(rate > 0 for rate in floor["epochs"])  # it trained: examples counted off the batches it stepped on
    assert floor["d2lexp_vs_floor"] == pytest.approx(row["d2lexp_vs_ceiling"] / floor["vs_ceiling"])
    assert "| lenet | " in result.stdout.split("Lightning floor ex/s")[1]
    # the step profile: three steps of each loop, with LeNet's convolutions among the host's costliest ops
    for loop in ("d2lexp", "ceiling"):
        profile = row["profile"][loop]
        assert profile["steps"] == 3 and profile["device_ms_per_step"] is None  # the CPU: no device
        assert any("convolution" in op for op in profile["top_host_ops_ms_per_step"]), profile
        assert profile["graph_replays_per_step"] == 0  # no CUDA graphs on a CPU
    # a new batch shape's training step (60,000 mod 256 = 96 examples, less one or two), each way, twice
    assert set(row["odd_batch"]) == {
        f"{way}_{when}_step_seconds" for way in ("autotuned", "heuristic") for when in ("first", "again")
    }
    assert all(seconds > 0 for seconds in row["odd_batch"].values()) and "on heuristics" in result.stdout


@pytest.mark.slow
def test_cnn_benchmark_reports_what_compile_made(data_dir, tmp_path):
    """With speed.compile, each preset's row says what dynamo made of the nets: on the CPU, one
    graph of LeNet without breaks (the ceiling's net, built alike, may reuse d2lexp's graph),
    and its CUDA graphs skipped (no CUDA device)."""
    out = tmp_path / "bench.json"
    result = run([sys.executable, "scripts/benchmark.py", "cnn", "--presets", "lenet", "--batches", "3", "--rounds", "1",
                  "--skip-book-style", "--override", "speed.compile=cudagraphs", "--json", str(out)], data_dir, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())["cnn"]["presets"]["lenet"]
    assert row["compile"] == "cudagraphs" and row["ceiling_setup_seconds"] > 0
    assert row["compiled"]["graphs"] in (1, 2) and row["compiled"]["graph_breaks"] == 0, row["compiled"]
    assert row["compiled"]["cudagraph_skips"] >= 1 and "CUDA-graph skips" in result.stdout


@pytest.mark.slow
def test_cnn_benchmark_sizes_epochs_by_seconds(data_dir, tmp_path):
    """--epoch-seconds picks the batches per epoch from the ceiling's rate, at least 2: a
    millionth of a second asks for fewer than one batch, so every epoch and block has 2."""
    out = tmp_path / "bench.json"
    result = run([sys.executable, "scripts/benchmark.py", "cnn", "--presets", "lenet", "--epoch-seconds", "1e-6",
                  "--rounds", "1", "--skip-book-style", "--json", str(out)], data_dir, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())["cnn"]["presets"]["lenet"]
    assert row["batches_per_epoch"] == 2 and "lenet (2 batches an epoch)" in result.stdout
    assert len(row["d2lexp_epochs"]) == 1 and len(row["ceiling_blocks"]) == 2
    both = run(
        [sys.executable, "scripts/benchmark.py", "cnn", "--batches", "3", "--epoch-seconds", "1"],
        data_dir,
        tmp_path,
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr


@pytest.mark.slow
def test_augment_benchmark_alternates_plain_and_augmented_epochs(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = run([sys.executable, "scripts/benchmark.py", "augment", "--presets", "d2l/lenet", "fast/vgg_bn",
                  "--augment", "flip_crop", "--batches", "4", "--rounds", "2", "--json", str(out)],
                 data_dir, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["augment"]
    assert set(rows) == {"d2l/lenet", "fast/vgg_bn"}
    for row in rows.values():
        # 2 rounds: plain, augmented, plain, augmented, plain after the warm-up epoch
        assert len(row["plain_epochs"]) == 3 and len(row["augmented_epochs"]) == 2, row
        assert row["augment"] == "flip_crop" and row["resolution"] == 28 and row["augmented_vs_plain"] > 0
    assert "| d2l/lenet | 28 | 256 |" in result.stdout


@pytest.mark.slow
def test_overhead_benchmark_runs_and_writes_json(data_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = run([sys.executable, "scripts/benchmark.py", "overhead", "--json", str(out)], data_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["overhead"]
    assert set(rows) == {"minimal", "bare_lightning", "d2lexp"}
    for name in ("bare_lightning", "d2lexp"):
        assert rows[name]["us_per_step"] > rows[name]["us_above_minimal"], rows
    # the call counts do not depend on the machine: each framework layer runs more Python than the one below
    calls = [rows[name]["python_calls_per_step"] for name in ("minimal", "bare_lightning", "d2lexp")]
    assert 0 < calls[0] < calls[1] < calls[2], rows
    # torch ops (most are kernel launches on a GPU): the training step's own, then Lightning's, then d2lexp's
    # data and metrics (a gather, scaling and per-epoch means: 16 with torch 2.14, 36 with torchmetrics'
    # MeanMetric and MulticlassAccuracy)
    minimal, bare, ours = (rows[name]["torch_ops_per_step"] for name in ("minimal", "bare_lightning", "d2lexp"))
    assert 10 <= minimal < bare < ours <= bare + 20, rows
    assert "| bare lightning |" in result.stdout and "| d2lexp |" in result.stdout


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_preset(data_dir, tmp_path):
    sweep = "experiment=d2l/lenet seed=1,2"
    result = run(
        ["bash", "scripts/gpu_check.sh", "--smoke", "--speedrun", "--sweep", sweep, str(tmp_path)],
        data_dir,
        tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "presets_report.md").read_text()
    assert report.count("| done |") == 8 and (tmp_path / "benchmark.json").is_file()
    sweep_report = (tmp_path / "sweep_1_report.md").read_text()
    assert sweep in sweep_report and sweep_report.count("| done |") == 2 and "seed=2" in sweep_report
    assert "full VGG-11 at 224: status done" in (tmp_path / "vgg11_full.txt").read_text()
    speedrun = (tmp_path / "speedrun.txt").read_text()
    assert "| `experiment=fast/speedrun_94` | 1 |" in speedrun and "| `experiment=fast/vgg_bn_best` | 1 |" in speedrun


@pytest.mark.slow
def test_speedrun_benchmark_runs_presets_by_seed_and_the_baseline_once(data_dir, tmp_path):
    out, small = tmp_path / "bench.json", "data.train_subset=512 data.test_subset=256 trainer.max_epochs=1"
    result = run([sys.executable, "scripts/benchmark.py", "speedrun", "--runs", f"experiment=fast/speedrun_94 {small}",
                  "--seeds", "0", "1", "--once", f"experiment=fast/speedrun_95 {small}",
                  "--baseline", f"experiment=fast/vgg_bn_best {small}", "--out", str(tmp_path / "runs"),
                  "--json", str(out)], data_dir, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["speedrun"]["runs"]
    assert [(r["spec"].split()[0], r["seed"]) for r in runs] == [
        ("experiment=fast/speedrun_94", 0), ("experiment=fast/speedrun_95", 0), ("experiment=fast/vgg_bn_best", 0),
        ("experiment=fast/speedrun_94", 1),
    ]  # fmt: skip
    assert all(0 <= r["test_acc"] <= 1 and r["fit_seconds"] > 0 and r["epochs"] == 1 for r in runs), runs
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "baseline_seed0", "once0_seed0", "run0_seed0", "run0_seed1"]  # fmt: skip
