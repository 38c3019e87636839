"""Loading released checkpoints (FrozenSeg, OVSeg) and the project's own.

The project's module names are the released ones (FrozenSeg: ``backbone.clip_model.*`` in
open_clip's names, ``sam.image_encoder.*`` in segment-anything's names, ``sem_seg_head.*``,
``void_embedding.weight``, ``criterion.empty_weight``; OVSeg: ``backbone.*``, ``sem_seg_head.*``,
``criterion.empty_weight``, ``clip_adapter.*``), so no key conversion is needed. Released
FrozenSeg files may also carry SAM's prompt encoder and mask decoder, which the segmentation
model does not use: those entries are dropped and listed in the report.

Checkpoints may lack a model's frozen parts; the model then keeps the weights it was built with.
Which parts those are, and the config key that supplies them instead, is declared by the model
(``frozen_parts`` of the model contract): FrozenSeg's CLIP
(MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS) and SAM (MODEL.SAM_CHECKPOINT), OVSeg's CLIP
(MODEL.CLIP_ADAPTER.CLIP_WEIGHTS). A model may also refuse a checkpoint with a sentence more
precise than a shape mismatch (``check_checkpoint_state(state, source)`` of the contract; OVSeg:
the CLIP width and the mask-prompt depth).

A file that is missing, is not a checkpoint, is truncated, or holds tensors of another shape, and a
checkpoint none of whose tensors belongs to the model, end in a one-sentence
:class:`frozenseg.utils.errors.CheckpointError` / ``CheckpointNotFoundError`` naming the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from ..modeling.contract import SegmentationModel
from ..utils.errors import CheckpointError, CheckpointNotFoundError

logger = logging.getLogger("frozenseg.checkpoint")  # the package's public loader

__all__ = [
    "LoadReport",
    "load_checkpoint",
    "read_state_dict",
    "read_checkpoint_file",
    "require_checkpoint_file",
]

#: What a checkpoint file is expected to be, for the error messages.
EXPECTED_CHECKPOINT = (
    "a .pth file written by torch.save, such as a released FrozenSeg model_final.pth or one "
    "written by train_net.py"
)

#: Entries of the released FrozenSeg layout that the segmentation model does not use.
UNUSED_PREFIXES = ("sam.prompt_encoder.", "sam.mask_decoder.")


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did.

    ``missing``: model keys absent from the checkpoint (excluding whole frozen parts);
    ``unexpected``: checkpoint keys the model does not have (excluding unused SAM parts);
    ``dropped_unused``: SAM prompt-encoder / mask-decoder keys that were ignored;
    ``frozen_not_in_checkpoint``: frozen parts kept from their configured sources;
    ``kept_derived``: the model's ``derived_buffers`` whose checkpoint values had another shape
    (a checkpoint trained with another number of classes: fine-tuning on a new dataset).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_unused: list[str] = field(default_factory=list)
    frozen_not_in_checkpoint: dict[str, str] = field(default_factory=dict)
    kept_derived: list[str] = field(default_factory=list)

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
        for key in self.kept_derived:
            lines.append(f"{key} kept from the config (the checkpoint's has another number of classes)")
        for prefix, key in self.frozen_not_in_checkpoint.items():
            lines.append(f"{prefix}* not in checkpoint: kept the weights from {key}")
        if self.missing:
            lines.append(f"missing {len(self.missing)}: {self.missing[:10]}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)}: {self.unexpected[:10]}")
        return "; ".join(lines)


def require_checkpoint_file(path: str) -> str:
    """Return ``path``, or raise ``CheckpointNotFoundError`` when it is not a file."""
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(
            f"Checkpoint {path!r} does not exist; set MODEL.WEIGHTS (or the path you passed) to "
            f"{EXPECTED_CHECKPOINT}."
        )
    return path


def read_checkpoint_file(path: str, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-sentence errors.

    Args:
        path: the checkpoint file.
        mmap: map the tensors' storage instead of reading it (zip-format files only; others are
            read normally), e.g. to look at the keys of a large file or to check that it is whole.
    Raises:
        CheckpointNotFoundError: ``path`` is not a file.
        CheckpointError: the file is truncated or corrupt, is not a checkpoint at all, or holds
            objects that ``weights_only`` loading refuses; the message names the file.
    """
    require_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except PermissionError:
        raise  # the OS error names the file
    except Exception as e:  # noqa: BLE001 - torch.load fails with many types on arbitrary bytes
        raise CheckpointError(_unreadable_reason(path, e)) from e


