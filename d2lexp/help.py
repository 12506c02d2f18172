"""`python -m d2lexp --help`: d2lexp's own help, made from conf/ (so it lists what is there)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from d2lexp.config import CONF_DIR

# (command, what it does), for the help of `d2lexp` (d2lexp.cli.Command).
EXAMPLES = (
    ("python -m d2lexp", "the book's LeNet, with its recipe"),
    ("python -m d2lexp model=vgg11", "any model, with its book recipe (conf/recipe/)"),
    ("python -m d2lexp model=resnet18 trainer=gpu", "on a GPU"),
    ("python -m d2lexp experiment=d2l_1/lenet", "the current edition's (d2l.ai 1.0) recipe instead"),
    ("python -m d2lexp experiment=fast/vgg_bn", "past 0.91 test accuracy in under 2 minutes on a CPU"),
    ("python -m d2lexp augment=flip_crop augment.rotation=10", "augmented training images (augmentation.png)"),
    ("python -m d2lexp model=mlp optimizer=adam optimizer.lr=1e-3", "the recipe, your changes on top"),
    ("python -m d2lexp -m model=lenet,alexnet,vgg11", "a sweep, compared in a report"),
    ("python -m d2lexp -m hydra/launcher=parallel seed=1,2,3,4", "jobs side by side, each in its own process"),
    ("python -m d2lexp ckpt_path=outputs/<date>/<time> trainer.max_epochs=20", "resume a run, with its own settings"),
    ("python -m d2lexp --cfg job", "the composed config, without running it"),
)


def options(group: Path) -> list[str]:
    return sorted(str(p.relative_to(group).with_suffix("")) for p in group.rglob("*.yaml"))


def text(conf: Path = Path(CONF_DIR)) -> str:
    """The help: what d2lexp is, each config group with its options, the book's presets, examples."""
    lines = ["Config groups (conf/<group>/<option>.yaml; choose one with group=option):"]
    skipped = ("hydra", "experiment", "recipe")  # Hydra's own, the presets (listed below), what models include
    groups = sorted(p for p in conf.iterdir() if p.is_dir() and p.name not in skipped and not p.name.startswith("_"))
    for group in [*groups, conf / "hydra" / "launcher"]:
        name = group.relative_to(conf).as_posix()
        wrapped = textwrap.wrap(", ".join(options(group)), width=82)
        lines += [f"  {name if i == 0 else '':<16} {part}" for i, part in enumerate(wrapped)]
    lines += [
        "",
        "A model brings its recipe (conf/recipe/<model>.yaml); presets change it (experiment=<preset>): d2l/ the course's book,",
        "d2l_1/ the current edition (d2l.ai 1.0), fast/ beyond the book:",
        *textwrap.wrap(", ".join(options(conf / "experiment")), width=98, initial_indent="  ", subsequent_indent="  "),
        "",
        "Any key can be set (trainer.max_epochs=3, data.batch_size=128); `--cfg job` shows them all.",
        "Hydra's own flags: --cfg job (the config), --hydra-help. The other commands: d2lexp-eval, d2lexp-inspect,",
        "d2lexp-report, d2lexp-predict, d2lexp-export (each with --help).",
    ]
    return "\n".join(lines)
