"""SAM proposal cache: format round trip, resume, sharding, the real generator on a tiny SAM,
the inference-side hook (``attach_sam_masks``), the missing-cache error, the model's
proposal ensemble against a hand computation, and recall with / without the proposals."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from frozenseg.utils.sam_mask_cache import (
    SamMaskCacheError,
    attach_sam_masks,
    cache_file_name,
    cache_path,
    check_sam_mask_cache,
    is_valid_cache_file,
    make_record,
    read_cache_info,
    read_sam_masks,
    storage_size,
    write_sam_masks,
)

REPO = Path(__file__).resolve().parents[2]


def _load_tool():
    spec = importlib.util.spec_from_file_location("save_sam_masks_tool", REPO / "tools" / "save_sam_masks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
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
        logits = tool.placeholder_logits(binary, size, 8.0)
        return tool.Proposals(
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


# ---------------------------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------------------------
def test_record_round_trip_and_no_pickle(tmp_path):
    rng = np.random.default_rng(0)
    binary = rng.random((3, 9, 13)) > 0.5
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 4
    rec = make_record("ADE_val_1", (9, 13), logits, binary, [0.9, 0.8, 0.85], [0.7, 0.75, 0.9],
                      np.arange(6).reshape(3, 2), np.tile([0, 0, 13, 9], (3, 1)))
    path = write_sam_masks(str(tmp_path / "a.npz"), rec)
    back = read_sam_masks(path)
    assert back.image_id == "ADE_val_1" and back.image_size == (9, 13) and len(back) == 3
    assert back.mask_logits.dtype == np.float16
    np.testing.assert_allclose(back.mask_logits, logits.astype(np.float16))
    np.testing.assert_array_equal(back.binary_masks(), binary)
    np.testing.assert_array_equal(back.area, binary.reshape(3, -1).sum(1))
    np.testing.assert_allclose(back.predicted_iou, [0.9, 0.8, 0.85], rtol=1e-6)
    with np.load(path, allow_pickle=False) as data:  # every array loads without pickle
        assert all(data[k].dtype != object for k in data.files)
    assert len(read_sam_masks(path, max_masks=2)) == 2
    # corrupt / foreign files give one clear error
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(SamMaskCacheError, match="bad.npz"):
        read_sam_masks(str(tmp_path / "bad.npz"))
    assert not is_valid_cache_file(str(tmp_path / "bad.npz")) and is_valid_cache_file(path)


def test_cache_file_names_are_safe_and_distinct():
    assert cache_file_name("ADE_val_00000001") == "ADE_val_00000001.npz"
    a, b = cache_file_name("a/b"), cache_file_name("a_b")
    assert a != b and "/" not in a and a.endswith(".npz")
    assert not cache_file_name("..").startswith(".")
    assert storage_size(480, 640, 256) == (192, 256) and storage_size(100, 50, 256) == (100, 50)
    assert storage_size(480, 640, 0) == (480, 640)


# ---------------------------------------------------------------------------------------------
# the loop: write, resume, shards, unreadable images
# ---------------------------------------------------------------------------------------------
def test_run_resume_and_unreadable_images(tmp_path, caplog):
    dicts = _make_images(tmp_path / "images", 5, bad=2)
    cache = str(tmp_path / "cache" / "toy")
    src = FakeSource()
    s = tool.run(dicts, src, cache, info={"dataset": "toy"})
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
    s2 = tool.run(dicts, src2, cache, info={"dataset": "toy"})
    assert (s2.written, s2.skipped, len(s2.failed)) == (2, 2, 1)
    assert sorted(c[0] for c in src2.calls) == [21, 23]
    # other parameters into the same cache are refused
    other = FakeSource(mask_size=32)
    with pytest.raises(ValueError, match="other parameters"):
        tool.run(dicts, other, cache, info={"dataset": "toy"})


def test_shards_partition_every_image_once(tmp_path):
    for n, k in ((7, 3), (2, 4), (10, 1)):
        parts = [tool.shard_indices(n, k, i) for i in range(k)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(n))
    with pytest.raises(ValueError):
        tool.shard_indices(5, 2, 2)
    dicts = _make_images(tmp_path / "images", 7)
    cache = str(tmp_path / "cache")
    sources = [FakeSource() for _ in range(3)]
    for i, src in enumerate(sources):
        tool.run(dicts, src, cache, num_shards=3, shard_id=i)
    heights = sorted(c[0] for src in sources for c in src.calls)
    assert heights == [20 + i for i in range(7)]  # each image exactly once over the shards
    assert all(os.path.isfile(cache_path(cache, str(d["image_id"]))) for d in dicts)


def test_cli_with_registered_dataset_and_torchrun_env(tmp_path, monkeypatch):
    from frozenseg.data import DatasetCatalog

    dicts = _make_images(tmp_path / "images", 4, bad=3)
    name = "test_sam_cache_toy_dataset"
    DatasetCatalog.register(name, lambda: dicts)
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        rc = tool.main(["--dataset", name, "--output", str(tmp_path / "out")], source=FakeSource())
        assert rc == 1  # image 3 (shard 1) is unreadable
        files = sorted(os.listdir(tmp_path / "out" / name))
        assert cache_file_name("1") in files and cache_file_name("img/0") not in files
        assert tool.main(["--dataset", "no_such_dataset", "--output", str(tmp_path)], source=FakeSource()) == 2
    finally:
        DatasetCatalog.remove(name)


def test_real_generator_on_tiny_sam(tmp_path):
    """segment-anything's generator, unmodified, on a random tiny SAM; logits recomputed."""
    sam = tool.build_sam("tiny", None, seed=0)
    params = dict(tool.RELEASED_GENERATOR_PARAMS, points_per_side=4, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0, min_mask_region_area=0)
    src = tool.SamProposalSource(sam, params, max_masks=3, mask_size=0)
    img = np.zeros((40, 56, 3), np.uint8)
    img[:, :28] = 200
    img[8:30, 34:50] = (0, 0, 255)
    dicts = [{"file_name": str(tmp_path / "x.png"), "image_id": "x"}]
    Image.fromarray(img).save(dicts[0]["file_name"])
    s = tool.run(dicts, src, str(tmp_path / "c"))
    assert s.written == 1
    rec = read_sam_masks(cache_path(str(tmp_path / "c"), "x"))
    assert rec.logits_source == "sam" and rec.mask_logits.shape[1:] == (40, 56) and len(rec) <= 3
    assert np.all(np.diff(rec.area) <= 0)  # largest first
    assert len(rec) > 0  # thresholds at 0: the random SAM yields masks
    # the recomputed SAM logits reproduce the generator's binary masks (full resolution here)
    agree = (rec.mask_logits.astype(np.float32) > 0) == rec.binary_masks()
    assert agree.mean() > 0.99


