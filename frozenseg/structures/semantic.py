"""Per-class semantic scores of one image, computed a few classes at a time.

A semantic map holds one score per class and pixel: (K, H, W) float32 is 4·K·H·W bytes, 58 GB
for 1203 classes on a 12-megapixel photo. Every consumer in this package needs much less: the
arg-max class of each pixel, its score, the sum over classes (to normalise), the score of one
given class per pixel, or the pixels where every class scores 0. :class:`SemanticScores` keeps
the factors of the map (a function computing any range of classes) and gives those per-pixel
results in one pass over class chunks, so the memory is that of a chunk (``chunk_bytes``) and
of a few (H, W) maps, whatever the number of classes.

Each class's scores are computed by the same operations as in the full map (the computations
are independent per class), so the arg-max equals that of the full map; sums over classes are
accumulated chunk by chunk and may differ from a one-shot ``sum(0)`` in the last bits.
:meth:`SemanticScores.full` still gives the (K, H, W) map for a caller that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

__all__ = ["SemanticScores", "SemanticSummary", "DEFAULT_CHUNK_BYTES", "semantic_scores"]

#: Memory for one chunk of class maps, in bytes (the chunk itself; its computation may need a
#: few times this in temporaries).
DEFAULT_CHUNK_BYTES = 64 * 2**20


@dataclass
class SemanticSummary:
    """Per-pixel results of one pass over the classes; all (H, W) on the scores' device.

    ``labels``: int64 arg-max class (the first on ties, as ``torch.argmax``);
    ``best``: the arg-max class's score; ``total``: the sum of the scores over classes;
    ``at``: the score of the class ``class_map`` names at each pixel (0 where it names none),
    None when no ``class_map`` was given; ``all_zero``: bool, True where every class scores 0
    (computed for scores with ``marks_unlabelled`` only, else None).
    """

    labels: torch.Tensor
    best: torch.Tensor
    total: torch.Tensor
    all_zero: torch.Tensor | None = None
    at: torch.Tensor | None = None

    def normalized(self, values: torch.Tensor) -> torch.Tensor:
        """``values / total`` with the total clamped at 1e-12 (scores normalised over classes)."""
        return values / self.total.clamp(min=1e-12)


class SemanticScores:
    """The (K, H, W) scores of one image as a function of the class range.

    Args:
        num_classes: K.
        size: (H, W) in pixels.
        compute: ``compute(c0, c1)`` returns the (c1 - c0, H, W) scores of classes c0..c1-1,
            computed exactly as ``compute(0, K)[c0:c1]`` would be.
        dtype, device: those of the scores.
        chunk_bytes: memory for the class maps of one chunk (None: :data:`DEFAULT_CHUNK_BYTES`);
            at least one class per chunk.
        marks_unlabelled: True when the model leaves pixels whose scores are all 0 without a
            class (:attr:`SemanticSummary.all_zero`; OVSeg's demo rule, a one-class vocabulary).
    """

    def __init__(
        self,
        num_classes: int,
        size: tuple[int, int],
        compute: Callable[[int, int], torch.Tensor],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        chunk_bytes: int | None = None,
        marks_unlabelled: bool = False,
    ):
        self.num_classes = int(num_classes)
        self.size = (int(size[0]), int(size[1]))
        self._compute = compute
        self.dtype = dtype
        self.device = torch.device(device)
        self.chunk_bytes = int(DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
        self.marks_unlabelled = bool(marks_unlabelled)

    @classmethod
    def from_tensor(cls, scores: torch.Tensor, **kwargs) -> "SemanticScores":
        """Wrap a (K, H, W) map that already exists (a model giving only ``sem_seg``)."""
        if scores.dim() != 3:
            raise ValueError(f"semantic scores must be (K, H, W), got {tuple(scores.shape)}.")
        return cls(scores.shape[0], tuple(scores.shape[-2:]), lambda c0, c1: scores[c0:c1],
                   dtype=scores.dtype, device=scores.device, **kwargs)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(K, H, W)."""
        return (self.num_classes, *self.size)

    @property
    def classes_per_chunk(self) -> int:
        """Classes computed at once: as many (H, W) maps as ``chunk_bytes`` holds, at least 1."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        per_class = max(1, self.size[0] * self.size[1] * itemsize)
        return max(1, min(self.num_classes, self.chunk_bytes // per_class))

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(c0, scores)`` with scores (c, H, W) for classes c0..c0+c-1, in class order."""
        step = self.classes_per_chunk
        for c0 in range(0, self.num_classes, step):
            yield c0, self._compute(c0, min(c0 + step, self.num_classes))

    def compute(self, c0: int, c1: int) -> torch.Tensor:
        """The (c1 - c0, H, W) scores of classes c0..c1-1."""
        return self._compute(c0, c1)

    def full(self) -> torch.Tensor:
        """The whole (K, H, W) map in one computation (4·K·H·W bytes for float32)."""
        return self._compute(0, self.num_classes)

    def summarize(self, class_map: torch.Tensor | None = None) -> SemanticSummary:
        """One pass over the classes.

        Args:
            class_map: optional (H, W) int64 class index per pixel (negative: none); the summary's
                ``at`` is then each pixel's score for that class.
        Returns:
            :class:`SemanticSummary`.
        """
        h, w = self.size
        labels = torch.zeros((h, w), dtype=torch.int64, device=self.device)
        best = torch.empty((h, w), dtype=self.dtype, device=self.device)
        total = torch.zeros((h, w), dtype=self.dtype, device=self.device)
        all_zero = torch.ones((h, w), dtype=torch.bool, device=self.device) if self.marks_unlabelled else None
        at = None if class_map is None else torch.zeros((h, w), dtype=self.dtype, device=self.device)
        if class_map is not None:
            class_map = class_map.to(self.device)
        for c0, chunk in self.chunks():
            if chunk.shape[0] == 1:
                chunk_best, chunk_labels = chunk[0], None
            else:
                chunk_best, chunk_labels = chunk.max(0)
            if c0 == 0:  # the first chunk sets every pixel (NaN and -inf included)
                best.copy_(chunk_best)
                if chunk_labels is not None:
                    labels.copy_(chunk_labels)
            else:
                better = chunk_best > best  # strict: the earlier class wins a tie, as argmax
                torch.where(better, chunk_best, best, out=best)
                new_labels = chunk_labels + c0 if chunk_labels is not None else labels.new_tensor(c0)
                torch.where(better, new_labels, labels, out=labels)
            total += chunk_best if chunk.shape[0] == 1 else chunk.sum(0)
            if all_zero is not None:
                all_zero &= (chunk == 0).all(0)
            if at is not None:
                local = class_map - c0
                inside = (local >= 0) & (local < chunk.shape[0])
                if bool(inside.any()):
                    picked = chunk.gather(0, local.clamp(0, chunk.shape[0] - 1)[None])[0]
                    torch.where(inside, picked, at, out=at)
            del chunk
        return SemanticSummary(labels=labels, best=best, total=total, all_zero=all_zero, at=at)


def semantic_scores(output: dict) -> SemanticScores | None:
    """The semantic scores of an eval-mode model output: its ``"sem_seg_scores"``, else its
    (K, H, W) ``"sem_seg"`` tensor wrapped (``marks_unlabelled`` when it has
    ``"sem_seg_unlabelled"``); None when it has neither."""
    if "sem_seg_scores" in output:
        return output["sem_seg_scores"]
    if "sem_seg" in output:
        return SemanticScores.from_tensor(output["sem_seg"], marks_unlabelled="sem_seg_unlabelled" in output)
    return None
