"""Models leave as standard files (d2lexp.export): the files compute what the net computes on real
test images, the safetensors weights come back only through d2lexp's registry, and crafted export
folders run nothing and end in one paragraph. (The trained classifier: tests/conftest.py.)"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from d2lexp.checkpoint import load_net, load_safetensors_net
from d2lexp.data.fashion_mnist import CLASS_NAMES


def test_the_exported_files_compute_what_the_net_does(classifier, test_images, tmp_path):
    import onnxruntime

    from d2lexp.export import export
    from d2lexp.overrides import with_recorded_settings

    folder = tmp_path / "exported"
    # As python -m d2lexp.export ckpt_path=<run> does: the run's recorded settings under the command's.
    args = with_recorded_settings([f"ckpt_path={classifier.folder}"], own_folder=False)
    record = export(export_config([*args, f"paths.output_dir={folder}"]))
    assert sorted(p.name for p in folder.iterdir()) == [
        "export.json", "model.json", "model.onnx", "model.pt2", "model.safetensors"
    ]  # fmt: skip
    _, _, inputs = test_images
    net = load_net(classifier.folder / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        expected = net(inputs)
    # ONNX Runtime, on 256 real test images (the graph was exported with a batch of 2: any batch works).
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"images": inputs.numpy()})
    onnx_difference = (torch.from_numpy(onnx_logits) - expected).abs().max().item()
    program = torch.export.load(folder / "model.pt2")  # the file this test just had written
    exported_difference = (program.module()(inputs) - expected).abs().max().item()
    with torch.no_grad():
        reloaded = load_safetensors_net(folder)(inputs)
    print(f"max |logit difference| on 256 test images: onnx {onnx_difference:.2e}, torch.export "
          f"{exported_difference:.2e}, safetensors {(reloaded - expected).abs().max().item():.2e}")  # fmt: skip
    assert onnx_difference < 1e-5 and exported_difference < 1e-5
    assert torch.equal(reloaded, expected)  # the same weights in the same net: identical
    assert torch.equal(reloaded.argmax(1), torch.from_numpy(onnx_logits).argmax(1))
    settings = json.loads((folder / "model.json").read_text())
    assert settings["model"] == {"_target_": "d2lexp.models.lenet.LeNetBN", "in_channels": 1, "num_classes": 10}
    assert settings["input"]["preprocessing"]["normalize"] == {"mean": 0.2860, "std": 0.3530}
    assert settings["classes"] == list(CLASS_NAMES) and settings["input"]["shape"] == ["batch", 1, 28, 28]
    assert all(entry["max_abs_diff"] < 1e-5 for entry in record["formats"].values())
    assert record["formats"]["safetensors"]["max_abs_diff"] == 0.0


def export_config(overrides: list[str]):
    """conf/export.yaml composed with `overrides`."""
    from hydra import compose, initialize_config_dir

    from d2lexp.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="export", overrides=overrides)


@pytest.mark.parametrize("name", ["export", "eval"])
def test_a_tools_config_claims_no_run_folder(tmp_path, monkeypatch, name):
    """Composing eval's or export's config (which name folders of their own) claims nothing: a config
    merged over the runs' `hydra.run.dir` used to resolve it, leaving an empty claimed folder behind."""
    from hydra import compose, initialize_config_dir

    from d2lexp.config import CONF_DIR

    monkeypatch.chdir(tmp_path)  # where paths.log_dir's default, ./outputs, is
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=name, return_hydra_config=True)
    assert list(tmp_path.iterdir()) == []
    assert OmegaConf.to_container(cfg.hydra.run)["dir"].startswith("${new_run_folder:${paths.runs_dir}/")
    assert cfg.paths.runs_dir == f"outputs/{name}"


