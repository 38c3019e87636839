"""Shared pieces of the dataset mappers: file reading, target building, resize geometry.

Mappers turn a dataset dict into the model input ``{"image": uint8 (3, H, W) RGB tensor,
"height", "width", "instances": Instances(gt_classes (N,) int64, gt_masks (N, H, W) bool),
"sem_seg": (H, W) int64}``. Geometry is applied with ``torchvision.transforms.v2``, which
transforms the image (``tv_tensors.Image``) and every label map (``tv_tensors.Mask``, nearest
interpolation) together.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from panopticapi.utils import rgb2id
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ...structures import Instances
from ...utils import image_io

__all__ = [
    "read_image",
    "read_label_map",
    "read_panoptic_ids",
    "shortest_edge_size",
    "resize_shortest_edge",
    "polygons_to_masks",
    "pop_panoptic",
    "map_instance_dict",
    "instances_from_panoptic",
    "instances_from_sem_seg",
    "instances_from_masks",
    "semantic_from_panoptic",
    "pad_to_divisibility",
]


def read_image(path: str, fmt: str = "RGB") -> torch.Tensor:
    """Read an image file as a uint8 (3, H, W) tensor (see :func:`frozenseg.utils.image_io.read_image`
    for the handling of grayscale, alpha, 16-bit and unreadable files)."""
    arr = image_io.read_image(path)
    if fmt == "BGR":
        arr = arr[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def read_label_map(path: str, expected_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a single-channel label map (PNG uint8/uint16, TIFF) as (H, W) int64 (the first channel
    of a multi-channel file); ``expected_size``: its image's (H, W), checked
    (:func:`~frozenseg.utils.image_io.read_annotation`: one sentence naming the file)."""
    arr = image_io.read_annotation(path, expected_size)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    return torch.from_numpy(arr.astype(np.int64))