# ---------------------------------------------------------------------------------------------
# inference side: mapper hook, missing cache, ensemble, recall
# ---------------------------------------------------------------------------------------------
def test_attach_and_missing_cache_errors(tmp_path):
    root = tmp_path / "sam_masks"
    d = {"file_name": "/data/a.jpg", "image_id": "a", "image": torch.zeros(3, 8, 8, dtype=torch.uint8)}
    with pytest.raises(FileNotFoundError) as e:
        attach_sam_masks(dict(d), str(root), dataset_name="my_ds")
    msg = str(e.value)
    assert str(root / "my_ds") in msg
    assert "python tools/save_sam_masks.py --dataset my_ds --output " + str(root) in msg
    with pytest.raises(FileNotFoundError, match="save_sam_masks.py --dataset my_ds"):
        check_sam_mask_cache(str(root), "my_ds")
    rec = make_record("a", (8, 8), np.ones((2, 4, 4)), np.ones((2, 8, 8), bool), [1, 1], [1, 1],
                      np.zeros((2, 2)), np.zeros((2, 4)))
    write_sam_masks(cache_path(str(root / "my_ds"), "a"), rec)
    out = attach_sam_masks(dict(d), str(root), dataset_name="my_ds")
    assert out["sam_masks"].shape == (2, 4, 4) and out["sam_masks"].dtype == torch.float16
    assert attach_sam_masks(dict(d), str(root / "my_ds"), max_masks=1)["sam_masks"].shape[0] == 1
    with pytest.raises(FileNotFoundError, match="lacks 1 of 2 images"):
        check_sam_mask_cache(str(root), "my_ds", [d, {"image_id": "b"}])
    with pytest.raises(FileNotFoundError, match="No cached SAM proposals for image 'b'"):
        attach_sam_masks({"image_id": "b"}, str(root), dataset_name="my_ds")


@pytest.fixture(scope="module")
def tiny_model():
    from frozenseg import build_model, get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/tiny/frozenseg_tiny_convnext.yaml"))
    cfg.MODEL.SAM_IMAGE_SIZE = 256  # faster; same code path
    cfg.TEST.USE_SAM_MASKS = True
    cfg.TEST.SAM_MASK_PRED_ALPHA = 0.3
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # "circle"/"square" are training classes of the tiny config (seen), the others unseen
    model.set_vocabulary(["circle", "square", "zebra", "giraffe,camelopard"])
    return model


