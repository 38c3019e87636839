"""Mask-noun pairs on disk: the output of ``tools/mine_mask_noun_pairs.py`` and the input of
``tools/train_clip_adapter.py`` (docs/models/ovseg.md §3.B1-3.B3). No pickle anywhere.

Layout of an output directory (format version :data:`FORMAT_VERSION`)::

    cache_info.json             the mining parameters (model, thresholds, noun back-end, ...)
    crops/<image>/<k>.png       pair k of an image: the masked crop, RGB uint8, S x S (the CLIP
                                input size), lossless; background = RELEASE_TRAIN_FILL exactly
    masks/<image>/<k>.png       its foreground mask, 8-bit gray, 255 = foreground, 0 = background
    records/<image>.jsonl       one JSON object per pair (keys: RECORD_KEYS), an empty file for
                                an image without pairs; written last, so it marks the image done
    pairs.tsv                   every record: OpenCLIP's CSV (tab-separated, header line,
                                columns ``filepath`` and ``title`` as the release's training
                                scripts read them, then ``mask``, ``image_id``, ``query``,
                                ``score``, ``similarity``); paths relative to this directory

Background colour (docs/models/ovseg.md quirk 11): at inference OVSeg fills the background with 255 x CLIP mean
(122.77, 116.75, 104.09), but the release's mask-prompt-tuning loader recovers the foreground as
"pixel != (124, 116, 103)" exactly. The crops are therefore written with that fill in PNG, so the
release's loader reads correct masks; a foreground pixel that happens to have exactly that colour
is moved by one level in blue (103 -> 104), so the colour rule and the explicit mask agree on
every pixel. This project's trainer reads the explicit mask (``mask`` column); only rows without
one (e.g. the release's own ``coco_proposal_1cap.csv``) fall back to the colour rule
(:func:`mask_from_fill`).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ....utils.errors import UserInputError
from ....utils.file_io import atomic_write
from ....data.sam_mask_cache import cache_file_name

__all__ = [
    "PairDataError",
    "FORMAT_VERSION",
    "RELEASE_TRAIN_FILL",
    "INDEX_FILE",
    "INDEX_COLUMNS",
    "RECORD_KEYS",
    "PairRecord",
    "apply_release_fill",
    "mask_from_fill",
    "image_dir_name",
    "records_path",
    "is_image_done",
    "write_image_pairs",
    "read_image_records",
    "write_pair_index",
    "read_pair_index",
    "load_pair",
    "load_coco_captions",
]

FORMAT_VERSION = 1
#: The background colour of the release's CLIP training crops (docs/models/ovseg.md §3.B1, quirk 11), RGB.
RELEASE_TRAIN_FILL: tuple[int, int, int] = (124, 116, 103)
INDEX_FILE = "pairs.tsv"
INDEX_COLUMNS = ("filepath", "title", "mask", "image_id", "query", "score", "similarity")


class PairDataError(UserInputError, ValueError):
    """A captions file, pair index or pair that cannot be used as given."""


@dataclass
class PairRecord:
    """One mask-noun pair.

    ``filepath`` / ``mask``: the crop and mask PNGs, relative to the output directory;
    ``title``: the noun (the text CLIP is trained on, tokenised as is); ``image_id``: the COCO
    image; ``caption``: the caption the noun came from; ``query``: the OVSeg query of the
    proposal; ``box``: its tight box [x0, y0, x1, y1) in pixels of the model input (the resized
    image); ``score``: its MaskFormer objectness; ``similarity``: CLIP cosine of crop and noun.
    """

    filepath: str
    mask: str
    title: str
    image_id: int | str
    caption: str = ""
    query: int = -1
    box: list[float] = field(default_factory=list)
    score: float = float("nan")
    similarity: float = float("nan")


RECORD_KEYS = tuple(PairRecord.__dataclass_fields__)


def apply_release_fill(crop: np.ndarray, mask: np.ndarray, fill: Sequence[int] = RELEASE_TRAIN_FILL) -> np.ndarray:
    """The crop as written to disk: background pixels set to ``fill`` exactly, foreground
    pixels equal to ``fill`` moved by one level in blue (so that :func:`mask_from_fill` gives
    back ``mask``).

    Args:
        crop: (S, S, 3) uint8 RGB.
        mask: (S, S) bool foreground.
    Returns:
        (S, S, 3) uint8, a new array.
    """
    out = np.array(crop, dtype=np.uint8, copy=True)
    fill_arr = np.asarray(fill, dtype=np.uint8)
    clash = mask & np.all(out == fill_arr, axis=-1)
    out[clash, 2] = fill_arr[2] + 1 if fill_arr[2] < 255 else fill_arr[2] - 1
    out[~mask] = fill_arr
    return out


def mask_from_fill(image: np.ndarray, fill: Sequence[int] = RELEASE_TRAIN_FILL) -> np.ndarray:
    """The release's rule (``Maskget``): foreground = pixels not exactly ``fill``.
    (S, S, 3) uint8 -> (S, S) bool."""
    return ~np.all(np.asarray(image) == np.asarray(fill, dtype=np.uint8), axis=-1)


def image_dir_name(image_id: int | str) -> str:
    """File-system-safe name of an image's folder / record file (the image id when it is safe)."""
    return os.path.splitext(cache_file_name(str(image_id)))[0]


