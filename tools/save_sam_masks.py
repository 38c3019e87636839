#!/usr/bin/env python
"""Cache SAM "everything" proposals of a registered dataset split for the SAM proposal ensemble.

For every image, segment-anything's ``SamAutomaticMaskGenerator`` (used unmodified) produces
its automatic masks; the largest ``--max-masks`` (50) are kept with their mask logits, predicted
IoU and stability score, and written to ``<output>/<dataset>/<image id>.npz`` (format:
:mod:`frozenseg.utils.sam_mask_cache`). At inference, ``TEST.USE_SAM_MASKS True`` with
``TEST.SAM_MASKS_DIR <output>`` makes the test mapper attach them to the model input (spec §7.5).

Released settings (the defaults here): SAM ViT-H, ``pred_iou_thresh`` 0.8,
``stability_score_thresh`` 0.7, ``min_mask_region_area`` 100, 50 largest masks,
``output_mode="binary_mask"``, mask logits kept. Every generator parameter is a flag.

Mask logits. The generator returns binary masks only. With ``--logits sam`` (default) the
logits are recomputed exactly as the generator computed them: for each kept mask, SAM's
predictor runs again on the same crop with the same single point prompt (``point_coords`` and
``crop_box`` of the record, ``multimask_output=True``), and of the three outputs the one whose
binarised mask best matches the kept mask is taken (IoU; ties broken by the predicted IoU). The
image embedding is not recomputed: the generator's predictor is a caching subclass of
``SamPredictor`` that keeps the embedding of the current image's crops. The stored logits are
SAM's decoder logits, so they can disagree with the stored binary mask where the generator's
small-region clean-up (``--min-mask-region-area``) filled holes or removed islands. With
``--logits binary`` the logits are ±``--binary-logit`` placeholders of the binary masks (no
extra decoder runs).

Resolution. Logits are stored in the image frame with the longest side ``--mask-size`` (default
256 = SAM's native decoder resolution, so nothing is lost for ``--crop-n-layers 0``; 0 keeps the
full image size), as float16; binary masks at full resolution, bit-packed and compressed.

Resumable (existing valid files are skipped; a corrupt one is recomputed), shardable with
``--num-shards N --shard-id I`` or under ``torchrun`` (``WORLD_SIZE`` / ``RANK`` /
``LOCAL_RANK``), with progress logs and a final count. Unreadable images are reported, listed in
``failed_images.shard-I-of-N.json`` and skipped; the exit status is then 1.

Example::

    python tools/save_sam_masks.py --dataset openvocab_ade20k_panoptic_val \\
        --output output/sam_masks --sam-name vit_h \\
        --sam-checkpoint pretrained_checkpoint/sam_vit_h_4b8939.pth
    # 4 GPUs:
    torchrun --nproc_per_node 4 tools/save_sam_masks.py --dataset ... --sam-checkpoint ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from frozenseg.utils.image_io import ImageReadError, read_image  # noqa: E402
from frozenseg.utils.sam_mask_cache import (  # noqa: E402
    FORMAT_VERSION,
    cache_path,
    dataset_cache_dir,
    image_key,
    is_valid_cache_file,
    make_record,
    read_cache_info,
    storage_size,
    write_cache_info,
    write_sam_masks,
)

logger = logging.getLogger("save_sam_masks")

#: Released generator settings (spec §7.5); everything else is segment-anything's default.
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
#: The generator settings the CLI exposes as flags (all but the cache's fixed output mode).
_GENERATOR_FLAGS = tuple(k for k in RELEASED_GENERATOR_PARAMS if k != "output_mode")
SAM_NAMES = ("vit_h", "vit_l", "vit_b", "vit_t", "tiny")
#: Logit written outside the crop a mask was generated in (sigmoid ~ 2e-9).
PAD_LOGIT = -20.0
#: The tiny random SAM for tests: encoder "tiny" of frozenseg.modeling.sam, 256-px input.
TINY_SAM_DIM = 32
TINY_SAM_IMAGE_SIZE = 256


# ---------------------------------------------------------------------------------------------
# SAM
# ---------------------------------------------------------------------------------------------
def default_checkpoint(name: str) -> str:
    """``pretrained_checkpoint/<official file>`` for a SAM name ("" for ``tiny``)."""
    files = {
        "vit_h": "sam_vit_h_4b8939.pth",
        "vit_l": "sam_vit_l_0b3195.pth",
        "vit_b": "sam_vit_b_01ec64.pth",
        "vit_t": "mobile_sam.pt",
    }
    return os.path.join("pretrained_checkpoint", files[name]) if name in files else ""


def build_tiny_sam(seed: int = 0) -> torch.nn.Module:
    """A tiny random ``segment_anything.modeling.Sam`` for tests: the ``tiny`` ViT image
    encoder (256-px input, 16x16 embedding of width 32) with SAM's standard prompt encoder and
    mask decoder at width 32. Deterministic for a seed; its masks are arbitrary."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from frozenseg.modeling.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, build_vit_image_encoder

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        emb = TINY_SAM_IMAGE_SIZE // 16
        sam = Sam(
            image_encoder=build_vit_image_encoder("tiny", out_chans=TINY_SAM_DIM, image_size=TINY_SAM_IMAGE_SIZE),
            prompt_encoder=PromptEncoder(
                embed_dim=TINY_SAM_DIM,
                image_embedding_size=(emb, emb),
                input_image_size=(TINY_SAM_IMAGE_SIZE, TINY_SAM_IMAGE_SIZE),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=TINY_SAM_DIM, mlp_dim=64, num_heads=2),
                transformer_dim=TINY_SAM_DIM,
                iou_head_depth=3,
                iou_head_hidden_dim=32,
            ),
            pixel_mean=list(SAM_PIXEL_MEAN),
            pixel_std=list(SAM_PIXEL_STD),
        )
    finally:
        torch.random.set_rng_state(gen_state)
    return sam.eval()


