"""The Time Machine as tokens, and the book's two minibatch schemes."""

import pytest
import torch

from d2lexp.data.text import SequenceLoader, Vocab, seq_data_iter_random, seq_data_iter_sequential, tokenize
from d2lexp.data.time_machine import (
    SHA1,
    TimeMachineDataModule,
    ensure_time_machine,
    load_corpus,
    read_time_machine,
    text_path,
)
from d2lexp.errors import ConfigError, DataError


def test_the_books_text_and_cleaning(data_dir):
    path = text_path(data_dir)
    import hashlib

    assert hashlib.sha1(path.read_bytes()).hexdigest() == SHA1
    lines = read_time_machine(path)
    assert len(lines) == 3221 and lines[0] == "the time machine by h g wells"
    assert all(set(line) <= set("abcdefghijklmnopqrstuvwxyz ") for line in lines)


def test_vocabulary_order_and_round_trip(data_dir):
    corpus, vocab = load_corpus(text_path(data_dir))
    assert len(vocab) == 28 and vocab.idx_to_token[:6] == ["<unk>", " ", "e", "t", "a", "i"]  # by frequency
    assert len(corpus) == 170_580
    text = "time traveller"
    assert "".join(vocab.to_tokens(vocab[list(text)])) == text
    assert vocab["#"] == vocab.unk == 0
    freqs = [f for _, f in vocab.token_freqs]
    assert freqs == sorted(freqs, reverse=True)
    assert Vocab.from_tokens_list(vocab.idx_to_token)[list("abc")] == vocab[list("abc")]
    assert tokenize(["a b"], "word") == [["a", "b"]] and tokenize(["ab"]) == [["a", "b"]]


@pytest.mark.parametrize("scheme", [seq_data_iter_random, seq_data_iter_sequential])
def test_targets_are_inputs_shifted_by_one(scheme):
    corpus = torch.arange(35)
    batches = list(scheme(corpus, batch_size=2, num_steps=5, generator=torch.Generator().manual_seed(0)))
    assert batches and all(X.shape == (2, 5) and torch.equal(Y, X + 1) for X, Y in batches)


def test_random_sampling_covers_disjoint_subsequences():
    corpus = torch.arange(1000)
    starts = []
    for X, _ in seq_data_iter_random(corpus, 4, 10, torch.Generator().manual_seed(1)):
        assert torch.equal(X[:, 1:] - X[:, :-1], torch.ones(4, 9, dtype=torch.long))  # contiguous windows
        starts += X[:, 0].tolist()
    offset = min(starts) % 10
    assert len(starts) == len(set(starts)) == 96  # (1000 - 1 - offset) // 10 = 99 subsequences, 24 full batches
    assert all(s % 10 == offset for s in starts)  # one partition from a random offset
    assert starts != sorted(starts)  # in random order


def test_sequential_batches_continue_each_other():
    corpus = torch.arange(1000)
    batches = list(seq_data_iter_sequential(corpus, 4, 10, torch.Generator().manual_seed(2)))
    for (X, _), (X_next, _) in zip(batches, batches[1:]):
        assert torch.equal(X_next[:, 0], X[:, -1] + 1)  # row i goes on where it stopped
    tokens = torch.cat([X for X, _ in batches], dim=1).flatten()
    assert len(tokens) == len(set(tokens.tolist())) >= 1000 - 4 * 10 - 10  # nearly the whole corpus, once


def test_loader_reshuffles_by_epoch_only():
    corpus = torch.arange(2000)
    loader = SequenceLoader(corpus, 8, 10, sequential=False, seed=4)
    first = [X.clone() for X, _ in loader]
    loader.sampler.set_epoch(1)
    second = [X for X, _ in loader]
    loader.sampler.set_epoch(0)
    again = [X for X, _ in loader]
    assert len(first) == len(loader) and all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], second[0])


def test_data_module_with_the_books_cap(data_dir):
    dm = TimeMachineDataModule(data_dir=str(data_dir), max_tokens=10_000)
    dm.setup()
    assert len(dm.corpus["train"]) == 10_000 and len(dm.vocab) == 28 and dm.sequential
    X, Y = next(iter(dm.train_dataloader()))
    assert X.shape == (32, 35) and len(dm.train_dataloader()) == 8
    assert dm.state_dict()["idx_to_token"] == dm.vocab.idx_to_token


def test_the_current_editions_text_pipeline(data_dir):
    """d2l 1.0 cleans the whole text at once (a line break becomes a space; d2l 0.17 glues the
    lines) and orders its vocabulary alphabetically."""
    course, course_vocab = load_corpus(text_path(data_dir))
    current, vocab = load_corpus(text_path(data_dir), pipeline="d2l_1")
    assert len(vocab) == 28 and vocab.idx_to_token[:4] == [" ", "<unk>", "a", "b"] and vocab.unk == 1
    assert vocab.idx_to_token == sorted(course_vocab.idx_to_token)
    spaces = int((current == vocab[" "]).sum()) - int((course == course_vocab[" "]).sum())
    assert spaces == 2_848 and len(current) == len(course) + 2_848
    assert "".join(vocab.to_tokens(current[:40].tolist())) == "the time machine by h g wells i the time"
    assert "".join(course_vocab.to_tokens(course[:40].tolist())) == "the time machine by h g wellsithe time t"


def test_data_module_with_the_current_editions_windows(data_dir):
    dm = TimeMachineDataModule(data_dir=str(data_dir), pipeline="d2l_1", batch_size=1024, num_steps=32)
    dm.setup()
    corpus, _ = load_corpus(text_path(data_dir), pipeline="d2l_1")
    (X, Y), (X_val, Y_val) = dm.windows["train"], dm.windows["val"]
    assert X.shape == Y.shape == (10_000, 32) and X_val.shape == (5_000, 32)
    assert torch.equal(X[7], corpus[7:39]) and torch.equal(Y[7], corpus[8:40])  # one window at every token
    assert torch.equal(X_val[0], corpus[10_000:10_032]) and torch.equal(
        Y_val[0], corpus[10_001:10_033]
    )  # the next 5,000
    assert not dm.sequential and dm.train_examples() == 320_000
    batches = list(dm.train_dataloader())
    assert len(batches) == 10 and [len(b[0]) for b in batches] == [1024] * 9 + [784]
    weights = torch.rand(32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen, every = torch.cat([b[0] for b in batches]).double() @ weights, X.double() @ weights
    assert not torch.equal(seen, every) and torch.equal(seen.sort().values, every.sort().values)  # shuffled, all once
    assert len(dm.val_dataloader()) == len(dm.test_dataloader()) == 5
    with pytest.raises(ConfigError, match="data.pipeline must be one of course, d2l_1"):
        TimeMachineDataModule(data_dir=str(data_dir), pipeline="d2l_2")
    short = TimeMachineDataModule(data_dir=str(data_dir), pipeline="d2l_1", num_train=170_000)
    with pytest.raises(ConfigError, match="fewer than data.num_train"):
        short.setup()


def test_missing_text_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="timemachine.txt") as err:
        ensure_time_machine(tmp_path, download=False)
    assert "D2LEXP_DATA" in str(err.value)
