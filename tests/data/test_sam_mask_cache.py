"""The SAM proposal cache format (frozenseg.data.sam_mask_cache): round trip without pickle,
file names, the inference-side hook (``attach_sam_masks``) and the missing-cache errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frozenseg.data.sam_mask_cache import (
    SamMaskCacheError,
    SamProposals,
    attach_sam_masks,
    cache_file_name,
    cache_path,
    check_sam_mask_cache,
    is_valid_cache_file,
    make_record,
    read_sam_masks,
    storage_size,
    write_sam_masks,
)


def _proposals(logits, binary, predicted_iou, stability_score, point_coords, crop_box) -> SamProposals:
    return SamProposals(binary=binary, logits=logits, predicted_iou=np.asarray(predicted_iou),
                        stability_score=np.asarray(stability_score), point_coords=point_coords,
                        crop_box=crop_box)


def test_record_round_trip_and_no_pickle(tmp_path):
    rng = np.random.default_rng(0)
    binary = rng.random((3, 9, 13)) > 0.5
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 4
    rec = make_record("ADE_val_1", _proposals(logits, binary, [0.9, 0.8, 0.85], [0.7, 0.75, 0.9],
                                              np.arange(6).reshape(3, 2), np.tile([0, 0, 13, 9], (3, 1))))
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


def test_make_record_boxes_follow_segment_anything():
    binary = np.zeros((2, 6, 8), dtype=bool)
    binary[0, 1:4, 2:7] = True  # rows 1..3, columns 2..6; the second mask is empty
    rec = make_record("b", _proposals(np.zeros((2, 6, 8)), binary, [1, 1], [1, 1], np.zeros((2, 2)), np.zeros((2, 4))))
    np.testing.assert_array_equal(rec.bbox, [[2, 1, 4, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(rec.area, [15, 0])
    assert rec.image_size == (6, 8) and rec.logits_source == "sam"


def test_an_image_where_sam_finds_no_mask_round_trips(tmp_path):
    """SAM may keep no mask (strict thresholds, a blank image): the record holds M = 0 proposals
    of the image's size and reads back as such."""
    rec = make_record("blank", _proposals(np.zeros((0, 5, 7), np.float32), np.zeros((0, 9, 13), bool), [], [],
                                          np.zeros((0, 2)), np.zeros((0, 4))))
    back = read_sam_masks(write_sam_masks(str(tmp_path / "blank.npz"), rec))
    assert len(back) == 0 and back.image_size == (9, 13) and back.mask_logits.shape == (0, 5, 7)
    assert back.binary_masks().shape == (0, 9, 13) and back.area.shape == (0,) and back.bbox.shape == (0, 4)


def test_cache_file_names_are_safe_and_distinct():
    assert cache_file_name("ADE_val_00000001") == "ADE_val_00000001.npz"
    a, b = cache_file_name("a/b"), cache_file_name("a_b")
    assert a != b and "/" not in a and a.endswith(".npz")
    assert not cache_file_name("..").startswith(".")
    assert storage_size(480, 640, 256) == (192, 256) and storage_size(100, 50, 256) == (100, 50)
    assert storage_size(480, 640, 0) == (480, 640)


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
    rec = make_record("a", _proposals(np.ones((2, 4, 4)), np.ones((2, 8, 8), bool), [1, 1], [1, 1],
                                      np.zeros((2, 2)), np.zeros((2, 4))))
    write_sam_masks(cache_path(str(root / "my_ds"), "a"), rec)
    out = attach_sam_masks(dict(d), str(root), dataset_name="my_ds")
    assert out["sam_masks"].shape == (2, 4, 4) and out["sam_masks"].dtype == torch.float16
    assert attach_sam_masks(dict(d), str(root / "my_ds"), max_masks=1)["sam_masks"].shape[0] == 1
    with pytest.raises(FileNotFoundError, match="lacks 1 of 2 images"):
        check_sam_mask_cache(str(root), "my_ds", [d, {"image_id": "b"}])
    with pytest.raises(FileNotFoundError, match="No cached SAM proposals for image 'b'"):
        attach_sam_masks({"image_id": "b"}, str(root), dataset_name="my_ds")
