"""The detection and segmentation pictures' drawing (d2lexp.plotting): boxes where their corners say,
masks in VOC's colours."""

from __future__ import annotations

import torch

from d2lexp.plotting import labelled_image_grid

TITLE = 14  # one line of title above each image (12 pixels a line, 2 of margin)


def test_boxes_are_drawn_where_their_corners_are():
    """A black 32x32 image scaled to 64 pixels, a box from (0.25, 0.5) to (0.75, 1.0) of it, red: its
    outline runs along pixels 16 to 47 across and 32 to 63 down, inside stays black; the second image
    (no box) is untouched."""
    images = torch.zeros(2, 32, 32)
    picture = labelled_image_grid(
        images, ["", ""], num_cols=2, cell=64, boxes=[[(0.25, 0.5, 0.75, 1.0, "", "red")], []]
    )
    assert picture.shape == (3, 64 + TITLE, 128) and picture.dtype == torch.uint8
    tile = picture[:, TITLE:, :64]
    red = (tile[0] == 255) & (tile[1] == 0) & (tile[2] == 0)
    outline = torch.zeros(64, 64, dtype=torch.bool)
    outline[32:64, 16] = outline[32:64, 47] = outline[32, 16:48] = outline[63, 16:48] = True
    assert torch.equal(red, outline)
    assert (picture[:, TITLE:, 64:] == 0).all()