def test_model_ensemble_equals_hand_computation(tiny_model, tmp_path, monkeypatch):
    """cache -> attach_sam_masks -> model; the semantic map equals the formula of spec §7.5
    computed by hand from the query-only result and the proposals' class probabilities."""
    model = tiny_model
    assert model.vocabulary.seen.tolist() == [True, True, False, False]
    h, w = 48, 64
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (3, h, w), dtype=np.uint8))
    stored = np.random.default_rng(2).normal(0, 3, (3, 24, 32)).astype(np.float32)
    rec = make_record("im", (h, w), stored, stored.repeat(2, 1).repeat(2, 2) > 0, [0.9] * 3, [0.9] * 3,
                      np.zeros((3, 2)), np.zeros((3, 4)))
    write_sam_masks(cache_path(str(tmp_path / "ds"), "im"), rec)
    inp = attach_sam_masks({"image": image, "height": h, "width": w, "image_id": "im"}, str(tmp_path), "ds")

    # controlled CLIP probabilities for the 3 proposals (void column last, dropped by the model)
    p_prop = torch.tensor([[0.02, 0.03, 0.90, 0.05],   # unseen max 0.90 > 0.5: used
                           [0.30, 0.30, 0.20, 0.20],   # unseen max 0.20: not used
                           [0.10, 0.10, 0.20, 0.60]])  # unseen max 0.60: used
    original = type(model)._clip_classify

    def fake_clip_classify(self, dense, mask_logits, classifier):
        out = original(self, dense, mask_logits, classifier)
        if mask_logits.shape[1] == 3:  # the proposals (the model has 10 queries)
            return torch.cat([p_prop.log(), torch.zeros(3, 1)], dim=-1)[None]
        return out

    monkeypatch.setattr(type(model), "_clip_classify", fake_clip_classify)
    with torch.no_grad():
        model.panoptic_on = True  # query-only semantic map at output size: Σ_q p_q m_q
        model.use_sam_masks = False
        base = model([dict(inp)])[0]["sem_seg"]
        model.use_sam_masks = True
        ens = model([dict(inp)])[0]["sem_seg"]
        model.panoptic_on = False
    alpha = 0.3
    m_prop = F.interpolate(torch.from_numpy(stored)[None], size=(h, w), mode="bilinear", align_corners=False)
    m_prop = m_prop[0].sigmoid()
    expected = base.clone()
    for c in (2, 3):  # unseen classes
        expected[c] = (1 - alpha) * base[c]
        for m in (0, 2):
            expected[c] += alpha * p_prop[m, c] * m_prop[m]
    torch.testing.assert_close(ens, expected, rtol=1e-4, atol=1e-5)


def test_recall_with_and_without_sam_proposals(tiny_model):
    from frozenseg.evaluation.recall_evaluation import RecallEvaluator

    model = tiny_model
    h, w = 40, 56
    image = torch.from_numpy(np.random.default_rng(3).integers(0, 255, (3, h, w), dtype=np.uint8))
    gt = torch.full((h, w), 255, dtype=torch.int64)
    gt[5:25, 10:30] = 2  # one ground-truth segment of the unseen class "zebra"
    sam = torch.full((2, h, w), -5.0)
    sam[0, 5:25, 10:30] = 5.0  # a SAM proposal that matches it exactly
    meta = SimpleNamespace(stuff_classes=["circle", "square", "zebra", "giraffe"], ignore_label=255,
                           seen_classes=[True, True, False, False])
    results = {}
    with torch.no_grad():
        model.recall_on = True
        for use_sam in (False, True):
            model.use_sam_masks = use_sam
            out = model([{"image": image, "height": h, "width": w, "sam_masks": sam}])[0]
            assert out["proposals"].shape[0] == 10 + (2 if use_sam else 0)
            ev = RecallEvaluator(metadata=meta, distributed=False)
            ev.process([{"sem_seg": gt}], [out])
            results[use_sam] = ev.evaluate()["recall"]
        model.recall_on = False
    assert results[True]["R@90"] == 100.0 and results[True]["R@90_unseen"] == 100.0
    assert results[True]["R@50"] >= results[False]["R@50"]


def test_image_without_sam_proposals(tiny_model):
    model = tiny_model
    image = torch.zeros(3, 32, 40, dtype=torch.uint8)
    with torch.no_grad():
        out = model([{"image": image, "height": 32, "width": 40, "sam_masks": torch.zeros(0, 16, 20)}])[0]
    assert out["sem_seg"].shape == (4, 32, 40)