def _load_sam_state(sam: torch.nn.Module, checkpoint: str) -> None:
    obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if any(k.startswith("sam.") for k in obj):  # a FrozenSeg checkpoint carrying the full SAM
        obj = {k[4:]: v for k, v in obj.items() if k.startswith("sam.")}
    missing, unexpected = sam.load_state_dict(obj, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"SAM checkpoint {checkpoint} does not fit the chosen --sam-name: missing "
            f"{len(missing)} keys (e.g. {missing[:3]}), unexpected {len(unexpected)} (e.g. "
            f"{unexpected[:3]}). The automatic mask generator needs the full SAM (image encoder, "
            "prompt encoder and mask decoder)."
        )


def build_sam(name: str, checkpoint: str | None, device: str | torch.device = "cpu", seed: int = 0):
    """Build a full SAM (``vit_h``/``vit_l``/``vit_b`` from segment-anything, ``vit_t`` from
    MobileSAM, or the random ``tiny`` test model) and load ``checkpoint`` (weights only).

    Raises:
        FileNotFoundError: a real SAM without its checkpoint file (names the official file).
    """
    if name not in SAM_NAMES:
        raise ValueError(f"Unknown --sam-name {name!r}; choose one of {', '.join(SAM_NAMES)}.")
    if name == "tiny":
        sam = build_tiny_sam(seed)
        if checkpoint:
            _load_sam_state(sam, checkpoint)
        else:
            logger.warning("SAM 'tiny' has random weights (seed %d): for tests only.", seed)
        return sam.to(device).eval()
    checkpoint = checkpoint or default_checkpoint(name)
    resolved = os.path.expanduser(os.path.expandvars(checkpoint))
    if not os.path.isfile(resolved):
        from frozenseg.modeling.sam import SAM_CHECKPOINT_FILES

        raise FileNotFoundError(
            f"SAM checkpoint {checkpoint!r} not found. --sam-name {name} needs the official file "
            f"{SAM_CHECKPOINT_FILES.get(name, '')}; download it yourself and pass its path with "
            "--sam-checkpoint."
        )
    if name == "vit_t":
        try:
            import mobile_sam
        except ImportError as e:
            raise ImportError(
                "--sam-name vit_t needs MobileSAM (`pip install mobilesam-mirror`, module mobile_sam)."
            ) from e
        sam = mobile_sam.sam_model_registry["vit_t"](checkpoint=None)
    else:
        from segment_anything import sam_model_registry

        sam = sam_model_registry[name](checkpoint=None)
    _load_sam_state(sam, resolved)
    logger.info("Loaded SAM %s from %s", name, resolved)
    return sam.to(device).eval()