def _unreadable_reason(path: str, err: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch's zip nor its legacy pickle
        return (
            f"{path!r} is not a PyTorch checkpoint (torch.load cannot read its "
            f"{os.path.getsize(path)} bytes); expected {EXPECTED_CHECKPOINT}."
        )
    if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
        return (
            f"Checkpoint {path!r} holds objects other than tensors and plain values, which are not "
            "unpickled for safety; re-save only its state dict: "
            "torch.save(torch.load(path, weights_only=False)['model'], new_path)."
        )
    return (
        f"Checkpoint {path!r} is truncated or corrupt (torch.load cannot read it); copy or "
        f"download it again, or use another file: expected {EXPECTED_CHECKPOINT}."
    )


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only``) and return its model state dict.

    Accepts a bare state dict or a training checkpoint ``{"model": state_dict, ...}``; errors as
    in :func:`read_checkpoint_file`.
    """
    return _extract_state_dict(read_checkpoint_file(path), repr(path))


def _extract_state_dict(obj, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{source} is not a model checkpoint: expected a state dict or a dict with a 'model' "
            "state dict of tensors."
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_checkpoint(
    model: nn.Module, path_or_state_dict: str | Mapping[str, torch.Tensor], *, allow_no_match: bool = False
) -> LoadReport:
    """Load a released-layout or project checkpoint into ``model``; shapes must match.

    Args:
        model: the model built from the config (a
            :class:`~frozenseg.modeling.contract.SegmentationModel`: its frozen parts may be
            missing and its own checks run), or any module (every tensor then counts).
        path_or_state_dict: a checkpoint file, or a (training-checkpoint or bare) state dict.
        allow_no_match: load even when none of the checkpoint's tensors belongs to the model
            (which then keeps all of its weights); by default that refuses, since a file that
            loads nothing is almost always the wrong file.
    Returns a ``LoadReport`` (logged once: info when it is complete, a warning otherwise).
    Raises ``CheckpointError`` naming the checkpoint when the model's ``check_checkpoint_state``
    refuses it, when tensors' shapes differ from the model's (for example a checkpoint of another
    CLIP model or another number of queries) or when no tensor matches; errors of reading the
    file as in :func:`read_checkpoint_file`.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        state = read_state_dict(os.fspath(path_or_state_dict))
        source = repr(os.fspath(path_or_state_dict))
    else:
        state = _extract_state_dict(path_or_state_dict, "the given state dict")
        source = "the given state dict"
    is_model = isinstance(model, SegmentationModel)
    if is_model:
        model.check_checkpoint_state(state, source)
    report = LoadReport()
    report.dropped_unused = sorted(k for k in state if k.startswith(UNUSED_PREFIXES))
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}

    expected = model.state_dict()
    derived = model.derived_buffers if is_model else ()
    for k in derived:  # another training vocabulary: the model's own, from its config
        if k in state and k in expected and tuple(state[k].shape) != tuple(expected[k].shape):
            report.kept_derived.append(k)
            del state[k]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{len(mismatched)} tensors of {source} do not match the model built from the config "
            f"(is it the checkpoint for this config?): {mismatched[:5]}"
        )
    to_load = {k: v for k, v in state.items() if k in expected}
    if not to_load and not allow_no_match:
        raise CheckpointError(
            f"None of the {len(state)} tensors of {source} belongs to the model (it has e.g. "
            f"{sorted(state)[:3]}, the model expects e.g. {sorted(expected)[:3]}): it is probably "
            "not a checkpoint of this model; pass the right file (or allow_no_match=True to load nothing)."
        )
    for prefix, key in (model.frozen_parts if is_model else {}).items():
        if any(k.startswith(prefix) for k in expected) and not any(k.startswith(prefix) for k in state):
            report.frozen_not_in_checkpoint[prefix] = key
    skipped = tuple(report.frozen_not_in_checkpoint)
    report.missing = sorted(k for k in expected
                            if k not in state and not k.startswith(skipped) and k not in report.kept_derived)
    report.unexpected = sorted(k for k in state if k not in expected)
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(to_load, strict=False, assign=on_meta)
    report.loaded = sorted(to_load)
    if report.ok:
        logger.info("Loaded %s: %s", source, report.summary())
    else:
        logger.warning("Checkpoint %s does not fully match the model: %s", source, report.summary())
    return report
