"""What a checkpoint needs beyond the weights for a resumed run to continue exactly."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

KEY = "d2lexp_random_state"


_TORCH_STATE_BYTES = 5056  # the CPU generator's state (Mersenne Twister, its offset and seed)


def random_state_problem(state: Any) -> str | None:
    """Why `state` (read from a checkpoint) is not the random states RandomState saves; None if it is."""
    if not isinstance(state, dict) or not {"torch", "cuda", "numpy", "python"} <= set(state):
        return "is not the random generators' states d2lexp saves"
    generator = state["torch"]
    if (
        not isinstance(generator, torch.Tensor)
        or generator.dtype != torch.uint8
        or generator.shape != (_TORCH_STATE_BYTES,)
    ):
        return "holds no valid state of torch's generator"
    cuda = state["cuda"]
    if not isinstance(cuda, (list, tuple)) or not all(
        isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in cuda
    ):
        return "holds no valid states of the CUDA generators"
    numpy_state = state["numpy"]
    if not (isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 5 and numpy_state[0] == "MT19937"):
        return "holds no valid state of NumPy's generator"
    keys, pos, has_gauss, cached = numpy_state[1:]
    if not (isinstance(keys, torch.Tensor) and keys.shape == (624,) and not keys.is_floating_point()
            and isinstance(pos, int) and 0 <= pos <= 624 and has_gauss in (0, 1) and isinstance(cached, float)):  # fmt: skip
        return "holds no valid state of NumPy's generator"
    if bool(((keys < 0) | (keys >= 2**32)).any()):
        return "holds no valid state of NumPy's generator"
    python = state["python"]
    if not (isinstance(python, (list, tuple)) and len(python) == 3 and python[0] == 3 and isinstance(python[1], (list, tuple))
            and len(python[1]) == 625 and all(isinstance(v, int) and 0 <= v < 2**32 for v in python[1])
            and python[1][-1] <= 624 and (python[2] is None or isinstance(python[2], float))):  # fmt: skip
        return "holds no valid state of Python's generator"
    try:  # each state tried on a generator of its own, so a bad one is found before the run's are touched
        torch.Generator().set_state(generator)
        np.random.RandomState().set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.Random().setstate((3, tuple(python[1]), python[2]))
    except (RuntimeError, ValueError, TypeError) as e:
        return f"holds a random state its generator refuses ({str(e)[:100]})"
    return None


class RandomState(pl.Callback):
    """Saves the random generators' states (torch CPU and CUDA, NumPy, Python) in every
    checkpoint and restores them on resuming, so dropout masks and anything else drawn at
    random continue as if the run had never stopped. Stored as tensors and plain numbers:
    the checkpoint still loads under `weights_only=True`."""

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        checkpoint[KEY] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss],
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(KEY)
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