def _caching_predictor_class():
    from segment_anything import SamPredictor

    class CachingSamPredictor(SamPredictor):
        """``SamPredictor`` that keeps the embeddings of the images (crops) set since the last
        :meth:`clear_cache`, so the logits of kept masks can be recomputed without running the
        image encoder again. Outputs are identical to ``SamPredictor``'s."""

        def __init__(self, sam_model):
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

    return CachingSamPredictor


# ---------------------------------------------------------------------------------------------
# Proposal sources
# ---------------------------------------------------------------------------------------------
@dataclass
class Proposals:
    """Proposals of one image: M masks, sorted by area (largest first).

    ``binary`` (M, H, W) bool; ``logits`` (M, h, w) float32 at the storage size; the rest (M,)
    or (M, k) arrays in image pixels (boxes XYWH).
    """

    binary: np.ndarray
    logits: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    bbox: np.ndarray | None = None
    logits_source: str = "sam"


class ProposalSource(Protocol):
    """What :func:`run` needs: ``params()`` (recorded in ``cache_info.json`` and compared on
    resume) and ``propose(image RGB uint8 HxWx3) -> Proposals``."""

    def params(self) -> dict[str, Any]:
        ...

    def propose(self, image: np.ndarray) -> Proposals:
        ...


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) logits -> (B, h, w): bilinear (antialiased when shrinking)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    shrink = size[0] < logits.shape[-2] or size[1] < logits.shape[-1]
    return F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def placeholder_logits(binary: np.ndarray, size: tuple[int, int], value: float) -> np.ndarray:
    """±``value`` logits of binary masks (M, H, W), resized to ``size``."""
    if binary.shape[0] == 0:
        return np.zeros((0, *size), dtype=np.float32)
    t = torch.from_numpy(binary.astype(np.float32)) * (2 * value) - value
    return resize_logits(t, size).numpy()


