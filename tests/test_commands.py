"""Every command alike: `python -m d2lexp.<tool>` and `d2lexp-<tool>` are the same command, each
answers --help in d2lexp's words and --version, and a refused input is one paragraph on stderr with
exit code 1 (a table over all of them)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

from d2lexp import __version__

# (console script, module, a command line the tool refuses, the start of what it says)
TOOLS = [
    ("d2lexp", "d2lexp", ["trainer.max_epoch=3"], "trainer.max_epoch is not a setting"),
    ("d2lexp-eval", "d2lexp.eval", ["ckpt_path=no/such/run"], "ckpt_path=no/such/run does not exist"),
    ("d2lexp-inspect", "d2lexp.inspect", ["model.num_clases=3"], "model.num_clases is not a setting"),
    ("d2lexp-report", "d2lexp.report", ["no/such/sweep"], "no/such/sweep is not a folder"),
    ("d2lexp-predict", "d2lexp.predict", ["images=photos"], "Which model? Give a run's checkpoint"),
    ("d2lexp-export", "d2lexp.export", ["ckpt_path=no/such/run"], "ckpt_path=no/such/run does not exist"),
    ("d2lexp-tune", "d2lexp.tune", ["lr_find.min_rl=1"], "lr_find.min_rl is not a setting"),
    ("d2lexp-search", "d2lexp.search", ["trainer.max_epochs=1"], "Which search? Choose a preset"),
]
SCRIPTS = Path(sys.executable).parent
# The console scripts this install has (its metadata, as pip wrote it from pyproject.toml).
SCRIPT_NAMES = {e.name for e in distribution("d2lexp").entry_points if e.group == "console_scripts"}


def test_the_table_holds_every_console_script():
    assert {t[0] for t in TOOLS} == SCRIPT_NAMES


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, module, refused, said", TOOLS, ids=[t[0] for t in TOOLS])
def test_every_command_alike(tmp_path, name, module, refused, said):
    as_module, as_script = [sys.executable, "-m", module], [str(SCRIPTS / name)]
    helps = [run([*form, "--help"], tmp_path) for form in (as_module, as_script)]
    assert all(h.returncode == 0 for h in helps) and helps[0].stdout == helps[1].stdout
    text = helps[0].stdout
    assert text.startswith(f"{name} (python -m {module}): ") and "Usage: " in text and "powered by Hydra" not in text
    version = run([*as_script, "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(f"d2lexp {__version__} (torch ")
    refusals = [run([*form, *refused], tmp_path) for form in (as_module, as_script)]
    for refusal in refusals:  # one paragraph, on stderr, exit 1; nothing written
        assert refusal.returncode == 1 and said in refusal.stderr and "Traceback" not in refusal.stderr
        assert refusal.stdout == "" and not (tmp_path / "outputs").exists()
    assert refusals[0].stderr == refusals[1].stderr
