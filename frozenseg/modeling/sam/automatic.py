"""SAM as a source of "everything" proposals for the SAM proposal ensemble (docs/models/frozenseg.md §7.5).

For an image, segment-anything's ``SamAutomaticMaskGenerator`` (used unmodified) produces its
automatic masks; the largest ``max_masks`` are kept with their mask logits, predicted IoU and
stability score (:class:`~frozenseg.data.sam_mask_cache.SamProposals`).

Released settings (:data:`RELEASED_GENERATOR_PARAMS`, the defaults of
:class:`AutomaticMaskOptions`): ``pred_iou_thresh`` 0.8, ``stability_score_thresh`` 0.7,
``min_mask_region_area`` 100, 50 largest masks, ``output_mode="binary_mask"``, mask logits kept.

Mask logits. The generator returns binary masks only. With ``logits="sam"`` the logits are
recomputed exactly as the generator computed them: for each kept mask, SAM's predictor runs
again on the same crop with the same single point prompt (``point_coords`` and ``crop_box`` of
the record, ``multimask_output=True``), and of the three outputs the one whose binarised mask
best matches the kept mask is taken (IoU; ties broken by the predicted IoU). The image embedding
is not recomputed: the generator's predictor is a :class:`CachingSamPredictor`, which keeps the
embedding of the current image's crops. The logits are SAM's decoder logits, so they can
disagree with the binary mask where the generator's small-region clean-up
(``min_mask_region_area``) filled holes or removed islands. With ``logits="binary"`` the logits
are ±``binary_logit`` placeholders of the binary masks (no extra decoder runs).

Resolution. Logits are returned in the image frame with the longest side ``mask_size`` (256 =
SAM's native decoder resolution, so nothing is lost for ``crop_n_layers`` 0; 0 keeps the image
size); binary masks at the image size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from torch.nn import functional as F

from ...data.sam_mask_cache import SamProposals, storage_size

__all__ = [
    "RELEASED_GENERATOR_PARAMS",
    "PAD_LOGIT",
    "AutomaticMaskOptions",
    "CachingSamPredictor",
    "SamProposalSource",
    "resize_logits",
    "placeholder_logits",
]

#: Released generator settings (docs/models/frozenseg.md §7.5); everything else is segment-anything's default.
RELEASED_GENERATOR_PARAMS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.8,
    "stability_score_thresh": 0.7,
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "crop_nms_thresh": 0.7,
    "crop_overlap_ratio": 512 / 1500,
    "crop_n_points_downscale_factor": 1,
    "min_mask_region_area": 100,
    "output_mode": "binary_mask",
}
#: Logit written outside the crop a mask was generated in (sigmoid ~ 2e-9).
PAD_LOGIT = -20.0


@dataclass(frozen=True)
class AutomaticMaskOptions:
    """What :class:`SamProposalSource` keeps of the generator's output.

    Attributes:
        generator: keyword arguments of ``SamAutomaticMaskGenerator`` (``output_mode`` must be
            ``"binary_mask"``).
        max_masks: keep the ``max_masks`` largest masks (by area).
        mask_size: longest side of the returned logits, pixels (0 = image size).
        logits: ``"sam"`` (recompute SAM's decoder logits) or ``"binary"`` (placeholders).
        binary_logit: magnitude of the placeholders.
        chunk_size: masks per decoder call when recomputing logits.
    """

    generator: dict[str, Any] = field(default_factory=lambda: dict(RELEASED_GENERATOR_PARAMS))
    max_masks: int = 50
    mask_size: int = 256
    logits: str = "sam"
    binary_logit: float = 10.0
    chunk_size: int = 8

    def __post_init__(self):
        if self.logits not in ("sam", "binary"):
            raise ValueError(f"logits must be 'sam' or 'binary', got {self.logits!r}.")
        if self.generator.get("output_mode", "binary_mask") != "binary_mask":
            raise ValueError("The SAM proposal cache needs the generator's output_mode='binary_mask'.")


class CachingSamPredictor(SamPredictor):
    """``SamPredictor`` that keeps the embeddings of the images (crops) set since the last
    :meth:`clear_cache`, so the logits of kept masks can be recomputed without running the
    image encoder again. Outputs are identical to ``SamPredictor``'s."""

    def __init__(self, sam_model: Sam):
        self._cache: dict[tuple, tuple] = {}
        super().__init__(sam_model)

    def clear_cache(self) -> None:
        self._cache.clear()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        arr = np.ascontiguousarray(image)
        key = (arr.shape, image_format, hashlib.blake2b(arr.data, digest_size=16).hexdigest())
        hit = self._cache.get(key)
        if hit is not None:
            self.reset_image()
            self.features, self.original_size, self.input_size = hit
            self.is_image_set = True
            return
        super().set_image(arr, image_format)
        self._cache[key] = (self.features, self.original_size, self.input_size)


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) logits -> (B, h, w): bilinear (antialiased when shrinking)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    shrink = size[0] < logits.shape[-2] or size[1] < logits.shape[-1]
    return F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def placeholder_logits(binary: np.ndarray, size: tuple[int, int], value: float) -> np.ndarray:
    """±``value`` logits of binary masks (M, H, W), resized to ``size``: (M, h, w) float32."""
    if binary.shape[0] == 0:
        return np.zeros((0, *size), dtype=np.float32)
    t = torch.from_numpy(binary.astype(np.float32)) * (2 * value) - value
    return resize_logits(t, size).numpy()


