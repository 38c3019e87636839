"""Loading released FrozenSeg checkpoints and the project's own.

The project's module names are the released ones (``backbone.clip_model.*`` in open_clip's names,
``sam.image_encoder.*`` in segment-anything's names, ``sem_seg_head.*``, ``void_embedding.weight``,
``criterion.empty_weight``), so no key conversion is needed. Released files may also carry SAM's
prompt encoder and mask decoder, which the segmentation model does not use: those entries are
dropped and listed in the report. Released files may lack the frozen CLIP/SAM weights; the
model then keeps the weights it was built with (from MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS
and MODEL.SAM_CHECKPOINT).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["LoadReport", "load_checkpoint", "read_state_dict"]

#: Frozen parts that a checkpoint may omit, with the config key that supplies them instead.
FROZEN_PREFIXES = {
    "backbone.clip_model.": "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS",
    "sam.image_encoder.": "MODEL.SAM_CHECKPOINT",
}
#: Entries of the released layout that the segmentation model does not use.
UNUSED_PREFIXES = ("sam.prompt_encoder.", "sam.mask_decoder.")


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did.

    ``missing``: model keys absent from the checkpoint (excluding whole frozen parts);
    ``unexpected``: checkpoint keys the model does not have (excluding unused SAM parts);
    ``dropped_unused``: SAM prompt-encoder / mask-decoder keys that were ignored;
    ``frozen_not_in_checkpoint``: frozen parts kept from their configured sources.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_unused: list[str] = field(default_factory=list)
    frozen_not_in_checkpoint: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is missing and nothing unexpected was found."""
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.dropped_unused:
            lines.append(
                f"dropped {len(self.dropped_unused)} unused SAM prompt-encoder/mask-decoder tensors"
            )
        for prefix, key in self.frozen_not_in_checkpoint.items():
            lines.append(f"{prefix}* not in checkpoint: kept the weights from {key}")
        if self.missing:
            lines.append(f"missing {len(self.missing)}: {self.missing[:10]}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)}: {self.unexpected[:10]}")
        return "; ".join(lines)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only``) and return its model state dict.

    Accepts a bare state dict or a training checkpoint ``{"model": state_dict, ...}``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint {path!r} does not exist; set MODEL.WEIGHTS to the path of a released "
            "FrozenSeg checkpoint (model_final.pth) or of one of your own."
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return _extract_state_dict(obj, path)


def _extract_state_dict(obj, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{source} is not a model checkpoint: expected a state dict or a dict with a 'model' "
            "state dict of tensors."
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_checkpoint(model: nn.Module, path_or_state_dict: str | Mapping[str, torch.Tensor]) -> LoadReport:
    """Load a released-layout or project checkpoint into ``model``; shapes must match.

    Returns a ``LoadReport``; raises ``ValueError`` listing the keys whose shapes differ (for
    example a checkpoint of another CLIP model or another number of queries).
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        state = read_state_dict(os.fspath(path_or_state_dict))
        source = os.fspath(path_or_state_dict)
    else:
        state = _extract_state_dict(path_or_state_dict, "the given state dict")
        source = "state dict"
    report = LoadReport()
    report.dropped_unused = sorted(k for k in state if k.startswith(UNUSED_PREFIXES))
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}

    expected = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        raise ValueError(
            f"{len(mismatched)} tensors of {source} do not match the model built from the config "
            f"(is it the checkpoint for this config?): {mismatched[:5]}"
        )
    for prefix, key in FROZEN_PREFIXES.items():
        if any(k.startswith(prefix) for k in expected) and not any(k.startswith(prefix) for k in state):
            report.frozen_not_in_checkpoint[prefix] = key
    skipped = tuple(report.frozen_not_in_checkpoint)
    report.missing = sorted(k for k in expected if k not in state and not k.startswith(skipped))
    report.unexpected = sorted(k for k in state if k not in expected)
    to_load = {k: v for k, v in state.items() if k in expected}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(to_load, strict=False, assign=on_meta)
    report.loaded = sorted(to_load)
    logger.info("Loaded %s: %s", source, report.summary())
    if report.missing or report.unexpected:
        logger.warning("Checkpoint %s does not fully match the model: %s", source, report.summary())
    return report
