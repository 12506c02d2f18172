"""LightningModules: how a net is trained (loss, metrics, optimisation), never which net."""
