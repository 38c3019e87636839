"""OVSeg's mask-adapted CLIP: proposal crops, mask-prompted ViT, CLIP scoring and the ensemble
(docs/models/ovseg.md §2.5, §2.8-2.12). Not here: FrozenSeg's CLIP backbone (``modeling.backbone.clip``)
and the prompt-template text classifier both models share (``modeling.backbone.text_classifier``).
"""

from .adapter import OVSegClipAdapter
from .clip_model import (
    CLIP_WEIGHTS_KEY,
    OVSEG_CLIP_MODELS,
    OpenCLIPTextEncoder,
    build_ovseg_clip_model,
    check_clip_state,
    load_clip_weights,
    ovseg_clip_arch,
    prompt_templates,
)
from .ensemble import ovseg_class_scores, ovseg_demo_semantic_inference, ovseg_semantic_inference
from .mask_prompt import add_mask_embedding, encode_image_with_mask_prompts, mask_prompt_depth
from .regions import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    ClipRegions,
    crop_with_mask,
    expand_box,
    mask_fill_color,
    masks_to_boxes_exclusive,
    prepare_clip_regions,
)

__all__ = [
    "OVSegClipAdapter",
    "CLIP_WEIGHTS_KEY",
    "OVSEG_CLIP_MODELS",
    "OpenCLIPTextEncoder",
    "build_ovseg_clip_model",
    "check_clip_state",
    "load_clip_weights",
    "ovseg_clip_arch",
    "prompt_templates",
    "ovseg_class_scores",
    "ovseg_demo_semantic_inference",
    "ovseg_semantic_inference",
    "add_mask_embedding",
    "encode_image_with_mask_prompts",
    "mask_prompt_depth",
    "CLIP_PIXEL_MEAN",
    "CLIP_PIXEL_STD",
    "ClipRegions",
    "crop_with_mask",
    "expand_box",
    "mask_fill_color",
    "masks_to_boxes_exclusive",
    "prepare_clip_regions",
]
