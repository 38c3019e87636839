"""On-disk cache of SAM "everything" proposals, one compressed ``.npz`` per image (docs/models/frozenseg.md §7.5).

Written by ``tools/save_sam_masks.py``; read at inference by the test mapper through
:func:`attach_sam_masks`, which puts the proposals into the model input as ``"sam_masks"``. The
model itself never touches files.

Layout::

    <TEST.SAM_MASKS_DIR>/<dataset name>/cache_info.json     parameters the cache was built with
    <TEST.SAM_MASKS_DIR>/<dataset name>/<image key>.npz     one file per image

``<image key>`` is the dataset dict's ``image_id`` (the file name's stem when a dict has none),
made file-system safe by :func:`cache_file_name`.

File format (version 1; ``np.savez_compressed``; read with ``allow_pickle=False``; every array
has a plain numeric or fixed-width unicode dtype, so no pickle is ever involved). M proposals,
sorted by area, largest first; (H, W) is the size of the image file the proposals were made on:

======================  =========================  ===============================================
key                     dtype, shape               meaning
======================  =========================  ===============================================
``format_version``      int32 ()                   1
``image_id``            unicode ()                 ``str(dataset_dict["image_id"])``
``image_size``          int32 (2,)                 (H, W) of the image file
``mask_logits``         float16 (M, h, w)          SAM mask logits (> 0 is "in the mask") in the
                                                   image frame at a reduced resolution: (h, w) =
                                                   (H, W) scaled so that the longest side is
                                                   ``mask_size`` (default 256, SAM's native
                                                   decoder resolution), or (H, W) when
                                                   ``mask_size`` is 0 or not smaller
``predicted_iou``       float32 (M,)               SAM's predicted IoU
``stability_score``     float32 (M,)               SAM's stability score
``area``                int64 (M,)                 pixels of the binary mask at (H, W)
``bbox``                float32 (M, 4)             XYWH box of the binary mask, image pixels
                                                   (segment-anything's convention: w = x_max -
                                                   x_min)
``point_coords``        float32 (M, 2)             the point prompt (x, y), image pixels
``crop_box``            float32 (M, 4)             XYWH crop the mask was generated in
``masks_packed``        uint8 (M, ceil(H*W/8))     the generator's final binary masks at (H, W),
                                                   ``np.packbits`` of each flattened mask
``logits_source``       unicode ()                 ``"sam"`` (decoder logits) or ``"binary"``
                                                   (±``binary_logit`` placeholders)
======================  =========================  ===============================================

Files are written atomically (temporary file + rename), so a crashed or killed run never leaves
a half-written file under a final name, and resuming only has to check which files exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from ..utils.file_io import atomic_write
from ..utils.errors import UserInputError

__all__ = [
    "FORMAT_VERSION",
    "CACHE_INFO_FILE",
    "SamMaskCacheError",
    "SamMaskRecord",
    "SamProposals",
    "image_key",
    "cache_file_name",
    "dataset_cache_dir",
    "cache_path",
    "storage_size",
    "write_sam_masks",
    "read_sam_masks",
    "is_valid_cache_file",
    "attach_sam_masks",
    "check_sam_mask_cache",
    "build_command_hint",
    "write_cache_info",
    "read_cache_info",
    "make_record",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CACHE_INFO_FILE = "cache_info.json"
_REQUIRED_KEYS = (
    "format_version",
    "image_id",
    "image_size",
    "mask_logits",
    "predicted_iou",
    "stability_score",
    "area",
    "bbox",
    "point_coords",
    "crop_box",
    "masks_packed",
    "logits_source",
)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class SamMaskCacheError(UserInputError, ValueError):
    """A cache file exists but is not a valid SAM proposal file of this format."""


@dataclass
class SamMaskRecord:
    """The SAM proposals of one image (see the module docstring for each field)."""

    image_id: str
    image_size: tuple[int, int]
    mask_logits: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    masks_packed: np.ndarray
    logits_source: str = "sam"
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mask_logits.shape[0])

    def binary_masks(self) -> np.ndarray:
        """The generator's binary masks, (M, H, W) bool at the image size."""
        h, w = self.image_size
        if len(self) == 0:
            return np.zeros((0, h, w), dtype=bool)
        bits = np.unpackbits(self.masks_packed, axis=1, count=h * w)
        return bits.reshape(len(self), h, w).astype(bool)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------
def image_key(dataset_dict: Mapping[str, Any]) -> str:
    """The cache key of a dataset dict: ``str(image_id)``, or the file name's stem without one."""
    if dataset_dict.get("image_id") is not None:
        return str(dataset_dict["image_id"])
    if dataset_dict.get("file_name"):
        return os.path.splitext(os.path.basename(str(dataset_dict["file_name"])))[0]
    raise KeyError('A dataset dict needs "image_id" or "file_name" to find its SAM proposals.')


