"""OVSeg's CLIP model through open_clip: building, the CLIP weights (tags through the project's
``clip_weights`` resolver, local files through a small loader), the checks of CLIP weights against
the model, the text encoder and the prompt templates (docs/models/ovseg.md §2.5, §2.9, §9.1; quirks 14 and 18).

The release's OpenAI ``ViT-L/14`` / ``ViT-B/16`` are open_clip's ``-quickgelu`` configs (same
state-dict keys and shapes, QuickGELU activations), plus ``visual.mask_embedding``; their OpenAI
weights are the open_clip tag ``openai``. Any open_clip ViT config also builds (always with
QuickGELU), including the tiny test model whose config ships with the package
(``tiny_vit_clip``, see ``backbone.clip.shipped_model_config``).
"""

from __future__ import annotations

import logging
import os
import zipfile
from typing import Mapping, Sequence

import open_clip
import torch
from torch import nn

from ....utils.errors import CheckpointError
from ....modeling.backbone import clip_text
from ....modeling.backbone.clip import shipped_model_config
from ....modeling.backbone.clip_weights import CLIPWeightsNotFoundError, resolve_pretrained, tag_weights_file
from ....modeling.backbone.text_classifier import VILD_PROMPT_TEMPLATES, WeightsFingerprint
from .mask_prompt import add_mask_embedding, mask_prompt_depth

__all__ = [
    "OVSEG_CLIP_MODELS",
    "CLIP_WEIGHTS_KEY",
    "ovseg_clip_arch",
    "build_ovseg_clip_model",
    "load_clip_weights",
    "check_clip_state",
    "OpenCLIPTextEncoder",
    "prompt_templates",
]

logger = logging.getLogger(__name__)

#: Release CLIP names (``MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME``) -> open_clip architectures.
OVSEG_CLIP_MODELS: dict[str, str] = {"ViT-L/14": "ViT-L-14-quickgelu", "ViT-B/16": "ViT-B-16-quickgelu"}
#: The config key naming OVSeg's CLIP weights (a tag such as "openai", a file, or "").
CLIP_WEIGHTS_KEY = "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"

# Entries of TorchScript files that are not parameters: OpenAI's size constants, and the causal
# mask that a scripted open_clip model keeps (a non-persistent buffer in open_clip).
_NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_MASK_EMBEDDING = "visual.mask_embedding"


def ovseg_clip_arch(model_name: str) -> str:
    """The open_clip model name of ``MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME``: the release's names map
    to the ``-quickgelu`` configs, a config shipped with the package is registered, and the model
    must have a ViT visual tower."""
    arch = OVSEG_CLIP_MODELS.get(model_name, model_name)
    shipped = shipped_model_config(arch)
    if shipped is not None:
        open_clip.add_model_config(shipped)
    vision = (open_clip.get_model_config(arch) or {}).get("vision_cfg")
    if vision is None or "timm_model_name" in vision or isinstance(vision.get("layers"), (list, tuple)):
        raise ValueError(
            f"Unknown MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME {model_name!r}; use one of {sorted(OVSEG_CLIP_MODELS)} "
            f"(or an open_clip ViT model name) and put a weights file path or tag in {CLIP_WEIGHTS_KEY}."
        )
    return arch


def build_ovseg_clip_model(
    model_name: str,
    mask_prompt_depth: int,
    weights: str = "",
    *,
    load_weights: bool = True,
    mask_prompts_required: bool = False,
    cache_dir: str | None = None,
) -> nn.Module:
    """An open_clip CLIP (QuickGELU) with ``visual.mask_embedding`` (depth, G, W).

    Args:
        model_name: "ViT-L/14" or "ViT-B/16" (release names), or an open_clip ViT model name.
        mask_prompt_depth: rows of the mask embedding (3 released); 0 adds none.
        weights: an open_clip pretrained tag of the model ("openai": OpenAI's weights, resolved
            from the local caches by ``clip_weights``), a local weights file (see
            :func:`load_clip_weights`), or "" for random weights.
        load_weights: False reads no file (the tag or path is still validated), e.g. when the
            checkpoint loaded afterwards holds the CLIP weights.
        mask_prompts_required: refuse weights without ``visual.mask_embedding`` (see
            :func:`check_clip_state`).
        cache_dir: open_clip download / cache directory (None: library defaults).
    Returns:
        the CLIP model, fp32, on the current default device (``meta`` inside ``torch.device("meta")``,
        where nothing is loaded).
    """
    arch = ovseg_clip_arch(model_name)
    device = torch.get_default_device()
    load = load_weights and device.type != "meta"
    resolved = resolve_pretrained(arch, weights, require_file=load, config_key=CLIP_WEIGHTS_KEY)
    path = resolved.file
    if load and resolved.tag is not None:  # before building: an unavailable tag fails fast
        path = tag_weights_file(arch, resolved.tag, cache_dir, config_key=CLIP_WEIGHTS_KEY)
    model = open_clip.create_model(arch, pretrained=None, device=device, force_quick_gelu=True)
    if mask_prompt_depth > 0:
        add_mask_embedding(model.visual, mask_prompt_depth)
    if load and path is not None:
        load_clip_weights(model, path, mask_prompts_required=mask_prompts_required)
    return model


def _is_torchscript_archive(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _read_clip_file(path: str) -> dict[str, torch.Tensor]:
    """The CLIP state dict of a TorchScript, safetensors or ``torch.save`` file, without the
    ``module.`` prefix and the non-parameter entries."""
    if _is_torchscript_archive(path):
        state = torch.jit.load(path, map_location="cpu").state_dict()
    elif path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items() if k not in _NON_PARAMETER_KEYS}


