"""OVSeg's CLIP model through open_clip: building, a small local-weights loader, the text encoder
and the prompt templates (spec §2.5, §2.9, §9.1; quirks 14 and 18).

The release's OpenAI ``ViT-L/14`` / ``ViT-B/16`` are open_clip's ``-quickgelu`` configs (same
state-dict keys and shapes, QuickGELU activations), plus ``visual.mask_embedding``.
"""

from __future__ import annotations

import logging
import os
import zipfile
from typing import Sequence

import open_clip
import torch
from torch import nn

from ..backbone.text_classifier import VILD_PROMPT_TEMPLATES
from .mask_prompt import add_mask_embedding

__all__ = [
    "OVSEG_CLIP_MODELS",
    "build_ovseg_clip_model",
    "load_clip_weights",
    "OpenCLIPTextEncoder",
    "prompt_templates",
]

logger = logging.getLogger(__name__)

#: Release CLIP names (``MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME``) -> open_clip architectures.
OVSEG_CLIP_MODELS: dict[str, str] = {"ViT-L/14": "ViT-L-14-quickgelu", "ViT-B/16": "ViT-B-16-quickgelu"}

# Entries of TorchScript files that are not parameters: OpenAI's size constants, and the causal
# mask that a scripted open_clip model keeps (a non-persistent buffer in open_clip).
_NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def build_ovseg_clip_model(model_name: str, mask_prompt_depth: int, weights: str = "") -> nn.Module:
    """An open_clip CLIP with ``visual.mask_embedding`` (depth, G, W), random or loaded weights.

    Args:
        model_name: "ViT-L/14" or "ViT-B/16" (release names) or their open_clip names.
        mask_prompt_depth: rows of the mask embedding (3 released); 0 adds none.
        weights: local weights file (see :func:`load_clip_weights`) or "" for random weights.
    Returns:
        the CLIP model, fp32, on the current default device (``meta`` inside ``torch.device("meta")``).
    """
    arch = OVSEG_CLIP_MODELS.get(model_name, model_name)
    if arch not in OVSEG_CLIP_MODELS.values():
        raise ValueError(
            f"Unknown MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME {model_name!r}; use one of {sorted(OVSEG_CLIP_MODELS)} "
            f"and put a weights file path in MODEL.CLIP_ADAPTER.CLIP_WEIGHTS."
        )
    model = open_clip.create_model(arch, pretrained=None, device=torch.get_default_device())
    if mask_prompt_depth > 0:
        add_mask_embedding(model.visual, mask_prompt_depth)
    if weights:
        load_clip_weights(model, weights)
    return model


def _is_torchscript_archive(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def load_clip_weights(clip_model: nn.Module, path: str) -> None:
    """Load a local CLIP weights file into ``clip_model`` (OpenAI key names).

    Accepts OpenAI's TorchScript files, plain state dicts, and OpenCLIP training checkpoints
    (``{"state_dict": ...}``, with or without the DDP ``module.`` prefix; quirk 14 FIX). Only
    ``visual.mask_embedding`` may be absent from the file (it then keeps its zeros, quirk 18);
    any other missing or unexpected key is an error.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"CLIP weights file {path!r} does not exist; set MODEL.CLIP_ADAPTER.CLIP_WEIGHTS to a local file or ''."
        )
    if _is_torchscript_archive(path):
        state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _NON_PARAMETER_KEYS}
    own = clip_model.state_dict()
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if "visual.mask_embedding" in wrong:
        depth = state["visual.mask_embedding"].shape[0]
        raise ValueError(
            f"{path} has visual.mask_embedding of shape {tuple(state['visual.mask_embedding'].shape)} but the "
            f"model's is {tuple(own['visual.mask_embedding'].shape)}; set MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH {depth}."
        )
    missing = [k for k in own if k not in state and k != "visual.mask_embedding"]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not hold the weights of this CLIP model ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}; {len(wrong)} of another "
            f"shape, e.g. {wrong[:3]}); check MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME and MASK_PROMPT_DEPTH."
        )
    clip_model.load_state_dict(state, strict=False)
    logger.info("Loaded CLIP weights from %s.", path)


class OpenCLIPTextEncoder:
    """The text side of an open_clip CLIP, in the protocol of ``TextClassifierBuilder``
    (``tokenize``, ``encode_text``, ``device``)."""

    def __init__(self, clip_model: nn.Module, tokenizer_name: str):
        """
        Args:
            clip_model: open_clip CLIP (text tower with a causal mask and end-of-text pooling).
            tokenizer_name: open_clip model name whose tokenizer to use (e.g. "ViT-L-14-quickgelu").
        """
        self.clip_model = clip_model
        self.tokenizer = open_clip.get_tokenizer(tokenizer_name)

    @property
    def device(self) -> torch.device:
        return self.clip_model.positional_embedding.device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> (N, context_length) int64 token ids, zero padded."""
        return self.tokenizer(list(texts)).long()

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected end-of-text features (N, D), not normalised.

        Args:
            tokens: (N, L) token ids, L <= context length (the builder truncates after the last
                end-of-text token; zero padding is restored, which the causal mask makes exact).
        """
        context = self.clip_model.context_length
        if tokens.shape[1] > context:
            raise ValueError(f"Token length {tokens.shape[1]} exceeds the CLIP context length {context}.")
        tokens = nn.functional.pad(tokens, (0, context - tokens.shape[1])).to(self.device)
        return self.clip_model.encode_text(tokens)


def prompt_templates(name: str, predefined: Sequence[str] = ("a photo of a {}.",)) -> tuple[str, ...]:
    """Prompt templates of ``MODEL.CLIP_ADAPTER.TEXT_TEMPLATES``: "vild" (the 14 ViLD templates),
    "imagenet" (CLIP's 80 ImageNet templates) or "predefined" (``PREDEFINED_PROMPT_TEMPLATES``)."""
    if name == "vild":
        return VILD_PROMPT_TEMPLATES
    if name == "imagenet":
        return tuple(template("{}") for template in open_clip.OPENAI_IMAGENET_TEMPLATES)
    if name == "predefined":
        return tuple(predefined)
    raise ValueError(f"Unknown MODEL.CLIP_ADAPTER.TEXT_TEMPLATES {name!r}; use 'vild', 'imagenet' or 'predefined'.")