class SamProposalSource:
    """SAM's automatic mask generator plus the logit recomputation of the module docstring.

    Args:
        sam: a full segment-anything ``Sam`` (see :func:`frozenseg.modeling.sam.load_sam`).
        options: what to keep (default: the released :class:`AutomaticMaskOptions`).
        info: extra entries for ``params()`` (SAM name, checkpoint).
    """

    def __init__(self, sam: Sam, options: AutomaticMaskOptions | None = None, info: dict[str, Any] | None = None):
        options = options or AutomaticMaskOptions()
        self.options = options
        self.generator = SamAutomaticMaskGenerator(sam, **options.generator)
        self.predictor = CachingSamPredictor(sam)
        self.generator.predictor = self.predictor  # same outputs, embeddings kept for the logits
        self.info = dict(info or {})
        self.low_match_count = 0

    def params(self) -> dict[str, Any]:
        """The settings, as recorded in (and compared against) the cache's ``cache_info.json``."""
        opt = self.options
        return {
            **self.info,
            "generator": dict(opt.generator),
            "max_masks": opt.max_masks,
            "mask_size": opt.mask_size,
            "logits": opt.logits,
            "binary_logit": opt.binary_logit if opt.logits == "binary" else None,
        }

    @torch.no_grad()
    def propose(self, image: np.ndarray) -> SamProposals:
        """Proposals of one (H, W, 3) uint8 RGB image."""
        opt = self.options
        h, w = image.shape[:2]
        size = storage_size(h, w, opt.mask_size)
        self.predictor.clear_cache()
        try:
            records = self.generator.generate(image)
            records = sorted(records, key=lambda r: -int(r["area"]))[: opt.max_masks]
            m = len(records)
            binary = (
                np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records])
                if m else np.zeros((0, h, w), dtype=bool)
            )
            points = np.array([r["point_coords"][0] for r in records], dtype=np.float32).reshape(m, 2)
            crops = np.array([r["crop_box"] for r in records], dtype=np.float32).reshape(m, 4)
            if opt.logits == "sam" and m:
                logits = self._recompute_logits(image, records, binary, points, crops, size)
                source = "sam"
            else:
                logits = placeholder_logits(binary, size, opt.binary_logit)
                source = "binary"
        finally:
            self.predictor.clear_cache()
            self.predictor.reset_image()
        return SamProposals(
            binary=binary,
            logits=logits,
            predicted_iou=np.array([r["predicted_iou"] for r in records], dtype=np.float32),
            stability_score=np.array([r["stability_score"] for r in records], dtype=np.float32),
            point_coords=points,
            crop_box=crops,
            bbox=np.array([r["bbox"] for r in records], dtype=np.float32).reshape(m, 4),
            logits_source=source,
        )

    def _recompute_logits(self, image, records, binary, points, crops, size) -> np.ndarray:
        """(M, h, w) float32 SAM decoder logits of the kept masks at the storage ``size``."""
        h, w = image.shape[:2]
        out = np.zeros((len(records), *size), dtype=np.float32)
        device = self.predictor.device
        chunk = max(1, int(self.options.chunk_size))
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(crops):
            groups.setdefault(tuple(int(round(v)) for v in c), []).append(i)
        for (x0, y0, cw, ch), idxs in groups.items():
            x1, y1 = x0 + cw, y0 + ch
            crop = image[y0:y1, x0:x1]
            self.predictor.set_image(crop)  # cached: same embedding as the generator's
            for start in range(0, len(idxs), chunk):
                sel = idxs[start : start + chunk]
                pts = points[sel] - np.array([x0, y0], dtype=np.float32)
                tp = self.predictor.transform.apply_coords(pts, crop.shape[:2])
                in_pts = torch.as_tensor(tp, dtype=torch.float32, device=device)[:, None, :]
                labels = torch.ones(in_pts.shape[0], 1, dtype=torch.int, device=device)
                masks, ious, _ = self.predictor.predict_torch(
                    in_pts, labels, multimask_output=True, return_logits=True
                )  # (B, 3, ch, cw) logits, (B, 3)
                target = torch.from_numpy(binary[sel][:, y0:y1, x0:x1]).to(device)
                pred = masks > self.predictor.model.mask_threshold
                inter = (pred & target[:, None]).flatten(2).sum(-1).float()
                union = (pred | target[:, None]).flatten(2).sum(-1).float()
                iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
                want = torch.tensor([records[i]["predicted_iou"] for i in sel], device=device)
                score = iou - 1e-3 * (ious - want[:, None]).abs()
                k = score.argmax(1)
                best = iou.gather(1, k[:, None])[:, 0]
                self.low_match_count += int((best < 0.9).sum())
                chosen = masks[torch.arange(len(sel), device=device), k]  # (B, ch, cw)
                full = F.pad(chosen, (x0, w - x1, y0, h - y1), value=PAD_LOGIT)
                out[sel] = resize_logits(full, size).float().cpu().numpy()
        return out
