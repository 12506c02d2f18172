"""Installed like any package: a wheel built from this checkout, installed into a fresh virtual
environment (no network: the test environment's dependencies are reused), works from an empty
folder, its configs read from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.helpers.configs import REPO


def test_a_built_wheel_works_from_an_empty_folder(tmp_path, data_dir):
    wheels = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(wheels)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("d2lexp-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not d2lexp's source
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "D2LEXP_DATA": str(data_dir)}

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    where = subprocess.run([str(python), "-c", "import d2lexp.config as c; print(c.__file__, c.CONF_DIR, c.CONFIG_PATH)"],
                           cwd=empty, env=env, capture_output=True, text=True)  # fmt: skip
    module, conf, path = where.stdout.split()
    assert module.startswith(str(site)) and conf == str(site / "d2lexp" / "conf") and path == "pkg://d2lexp.conf"
    version = command("d2lexp", "--version")
    assert version.returncode == 0 and version.stdout.startswith("d2lexp 0.") and "torch 2." in version.stdout
    job = command("d2lexp", "--cfg", "job", "model=resnet18")
    assert job.returncode == 0 and "d2lexp.models.resnet.ResNet" in job.stdout and "lr: 0.05" in job.stdout
    run = command("d2lexp", "model=softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
                  "callbacks.progress_bar=null")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    (folder,) = (empty / "outputs").glob("*/*")
    assert (folder / "metrics.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    inspected = command("d2lexp-inspect", "model=lenet")
    assert inspected.returncode == 0 and "61,706 parameters" in inspected.stdout
