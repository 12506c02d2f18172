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
from d2lexp.errors import DataError


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


def test_missing_text_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="timemachine.txt") as err:
        ensure_time_machine(tmp_path, download=False)
    assert "D2LEXP_DATA" in str(err.value)