class SamProposalSource:
    """SAM's automatic mask generator plus the logit recomputation described in the module
    docstring.

    Args:
        sam: a full segment-anything ``Sam`` (see :func:`build_sam`).
        generator_params: keyword arguments of ``SamAutomaticMaskGenerator``.
        max_masks: keep the largest ``max_masks`` masks (by area).
        mask_size: longest side of the stored logits (0 = image size).
        logits: ``"sam"`` (recompute decoder logits) or ``"binary"`` (placeholders).
        binary_logit: magnitude of the placeholders.
        chunk_size: masks per decoder call when recomputing logits.
        info: extra entries for ``params()`` (SAM name, checkpoint).
    """

    def __init__(
        self,
        sam,
        generator_params: dict[str, Any],
        max_masks: int = 50,
        mask_size: int = 256,
        logits: str = "sam",
        binary_logit: float = 10.0,
        chunk_size: int = 8,
        info: dict[str, Any] | None = None,
    ):
        from segment_anything import SamAutomaticMaskGenerator

        if logits not in ("sam", "binary"):
            raise ValueError(f"logits must be 'sam' or 'binary', got {logits!r}.")
        if generator_params.get("output_mode", "binary_mask") != "binary_mask":
            raise ValueError("The cache needs output_mode='binary_mask'.")
        self.generator_params = dict(generator_params)
        self.generator = SamAutomaticMaskGenerator(sam, **self.generator_params)
        self.predictor = _caching_predictor_class()(sam)
        self.generator.predictor = self.predictor  # same outputs, embeddings kept for the logits
        self.max_masks = int(max_masks)
        self.mask_size = int(mask_size)
        self.logits = logits
        self.binary_logit = float(binary_logit)
        self.chunk_size = max(1, int(chunk_size))
        self.info = dict(info or {})
        self.low_match_count = 0

    def params(self) -> dict[str, Any]:
        return {
            **self.info,
            "generator": self.generator_params,
            "max_masks": self.max_masks,
            "mask_size": self.mask_size,
            "logits": self.logits,
            "binary_logit": self.binary_logit if self.logits == "binary" else None,
        }

    @torch.no_grad()
    def propose(self, image: np.ndarray) -> Proposals:
        h, w = image.shape[:2]
        size = storage_size(h, w, self.mask_size)
        self.predictor.clear_cache()
        try:
            records = self.generator.generate(image)
            records = sorted(records, key=lambda r: -int(r["area"]))[: self.max_masks]
            m = len(records)
            binary = (
                np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records])
                if m else np.zeros((0, h, w), dtype=bool)
            )
            points = np.array([r["point_coords"][0] for r in records], dtype=np.float32).reshape(m, 2)
            crops = np.array([r["crop_box"] for r in records], dtype=np.float32).reshape(m, 4)
            if self.logits == "sam" and m:
                logits = self._recompute_logits(image, records, binary, points, crops, size)
                source = "sam"
            else:
                logits = placeholder_logits(binary, size, self.binary_logit)
                source = "binary"
        finally:
            self.predictor.clear_cache()
            self.predictor.reset_image()
        return Proposals(
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
        h, w = image.shape[:2]
        out = np.zeros((len(records), *size), dtype=np.float32)
        device = self.predictor.device
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(crops):
            groups.setdefault(tuple(int(round(v)) for v in c), []).append(i)
        for (x0, y0, cw, ch), idxs in groups.items():
            x1, y1 = x0 + cw, y0 + ch
            crop = image[y0:y1, x0:x1]
            self.predictor.set_image(crop)  # cached: same embedding as the generator's
            for start in range(0, len(idxs), self.chunk_size):
                sel = idxs[start : start + self.chunk_size]
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


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def shard_indices(num_items: int, num_shards: int, shard_id: int) -> list[int]:
    """Indices of shard ``shard_id`` of ``num_shards``: ``shard_id, shard_id + N, ...``; the shards
    partition ``range(num_items)``."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"Invalid shard {shard_id} of {num_shards}: need 0 <= shard-id < num-shards.")
    return list(range(shard_id, num_items, num_shards))


@dataclass
class Summary:
    """Counts of one run over one shard."""

    total: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    files_in_cache: int = 0
    seconds: float = 0.0


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _compare_info(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two cache_info dicts, ignoring where the checkpoint file lives."""
    ignore = {"sam_checkpoint", "dataset_root"}
    old, new = _flatten(old), _flatten(new)
    keys = sorted((set(old) | set(new)) - ignore)
    return [f"{k}: cache has {old.get(k)!r}, this run {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def prepare_cache_dir(cache_dir: str, info: dict[str, Any], overwrite: bool) -> None:
    """Create the directory and ``cache_info.json``; refuse to mix parameters in one cache."""
    old = read_cache_info(cache_dir)
    if old is not None and not overwrite:
        diff = _compare_info(json.loads(json.dumps(old)), json.loads(json.dumps(info)))
        if diff:
            raise ValueError(
                f"The cache in {cache_dir} was built with other parameters ({'; '.join(diff)}). "
                "Use another --output, or --overwrite to rebuild every image."
            )
        return
    write_cache_info(cache_dir, info)


def run(
    dataset_dicts: Sequence[dict],
    source: ProposalSource,
    cache_dir: str,
    *,
    num_shards: int = 1,
    shard_id: int = 0,
    overwrite: bool = False,
    max_images: int | None = None,
    log_every: int = 10,
    image_reader: Callable[[str], np.ndarray] = read_image,
    info: dict[str, Any] | None = None,
) -> Summary:
    """Compute and cache the proposals of this shard's images.

    Args:
        dataset_dicts: the dataset (``file_name`` and ``image_id`` per dict), in a fixed order.
        source: where proposals come from (:class:`SamProposalSource`, or a test double).
        cache_dir: the dataset's cache directory (``<output>/<dataset>``).
        num_shards, shard_id: this process handles images ``shard_id::num_shards``.
        overwrite: recompute images that are already cached.
        max_images: stop after this many images of the shard (quick runs).
        log_every: progress line every this many images (and at least once a minute).
        image_reader: path -> uint8 RGB (H, W, 3).
        info: entries written to ``cache_info.json`` besides ``source.params()``.
    Returns:
        :class:`Summary`. Unreadable images are logged, listed in
        ``failed_images.shard-I-of-N.json`` and counted, never silently dropped.
    """
    keys = [image_key(d) for d in dataset_dicts]
    dup = sorted(k for k, c in Counter(keys).items() if c > 1)
    if dup:
        raise ValueError(f"Image ids are not unique in this dataset (e.g. {dup[:5]}); the cache is keyed by image id.")
    full_info = {"format_version": FORMAT_VERSION, **(info or {}), **source.params()}
    prepare_cache_dir(cache_dir, full_info, overwrite)

    indices = shard_indices(len(dataset_dicts), num_shards, shard_id)
    if max_images is not None:
        indices = indices[: max(0, int(max_images))]
    summary = Summary(total=len(indices))
    tag = f"[shard {shard_id}/{num_shards}]" if num_shards > 1 else "[all images]"
    logger.info("%s %d of %d images to process into %s", tag, len(indices), len(dataset_dicts), cache_dir)
    t0 = last_log = time.perf_counter()
    for n, idx in enumerate(indices, start=1):
        d, key = dataset_dicts[idx], keys[idx]
        path = cache_path(cache_dir, key)
        if not overwrite and os.path.exists(path):
            if is_valid_cache_file(path):
                summary.skipped += 1
                continue
            logger.warning("%s Recomputing the unreadable cache file %s.", tag, path)
        file_name = str(d.get("file_name", ""))
        try:
            image = image_reader(file_name)
        except (FileNotFoundError, ImageReadError, OSError) as e:
            logger.error("%s Skipping image %r (%s): %s", tag, key, file_name, e)
            summary.failed.append({"image_id": key, "file_name": file_name, "error": str(e)})
            continue
        try:
            props = source.propose(image)
        except Exception:
            logger.error("%s SAM failed on image %r (%s).", tag, key, file_name)
            raise
        rec = make_record(
            key, image.shape[:2], props.logits, props.binary, props.predicted_iou,
            props.stability_score, props.point_coords, props.crop_box, props.logits_source, props.bbox,
        )
        write_sam_masks(path, rec)
        summary.written += 1
        now = time.perf_counter()
        if n % max(1, log_every) == 0 or now - last_log > 60 or n == len(indices):
            done = summary.written + summary.skipped + len(summary.failed)
            rate = summary.written / max(now - t0, 1e-9)
            eta = (len(indices) - done) / rate if rate > 0 else float("nan")
            logger.info(
                "%s %d/%d images (%d written, %d already cached, %d failed), %.2f img/s, ETA %s",
                tag, done, len(indices), summary.written, summary.skipped, len(summary.failed),
                rate, _fmt_seconds(eta),
            )
            last_log = now
    summary.seconds = time.perf_counter() - t0
    failed_file = os.path.join(cache_dir, f"failed_images.shard-{shard_id}-of-{num_shards}.json")
    if summary.failed:
        with open(failed_file, "w", encoding="utf-8") as f:
            json.dump(summary.failed, f, indent=2)
    elif os.path.exists(failed_file):
        os.remove(failed_file)
    summary.files_in_cache = sum(1 for f in os.listdir(cache_dir) if f.endswith(".npz") and not f.startswith("."))
    logger.info(
        "%s Done in %s: %d images in this shard, %d written, %d already cached, %d failed%s. "
        "%d of %d images of the dataset are now in %s.",
        tag, _fmt_seconds(summary.seconds), summary.total, summary.written, summary.skipped,
        len(summary.failed), f" (listed in {failed_file})" if summary.failed else "",
        summary.files_in_cache, len(dataset_dicts), cache_dir,
    )
    return summary


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Cache SAM automatic-mask proposals of a registered dataset (spec §7.5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="registered dataset name, e.g. openvocab_ade20k_panoptic_val")
    p.add_argument("--output", default="output/sam_masks",
                   help="cache root (TEST.SAM_MASKS_DIR); files go to <output>/<dataset>/")
    p.add_argument("--sam-name", default="vit_h", choices=SAM_NAMES, help="SAM variant (tiny: random test model)")
    p.add_argument("--sam-checkpoint", default=None,
                   help="SAM checkpoint (default pretrained_checkpoint/<official file>)")
    p.add_argument("--device", default=None, help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    g = p.add_argument_group("automatic mask generator (segment-anything)")
    for name in _GENERATOR_FLAGS:  # --points-per-side etc., typed and defaulted by the released value
        default = RELEASED_GENERATOR_PARAMS[name]
        g.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    c = p.add_argument_group("cache")
    c.add_argument("--max-masks", type=int, default=50, help="keep the N largest masks per image")
    c.add_argument("--mask-size", type=int, default=256,
                   help="longest side of the stored logits (0: full image size)")
    c.add_argument("--logits", choices=("sam", "binary"), default="sam",
                   help="sam: recompute SAM's decoder logits of each kept mask; binary: ±placeholders")
    c.add_argument("--binary-logit", type=float, default=10.0, help="placeholder magnitude for --logits binary")
    c.add_argument("--overwrite", action="store_true", help="recompute images that are already cached")
    r = p.add_argument_group("sharding and progress")
    r.add_argument("--num-shards", type=int, default=None, help="default: $WORLD_SIZE or 1")
    r.add_argument("--shard-id", type=int, default=None, help="default: $RANK or 0")
    r.add_argument("--max-images", type=int, default=None, help="process at most N images of the shard")
    r.add_argument("--log-every", type=int, default=10, help="progress line every N images")
    r.add_argument("--seed", type=int, default=0, help="seed of the random 'tiny' SAM")
    return p


def generator_params_from_args(args) -> dict[str, Any]:
    return {**{name: getattr(args, name) for name in _GENERATOR_FLAGS}, "output_mode": "binary_mask"}


def resolve_shard(args) -> tuple[int, int, int | None]:
    """(num_shards, shard_id, local_rank) from the flags or a torchrun environment."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    num_shards = args.num_shards if args.num_shards is not None else env_world
    shard_id = args.shard_id if args.shard_id is not None else int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None
    shard_indices(0, num_shards, shard_id)  # validates
    return num_shards, shard_id, local_rank


def main(argv: Sequence[str] | None = None, source: ProposalSource | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 some images failed, 2 usage error).

    ``source`` replaces the SAM generator (tests)."""
    args = get_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        num_shards, shard_id, local_rank = resolve_shard(args)
        from frozenseg.data import DatasetCatalog

        if args.dataset not in DatasetCatalog:
            raise KeyError(f"Dataset {args.dataset!r} is not registered; see frozenseg/data/builtin.py.")
        dataset_dicts = DatasetCatalog.get(args.dataset)
        if source is None:
            device = args.device or (
                f"cuda:{local_rank or 0}" if torch.cuda.is_available() else "cpu"
            )
            checkpoint = args.sam_checkpoint if args.sam_checkpoint is not None else default_checkpoint(args.sam_name)
            sam = build_sam(args.sam_name, checkpoint, device=device, seed=args.seed)
            source = SamProposalSource(
                sam, generator_params_from_args(args), max_masks=args.max_masks, mask_size=args.mask_size,
                logits=args.logits, binary_logit=args.binary_logit,
                info={"sam_name": args.sam_name, "sam_checkpoint": checkpoint or "",
                      "seed": args.seed if args.sam_name == "tiny" and not checkpoint else None},
            )
            logger.info("SAM %s on %s; generator %s", args.sam_name, device, source.generator_params)
        cache_dir = dataset_cache_dir(args.output, args.dataset)
        summary = run(
            dataset_dicts, source, cache_dir, num_shards=num_shards, shard_id=shard_id,
            overwrite=args.overwrite, max_images=args.max_images, log_every=args.log_every,
            info={"dataset": args.dataset},
        )
    except (KeyError, ValueError, FileNotFoundError, ImportError) as e:
        logger.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if isinstance(source, SamProposalSource) and source.low_match_count:
        logger.info(
            "%d kept masks match their recomputed SAM logits with IoU < 0.9 (typically masks that "
            "the generator's small-region clean-up changed); the stored logits are SAM's.",
            source.low_match_count,
        )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
