"""Shared fixtures of the OVSeg component tests: a tiny random open_clip ViT CLIP and the
released OVSeg state-dict layouts.

Tiny CLIP: joint dim 32; vision 56 px, patch 14 (grid 4x4 = 16 patches), width 64, 4 blocks,
2 heads; text width 32, 2 heads, 2 layers (context 77, OpenAI vocabulary), QuickGELU.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from frozenseg import get_cfg

from ...conftest import OFFICIAL_STATE_DICTS, require_shared

LAYOUTS = {
    "swinB_vitL14": OFFICIAL_STATE_DICTS / "ovseg_swinB_vitL14.json",
    "R101c_vitB16": OFFICIAL_STATE_DICTS / "ovseg_R101c_vitB16.json",
}
TINY_IMAGE, TINY_PATCH, TINY_WIDTH, TINY_EMBED = 56, 14, 64, 32


def ovseg_cfg():
    """The shared keys and OVSeg's, with their defaults (``MODEL.META_ARCHITECTURE`` OVSeg)."""
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "OVSeg"])
    return cfg


def released_layout(name: str, prefix: str) -> dict[str, tuple[int, ...]]:
    """``{key without prefix: shape}`` of the released entries under ``prefix``."""
    layout = json.loads(require_shared(LAYOUTS[name]).read_text())
    return {k[len(prefix):]: tuple(v[0]) for k, v in layout.items() if k.startswith(prefix)}


def make_tiny_clip(seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=TINY_EMBED,
        vision_cfg={"image_size": TINY_IMAGE, "patch_size": TINY_PATCH, "width": TINY_WIDTH, "layers": 4, "head_width": 32},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        quick_gelu=True,
    )
    return model.eval()


@pytest.fixture
def tiny_clip() -> open_clip.CLIP:
    return make_tiny_clip()
