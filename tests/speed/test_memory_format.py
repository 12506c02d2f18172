"""Channels-last inputs (`speed.channels_last`): the net is given channels-last strides even for a
one-channel batch, which NCHW-contiguous tensors already count as "channels-last contiguous"."""

import torch

from d2lexp.speed.memory_format import ChannelsLastInputs


def test_a_one_channel_batch_reaches_the_net_with_channels_last_strides():
    seen = []
    apply_net = ChannelsLastInputs(lambda x: seen.append(x.stride()) or x)
    for channels in (1, 3):
        batch = torch.arange(2 * channels * 4 * 5, dtype=torch.float32).view(2, channels, 4, 5)
        out = apply_net(batch)
        assert torch.equal(out, batch)  # the same values, only laid out differently
    assert seen == [(20, 1, 5, 1), (60, 1, 15, 3)]  # channels innermost (stride 1), not (20, 20, 5, 1)
