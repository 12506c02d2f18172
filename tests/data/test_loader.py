import torch

from d2lexp.data.loader import TensorBatchLoader


def batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [b[0].clone() for b in loader]


def test_epoch_order_depends_only_on_seed_and_epoch():
    x = torch.arange(100)
    a = TensorBatchLoader([x], batch_size=16, shuffle=True, seed=7)
    b = TensorBatchLoader([x], batch_size=16, shuffle=True, seed=7)
    # b is asked for epoch 3 first: order must not depend on history
    assert [t.tolist() for t in batches(a, 3)] == [t.tolist() for t in batches(b, 3)]
    assert batches(a, 0)[0].tolist() != batches(a, 1)[0].tolist()
    assert torch.equal(torch.cat(batches(a, 5)).sort().values, x)  # a permutation, every item once
    c = TensorBatchLoader([x], batch_size=16, shuffle=True, seed=8)
    assert batches(c, 3)[0].tolist() != batches(a, 3)[0].tolist()


def test_unshuffled_batches_are_views_in_order():
    x, y = torch.arange(10), torch.arange(10) * 2
    loader = TensorBatchLoader([x, y], batch_size=4)
    got = list(loader)
    assert len(loader) == 3 and [len(b[0]) for b in got] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in got]), y)
    assert got[0][0].data_ptr() == x.data_ptr()  # a slice, not a copy


def test_drop_last():
    loader = TensorBatchLoader([torch.arange(10)], batch_size=4, shuffle=True, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]
