"""Both released architectures build on `meta` and accept their released state-dict layouts."""

from __future__ import annotations

import json

import pytest
import torch

import frozenseg
from frozenseg.checkpoint.loading import UNUSED_PREFIXES

from ..conftest import OFFICIAL_STATE_DICTS, REPO_ROOT, require_shared

CASES = [
    ("configs/coco/frozenseg/convnext_large_eval_ade20k.yaml", "convnext_large_d_320__sam_vit_b.json"),
    ("configs/coco/frozenseg/r50x64_eval_ade20k.yaml", "rn50x64__sam_vit_b.json"),
]


def _meta_model(config: str):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / config))
    cfg.MODEL.FROZEN_SEG.TEXT_CACHE_DIR = ""
    return frozenseg.build_model(cfg, device="meta")


def _released_layout(name: str) -> dict[str, list]:
    return json.loads((require_shared(OFFICIAL_STATE_DICTS / name)).read_text())


def _meta_state_dict(layout: dict[str, list]) -> dict[str, torch.Tensor]:
    dtypes = {"float32": torch.float32, "int64": torch.int64, "float16": torch.float16}
    return {k: torch.empty(shape, dtype=dtypes[dt], device="meta") for k, (shape, dt) in layout.items()}


@pytest.mark.parametrize("config,layout_file", CASES)
@pytest.mark.slow
def test_model_state_dict_equals_released_layout(config, layout_file):
    layout = _released_layout(layout_file)
    model = _meta_model(config)
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    released_used = {k: v for k, v in layout.items() if not k.startswith(UNUSED_PREFIXES)}
    assert set(ours) - set(released_used) == set()
    assert set(released_used) - set(ours) == set()
    assert ours == released_used


@pytest.mark.parametrize("config,layout_file", CASES)
@pytest.mark.slow
def test_released_layout_loads_with_nothing_missing(config, layout_file):
    layout = _released_layout(layout_file)
    model = _meta_model(config)
    report = frozenseg.load_checkpoint(model, {"model": _meta_state_dict(layout)})
    assert report.missing == [] and report.unexpected == []
    assert report.frozen_not_in_checkpoint == {}
    # the SAM prompt encoder / mask decoder entries are dropped, and reported
    assert report.dropped_unused == sorted(k for k in layout if k.startswith(UNUSED_PREFIXES))
    assert len(report.dropped_unused) > 0
    assert len(report.loaded) + len(report.dropped_unused) == len(layout)


@pytest.mark.parametrize("config,layout_file", CASES[:1])
@pytest.mark.slow
def test_released_file_without_frozen_parts(config, layout_file):
    layout = _released_layout(layout_file)
    trainable = {
        k: v for k, v in layout.items() if not k.startswith(("backbone.clip_model.", "sam."))
    }
    model = _meta_model(config)
    report = frozenseg.load_checkpoint(model, _meta_state_dict(trainable))
    assert report.ok
    assert report.frozen_not_in_checkpoint == {
        "backbone.clip_model.": "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS",
        "sam.image_encoder.": "MODEL.SAM_CHECKPOINT",
    }


def test_shape_mismatch_is_refused():
    """A ConvNeXt checkpoint does not silently load into the RN50x64 model."""
    layout = _released_layout("convnext_large_d_320__sam_vit_b.json")
    model = _meta_model("configs/coco/frozenseg/r50x64_eval_ade20k.yaml")
    with pytest.raises(ValueError, match="do not match the model"):
        frozenseg.load_checkpoint(model, _meta_state_dict(layout))


@pytest.mark.slow
def test_trainable_parameters_are_only_head_and_void():
    model = _meta_model(CASES[0][0])
    model.train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("sem_seg_head.", "void_embedding.")) for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("backbone.clip_model.", "sam.")) for n in frozen)
    assert not model.backbone.training and not model.sam.training
    assert model.sem_seg_head.training
