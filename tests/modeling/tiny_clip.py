"""The tiny random CLIP backbones of the tests (their open_clip model configs ship with the
package: frozenseg/modeling/backbone/clip_models/)."""

from __future__ import annotations

import torch

from frozenseg.modeling.backbone import CLIPBackbone

#: (visual tower, quick_gelu) of the text-tower tests: both towers, and QuickGELU (as RN50x64)
TEXT_TOWERS = [("convnext", None), ("resnet", None), ("resnet", True)]


def build_tiny_clip(kind: str, **kwargs) -> CLIPBackbone:
    """``tiny_{kind}_clip`` (kind "convnext" or "resnet") with random weights drawn from seed 0."""
    torch.manual_seed(0)
    return CLIPBackbone(model_name=f"tiny_{kind}_clip", **kwargs)