def records_path(output_dir: str, image_id: int | str) -> str:
    """``<output_dir>/records/<image>.jsonl``."""
    return os.path.join(output_dir, "records", image_dir_name(image_id) + ".jsonl")


def is_image_done(output_dir: str, image_id: int | str) -> bool:
    """True when the image's record file exists (it is written after its PNGs)."""
    return os.path.isfile(records_path(output_dir, image_id))


def _write_png(path: str, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        Image.fromarray(array).save(f, format="PNG")


def write_image_pairs(
    output_dir: str, image_id: int | str, pairs: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]]
) -> list[PairRecord]:
    """Write one image's pairs: the PNGs, then its record file (atomically, every file).

    Args:
        output_dir: the output directory.
        image_id: the image.
        pairs: ``(crop (S, S, 3) uint8 RGB, mask (S, S) bool, fields)`` per pair; ``fields`` holds
            ``title`` and optionally ``caption``, ``query``, ``box``, ``score``, ``similarity``.
            The crop is written through :func:`apply_release_fill`.
    Returns:
        the records written (possibly none: the image is then done with no pair).
    """
    name = image_dir_name(image_id)
    records = []
    for k, (crop, mask, fields) in enumerate(pairs):
        title = str(fields["title"])
        if not title.strip() or any(c in title for c in "\t\r\n"):
            raise PairDataError(f"Pair titles must be non-empty and free of tabs and newlines; got {title!r}.")
        crop_rel, mask_rel = f"crops/{name}/{k}.png", f"masks/{name}/{k}.png"
        mask = np.asarray(mask, dtype=bool)
        _write_png(os.path.join(output_dir, crop_rel), apply_release_fill(crop, mask))
        _write_png(os.path.join(output_dir, mask_rel), mask.astype(np.uint8) * 255)
        records.append(PairRecord(filepath=crop_rel, mask=mask_rel, image_id=image_id, **fields))
    with atomic_write(records_path(output_dir, image_id), "w") as f:
        for r in records:
            f.write(json.dumps(asdict(r), sort_keys=True) + "\n")
    return records


