"""Batched evaluation (TEST.IMS_PER_BATCH > 1): a batch of images gives every
image the outputs of a batch of one, whatever the mix of sizes (FrozenSeg and OVSeg)."""

from __future__ import annotations

import pytest
import torch

import frozenseg
from frozenseg.structures import ImageList, padded_size, same_padded_size_groups

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: float tolerance of batched vs one-by-one outputs (batched matrix products may round differently)
ATOL = 1e-5


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _model(config: str, *opts):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return frozenseg.build_model(cfg).eval()


@pytest.fixture(scope="module")
def frozenseg_model():
    model = _model("configs/tiny/frozenseg_tiny_convnext.yaml", "MODEL.SAM_IMAGE_SIZE", "256")
    model.set_vocabulary(["circle,disc", "dog", "sky", "grass"], thing_classes=[0, 1])
    return model


def _assert_same_outputs(batched: list[dict], single: list[dict]) -> None:
    assert len(batched) == len(single)
    for b, s in zip(batched, single):
        assert b.keys() == s.keys()
        torch.testing.assert_close(b["sem_seg"], s["sem_seg"], rtol=0, atol=ATOL)
        if "panoptic_seg" in s:
            assert torch.equal(b["panoptic_seg"][0], s["panoptic_seg"][0])
            assert [x["category_id"] for x in b["panoptic_seg"][1]] == [x["category_id"] for x in s["panoptic_seg"][1]]
        if "instances" in s:
            torch.testing.assert_close(b["instances"].scores, s["instances"].scores, rtol=0, atol=ATOL)
            assert torch.equal(b["instances"].pred_classes, s["instances"].pred_classes)


MIXED = [  # (h, w, output size): two pad to 64x96, one to 96x64, one to 32x256
    (64, 96, (64, 96)), (80, 64, (40, 32)), (60, 90, (120, 180)), (30, 250, (30, 250)), (64, 96, (64, 96)),
]


@pytest.mark.parametrize("sizes", [MIXED, [(64, 96, (64, 96))] * 3], ids=["mixed_sizes", "same_size"])
@pytest.mark.slow
def test_frozenseg_batch_equals_one_by_one(frozenseg_model, sizes):
    inputs = [{"image": _image(h, w, i), "height": out[0], "width": out[1]} for i, (h, w, out) in enumerate(sizes)]
    with torch.no_grad():
        single = [frozenseg_model([x])[0] for x in inputs]
        batched = frozenseg_model(inputs)
    _assert_same_outputs(batched, single)
    assert [tuple(r["sem_seg"].shape[1:]) for r in batched] == [out for _, _, out in sizes]


def test_frozenseg_batch_runs_sam_once_clip_per_padded_size_and_the_decoder_per_image(frozenseg_model):
    """The decoder runs per image: the released SAM-branch deformable attention reads sampling
    locations across the images of its batch (docs/models/frozenseg.md §4), so a batched decoder would change them."""
    calls = {"sam": [], "clip": [], "decoder": []}
    hooks = [
        frozenseg_model.sam.register_forward_hook(lambda m, a, o: calls["sam"].append(a[0].shape[0])),
        frozenseg_model.backbone.register_forward_hook(lambda m, a, o: calls["clip"].append(a[0].shape[0])),
        frozenseg_model.sem_seg_head.register_forward_hook(lambda m, a, o: calls["decoder"].append(a[0]["sam"].shape[0])),
    ]
    try:
        with torch.no_grad():
            frozenseg_model([{"image": _image(h, w, i)} for i, (h, w, _) in enumerate(MIXED)])
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"sam": [5], "clip": [3, 1, 1], "decoder": [1, 1, 1, 1, 1]}


def test_the_release_decoder_is_batch_dependent(frozenseg_model):
    """Why the decoder runs per image: fed the same two images' features as one batch, the
    released decoder changes their outputs (a guard: if this ever fails, the decoder may be
    batched again)."""
    images = [_image(64, 96, i).float() for i in range(2)]
    model = frozenseg_model
    with torch.no_grad():
        sam = model.sam(torch.cat([model.sam.preprocess([x], training=False) for x in images]))
        feats = model.backbone(torch.stack([(x - model.pixel_mean) / model.pixel_std for x in images]))
        classifier = model._text_classifier(model.vocabulary.class_names)
        rows, templates = classifier.rows, classifier.num_templates
        pair = model.sem_seg_head({**feats, "sam": sam}, rows, templates)["pred_masks"]
        second = model.sem_seg_head({**{k: v[1:] for k, v in feats.items()}, "sam": sam[1:]}, rows, templates)["pred_masks"]
    # the second image's SAM-branch locations come from the first image's buffer
    assert (pair[1] - second[0]).abs().max().item() > 1e-3


def test_ovseg_batch_equals_one_by_one():
    model = _model("configs/tiny/ovseg_tiny_swin.yaml")
    model.set_vocabulary(["circle", "sky, blue sky", "grass"])
    inputs = [{"image": _image(h, w, i), "height": out[0], "width": out[1]} for i, (h, w, out) in enumerate(MIXED)]
    with torch.no_grad():
        single = [model([x])[0] for x in inputs]
        batched = model(inputs)
    _assert_same_outputs(batched, single)


def test_groups_follow_the_padded_size():
    sizes = [(64, 96), (80, 64), (60, 90), (30, 250), (64, 96), (96, 64)]
    assert [padded_size(s, 32) for s in sizes[:4]] == [(64, 96), (96, 64), (64, 96), (32, 256)]
    assert padded_size((30, 250), 0) == (30, 250)
    assert same_padded_size_groups(sizes, 32) == [[0, 2, 4], [1, 5], [3]]
    assert same_padded_size_groups(sizes, 0) == [[0, 4], [1], [2], [3], [5]]
    # each group pads, alone or together, to the group's padded size
    for group in same_padded_size_groups(sizes, 32):
        expected = padded_size(sizes[group[0]], 32)
        alone = {tuple(ImageList.from_tensors([torch.zeros(3, *sizes[i])], 32).tensor.shape[-2:]) for i in group}
        together = ImageList.from_tensors([torch.zeros(3, *sizes[i]) for i in group], 32).tensor.shape[-2:]
        assert alone == {expected} and tuple(together) == expected