@pytest.mark.slow  # a second process for one paragraph; export() itself is tested in-process above
def test_export_of_a_file_that_is_no_checkpoint_is_one_paragraph(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    result = subprocess.run([sys.executable, "-m", "d2lexp.export", "ckpt_path=notes.ckpt"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "cannot be read as a checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# Crafted export folders: model.json and model.safetensors from someone else


def _export_folder(where: Path, settings: dict, tensors: dict | None = None, raw: bytes | None = None) -> Path:
    from safetensors.torch import save

    where.mkdir(parents=True)
    (where / "model.json").write_text(json.dumps({"format": "d2lexp-net/1", **settings}))
    (where / "model.safetensors").write_bytes(raw if raw is not None else save(tensors or {}))
    return where


def test_crafted_export_folders_run_nothing_and_stay_bounded(tmp_path):
    """Each crafted folder goes through load_safetensors_net in a fresh process, whose peak memory
    is measured after each: a refusal within a second and a few MB, naming why, and nothing run."""
    from d2lexp.models.lenet import LeNet

    marker = tmp_path / "marker"
    lenet = {"_target_": "d2lexp.models.lenet.LeNet", "in_channels": 1, "num_classes": 10}
    weights = {k: v.clone() for k, v in LeNet().state_dict().items()}
    header = json.dumps({"0.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 4 * 10**10]}})
    folders = {
        "code": _export_folder(
            tmp_path / "code", {"model": {"_target_": "os.system", "command": f"touch {marker}"}}, weights
        ),  # fmt: skip
        "huge_net": _export_folder(
            tmp_path / "huge_net", {"model": {"_target_": "d2lexp.models.mlp.MLP", "num_hiddens": 10**12}}, weights
        ),
        "header_length": _export_folder(
            tmp_path / "header_length", {"model": lenet}, raw=struct.pack("<Q", 2**62) + b"{}"
        ),  # fmt: skip
        "header_claims": _export_folder(
            tmp_path / "header_claims", {"model": lenet}, raw=struct.pack("<Q", len(header)) + header.encode()
        ),  # fmt: skip
        "other_net": _export_folder(
            tmp_path / "other_net", {"model": lenet}, {f"w{i}": torch.zeros(6171) for i in range(10)}
        ),  # LeNet's count and size, not its names
        "nan": _export_folder(
            tmp_path / "nan", {"model": lenet}, {**weights, "0.bias": torch.full((6,), float("nan"))}
        ),  # fmt: skip
        "deep_json": tmp_path / "deep_json",
        "big_json": tmp_path / "big_json",
    }
    folders["deep_json"].mkdir()
    (folders["deep_json"] / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    folders["big_json"].mkdir()
    (folders["big_json"] / "model.json").write_text(json.dumps({"format": "d2lexp-net/1", "x": "a" * 400_000}))
    probe = textwrap.dedent(f"""
        import json, re, time
        from pathlib import Path
        from d2lexp.checkpoint import load_safetensors_net
        from d2lexp.errors import D2lexpError
        def peak(): return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
        results = {{"baseline": (peak(), 0.0, "")}}
        for name, folder in {json.dumps({k: str(v) for k, v in folders.items()})}.items():
            start = time.perf_counter()
            try:
                load_safetensors_net(folder); said = "loaded"
            except D2lexpError as e:
                said = str(e)
            results[name] = (peak(), time.perf_counter() - start, said)
        print(json.dumps(results))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    baseline = results.pop("baseline")[0]
    for name, (peak_mb, seconds, said) in results.items():
        assert peak_mb - baseline < 100 and seconds < 2, (name, peak_mb - baseline, seconds)
        assert "\n" not in said and said != "loaded", (name, said)
    assert not marker.exists()
    says = {
        "code": "model._target_ names 'os.system', which is not one of d2lexp's nets",
        "huge_net": "describe a MLP larger than the weights the file holds",
        "header_length": "its header says it is 4,611,686,018,427,387,904 bytes long",
        "header_claims": "refused by the safetensors reader",
        "other_net": "do not fit the net its config describes",
        "nan": "holds NaN or infinite values",
        "deep_json": "nested too deeply",
        "big_json": "is larger than 262,144 bytes",
    }
    for name, text in says.items():
        assert text in results[name][2], (name, results[name][2])


def test_a_language_model_exports_its_weights_not_its_graph(tmp_path, data_dir):
    from d2lexp.data.time_machine import TimeMachineDataModule
    from d2lexp.export import ExportError, export_net
    from d2lexp.models.rnn import RNNLM

    net = RNNLM(vocab_size=28, num_hiddens=16, cell="gru").eval()
    settings = {"_target_": "d2lexp.models.rnn.RNNLM", "vocab_size": 28, "num_hiddens": 16, "cell": "gru"}
    data = TimeMachineDataModule(data_dir=str(data_dir), download=False)
    record = export_net(net, tmp_path / "lm", data, settings, check_examples=4)
    assert list(record["formats"]) == ["safetensors"] and record["formats"]["safetensors"]["max_abs_diff"] == 0.0
    tokens = torch.randint(0, 28, (3, 35))
    with torch.no_grad():
        assert torch.equal(load_safetensors_net(tmp_path / "lm")(tokens)[0], net(tokens)[0])
    with pytest.raises(ExportError, match="returns more than one tensor") as refused:
        export_net(net, tmp_path / "lm_onnx", data, settings, formats=["onnx"])
    assert "format=safetensors" in str(refused.value) and not (tmp_path / "lm_onnx").exists()


@pytest.mark.slow  # the command line end to end; the in-process export above checks the same files
def test_the_export_command_writes_a_folder_of_its_own(classifier, tmp_path):
    result = subprocess.run([sys.executable, "-m", "d2lexp.export", f"ckpt_path={classifier.folder}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "outputs" / "export").glob("*/*")
    assert list((tmp_path / "outputs").iterdir()) == [tmp_path / "outputs" / "export"]  # nothing else claimed
    record = json.loads((folder / "export.json").read_text())
    assert record["status"] == "done" and record["model"] == "lenet_bn"
    assert all(entry["max_abs_diff"] < 1e-5 for entry in record["formats"].values())
    assert "lenet_bn: exported safetensors, onnx, torch_export" in result.stdout
    assert (folder / ".hydra" / "overrides.yaml").is_file() and (folder / "export.log").is_file()
