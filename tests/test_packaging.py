"""Installed like any package: a wheel built from this checkout, installed into a fresh virtual
environment (no network: the test environment's dependencies are reused), works from an empty
folder, its configs read from the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.configs import REPO


@pytest.mark.slow  # a wheel built and installed (about 20 s): CI runs it after the suite (.ci/run)
def test_a_built_wheel_works_from_an_empty_folder(tmp_path, data_dir):
    # Built from a copy of the checkout (the files git does not ignore): a build writes its egg-info and build/ folder
    # into the source tree, where the checkout's own metadata would then shadow the install's.
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
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
    assert _launchers_hydra_finds(python, empty, env) >= {"hydra_plugins.d2lexp_launcher.ParallelLauncher"}


def test_hydra_finds_the_launchers_of_this_install_from_any_folder(tmp_path):
    """The environment the tests run in (an editable install, as the README's test command makes
    it): Hydra finds plugins only by walking the hydra_plugins namespace package, which an editable
    install's import hook does not list unless the namespace itself is one of the distribution's
    packages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert _launchers_hydra_finds(Path(sys.executable), tmp_path, env) == {
        "hydra_plugins.d2lexp_launcher.ParallelLauncher",
        "hydra_plugins.d2lexp_launcher.SlurmLauncher",
    }


def _launchers_hydra_finds(python: Path, cwd: Path, env: dict) -> set[str]:
    found = subprocess.run(
        [str(python), "-c", "from hydra.core.plugins import Plugins\n"
         "print(*(n for n in Plugins.instance().class_name_to_class if n.startswith('hydra_plugins.d2lexp')))"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr[-2000:]
    return set(found.stdout.split())
