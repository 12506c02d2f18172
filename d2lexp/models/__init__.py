"""Architectures as plain `nn.Module`s: they know nothing of Lightning or Hydra."""
