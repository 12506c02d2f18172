"""Where Hydra finds d2lexp's launchers: Hydra loads plugins only from the `hydra_plugins`
namespace package. The launchers themselves are `d2lexp.launcher` and `d2lexp.slurm`."""

from importlib.util import find_spec

from d2lexp.launcher import ParallelLauncher as _ParallelLauncher


class ParallelLauncher(_ParallelLauncher):
    """`hydra/launcher=parallel`: see d2lexp.launcher."""


# `hydra/launcher=slurm` and `slurm_cpu` need the cluster extra (hydra-submitit-launcher); without
# it, every other command still runs.
if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from d2lexp.slurm import SlurmLauncher as _SlurmLauncher

    class SlurmLauncher(_SlurmLauncher):
        """`hydra/launcher=slurm`: see d2lexp.slurm."""
