"""Putting an adapted CLIP into an OVSeg checkpoint (docs/models/ovseg.md §3.C, the release's
``tools/ovseg_replace_clip.py``).

The CLIP weights (a bare state dict such as ``clip_final.pth``, or an OpenCLIP-style
``{"state_dict": ...}`` checkpoint such as ``checkpoints/epoch_5.pt``, ``module.`` prefixes
stripped) replace ``clip_adapter.clip_model.<key>`` of the checkpoint's ``"model"`` entry;
``visual.mask_embedding`` is added when the CLIP has one (an existing one is replaced; one the
CLIP lacks is kept, as the release does, with a warning). Every other entry of the checkpoint is
left as it is. A checkpoint without any CLIP weights (a frozen part a project checkpoint may
omit) receives the whole CLIP. Evaluate the result with ``MASK_PROMPT_FWD True`` when the CLIP
has a mask embedding, else ``False`` (§3.C).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from typing import Any, Mapping

import torch

from ....checkpoint import read_checkpoint_file
from ....utils.errors import CheckpointError
from ....utils.file_io import atomic_write

__all__ = ["OVSEG_CLIP_PREFIX", "read_clip_state", "ovseg_checkpoint_clip", "splice_clip", "splice_clip_file"]

logger = logging.getLogger(__name__)

OVSEG_CLIP_PREFIX = "clip_adapter.clip_model."
_MASK_EMBEDDING = "visual.mask_embedding"
_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")


def read_clip_state(path: str) -> dict[str, torch.Tensor]:
    """The CLIP state dict of a weights file (bare, or ``{"state_dict": ...}``), without
    ``module.`` prefixes."""
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path!r} holds no CLIP state dict; pass clip_final.pth or an epoch_<k>.pt checkpoint.")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def ovseg_checkpoint_clip(path: str) -> dict[str, torch.Tensor] | None:
    """The CLIP weights (OpenAI key names) held by an OVSeg checkpoint, ``clip_adapter.clip_model.*``
    of its ``"model"`` entry (or of a bare state dict), the inverse of the splice; None when
    ``path`` is not a ``torch.save`` file with such keys (a CLIP weights file, a pretrained tag,
    ""). The tensors are memory-mapped, so looking at a large CLIP file costs little."""
    if not path or not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return None
    try:
        obj = read_checkpoint_file(path, mmap=True)
    except (CheckpointError, OSError):  # not a weights-only torch.save file (e.g. TorchScript): not an OVSeg checkpoint
        return None
    state = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict):
        return None
    clip = {k[len(OVSEG_CLIP_PREFIX):]: v for k, v in state.items()
            if isinstance(k, str) and k.startswith(OVSEG_CLIP_PREFIX) and isinstance(v, torch.Tensor)}
    return clip or None


def _vit_depth(keys) -> int:
    return len({m.group(1) for k in keys if (m := _BLOCK.match(k))})


def splice_clip(model_state: Mapping[str, torch.Tensor], clip_state: Mapping[str, torch.Tensor],
                source: str = "the CLIP weights") -> tuple[dict[str, torch.Tensor], list[str]]:
    """``model_state`` with its CLIP replaced by ``clip_state`` (module doc).

    Returns ``(new state, the replaced or added keys)``. Raises ``CheckpointError`` in one
    sentence when the CLIP has another width or depth than the checkpoint's, or other keys.
    """
    old = {k[len(OVSEG_CLIP_PREFIX):]: v for k, v in model_state.items() if k.startswith(OVSEG_CLIP_PREFIX)}
    if old:
        conv_old, conv_new = old.get("visual.conv1.weight"), clip_state.get("visual.conv1.weight")
        if conv_old is not None and conv_new is not None and conv_old.shape != conv_new.shape:
            raise CheckpointError(
                f"{source} is a CLIP ViT of width {conv_new.shape[0]} and patch {conv_new.shape[-1]} but the OVSeg "
                f"checkpoint's is of width {conv_old.shape[0]} and patch {conv_old.shape[-1]}; adapt the CLIP the "
                f"checkpoint was trained with (MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME)."
            )
        if _vit_depth(old) != _vit_depth(clip_state):
            raise CheckpointError(
                f"{source} has {_vit_depth(clip_state)} image-encoder blocks but the OVSeg checkpoint's CLIP has "
                f"{_vit_depth(old)}; adapt the CLIP the checkpoint was trained with."
            )
        other = sorted((set(old) ^ set(clip_state)) - {_MASK_EMBEDDING}) + sorted(
            k for k in set(old) & set(clip_state) if k != _MASK_EMBEDDING and old[k].shape != clip_state[k].shape
        )
        if other:
            raise CheckpointError(
                f"{source} does not have the keys and shapes of the OVSeg checkpoint's CLIP (e.g. {other[:3]}); "
                f"adapt the CLIP the checkpoint was trained with."
            )
        if _MASK_EMBEDDING in old and _MASK_EMBEDDING not in clip_state:
            logger.warning(
                "%s has no visual.mask_embedding: the checkpoint keeps its own, trained for its previous CLIP "
                "(as the release's splice does).", source,
            )
    else:
        logger.info("The OVSeg checkpoint has no CLIP weights: adding all %d tensors of %s.", len(clip_state), source)
    new = dict(model_state)
    replaced = []
    for k, v in clip_state.items():
        new[OVSEG_CLIP_PREFIX + k] = v
        replaced.append(OVSEG_CLIP_PREFIX + k)
    return new, replaced


def splice_clip_file(ovseg_checkpoint: str, clip_weights: str, output: str) -> list[str]:
    """Write ``output``: ``ovseg_checkpoint`` (``{"model": ...}`` or a bare state dict; other
    entries kept) with its CLIP replaced by ``clip_weights`` (atomically). Returns the replaced
    keys."""
    container: Any = read_checkpoint_file(ovseg_checkpoint)
    if not isinstance(container, dict):
        raise CheckpointError(f"{ovseg_checkpoint!r} holds no state dict; pass an OVSeg checkpoint.")
    wrapped = isinstance(container.get("model"), dict)
    state = container["model"] if wrapped else container
    new_state, replaced = splice_clip(state, read_clip_state(clip_weights), repr(clip_weights))
    out = {**container, "model": new_state} if wrapped else new_state
    with atomic_write(output) as f:
        torch.save(out, f)
    prompts = OVSEG_CLIP_PREFIX + _MASK_EMBEDDING in new_state
    logger.info(
        "Wrote %s: %d CLIP tensors from %s; evaluate it with MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD %s.",
        output, len(replaced), clip_weights, prompts,
    )
    return replaced
