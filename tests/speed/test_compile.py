"""torch.compile of the net (`speed.compile`): compiled after the model summary, one static graph
for the full training batches, plain weights in the checkpoints, every net of a process compiled."""

from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from d2lexp import build
from d2lexp.errors import ConfigError
from d2lexp.speed.compile import CompiledForMainShape, CompileNet, compile_options
from d2lexp.tasks.classification import ClassificationTask
from d2lexp.train import train


def test_compile_settings_map_to_torch_compile_arguments():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == {"dynamic": False}
    assert compile_options("reduce-overhead") == {"mode": "reduce-overhead", "dynamic": False}
    assert compile_options("cudagraphs") == {"backend": "cudagraphs", "dynamic": False}
    with pytest.raises(ConfigError, match=r"one of its modes \(default, reduce-overhead.*or cudagraphs"):
        compile_options("fastest")


class CompiledWhen(pl.Callback):
    """Whether the task's net is compiled when the callbacks' on_fit_start hooks run (Lightning's
    model summary runs the net then, under FlopCounterMode) and when training starts."""

    @staticmethod
    def compiled(task: pl.LightningModule) -> bool:
        call = getattr(task.apply_net, "apply_net", task.apply_net)  # inside channels-last inputs, if any
        return isinstance(call, CompiledForMainShape)

    def on_fit_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self.at_fit_start = self.compiled(task)

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self.at_train_start = self.compiled(task)


@pytest.mark.parametrize("setting", [pytest.param("true", marks=pytest.mark.slow), "cudagraphs"])  # Inductor: 10 s
def test_a_compiled_net_learns_and_saves_plain_weights(make_cfg, setting):
    """torch.compile on the CPU (true: Inductor's C++ code; cudagraphs: the traced graph of the
    net's own operators, with no CUDA graphs on a CPU): the run learns as an eager one does, and
    its checkpoints hold the plain net's keys, so they load into an uncompiled net.

    The net is an nn.Sequential and the model summary is on: the two things that, with torch
    before 2.14, left a net compiled with `net.compile()` in `configure_model` running eager.
    Evaluation runs the plain net (see `CompiledForMainShape`)."""
    cfg = make_cfg("experiment=d2l/softmax", f"speed.compile={setting}", "data.train_subset=10000", "data.test_subset=2000",
                   "trainer.max_epochs=1", "callbacks.progress_bar=null", quiet=False)  # fmt: skip
    assert cfg.callbacks.model_summary is not None
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled_when = CompiledWhen()
    record = train(cfg, callbacks=[compiled_when])
    assert not compiled_when.at_fit_start and compiled_when.at_train_start  # compiled after the summary's run
    # The net really ran compiled, as one static graph for the full training batches (256). Each
    # epoch's last batch (10,000 = 39 x 256 + 16), validation and test ran eager: no other graph.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert record["status"] == "done" and record["test/acc"] > 0.6, record  # chance is 0.1
    state = torch.load(record["last_checkpoint"], weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in key for key in state), list(state)


def test_each_run_in_a_process_compiles_its_net_however_many_came_before():
    """Dynamo compiles one function for at most 8 different nets, and every nn.Sequential net is
    compiled through one shared wrapper function: without a fresh start, the 9th compiled run of a
    sweep (or of a benchmark, which compiles two nets per preset) trained eager, with a warning."""
    frames = CompileCounter()  # a backend that counts the graphs it is given and runs them as they are
    for depth in range(1, 11):  # ten nets of different structure, so no graph fits another
        task = ClassificationTask(
            nn.Sequential(*(nn.Linear(4, 4) for _ in range(depth))), partial(torch.optim.SGD, lr=0.1)
        )
        CompileNet({"backend": frames, "dynamic": False}).on_fit_start(None, task)
        task(torch.rand(2, 4))
        assert frames.frame_count == depth, f"run {depth} of this process did not compile its net"


@pytest.mark.parametrize(
    "preset",
    ["lenet", "lenet_bn", *(pytest.param(p, marks=pytest.mark.slow) for p in ("googlenet", "resnet18", "alexnet", "vgg", "nin", "densenet"))],
)  # fmt: skip
def test_every_cnn_preset_compiles_to_one_graph(make_cfg, preset):
    """What `speed.compile` makes of each CNN of the chapter, on the CPU: dynamo traces the whole
    net as one graph, forward and backward (AOT autograd, as the GPU's `cudagraphs` and Inductor
    backends do), with no graph break. On a GPU one graph is what lets a training step replay as
    one CUDA graph: each break would run eager Python between graphs."""
    cfg = make_cfg(f"experiment=d2l/{preset}")
    task = build.task(cfg, build.net(cfg))
    graphs = CompileCounterWithBackend("aot_eager")
    torch._dynamo.utils.counters.clear()
    CompileNet({"backend": graphs, "dynamic": False}).on_fit_start(None, task)
    size = cfg.data.resize or 28
    task.train()
    task(torch.rand(2, 1, size, size)).sum().backward()
    breaks = dict(torch._dynamo.utils.counters["graph_break"])
    assert graphs.frame_count == 1 and not breaks, breaks
    assert all(p.grad is not None for p in task.net.parameters())
