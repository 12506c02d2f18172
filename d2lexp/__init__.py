"""d2lexp: the Dive into Deep Learning experiments as composable Hydra + Lightning runs."""

__version__ = "0.1.0"
