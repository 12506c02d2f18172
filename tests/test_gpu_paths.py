"""The GPU paths, checked on the CPU: data that lives on the model's device, device-side
batching and resizing, channels_last, and no host read-back inside training steps."""

import warnings

import lightning.pytorch as pl
import pytest
import torch

from d2lexp import build
from d2lexp.data.fashion_mnist import FashionMNISTDataModule
from d2lexp.data.loader import TensorBatchLoader
from d2lexp.train import train
from tests.helpers.configs import compose_config

CUDA = torch.cuda.is_available()


class FakeTrainer:
    class strategy:  # noqa: N801  (mimics trainer.strategy.root_device)
        root_device = torch.device("cpu")


def test_data_goes_where_the_trainer_runs():
    dm = FashionMNISTDataModule()
    assert dm.data_device("auto") == torch.device("cpu")  # no trainer yet
    dm.trainer = FakeTrainer()
    assert dm.data_device("auto") == torch.device("cpu")  # auto: accelerators only
    assert dm.data_device(True) == torch.device("cpu") and dm.data_device(False) == torch.device("cpu")
    if CUDA:
        FakeTrainer.strategy.root_device = torch.device("cuda:0")
        assert dm.data_device("auto").type == "cuda"


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a GPU"))]
)
def test_batches_are_gathered_on_the_tensors_device(device):
    x = torch.arange(100, device=device)
    loader = TensorBatchLoader([x, x * 2], batch_size=16, shuffle=True, seed=0)
    for a, b in loader:
        assert a.device.type == device and torch.equal(b, a * 2)


def test_resize_and_channels_last_happen_on_the_batch(make_cfg, data_dir):
    cfg = make_cfg("experiment=d2l/resnet18", "data.resize=32")
    task = build.task(cfg, build.net(cfg))
    conv = next(m for m in task.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    dm = FashionMNISTDataModule(data_dir=str(data_dir), resize=32, batch_size=8)
    dm.setup()
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32
    assert task(x).shape == (8, 10)


class StepCycles(pl.Callback):
    """Watches whole step cycles: from one training batch's start hook to the next one's. A cycle
    holds the step itself, every callback's batch-end hook, Lightning's bookkeeping between
    steps, and the next batch's gather and device transforms. `open_window` and `close_window`
    (subclasses') start and stop watching; `close_window` returns what the cycle did. Cycles
    that end an epoch, and those of the steps that write the step loss, are left out: they
    read values by design. Listed first, so its batch-start hook runs before the others'."""

    def __init__(self, skip_first: int = 0) -> None:
        self.skip_first = skip_first  # steps left out at the start (cuDNN autotunes the first ones)
        self.cycles: list = []
        self._open = False

    def open_window(self) -> None: ...

    def close_window(self) -> object: ...

    def _close(self) -> object | None:
        if not self._open:
            return None
        self._open = False
        return self.close_window()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        seen = self._close()
        step = trainer.global_step - 1  # the step the closing cycle trained (global_step counts it)
        if seen is not None and step >= self.skip_first and step % trainer.log_every_n_steps:
            self.cycles.append(seen)
        self._open = True
        self.open_window()

    def on_train_epoch_end(self, trainer, pl_module):
        self._close()  # the epoch's metrics are read here, by design

    def on_exception(self, trainer, pl_module, exception):
        self._close()


def test_training_steps_never_read_values_back_to_the_host(make_cfg, monkeypatch):
    """On a GPU, reading a tensor's value (item, float, bool, tolist, .cpu()) waits for the
    device. Outside the steps that write the step loss, no step cycle may do it: not the step,
    not the hooks after it, not the next batch's gather and transforms."""
    originals = {
        name: getattr(torch.Tensor, name)
        for name in ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy")
    }

    class Watch(StepCycles):
        def open_window(self):
            self.reads: list[str] = []
            for name, original in originals.items():
                monkeypatch.setattr(torch.Tensor, name, self.spy(name, original))

        def spy(self, name, original):
            def method(tensor, *args, **kwargs):
                self.reads.append(name)
                return original(tensor, *args, **kwargs)

            return method

        def close_window(self):
            monkeypatch.undo()
            return self.reads

    watch = Watch()
    cfg = make_cfg(
        "experiment=d2l/lenet",
        "data.train_subset=2560",
        "data.test_subset=512",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=4",
        quiet=False,
    )  # fmt: skip  (the default progress bar and model summary too)
    train(cfg, callbacks=[watch])
    assert len(watch.cycles) >= 12 and not any(watch.cycles), watch.cycles


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
def test_gpu_preset_runs_bf16_on_the_gpu(make_cfg):
    # trainer.accelerator=gpu again: the test settings' accelerator=cpu outranks the preset
    record = train(make_cfg("experiment=d2l/lenet", "trainer=gpu", "trainer.accelerator=gpu", "data.train_subset=5120",
                            "trainer.max_epochs=1"))  # fmt: skip
    assert record["status"] == "done" and record["peak_memory_gb"] > 0


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
def test_gpu_training_steps_never_wait_for_the_device(make_cfg):
    """CUDA's own detector of synchronising calls, on the real GPU pipeline: apart from the
    steps that write the step loss (and the first ones, where cuDNN autotunes), no step cycle
    makes the host wait for the device."""

    class Watch(StepCycles):
        def open_window(self):
            self.catcher = warnings.catch_warnings(record=True)
            self.caught = self.catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

        def close_window(self):
            torch.cuda.set_sync_debug_mode("default")
            self.catcher.__exit__(None, None, None)
            return [str(w.message)[:200] for w in self.caught if "synchroniz" in str(w.message)]

    watch = Watch(skip_first=3)
    cfg = make_cfg("experiment=d2l/lenet", "trainer=gpu", "trainer.accelerator=gpu", "data.train_subset=5120",
                   "data.test_subset=512", "trainer.max_epochs=1", "trainer.log_every_n_steps=4")  # fmt: skip
    train(cfg, callbacks=[watch])
    assert len(watch.cycles) >= 10 and not any(watch.cycles), watch.cycles


def test_gpu_preset_settings():
    cfg = compose_config(["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark
    assert cfg.data.on_device == "auto" and cfg.speed.channels_last == "auto" and cfg.matmul_precision == "high"


@pytest.mark.skipif(not CUDA, reason="needs a GPU")
@pytest.mark.parametrize("setting", ["cudagraphs", "reduce-overhead"])
def test_gpu_compiled_training_replays_cuda_graphs(make_cfg, setting):
    """The compiled net's forward and backward really run as CUDA graphs in Lightning's loop: one
    graph, none of its CUDA graphs skipped (a skip means launches again), and the run learns."""
    cfg = make_cfg("experiment=d2l/lenet_bn", "trainer=gpu", "trainer.accelerator=gpu", f"speed.compile={setting}",
                   "data.train_subset=10240", "data.test_subset=1024", "trainer.max_epochs=2")  # fmt: skip
    torch._dynamo.utils.counters.clear()
    record = train(cfg)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] == 1 and not counters["inductor"]["cudagraph_skips"], dict(counters)
    assert record["status"] == "done" and record["test/acc"] > 0.5, record  # chance is 0.1
