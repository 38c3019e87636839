"""SAM checkpoint files: where the official ones are, how a file is unwrapped, and the strict
load of SAM weights into a segment-anything module with one clear error on a misfit.

Accepted files: the official full-SAM file (keys ``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``), a FrozenSeg checkpoint (the same keys under ``sam.``), or a module's own
state dict; each possibly wrapped under ``"model"`` or ``"state_dict"``. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import torch
from torch import nn

from ...utils.errors import UserInputError
from .specs import CONFIG_SETTINGS, SAM_SPECS, SAMSettings, sam_spec

__all__ = [
    "DEFAULT_CHECKPOINT_DIR",
    "SAMCheckpointError",
    "default_checkpoint_path",
    "read_sam_checkpoint",
    "load_sam_weights",
]

logger = logging.getLogger(__name__)

#: Where the official checkpoint files are expected by default (relative to the working directory).
DEFAULT_CHECKPOINT_DIR = "pretrained_checkpoint"

# Embedding width of each ViT, used to recognise which SAM a checkpoint holds.
_EMBED_DIM_TO_NAME = {spec.vit.embed_dim: name for name, spec in SAM_SPECS.items() if spec.vit}


class SAMCheckpointError(UserInputError, RuntimeError):
    """A SAM checkpoint does not fit the SAM it is loaded into."""


def default_checkpoint_path(name: str) -> str:
    """``pretrained_checkpoint/<official file>`` of SAM ``name`` ("" when none is released)."""
    spec = sam_spec(name)
    return os.path.join(DEFAULT_CHECKPOINT_DIR, spec.checkpoint_file) if spec.checkpoint_file else ""


def _unwrap(obj) -> Mapping[str, torch.Tensor]:
    """The state dict inside a loaded file (plain dict, or wrapped under "model"/"state_dict")."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and all(isinstance(k, str) for k in inner):
                if not any(isinstance(v, torch.Tensor) for v in obj.values()):
                    return inner
        return obj
    raise ValueError(f"Expected a state dict in the SAM checkpoint, got {type(obj).__name__}.")


def read_sam_checkpoint(
    path: str, name: str, settings: SAMSettings = CONFIG_SETTINGS, hint: str = ""
) -> tuple[Mapping[str, torch.Tensor], str]:
    """Load a SAM checkpoint file (weights only, on the CPU): (state dict, resolved path).

    Raises:
        FileNotFoundError: no such file; the message names ``settings.checkpoint``, the official
            file of SAM ``name`` and ends with ``hint``.
    """
    resolved = os.path.abspath(os.path.expandvars(os.path.expanduser(path)))
    if not os.path.isfile(resolved):
        official = sam_spec(name, settings).official_checkpoint
        raise FileNotFoundError(
            f"SAM checkpoint not found: {settings.checkpoint} = {path!r} (looked for {resolved}). "
            f"For {settings.name} = {name!r} the official file is {official}; put it at that "
            f"path or point {settings.checkpoint} to it.{hint}"
        )
    obj = torch.load(resolved, map_location="cpu", weights_only=True)
    return _unwrap(obj), resolved


def _identify_sam(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Best guess of which SAM a state dict (full-SAM or image-encoder keys) holds."""
    pos = state_dict.get("pos_embed", state_dict.get("image_encoder.pos_embed"))
    if pos is not None and pos.dim() == 4:
        return _EMBED_DIM_TO_NAME.get(int(pos.shape[-1]), f"a ViT with embed dim {pos.shape[-1]}")
    if any(k.startswith(("layers.", "image_encoder.layers.")) for k in state_dict):
        return "vit_t (MobileSAM TinyViT)"
    return "an unknown encoder"


def load_sam_weights(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    name: str,
    expected: str,
    part: str = "",
    source: str = "",
    settings: SAMSettings = CONFIG_SETTINGS,
) -> None:
    """Strictly load SAM weights into ``module``.

    Args:
        module: a full segment-anything ``Sam`` (``part`` "") or one of its parts.
        state_dict: full-SAM keys, optionally under ``sam.`` (FrozenSeg checkpoint); with
            ``part`` (e.g. ``"image_encoder."``), the keys under that prefix are used and the
            other parts are ignored, and a dict without the prefix is the part's own state dict.
        name: the SAM ``module`` is (named in errors).
        expected: what ``module`` is, for the error ("the model is vit_b (...)").
        source: the file the weights come from (named in errors and logs).
        settings: the settings the error names as the fix.
    Raises:
        SAMCheckpointError: missing, unexpected or mis-shaped keys; one message naming what the
            checkpoint looks like, a few keys, and ``settings.name`` / ``settings.checkpoint``.
    """
    src = f" in {source}" if source else ""
    sd = dict(state_dict)
    if any(k.startswith("sam.") for k in sd):
        sd = {k[len("sam.") :]: v for k, v in sd.items() if k.startswith("sam.")}
    if part and any(k.startswith(part) for k in sd):
        dropped = [k for k in sd if not k.startswith(part)]
        sd = {k[len(part) :]: v for k, v in sd.items() if k.startswith(part)}
        if dropped:
            logger.info(
                "SAM checkpoint%s: using the %s* weights; %d keys of unused parts are ignored.",
                src,
                part,
                len(dropped),
            )
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = [
        (k, tuple(sd[k].shape), tuple(own[k].shape))
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        detail = []
        if mismatched:
            k, got, want = mismatched[0]
            detail.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: checkpoint {got} vs model {want})"
            )
        if missing:
            detail.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        raise SAMCheckpointError(
            f"SAM checkpoint{src} does not fit {settings.name} = {name!r}: it looks like "
            f"{_identify_sam(sd)}, while {expected}. Check {settings.name} and "
            f"{settings.checkpoint}. " + "; ".join(detail) + "."
        )
    on_meta = any(t.is_meta for t in own.values())
    module.load_state_dict(sd, strict=True, assign=on_meta)
