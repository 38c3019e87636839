"""The whole FrozenSeg model on CPU with the tiny configurations (ConvNeXt and ResNet CLIP paths)."""

from __future__ import annotations

import pytest
import torch

import frozenseg
from frozenseg.data import seen_class_mask
from frozenseg.structures import Instances

from ..conftest import REPO_ROOT

TINY = {
    "convnext": "configs/tiny/frozenseg_tiny_convnext.yaml",
    "resnet": "configs/tiny/frozenseg_tiny_resnet.yaml",
}
VOCAB = ["circle,disc", "dog, puppy", "sky"]


def tiny_cfg(kind: str = "convnext", *opts):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / TINY[kind]))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module", params=["convnext", "resnet"])
def tiny_model(request):
    torch.manual_seed(0)
    model = frozenseg.build_model(tiny_cfg(request.param))
    model.eval()
    model.set_vocabulary(VOCAB, thing_classes=[0, 1])
    return model


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.slow
def test_inference_outputs_all_tasks(tiny_model):
    with torch.no_grad():
        (out,) = tiny_model([{"image": _image(100, 150), "height": 50, "width": 75}])
    assert out["sem_seg"].shape == (3, 50, 75)
    assert torch.isfinite(out["sem_seg"]).all()
    pan, segments = out["panoptic_seg"]
    assert pan.shape == (50, 75) and pan.dtype == torch.int32
    ids = set(pan.unique().tolist()) - {0}
    assert ids == {s["id"] for s in segments}
    for s in segments:
        assert 0 <= s["category_id"] < 3
        assert s["isthing"] == (s["category_id"] in (0, 1))
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (50, 75)
    assert inst.pred_masks.shape[1:] == (50, 75) and inst.pred_masks.dtype == torch.bool
    assert set(inst.pred_classes.tolist()) <= {0, 1}  # panoptic on: things only
    assert inst.pred_boxes.shape == (len(inst), 4)
    for m, b in zip(inst.pred_masks, inst.pred_boxes):
        if m.any():
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert b.tolist() == [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]


@pytest.mark.slow
def test_inference_is_deterministic_and_batches_mixed_sizes(tiny_model):
    a, b = _image(64, 96, 1), _image(80, 64, 2)
    with torch.no_grad():
        single = tiny_model([{"image": a}])[0]
        again = tiny_model([{"image": a}])[0]
        pair = tiny_model([{"image": a}, {"image": b, "height": 40, "width": 32}])
    assert torch.equal(single["sem_seg"], again["sem_seg"])
    assert single["sem_seg"].shape == (3, 64, 96)  # default output size = input size
    assert pair[0]["sem_seg"].shape == (3, 64, 96) and pair[1]["sem_seg"].shape == (3, 40, 32)


@pytest.mark.slow
def test_semantic_only_uses_release_order():
    """With only semantic output the map is computed at the padded size, then cropped/resized."""
    torch.manual_seed(0)
    cfg = tiny_cfg(
        "convnext",
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False",
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "False",
    )
    model = frozenseg.build_model(cfg).eval()
    model.set_vocabulary(VOCAB)
    torch.manual_seed(0)
    full = frozenseg.build_model(tiny_cfg("convnext")).eval()
    full.load_state_dict(model.state_dict())
    full.set_vocabulary(VOCAB)
    x = [{"image": _image(70, 90), "height": 35, "width": 45}]
    with torch.no_grad():
        sem_only = model(x)[0]
        with_pan = full(x)[0]
    assert set(sem_only) == {"sem_seg", "sem_seg_scores"}
    assert sem_only["sem_seg"].shape == with_pan["sem_seg"].shape == (3, 35, 45)
    # the two orders differ numerically but agree on the winner nearly everywhere
    assert not torch.equal(sem_only["sem_seg"], with_pan["sem_seg"])
    assert (sem_only["sem_seg"] - with_pan["sem_seg"]).abs().max() < 0.1


