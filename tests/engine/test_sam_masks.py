"""The job that fills a SAM proposal cache (frozenseg.apps.sam_masks): write, resume,
shards (explicit or from a torchrun environment), unreadable images, mixed parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frozenseg.data.sam_mask_cache import (
    SamProposals,
    cache_file_name,
    cache_path,
    read_cache_info,
    read_sam_masks,
    storage_size,
)
from frozenseg.apps.sam_masks import resolve_shard, save_sam_masks, shard_indices
from frozenseg.modeling.sam.automatic import placeholder_logits


class FakeSource:
    """Deterministic proposals: two rectangles whose size depends on the image; counts calls."""

    def __init__(self, mask_size: int = 16):
        self.calls: list[tuple[int, int, int]] = []
        self.mask_size = mask_size

    def params(self):
        return {"sam_name": "fake", "mask_size": self.mask_size, "max_masks": 2}

    def propose(self, image):
        h, w = image.shape[:2]
        self.calls.append((h, w, int(image[0, 0, 0])))
        binary = np.zeros((2, h, w), dtype=bool)
        binary[0, : h // 2, :] = True
        binary[1, h // 2 :, : w // 3] = True
        size = storage_size(h, w, self.mask_size)
        logits = placeholder_logits(binary, size, 8.0)
        return SamProposals(
            binary=binary, logits=logits, predicted_iou=np.array([0.9, 0.85]),
            stability_score=np.array([0.95, 0.8]), point_coords=np.array([[1.0, 2.0], [3.0, 4.0]]),
            crop_box=np.array([[0, 0, w, h]] * 2, dtype=np.float32), logits_source="binary",
        )


def _make_images(root: Path, n: int, bad: int | None = None) -> list[dict]:
    root.mkdir(parents=True, exist_ok=True)
    dicts = []
    for i in range(n):
        path = root / f"img_{i}.png"
        if i == bad:
            path.write_bytes(b"this is not a png")
        else:
            arr = np.full((20 + i, 30, 3), i * 10, dtype=np.uint8)
            Image.fromarray(arr).save(path)
        dicts.append({"file_name": str(path), "image_id": f"img/{i}" if i % 3 == 0 else i})
    return dicts


def test_run_resume_and_unreadable_images(tmp_path, caplog):
    dicts = _make_images(tmp_path / "images", 5, bad=2)
    cache = str(tmp_path / "cache" / "toy")
    src = FakeSource()
    s = save_sam_masks(dicts, src, cache, info={"dataset": "toy"})
    assert (s.total, s.written, s.skipped, len(s.failed)) == (5, 4, 0, 1)
    assert "img_2.png" in caplog.text and "Skipping" in caplog.text  # reported, not silent
    failed = json.loads((Path(cache) / "failed_images.shard-0-of-1.json").read_text())
    assert failed[0]["image_id"] == "2"
    assert read_cache_info(cache)["dataset"] == "toy"
    for d in dicts:
        key = str(d["image_id"])
        if d["image_id"] == 2:
            continue
        rec = read_sam_masks(cache_path(cache, key))
        assert rec.image_id == key and rec.image_size == (20 + int(Path(d["file_name"]).stem[4:]), 30)
        assert rec.mask_logits.shape[1:] == storage_size(*rec.image_size, 16)
    # resume: nothing recomputed except the failed image; a deleted and a corrupt file are redone
    os.remove(cache_path(cache, "1"))
    Path(cache_path(cache, "img/3")).write_bytes(b"truncated")
    src2 = FakeSource()
    s2 = save_sam_masks(dicts, src2, cache, info={"dataset": "toy"})
    assert (s2.written, s2.skipped, len(s2.failed)) == (2, 2, 1)
    assert sorted(c[0] for c in src2.calls) == [21, 23]
    # other parameters into the same cache are refused
    other = FakeSource(mask_size=32)
    with pytest.raises(ValueError, match="other parameters"):
        save_sam_masks(dicts, other, cache, info={"dataset": "toy"})


def test_shards_partition_every_image_once(tmp_path):
    for n, k in ((7, 3), (2, 4), (10, 1)):
        parts = [shard_indices(n, k, i) for i in range(k)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(n))
    with pytest.raises(ValueError):
        shard_indices(5, 2, 2)
    dicts = _make_images(tmp_path / "images", 7)
    cache = str(tmp_path / "cache")
    sources = [FakeSource() for _ in range(3)]
    for i, src in enumerate(sources):
        save_sam_masks(dicts, src, cache, num_shards=3, shard_id=i)
    heights = sorted(c[0] for src in sources for c in src.calls)
    assert heights == [20 + i for i in range(7)]  # each image exactly once over the shards
    assert all(os.path.isfile(cache_path(cache, str(d["image_id"]))) for d in dicts)


def test_shard_from_a_torchrun_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert resolve_shard() == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert resolve_shard() == (2, 1) and resolve_shard(3, 0) == (3, 0)
    with pytest.raises(ValueError, match="Invalid shard 2 of 2"):
        resolve_shard(shard_id=2)
    dicts = _make_images(tmp_path / "images", 4, bad=3)
    s = save_sam_masks(dicts, FakeSource(), str(tmp_path / "out"), num_shards=2, shard_id=1)
    assert len(s.failed) == 1  # image 3 (shard 1) is unreadable
    files = sorted(os.listdir(tmp_path / "out"))
    assert cache_file_name("1") in files and cache_file_name("img/0") not in files