def read_panoptic_ids(path: str, expected_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a COCO panoptic PNG as (H, W) int64 segment ids (R + 256 G + 256^2 B); errors as in
    :func:`read_label_map`."""
    ids = rgb2id(image_io.read_annotation(path, expected_size, rgb=True))
    return torch.from_numpy(ids.astype(np.int64))


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """Detectron2's ResizeShortestEdge output size (rounded half up)."""
    scale = short / min(h, w)
    newh, neww = h * scale, w * scale
    if max(newh, neww) > max_size > 0:
        s = max_size / max(newh, neww)
        newh, neww = newh * s, neww * s
    return int(newh + 0.5), int(neww + 0.5)


def resize_shortest_edge(sample: dict, short: int, max_size: int) -> dict:
    """Resize every tv_tensor in ``sample`` so the image's short edge is ``short``."""
    h, w = sample["image"].shape[-2:]
    size = list(shortest_edge_size(h, w, short, max_size))
    if size == [h, w]:
        return sample
    return v2.Resize(size, antialias=True)(sample)


def polygons_to_masks(annotations: list[dict], h: int, w: int) -> torch.Tensor:
    """COCO polygons / RLE of each annotation -> (N, H, W) uint8 masks."""
    from pycocotools import mask as mask_util

    masks = []
    for a in annotations:
        seg = a["segmentation"]
        if isinstance(seg, list):
            rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_util.frPyObjects(seg, h, w)
        else:
            rle = seg
        masks.append(mask_util.decode(rle))
    if not masks:
        return torch.zeros((0, h, w), dtype=torch.uint8)
    return torch.from_numpy(np.stack(masks).astype(np.uint8))


def pop_panoptic(d: dict, image_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Take a panoptic dataset dict's annotation out of ``d``: the segment ids (H, W) of its
    ``pan_seg_file_name`` (checked against ``image_size``) and its ``segments_info``
    (``sem_seg_file_name`` and ``sem_seg_num_classes`` are dropped too; the mappers derive
    ``sem_seg`` from the segments)."""
    pan = read_panoptic_ids(d.pop("pan_seg_file_name"), image_size)
    segments = d.pop("segments_info")
    d.pop("sem_seg_file_name", None)
    d.pop("sem_seg_num_classes", None)
    return pan, segments


def map_instance_dict(dataset_dict: dict, image_format: str, transform: Callable[[dict], dict]) -> dict:
    """The training mapping of an instance dataset dict (COCO polygons / RLE): ``image`` and
    ``instances`` (one per non-crowd annotation whose mask survives ``transform``), with
    ``transform`` the mapper's geometry over a sample of the image and the masks (``"masks"``)."""
    d = copy.copy(dataset_dict)
    image = read_image(d["file_name"], image_format)
    h, w = image.shape[-2:]
    anns = [a for a in d.pop("annotations", []) if not a.get("iscrowd", 0)]
    sample = as_sample(image)
    sample["masks"] = tv_tensors.Mask(polygons_to_masks(anns, h, w))
    out = transform(sample)
    d["image"] = plain(out["image"])
    d["instances"] = instances_from_masks([a["category_id"] for a in anns], plain(out["masks"]),
                                          d["image"].shape[-2:])
    return d


def instances_from_masks(classes: list[int], masks: torch.Tensor, image_size) -> Instances:
    """Build targets, dropping masks that are empty (e.g. cropped away)."""
    masks = masks.bool()
    keep = masks.flatten(1).any(1) if len(masks) else torch.zeros(0, dtype=torch.bool)
    inst = Instances(tuple(image_size))
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)[keep]
    inst.gt_masks = masks[keep] if len(masks) else torch.zeros((0, *image_size), dtype=torch.bool)
    return inst


def instances_from_panoptic(pan: torch.Tensor, segments_info: list[dict]) -> Instances:
    """One target per non-crowd segment: its contiguous class and binary mask."""
    classes, masks = [], []
    for s in segments_info:
        if s.get("iscrowd", 0):
            continue
        classes.append(int(s["category_id"]))
        masks.append(pan == s["id"])
    m = torch.stack(masks) if masks else torch.zeros((0, *pan.shape), dtype=torch.bool)
    return instances_from_masks(classes, m, pan.shape)


def semantic_from_panoptic(pan: torch.Tensor, segments_info: list[dict], ignore: int = 255) -> torch.Tensor:
    """Per-pixel contiguous class; void and crowd pixels get ``ignore``."""
    sem = torch.full(pan.shape, ignore, dtype=torch.int64)
    for s in segments_info:
        if not s.get("iscrowd", 0):
            sem[pan == s["id"]] = int(s["category_id"])
    return sem


def instances_from_sem_seg(sem: torch.Tensor, ignore: int) -> Instances:
    """One target per class present in ``sem`` (ignore pixels excluded)."""
    classes = [int(c) for c in torch.unique(sem) if int(c) != ignore]
    m = torch.stack([sem == c for c in classes]) if classes else torch.zeros((0, *sem.shape), dtype=torch.bool)
    return instances_from_masks(classes, m, sem.shape)


def pad_to_divisibility(sample: dict, divisibility: int, ignore: dict[str, int]) -> dict:
    """Pad bottom/right so H and W are multiples of ``divisibility`` (image 128, maps by key)."""
    if divisibility <= 0:
        return sample
    h, w = sample["image"].shape[-2:]
    ph, pw = (-h) % divisibility, (-w) % divisibility
    if ph == 0 and pw == 0:
        return sample
    out = {}
    for k, v in sample.items():
        fill = 128 if k == "image" else ignore.get(k, 0)
        out[k] = TF.pad(v, [0, 0, pw, ph], fill=fill)
    return out


def as_sample(image: torch.Tensor, **maps: torch.Tensor) -> dict:
    """Wrap the image and label maps as tv_tensors so v2 transforms handle them together."""
    sample = {"image": tv_tensors.Image(image)}
    for k, v in maps.items():
        if v is not None:
            sample[k] = tv_tensors.Mask(v)
    return sample


def plain(t: torch.Tensor) -> torch.Tensor:
    """tv_tensor -> plain tensor."""
    return t.as_subclass(torch.Tensor)
