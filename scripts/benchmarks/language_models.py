"""The Time Machine language models, d2lexp against the book's loop (d2l's train_epoch_ch8:
per-minibatch float() accumulation and Python gradient clipping, which syncs with the
device every step), step about step in one process. Rates are training tokens per second."""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from benchmarks.common import interleave_with_d2lexp, log

BATCH, STEPS, LR = 32, 35, 1.0  # the book's settings

# preset -> (hidden units, the book's net as d2lexp builds it)
PRESETS = {"rnn": 256, "rnn_scratch": 512, "gru": 256, "lstm": 256}


def grad_clipping(net: nn.Module, theta: float) -> None:
    """The book's clipping: one norm over all gradients, read back to the host to compare."""
    params = [p for p in net.parameters() if p.requires_grad]
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


def book_seq_data_iter_sequential(
    corpus: list[int], batch_size: int, num_steps: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The book's sequential partitioning, over a Python list of token ids."""
    offset = random.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = torch.tensor(corpus[offset : offset + num_tokens]).reshape(batch_size, -1)
    Ys = torch.tensor(corpus[offset + 1 : offset + 1 + num_tokens]).reshape(batch_size, -1)
    for i in range(0, num_steps * (Xs.shape[1] // num_steps), num_steps):
        yield Xs[:, i : i + num_steps], Ys[:, i : i + num_steps]


class BookStyleLM:
    """train_epoch_ch8, one minibatch at a time: state carried (detached) within an epoch."""

    def __init__(self, net: nn.Module, corpus: list[int]) -> None:
        self.net, self.corpus = net, corpus
        self.optimizer = torch.optim.SGD(net.parameters(), lr=LR)
        self.loss = nn.CrossEntropyLoss()
        self.state: Any = None
        self.metric = [0.0, 0.0]  # the book's Accumulator(2): loss sum, tokens

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.state = None
        return book_seq_data_iter_sequential(self.corpus, BATCH, STEPS)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        X, Y = batch
        if self.state is None:
            self.state = self.net.begin_state(batch_size=X.shape[0])
        elif isinstance(self.state, tuple):
            self.state = tuple(s.detach() for s in self.state)
        else:
            self.state = self.state.detach()
        y = Y.reshape(-1)
        y_hat, self.state = self.net(X, self.state)
        l = self.loss(y_hat.reshape(-1, y_hat.shape[-1]), y.long()).mean()
        self.optimizer.zero_grad()
        l.backward()
        grad_clipping(self.net, 1)
        self.optimizer.step()
        self.metric[0] += float(l * y.numel())
        self.metric[1] += y.numel()
        return y.numel()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs (8 minibatches each)")


def run(args: Any) -> dict[str, Any]:
    from benchmarks.common import d2lexp_config
    from d2lexp import build
    from d2lexp.data.time_machine import ensure_time_machine, load_corpus

    corpus, _ = load_corpus(ensure_time_machine(args.data_dir), max_tokens=10_000)
    random.seed(0)
    results: dict[str, Any] = {}
    log(f"\nThe Time Machine language models, batch {BATCH}, {STEPS} steps, 10,000 tokens, on the CPU")
    for preset in args.presets:
        overrides = [f"experiment=d2l/{preset}", f"paths.data_dir={args.data_dir}", "test=false", *args.override]
        torch.manual_seed(0)
        reference = BookStyleLM(build.net(d2lexp_config(overrides)), corpus.tolist())
        with tempfile.TemporaryDirectory() as tmp:
            d2lexp_rates, book_rates, _ = interleave_with_d2lexp(
                [*overrides, f"trainer.max_epochs={args.epochs + 1}", f"paths.output_dir={tmp}",
                 "callbacks.text.every_n_epochs=0"],
                reference, count=lambda batch: batch[0].numel(),
            )  # fmt: skip
        ratio = statistics.median(d / b for d, b in zip(d2lexp_rates, book_rates))
        results[preset] = {
            "d2lexp_tokens_per_second": statistics.median(d2lexp_rates),
            "book_style_tokens_per_second": statistics.median(book_rates),
            "d2lexp_vs_book_style": ratio,
        }
    log("\n| preset | d2lexp tokens/s | book-style tokens/s | d2lexp / book-style |\n|---|---:|---:|---:|")
    for preset, r in results.items():
        log(f"| {preset} | {r['d2lexp_tokens_per_second']:,.0f} | {r['book_style_tokens_per_second']:,.0f} | "
            f"{r['d2lexp_vs_book_style']:.2f}x |")  # fmt: skip
    return results
