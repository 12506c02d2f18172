"""Character-level language models through the pipeline, on The Time Machine."""

import math

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from d2lexp.models.rnn import predict_chars
from d2lexp.predict import generate
from d2lexp.tasks.language_model import LanguageModelTask
from d2lexp.train import train

SHORT = ["data.max_tokens=10000", "trainer.max_epochs=30", "callbacks.text.every_n_epochs=10"]


class UniformLM(nn.Module):
    """Equal scores for every token: its perplexity is the vocabulary size."""

    def __init__(self, vocab_size: int = 28) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.unused = nn.Parameter(torch.zeros(1))

    def begin_state(self, batch_size, device="cpu"):
        return torch.zeros(batch_size, 1, device=device)

    def forward(self, X, state=None):
        return torch.zeros(*X.shape, self.vocab_size) + 0 * self.unused, state


def test_uniform_model_perplexity_is_the_vocabulary_size(make_cfg):
    cfg = make_cfg("experiment=d2l/rnn", "data.val_fraction=0.2")
    datamodule = instantiate(cfg.data)
    task = LanguageModelTask(UniformLM(), lambda params: torch.optim.SGD(params, lr=0.0))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    (metrics,) = trainer.validate(task, datamodule=datamodule, verbose=False)
    assert metrics["val/ppl"] == pytest.approx(28.0, rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(math.log(28), rel=1e-5)


# nn.RNN's twin learns the same way; tests/test_recipes.py trains nn.GRU on the d2l_1 windows by default.
@pytest.mark.parametrize("preset", [pytest.param("d2l/rnn", marks=pytest.mark.slow), "d2l/rnn_scratch"])
def test_a_short_real_run_lowers_perplexity_well_below_the_vocabulary(make_cfg, tmp_path, preset):
    record = train(make_cfg(f"experiment={preset}", *SHORT, "model.num_hiddens=128", output_dir=tmp_path / "run"))
    assert record["status"] == "done" and record["epochs"] == 30
    history = record["history"]["train/ppl"]
    assert history[0] > 15 and record["train/ppl"] < 12, history  # 28 for a uniform guess
    assert record["sample"].startswith("time traveller") and len(record["sample"]) == 14 + 50
    assert record["train_tokens_per_second"] > 1000
    text = generate(str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "the time", 20)
    assert text.startswith("the time") and len(text) == 28
    assert generate(str(tmp_path / "run"), "the time", 20) == text  # a run folder means its last checkpoint


def test_state_is_carried_for_sequential_and_reset_for_random(make_cfg, tmp_path):
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.vocab_size = 28
            self.lin = nn.Linear(1, 28)

        def begin_state(self, batch_size, device="cpu"):
            return torch.zeros(batch_size, 1)

        def forward(self, X, state=None):
            if self.training:  # not the model summary's look at an example
                seen.append(None if state is None else float(state.sum()))
            new_state = (torch.zeros(X.shape[0], 1) if state is None else state) + 1
            return self.lin(torch.ones(*X.shape, 1)), new_state

    for sampling in ("sequential", "random"):
        seen.clear()
        cfg = make_cfg("experiment=d2l/rnn", f"data.sampling={sampling}", "trainer.max_epochs=2",
                       output_dir=tmp_path / sampling)  # fmt: skip
        train(cfg, net=Spy())
        batch = cfg.data.batch_size
        if sampling == "sequential":  # fresh at each epoch start, then carried (detached) within the epoch
            assert seen[:3] == [None, float(batch), float(2 * batch)] and seen[8] is None
        else:
            assert all(s is None for s in seen)


def test_predict_chars_warms_up_on_the_prefix():
    from d2lexp.data.text import Vocab

    vocab = Vocab(list("hello world"))
    net = UniformLM(len(vocab))
    out = predict_chars(net, vocab, "hello", 3)
    assert out == "hello" + "<unk>" * 3  # uniform scores: argmax is index 0, <unk>


def test_vocabulary_mismatch_is_refused(make_cfg):
    from d2lexp.errors import ConfigError

    with pytest.raises(ConfigError, match="model.vocab_size=30 but the data's vocabulary has 28"):
        train(make_cfg("experiment=d2l/rnn", "model.vocab_size=30", "trainer.max_epochs=1"))