def check_clip_state(
    state: Mapping[str, torch.Tensor],
    clip_model: nn.Module,
    source: str,
    *,
    prefix: str = "",
    mask_prompts_required: bool = False,
) -> None:
    """Refuse CLIP weights that do not fit ``clip_model``, with one sentence each.

    Args:
        state: the weights; CLIP keys are ``prefix + <OpenAI name>``.
        clip_model: the model built from ``MODEL.CLIP_ADAPTER.*``.
        source: names the weights in the messages (a file, a checkpoint).
        prefix: of the CLIP keys in ``state`` ("" for a CLIP file, ``clip_adapter.clip_model.``
            for an OVSeg checkpoint).
        mask_prompts_required: weights without ``visual.mask_embedding`` are an error
            (``MASK_PROMPT_FWD`` True without ``ALLOW_ZERO_MASK_PROMPTS``): the prompts would keep
            their zeros, which is not the plain CLIP forward (docs/models/ovseg.md quirk 18).
    Raises:
        CheckpointError: a ViT of another width; a mask embedding of another depth than
            ``MASK_PROMPT_DEPTH``; no mask embedding when it is required.
    """
    conv = state.get(prefix + "visual.conv1.weight")
    width = clip_model.visual.conv1.weight.shape[0]
    if conv is not None and conv.shape[0] != width:
        raise CheckpointError(
            f"{source} holds a CLIP ViT of width {conv.shape[0]} ({prefix}visual.conv1.weight) but "
            f"MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME builds one of width {width}; set CLIP_MODEL_NAME to the "
            f"CLIP of those weights (width 1024: 'ViT-L/14', 768: 'ViT-B/16')."
        )
    depth = mask_prompt_depth(clip_model.visual)
    embedding = state.get(prefix + _MASK_EMBEDDING)
    if embedding is not None and embedding.shape[0] != depth:
        raise CheckpointError(
            f"{source} has {prefix}{_MASK_EMBEDDING} of depth {embedding.shape[0]} but "
            f"MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH is {depth}; set MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH "
            f"{embedding.shape[0]}."
        )
    if embedding is None and mask_prompts_required:
        raise CheckpointError(
            f"{source} has no {prefix}{_MASK_EMBEDDING} but MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD is True, "
            f"and zero mask prompts are not the plain CLIP forward (docs/models/ovseg.md quirk 18); set MASK_PROMPT_FWD "
            f"False to use this CLIP without mask prompts, or MODEL.CLIP_ADAPTER.ALLOW_ZERO_MASK_PROMPTS True."
        )


def load_clip_weights(clip_model: nn.Module, path: str, *, mask_prompts_required: bool = False) -> None:
    """Load a local CLIP weights file into ``clip_model`` (OpenAI key names).

    Accepts OpenAI's TorchScript files, plain state dicts (``torch.save`` or safetensors), and
    OpenCLIP training checkpoints (``{"state_dict": ...}``, with or without the DDP ``module.``
    prefix; docs/models/ovseg.md quirk 14 FIX). Only ``visual.mask_embedding`` may be absent from the file (it then
    keeps its zeros, docs/models/ovseg.md quirk 18), and only when ``mask_prompts_required`` is False; the checks of
    :func:`check_clip_state` come first, then any other missing, unexpected or reshaped key is
    an error.
    """
    if not os.path.isfile(path):
        raise CLIPWeightsNotFoundError(
            f"CLIP weights file {path!r} does not exist; set {CLIP_WEIGHTS_KEY} to a local file, a "
            f"pretrained tag such as 'openai', or ''."
        )
    state = _read_clip_file(path)
    check_clip_state(state, clip_model, repr(path), mask_prompts_required=mask_prompts_required)
    own = clip_model.state_dict()
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and k != _MASK_EMBEDDING]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not hold the weights of this CLIP model ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}; {len(wrong)} of another "
            f"shape, e.g. {wrong[:3]}); check MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME and MASK_PROMPT_DEPTH."
        )
    clip_model.load_state_dict(state, strict=False)
    logger.info("Loaded CLIP weights from %s.", path)


class OpenCLIPTextEncoder(clip_text.OpenCLIPTextEncoding):
    """The text side of an open_clip CLIP, in the protocol of ``TextClassifierBuilder``
    (``tokenize``, ``device``, ``text_cache_identity``; truncated and shared-prefix encoding
    from :class:`~frozenseg.modeling.backbone.clip_text.OpenCLIPTextEncoding`)."""

    def __init__(self, clip_model: nn.Module, tokenizer_name: str):
        """
        Args:
            clip_model: open_clip CLIP (text tower with a causal mask and end-of-text pooling).
            tokenizer_name: open_clip model name whose tokenizer to use (e.g. "ViT-L-14-quickgelu").
        """
        self.clip_model = clip_model
        self.tokenizer_name = tokenizer_name
        self.tokenizer = open_clip.get_tokenizer(tokenizer_name)
        self._fingerprint = WeightsFingerprint()

    @property
    def device(self) -> torch.device:
        return self.clip_model.positional_embedding.device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> (N, context_length) int64 token ids, zero padded."""
        return self.tokenizer(list(texts)).long()

    def text_cache_identity(self) -> str | None:
        """Key of the text classifiers this encoder computes: tokenizer + a hash of the text-tower
        weights (recomputed after a checkpoint load), so cached classifiers never outlive the
        weights they came from; None on the meta device."""
        fingerprint = self._fingerprint(clip_text.text_tensors(self.clip_model))
        return None if fingerprint is None else f"{self.tokenizer_name}|text-sha256={fingerprint}"


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
