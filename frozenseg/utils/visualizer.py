"""A small segmentation visualiser (OpenCV + NumPy): colour overlay, contours, labels, legend.

Used by the demo (``demo/demo.py``) through :meth:`SegmentationVisualizer.draw_prediction`, which
draws a :class:`frozenseg.engine.predictor.Prediction`. Input is a segment-id map and a list of
segments, so panoptic, instance and semantic results are drawn the same way:

* every segment is blended over the image in its colour (``alpha``), outlined, and labelled at
  its "pole of inaccessibility" (the pixel farthest from the segment's border, which lies inside
  the segment even for rings and C shapes) when the segment is large enough for a label;
* :meth:`SegmentationVisualizer.draw_legend` appends a legend panel (colour swatch, class name,
  share of the image) on the right, for semantic results.

Colours are the vocabulary's own (a dataset's colours) or deterministic per class
(:func:`class_color`); instances of the same class get slightly different shades
(:func:`instance_color`).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

if TYPE_CHECKING:
    from ..structures.prediction import Prediction

__all__ = ["class_color", "instance_color", "VisSegment", "SegmentationVisualizer"]

_GOLDEN = 0.618033988749895


def class_color(index: int) -> tuple[int, int, int]:
    """A distinct, deterministic RGB colour for class ``index`` (golden-ratio hue walk)."""
    h = (0.07 + index * _GOLDEN) % 1.0
    s = 0.85 if (index // 7) % 2 == 0 else 0.6
    v = 0.95 if (index // 3) % 2 == 0 else 0.75
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def instance_color(class_index: int, instance_index: int,
                   base: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """The class colour (``base``, default :func:`class_color`), shifted in hue and brightness
    per instance (instance 0 keeps it)."""
    r, g, b = class_color(class_index) if base is None else base
    if instance_index == 0:
        return r, g, b
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    shift = ((instance_index * _GOLDEN) % 1.0 - 0.5) * 0.16  # within about ±0.08 of the hue
    h = (h + shift) % 1.0
    v = 0.55 + 0.4 * ((instance_index * 0.37 + v) % 1.0)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class VisSegment:
    """One segment to draw: the pixels where ``ids == id``, in ``color``, labelled ``label``."""

    id: int
    label: str
    color: tuple[int, int, int]


def _text_color(color: Sequence[int]) -> tuple[int, int, int]:
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


class SegmentationVisualizer:
    """Draw segmentation results on RGB uint8 images.

    Args:
        alpha: opacity of the colour fill (0 = image only, 1 = colours only).
        font_scale: OpenCV font scale; default scales with the image size.
        contours: outline each segment.
        min_label_area: smallest segment (pixels) that gets a label; default 0.05% of the image
            (at least 30 pixels).
    """

    def __init__(
        self,
        alpha: float = 0.5,
        font_scale: float | None = None,
        contours: bool = True,
        min_label_area: int | None = None,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        self.alpha = float(alpha)
        self.font_scale = font_scale
        self.contours = contours
        self.min_label_area = min_label_area
        self.font = cv2.FONT_HERSHEY_SIMPLEX

    # -- helpers --------------------------------------------------------------------------------
    def _scale(self, h: int, w: int) -> tuple[float, int]:
        scale = self.font_scale if self.font_scale is not None else float(np.clip(min(h, w) / 700.0, 0.35, 1.1))
        return scale, 1 if scale < 0.75 else 2

    @staticmethod
    def _label_point(mask: np.ndarray) -> tuple[int, int] | None:
        """(x, y) of the mask pixel farthest from the mask's border (None for an empty mask)."""
        if not mask.any():
            return None
        padded = np.pad(mask.astype(np.uint8), 1)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return int(x), int(y)

    def _put_label(self, canvas: np.ndarray, text: str, center: tuple[int, int], color, scale, thick) -> None:
        (tw, th), base = cv2.getTextSize(text, self.font, scale, thick)
        h, w = canvas.shape[:2]
        x = int(np.clip(center[0] - tw // 2, 0, max(0, w - tw - 2)))
        y = int(np.clip(center[1] + th // 2, th + 2, max(th + 2, h - base - 2)))
        bg = tuple(int(c * 0.75) for c in color)
        cv2.rectangle(canvas, (x - 2, y - th - 2), (x + tw + 2, y + base), bg, thickness=-1)
        cv2.putText(canvas, text, (x, y), self.font, scale, _text_color(bg), thick, cv2.LINE_AA)

    # -- drawing --------------------------------------------------------------------------------
    def draw_segments(self, image: np.ndarray, ids: np.ndarray, segments: Sequence[VisSegment]) -> np.ndarray:
        """Overlay ``segments`` (pixels ``ids == segment.id``) on ``image``.

        Args:
            image: (H, W, 3) uint8 RGB.
            ids: (H, W) integer map of segment ids (ids not in ``segments`` are left undrawn).
            segments: what to draw, in drawing order (later labels are drawn on top).
        Returns:
            (H, W, 3) uint8 RGB.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}.")
        if ids.shape != image.shape[:2]:
            raise ValueError(f"ids {ids.shape} and image {image.shape[:2]} differ in size.")
        h, w = ids.shape
        out = image.astype(np.float32)
        scale, thick = self._scale(h, w)
        min_area = self.min_label_area if self.min_label_area is not None else max(30, int(0.0005 * h * w))
        masks = []
        for seg in segments:
            mask = ids == seg.id
            if not mask.any():
                continue
            out[mask] = (1.0 - self.alpha) * out[mask] + self.alpha * np.asarray(seg.color, np.float32)
            masks.append((seg, mask))
        canvas = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        if self.contours:
            for seg, mask in masks:
                cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
                edge = tuple(int(c * 0.55) for c in seg.color)
                cv2.drawContours(canvas, cs, -1, edge, thickness=max(1, thick - 1), lineType=cv2.LINE_AA)
        for seg, mask in masks:
            if seg.label and int(mask.sum()) >= min_area:
                p = self._label_point(mask)
                if p is not None:
                    self._put_label(canvas, seg.label, p, seg.color, scale, thick)
        return canvas

    def draw_legend(
        self,
        image: np.ndarray,
        entries: Sequence[tuple[str, tuple[int, int, int]]],
        title: str | None = None,
    ) -> np.ndarray:
        """Append a legend panel (swatch + text per entry) to the right of ``image``.

        Entries that do not fit in the image height are summarised as "+N more".
        """
        h, w = image.shape[:2]
        scale, thick = self._scale(h, w)
        scale = max(scale, 0.4)
        (_, th), base = cv2.getTextSize("Ag", self.font, scale, thick)
        row = th + base + 6
        pad = 6
        lines = ([title] if title else []) + [e[0] for e in entries]
        max_rows = max(1, (h - 2 * pad) // row)
        shown = list(entries)
        more = 0
        n_title = 1 if title else 0
        if len(shown) + n_title > max_rows:
            keep = max(0, max_rows - n_title - 1)
            more = len(shown) - keep
            shown = shown[:keep]
        texts = [t for t in lines[:n_title]] + [e[0] for e in shown] + ([f"+{more} more"] if more else [])
        text_w = max((cv2.getTextSize(t, self.font, scale, thick)[0][0] for t in texts), default=0)
        sw = th + 2
        panel_w = pad * 3 + sw + text_w
        panel = np.full((h, panel_w, 3), 255, dtype=np.uint8)
        y = pad
        if title:
            cv2.putText(panel, title, (pad, y + th), self.font, scale, (0, 0, 0), thick, cv2.LINE_AA)
            y += row
        for label, color in shown:
            cv2.rectangle(panel, (pad, y), (pad + sw, y + th), tuple(int(c) for c in color), -1)
            cv2.rectangle(panel, (pad, y), (pad + sw, y + th), (60, 60, 60), 1)
            cv2.putText(panel, label, (2 * pad + sw, y + th), self.font, scale, (0, 0, 0), thick, cv2.LINE_AA)
            y += row
        if more:
            cv2.putText(panel, f"+{more} more", (pad, y + th), self.font, scale, (90, 90, 90), thick, cv2.LINE_AA)
        return np.concatenate([image, panel], axis=1)

    def draw_prediction(self, prediction: Prediction, legend: bool = True) -> np.ndarray:
        """The labelled colour overlay of a predictor's result (RGB uint8).

        Classes get the prediction's ``class_colors`` (a dataset's own) or :func:`class_color`;
        thing instances of one class get shades of it (:func:`instance_color`). Labels read
        ``"class score%"`` (panoptic/instance) or ``"class"`` (semantic). Semantic results get a
        legend panel on the right (each class with its share of the image) unless ``legend`` is
        False.

        Returns:
            (H, W, 3) uint8 RGB, or (H, W + panel width, 3) with the legend.
        """
        p = prediction
        palette = p.class_colors

        def color_of(cls: int) -> tuple[int, int, int]:
            return palette[cls] if palette else class_color(cls)

        vis_segments = []
        instance_index: dict[int, int] = {}
        for s in p.segments:
            cls = s["category_id"]
            if p.task != "semantic" and s["isthing"]:
                n = instance_index.get(cls, 0)
                instance_index[cls] = n + 1
                color = instance_color(cls, n, color_of(cls))
            else:
                color = color_of(cls)
            label = s["class"] if s["score"] is None or p.task == "semantic" else f"{s['class']} {s['score']:.0%}"
            vis_segments.append(VisSegment(s["id"], label, color))
        canvas = self.draw_segments(p.image, p.ids, vis_segments)
        if p.task == "semantic" and legend:
            total = float(p.ids.size)
            entries = [(f"{s['class']} {100.0 * s['area'] / total:.1f}%", color_of(s["category_id"])) for s in p.segments]
            canvas = self.draw_legend(canvas, entries, title="classes (% of image)")
        return canvas
