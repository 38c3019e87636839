"""The segmentation visualiser: overlay and legend panel."""

from __future__ import annotations

import numpy as np

from frozenseg.utils.visualizer import SegmentationVisualizer, VisSegment, class_color


def test_visualizer_overlay_and_legend():
    img = np.full((60, 80, 3), 100, np.uint8)
    ids = np.zeros((60, 80), np.int64)
    ids[10:40, 10:50] = 3
    vis = SegmentationVisualizer(alpha=0.5)
    out = vis.draw_segments(img, ids, [VisSegment(3, "cat", class_color(1))])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[0, 0] == 100).all() and not (out[25, 20] == 100).all()  # only the segment is tinted
    with_legend = vis.draw_legend(out, [("cat 50%", class_color(1))], title="classes")
    assert with_legend.shape[0] == 60 and with_legend.shape[1] > 80