@pytest.mark.parametrize("kind", ["convnext", "resnet"])
@pytest.mark.slow
def test_train_step_gradients_reach_only_trainable_parameters(kind):
    torch.manual_seed(0)
    model = frozenseg.build_model(tiny_cfg(kind, "MODEL.SAM_IMAGE_SIZE", "256"))
    model.train()
    assert not model.backbone.training and not model.sam.training
    batch = []
    for i in range(2):
        masks = torch.zeros(2, 128, 128, dtype=torch.bool)
        masks[0, :64, :64] = True
        masks[1, 64:, 32:] = True
        batch.append(
            {
                "image": _image(128, 128, i),
                "instances": Instances((128, 128), gt_classes=torch.tensor([0, 5]), gt_masks=masks),
            }
        )
    losses = model(batch)
    # final + 3 auxiliary heads (DEC_LAYERS 4) x (ce, mask, dice)
    assert len(losses) == 12 and {"loss_ce", "loss_mask", "loss_dice", "loss_dice_2"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.named_parameters():
        if name.startswith(("backbone.", "sam.")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert "void_embedding.weight" in with_grad
    assert any(n.startswith("sem_seg_head.pixel_decoder.sam_transformer") for n in with_grad)
    assert any(n.startswith("sem_seg_head.predictor.transformer_cross_attention_layers_sam") for n in with_grad)


def test_seen_classes_follow_training_synonyms():
    train = ["person,child,people", "car,automobile", "sky"]
    seen = seen_class_mask(["people", "dog,puppy", "automobile, truck", "blue sky", "Sky"], train)
    assert seen == [True, False, True, False, False]  # exact synonyms, as the release compares
    assert seen_class_mask(["car"], None) == [False]


def test_training_vocabulary_from_dataset(tiny_model):
    assert tiny_model.train_class_names[0].startswith("circle")
    assert tiny_model.vocabulary.seen.tolist() == [True, False, True]


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_grayscale_and_rgba_images_are_converted(tiny_model):
    rgb = _image(48, 64)
    gray = rgb[:1]
    with torch.no_grad():
        out_gray = tiny_model([{"image": gray}])[0]
        out_gray_rgb = tiny_model([{"image": gray.expand(3, -1, -1).clone()}])[0]
        out_2d = tiny_model([{"image": gray[0]}])[0]
        rgba = torch.cat([rgb, torch.full((1, 48, 64), 255, dtype=torch.uint8)])
        out_rgba = tiny_model([{"image": rgba}])[0]
        out_rgb = tiny_model([{"image": rgb}])[0]
    assert torch.equal(out_gray["sem_seg"], out_gray_rgb["sem_seg"])
    assert torch.equal(out_2d["sem_seg"], out_gray_rgb["sem_seg"])
    assert torch.equal(out_rgba["sem_seg"], out_rgb["sem_seg"])


def test_16bit_image_is_refused_with_fix(tiny_model):
    img = torch.randint(0, 65535, (3, 32, 32), dtype=torch.int32)
    with pytest.raises(ValueError, match="8-bit"):
        tiny_model([{"image": img}])


def test_bad_layouts_are_refused(tiny_model):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        tiny_model([{"image": torch.zeros(2, 32, 32, dtype=torch.uint8)}])
    with pytest.raises(TypeError, match='"image"'):
        tiny_model([{"img": torch.zeros(3, 32, 32)}])
    with pytest.raises(ValueError, match="empty"):
        tiny_model([])


@pytest.mark.slow
def test_image_smaller_than_stride(tiny_model):
    with torch.no_grad():
        out = tiny_model([{"image": _image(5, 7)}])[0]
    assert out["sem_seg"].shape == (3, 5, 7)
    assert out["panoptic_seg"][0].shape == (5, 7)


def test_empty_vocabulary_and_entries(tiny_model):
    with pytest.raises(ValueError, match="empty"):
        tiny_model.set_vocabulary([])
    with pytest.raises(ValueError):
        tiny_model.set_vocabulary(["cat", " , "])
    with pytest.raises(ValueError, match="thing_classes"):
        tiny_model.set_vocabulary(["cat"], thing_classes=[3])
    assert tiny_model.vocabulary.class_names == VOCAB  # unchanged after the errors


def test_unknown_clip_model_lists_choices():
    cfg = tiny_cfg("convnext", "MODEL.FROZEN_SEG.CLIP_MODEL_NAME", "convnext_huge_typo",
                   "MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE", "")
    with pytest.raises(ValueError, match="convnext_large_d_320"):
        frozenseg.build_model(cfg)


@pytest.mark.slow
def test_missing_sam_checkpoint_names_key_and_path(tmp_path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    cfg = tiny_cfg("convnext", "MODEL.SAM_CHECKPOINT", str(missing))
    with pytest.raises(FileNotFoundError) as e:
        frozenseg.build_model(cfg)
    assert "MODEL.SAM_CHECKPOINT" in str(e.value) and str(missing) in str(e.value)


@pytest.mark.parametrize("kind", ["convnext", "resnet"])
@pytest.mark.slow
def test_embed_dim_must_match_the_clip_tower(kind):
    with pytest.raises(ValueError) as info:
        frozenseg.build_model(tiny_cfg(kind, "MODEL.FROZEN_SEG.EMBED_DIM", 48))
    assert str(info.value) == (
        f"MODEL.FROZEN_SEG.EMBED_DIM is 48 but the CLIP model 'tiny_{kind}_clip' embeds images and "
        "texts in 32 dimensions; set MODEL.FROZEN_SEG.EMBED_DIM to 32."
    )


def test_offline_clip_tag_explains_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = tiny_cfg(
        "convnext",
        "MODEL.FROZEN_SEG.CLIP_MODEL_NAME", "RN50",
        "MODEL.FROZEN_SEG.CLIP_MODEL_CONFIG_FILE", "",
        "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS", "openai",
    )
    with pytest.raises(RuntimeError, match="MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS"):
        frozenseg.build_model(cfg)


@pytest.mark.slow
def test_sam_masks_required_when_ensemble_enabled(tiny_model):
    tiny_model.use_sam_masks = True
    try:
        with pytest.raises(ValueError, match="save_sam_masks"):
            tiny_model([{"image": _image(32, 32)}])
        props = torch.full((2, 32, 32), -5.0)
        props[0, :16] = 5.0
        props[1, 16:] = 5.0
        with torch.no_grad():
            out = tiny_model([{"image": _image(32, 32), "sam_masks": props}])[0]
        assert out["sem_seg"].shape == (3, 32, 32) and torch.isfinite(out["sem_seg"]).all()
    finally:
        tiny_model.use_sam_masks = False


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = frozenseg.build_model(tiny_cfg("convnext"))
    path = tmp_path / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 3}, path)
    torch.manual_seed(123)
    other = frozenseg.build_model(tiny_cfg("convnext"))
    assert not torch.equal(other.void_embedding.weight, model.void_embedding.weight)
    report = frozenseg.load_checkpoint(other, str(path))
    assert report.ok and not report.frozen_not_in_checkpoint and not report.dropped_unused
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.slow
def test_missing_checkpoint_file_names_the_key(tmp_path):
    model = frozenseg.build_model(tiny_cfg("convnext"))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        frozenseg.load_checkpoint(model, str(tmp_path / "nope.pth"))