def cache_file_name(key: str) -> str:
    """File name of an image key: the key itself when it is file-system safe
    (``[A-Za-z0-9._-]``, not starting with "."), else a sanitised key plus a short hash (so two
    different keys never share a file)."""
    key = str(key)
    if key and not _SAFE.search(key) and not key.startswith(".") and len(key) <= 200:
        return key + ".npz"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return f"{_SAFE.sub('_', key)[:150].lstrip('.')}-{digest}.npz"


def dataset_cache_dir(cache_root: str, dataset_name: str) -> str:
    """``<cache_root>/<dataset_name>`` with ``~`` and ``$VARS`` expanded."""
    root = os.path.expandvars(os.path.expanduser(str(cache_root)))
    return os.path.join(root, dataset_name)


def cache_path(cache_dir: str, key: str) -> str:
    """Path of the cache file of image ``key`` in a dataset's cache directory."""
    return os.path.join(cache_dir, cache_file_name(key))


def storage_size(height: int, width: int, mask_size: int) -> tuple[int, int]:
    """Resolution at which logits are stored: longest side ``mask_size`` (rounded half up,
    at least 1), or the image size when ``mask_size`` <= 0 or >= the longest side."""
    longest = max(height, width)
    if mask_size <= 0 or mask_size >= longest:
        return int(height), int(width)
    scale = mask_size / longest
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def build_command_hint(dataset_name: str | None, cache_root: str | None) -> str:
    """The command that builds a cache (used in error messages)."""
    ds = dataset_name or "DATASET_NAME"
    out = cache_root or "output/sam_masks"
    return (
        f"python tools/save_sam_masks.py --dataset {ds} --output {out} "
        "--sam-name vit_h --sam-checkpoint /path/to/sam_vit_h_4b8939.pth"
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _as_str_array(text: str) -> np.ndarray:
    return np.array(str(text), dtype=f"<U{max(1, len(str(text)))}")


def write_sam_masks(path: str, record: SamMaskRecord) -> str:
    """Validate ``record`` and write it to ``path`` atomically (compressed ``.npz``).

    Returns ``path``. Arrays are converted to the file's dtypes (logits to float16).
    """
    m = len(record)
    h, w = (int(record.image_size[0]), int(record.image_size[1]))
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
        "image_id": _as_str_array(record.image_id),
        "image_size": np.array([h, w], dtype=np.int32),
        "mask_logits": np.asarray(record.mask_logits, dtype=np.float16),
        "predicted_iou": np.asarray(record.predicted_iou, dtype=np.float32).reshape(m),
        "stability_score": np.asarray(record.stability_score, dtype=np.float32).reshape(m),
        "area": np.asarray(record.area, dtype=np.int64).reshape(m),
        "bbox": np.asarray(record.bbox, dtype=np.float32).reshape(m, 4),
        "point_coords": np.asarray(record.point_coords, dtype=np.float32).reshape(m, 2),
        "crop_box": np.asarray(record.crop_box, dtype=np.float32).reshape(m, 4),
        "masks_packed": np.asarray(record.masks_packed, dtype=np.uint8).reshape(m, (h * w + 7) // 8),
        "logits_source": _as_str_array(record.logits_source),
    }
    if arrays["mask_logits"].ndim != 3:
        raise ValueError(f"mask_logits must be (M, h, w); got shape {arrays['mask_logits'].shape}.")
    if not np.isfinite(arrays["mask_logits"]).all():
        raise ValueError("mask_logits contain non-finite values (float16 overflow?).")
    with atomic_write(path) as f:  # readers see no file or the complete file
        np.savez_compressed(f, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def read_sam_masks(path: str, max_masks: int | None = None, load_binary: bool = True) -> SamMaskRecord:
    """Read and validate one cache file.

    Args:
        path: the ``.npz`` file.
        max_masks: keep only the first (largest) ``max_masks`` proposals.
        load_binary: also read ``masks_packed`` (skip it to save time when only logits are used;
            the field is then an empty (M, 0) array).
    Raises:
        FileNotFoundError: no such file.
        SamMaskCacheError: not a valid cache file (corrupt, other format, inconsistent shapes).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SAM proposal cache file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _REQUIRED_KEYS if k not in data.files]
            if missing:
                raise SamMaskCacheError(f"{path}: missing arrays {missing}; not a SAM proposal cache file.")
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise SamMaskCacheError(
                    f"{path}: cache format version {version}, this code reads version "
                    f"{FORMAT_VERSION}; rebuild the cache with tools/save_sam_masks.py --overwrite."
                )
            sl = slice(None) if max_masks is None else slice(0, int(max_masks))
            rec = SamMaskRecord(
                image_id=str(data["image_id"]),
                image_size=tuple(int(v) for v in data["image_size"]),
                mask_logits=data["mask_logits"][sl],
                predicted_iou=data["predicted_iou"][sl],
                stability_score=data["stability_score"][sl],
                area=data["area"][sl],
                bbox=data["bbox"][sl],
                point_coords=data["point_coords"][sl],
                crop_box=data["crop_box"][sl],
                masks_packed=data["masks_packed"][sl] if load_binary else np.zeros((0, 0), np.uint8),
                logits_source=str(data["logits_source"]),
                format_version=version,
            )
    except SamMaskCacheError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise SamMaskCacheError(
            f"{path}: unreadable SAM proposal cache file ({type(e).__name__}: {e}); delete it and "
            "rerun tools/save_sam_masks.py (finished images are skipped)."
        ) from e
    m = len(rec)
    h, w = rec.image_size
    problems = []
    if rec.mask_logits.ndim != 3 or rec.mask_logits.dtype != np.float16:
        problems.append(f"mask_logits {rec.mask_logits.dtype} {rec.mask_logits.shape}")
    for name, shape in (("predicted_iou", (m,)), ("stability_score", (m,)), ("area", (m,)),
                        ("bbox", (m, 4)), ("point_coords", (m, 2)), ("crop_box", (m, 4))):
        if getattr(rec, name).shape != shape:
            problems.append(f"{name} {getattr(rec, name).shape} (expected {shape})")
    if load_binary and rec.masks_packed.shape != (m, (h * w + 7) // 8):
        problems.append(f"masks_packed {rec.masks_packed.shape}")
    if problems:
        raise SamMaskCacheError(f"{path}: inconsistent arrays: {'; '.join(problems)}.")
    return rec


def is_valid_cache_file(path: str) -> bool:
    """Cheap check that ``path`` is a complete cache file (zip directory readable, every array
    present, right version); does not decompress the masks."""
    if not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            if any(k not in data.files for k in _REQUIRED_KEYS):
                return False
            return int(data["format_version"]) == FORMAT_VERSION
    except Exception:  # noqa: BLE001 - any failure means "recompute"
        return False


# ---------------------------------------------------------------------------------------------
# Cache-level metadata
# ---------------------------------------------------------------------------------------------
def write_cache_info(cache_dir: str, info: Mapping[str, Any]) -> str:
    """Write ``cache_info.json`` (atomically) into a dataset's cache directory."""
    path = os.path.join(cache_dir, CACHE_INFO_FILE)
    with atomic_write(path, "w") as f:
        json.dump(dict(info), f, indent=2, sort_keys=True)
    return path


def read_cache_info(cache_dir: str) -> dict[str, Any] | None:
    """``cache_info.json`` of a dataset's cache directory, or None when there is none."""
    path = os.path.join(cache_dir, CACHE_INFO_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Inference-side hooks (test mapper, evaluation)
# ---------------------------------------------------------------------------------------------
def _missing_dir_error(cache_dir: str, dataset_name: str | None) -> FileNotFoundError:
    root = os.path.dirname(os.path.normpath(cache_dir)) if dataset_name else cache_dir
    name = dataset_name or os.path.basename(os.path.normpath(cache_dir))
    return FileNotFoundError(
        f"TEST.USE_SAM_MASKS is on but the SAM proposal cache directory {cache_dir} does not "
        f"exist (TEST.SAM_MASKS_DIR = {root}). Build it with:\n    "
        f"{build_command_hint(name, root)}\nor set TEST.SAM_MASKS_DIR to where the cache is."
    )


def attach_sam_masks(
    dataset_dict: dict,
    cache_dir: str,
    dataset_name: str | None = None,
    max_masks: int | None = None,
) -> dict:
    """Put the cached proposals of one image into a model input dict, in place.

    Sets ``dataset_dict["sam_masks"]`` to a float16 tensor (M, h, w) of SAM mask logits at the
    stored resolution; the model resizes them to its input size (bilinear) itself, so the
    mapper's own resizing does not matter.

    Args:
        dataset_dict: the mapper's output (needs ``image_id`` or ``file_name``).
        cache_dir: ``<TEST.SAM_MASKS_DIR>/<dataset>`` or, with ``dataset_name``,
            ``TEST.SAM_MASKS_DIR`` itself.
        dataset_name: when given, ``cache_dir`` is the cache root and the dataset's
            sub-directory is used; also named in error messages.
        max_masks: keep at most this many (largest) proposals.
    Returns:
        ``dataset_dict``.
    Raises:
        FileNotFoundError: the cache directory or this image's file is missing; the message
            names the directory and the command that builds the cache.
        SamMaskCacheError: the file is corrupt.
    """
    import torch

    directory = dataset_cache_dir(cache_dir, dataset_name) if dataset_name else os.path.expanduser(cache_dir)
    key = image_key(dataset_dict)
    path = cache_path(directory, key)
    if not os.path.isfile(path):
        if not os.path.isdir(directory):
            raise _missing_dir_error(directory, dataset_name)
        name = dataset_name or os.path.basename(os.path.normpath(directory))
        root = os.path.dirname(os.path.normpath(directory))
        raise FileNotFoundError(
            f"No cached SAM proposals for image {key!r} ({dataset_dict.get('file_name', '')}) in "
            f"{directory} (expected {os.path.basename(path)}). The cache is incomplete; finish "
            f"it with (finished images are skipped):\n    {build_command_hint(name, root)}"
        )
    rec = read_sam_masks(path, max_masks=max_masks, load_binary=False)
    if rec.image_id != key:
        raise SamMaskCacheError(f"{path} holds the proposals of image {rec.image_id!r}, not {key!r}.")
    dataset_dict["sam_masks"] = torch.from_numpy(np.ascontiguousarray(rec.mask_logits))
    return dataset_dict


def check_sam_mask_cache(
    cache_root: str, dataset_name: str, dataset_dicts: Iterable[Mapping[str, Any]] | None = None
) -> str:
    """Fail early, with one clear error, when a dataset's cache is missing or incomplete.

    Call it once before evaluating with ``TEST.USE_SAM_MASKS`` (a missing file would otherwise
    only surface inside a data-loader worker). Returns the dataset's cache directory.

    Raises:
        FileNotFoundError: naming the directory, the number of missing images (and a few ids)
            and the command that builds or completes the cache.
    """
    directory = dataset_cache_dir(cache_root, dataset_name)
    if not os.path.isdir(directory):
        raise _missing_dir_error(directory, dataset_name)
    if dataset_dicts is not None:
        present = set(os.listdir(directory))
        keys = [image_key(d) for d in dataset_dicts]
        missing = [k for k in keys if cache_file_name(k) not in present]
        if missing:
            root = os.path.expandvars(os.path.expanduser(str(cache_root)))
            raise FileNotFoundError(
                f"The SAM proposal cache {directory} lacks {len(missing)} of {len(keys)} images "
                f"of {dataset_name} (e.g. {missing[:5]}). Complete it with (finished images are "
                f"skipped):\n    {build_command_hint(dataset_name, root)}"
            )
    return directory


def _packbits(masks: np.ndarray) -> np.ndarray:
    """(M, H, W) bool -> (M, ceil(H*W/8)) uint8."""
    m, h, w = masks.shape
    return np.packbits(masks.reshape(m, h * w).astype(bool), axis=1)


@dataclass
class SamProposals:
    """The proposals of one image before they are stored: M masks, largest first.

    ``binary`` (M, H, W) bool at the image size (H, W); ``logits`` (M, h, w) float mask logits
    at the storage size (see :func:`storage_size`); ``predicted_iou`` and ``stability_score``
    (M,); ``point_coords`` (M, 2) point prompts (x, y) and ``crop_box`` (M, 4) XYWH, image
    pixels; ``bbox`` (M, 4) XYWH image pixels, or None to compute it from ``binary``;
    ``logits_source`` as in the file format.
    """

    binary: np.ndarray
    logits: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_box: np.ndarray
    bbox: np.ndarray | None = None
    logits_source: str = "sam"


def make_record(image_id: str, proposals: SamProposals) -> SamMaskRecord:
    """The cache record of one image's proposals; (H, W) is the size of ``proposals.binary``.

    ``area`` is computed here; ``bbox`` (XYWH) defaults to segment-anything's convention for
    its ``bbox`` field (x_min, y_min, x_max - x_min, y_max - y_min; zeros for an empty mask).
    """
    binary_masks = np.asarray(proposals.binary, dtype=bool)
    m, h, w = binary_masks.shape
    area = binary_masks.reshape(m, h * w).sum(1).astype(np.int64)
    bbox = proposals.bbox
    if bbox is None:
        bbox = np.zeros((m, 4), dtype=np.float32)
        for i in range(m):
            ys, xs = np.nonzero(binary_masks[i])
            if len(xs):
                bbox[i] = (xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min())
    return SamMaskRecord(
        image_id=str(image_id),
        image_size=(int(h), int(w)),
        mask_logits=np.asarray(proposals.logits, dtype=np.float16),
        predicted_iou=np.asarray(proposals.predicted_iou, dtype=np.float32).reshape(m),
        stability_score=np.asarray(proposals.stability_score, dtype=np.float32).reshape(m),
        area=area,
        bbox=np.asarray(bbox, dtype=np.float32).reshape(m, 4),
        point_coords=np.asarray(proposals.point_coords, dtype=np.float32).reshape(m, 2),
        crop_box=np.asarray(proposals.crop_box, dtype=np.float32).reshape(m, 4),
        masks_packed=_packbits(binary_masks),
        logits_source=proposals.logits_source,
    )
