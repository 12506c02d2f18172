"""Where Hydra finds d2lexp's launcher: Hydra loads plugins only from the `hydra_plugins`
namespace package. The launcher itself is `d2lexp.launcher`."""

from d2lexp.launcher import ParallelLauncher as _ParallelLauncher


class ParallelLauncher(_ParallelLauncher):
    """`hydra/launcher=parallel`: see d2lexp.launcher."""