def read_image_records(path: str) -> list[PairRecord]:
    """The records of one ``records/<image>.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        return [PairRecord(**json.loads(line)) for line in f if line.strip()]


def write_pair_index(output_dir: str) -> tuple[str, int]:
    """Write ``pairs.tsv`` (atomically) from every record file, images in name order.
    Returns ``(path, number of pairs)``."""
    folder = os.path.join(output_dir, "records")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".jsonl")) if os.path.isdir(folder) else []
    path = os.path.join(output_dir, INDEX_FILE)
    count = 0
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(INDEX_COLUMNS)
        for name in names:
            for r in read_image_records(os.path.join(folder, name)):
                writer.writerow([r.filepath, r.title, r.mask, r.image_id, r.query, r.score, r.similarity])
                count += 1
    return path, count


def read_pair_index(path: str, img_key: str = "filepath", caption_key: str = "title") -> list[dict[str, str]]:
    """Rows of a pair index (ours or any OpenCLIP CSV: tab-separated with a header line) as
    ``{"filepath", "title", "mask"}`` with paths resolved against the index's folder (absolute
    paths kept); ``mask`` is "" when the file has no mask column.

    Raises :class:`PairDataError` naming the file when it is missing, a column is missing or it
    has no rows.
    """
    if not os.path.isfile(path):
        raise PairDataError(f"Pair index {path!r} does not exist; pass the pairs.tsv written by tools/mine_mask_noun_pairs.py.")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = reader.fieldnames or []
        missing = [k for k in (img_key, caption_key) if k not in header]
        if missing:
            raise PairDataError(
                f"{path} has no column {missing[0]!r} (columns: {header}); it must be a tab-separated file "
                f"with a header line, such as the pairs.tsv of tools/mine_mask_noun_pairs.py."
            )
        rows = [
            {
                "filepath": os.path.join(base, row[img_key]),
                "title": row[caption_key],
                "mask": os.path.join(base, row["mask"]) if row.get("mask") else "",
            }
            for row in reader
        ]
    if not rows:
        raise PairDataError(f"{path} lists no pairs; mine some with tools/mine_mask_noun_pairs.py first.")
    return rows


def load_pair(row: dict[str, str]) -> tuple[Image.Image, np.ndarray]:
    """The RGB crop (PIL) and its (S, S) bool mask of an index row: the mask file when the row
    names one, else the release's colour rule (:func:`mask_from_fill`)."""
    with Image.open(row["filepath"]) as im:
        image = im.convert("RGB")
    if row.get("mask"):
        with Image.open(row["mask"]) as m:
            mask = np.asarray(m.convert("L")) > 127
    else:
        mask = mask_from_fill(np.asarray(image))
    if mask.shape != (image.height, image.width):
        raise PairDataError(f"The mask {row['mask']} is {mask.shape[::-1]} but its crop {row['filepath']} is {image.size}.")
    return image, mask


def load_coco_captions(json_file: str, image_root: str, captions_per_image: int = 1) -> list[dict[str, Any]]:
    """The images of a COCO Captions file (``captions_train2017.json``: ``images`` with ``id``
    and ``file_name``, ``annotations`` with ``image_id`` and ``caption``) that have captions.

    Args:
        json_file: the captions file.
        image_root: the folder of the images (``train2017/``).
        captions_per_image: the first N captions of each image by annotation id (1: the
            release's "1cap" data); 0 keeps them all.
    Returns:
        ``{"image_id", "file_name", "captions"}`` per image, sorted by image id.
    """
    if captions_per_image < 0:
        raise PairDataError(f"captions_per_image must be >= 0 (0 = all); got {captions_per_image}.")
    with open(json_file, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise PairDataError(
            f"{json_file} is not a COCO Captions file (it needs 'images' and 'annotations' lists); "
            f"pass annotations/captions_train2017.json."
        )
    files = {img["id"]: img["file_name"] for img in data["images"]}
    captions: dict[Any, list[tuple[Any, str]]] = {}
    for ann in data["annotations"]:
        if "caption" not in ann or ann.get("image_id") not in files:
            raise PairDataError(
                f"{json_file} has an annotation without a caption or with an unknown image_id "
                f"({ {k: ann.get(k) for k in ('id', 'image_id')} }); pass a COCO Captions file."
            )
        captions.setdefault(ann["image_id"], []).append((ann.get("id", 0), " ".join(str(ann["caption"]).split())))
    out = []
    for image_id in sorted(captions):
        texts = [c for _, c in sorted(captions[image_id], key=lambda t: t[0])]
        out.append({
            "image_id": image_id,
            "file_name": os.path.join(image_root, files[image_id]),
            "captions": texts[:captions_per_image] if captions_per_image else texts,
        })
    return out
