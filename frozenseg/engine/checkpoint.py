"""Checkpointing for training: fvcore's ``Checkpointer`` adapted to FrozenSeg.

Training checkpoints are ``OUTPUT_DIR/model_{iter:07d}.pth`` and ``model_final.pth`` with a
``last_checkpoint`` file naming the latest one. Each holds ``{"model": full state dict,
"optimizer", "scheduler", "scaler", "iteration", "seed", "data_state"}`` (fvcore's layout plus
the seed and data position needed for an exact resume). Files are written atomically (a
temporary file renamed into place), so a job killed while saving leaves the previous checkpoint
intact.

Model weights are loaded with :func:`frozenseg.load_checkpoint`, so ``MODEL.WEIGHTS`` may be a
released FrozenSeg checkpoint (frozen parts optional) or one of ours; files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from fvcore.common.checkpoint import Checkpointer

from ..utils.file_io import atomic_write

__all__ = ["FrozenSegCheckpointer", "checkpoint_has_frozen_weights", "GradScalerCheckpointable"]

logger = logging.getLogger(__name__)


class FrozenSegCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` whose model loading understands released FrozenSeg files."""

    def __init__(self, model, save_dir: str = "", *, save_to_disk: bool = True, **checkpointables: Any):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logger
        self.last_load_report = None

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``save_dir/name.pth`` atomically and point ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        with atomic_write(save_file) as f:
            torch.save(data, f)
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(basename)

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """fvcore's ``load`` with a clear error for a missing file."""
        if path and not os.path.isfile(path) and "://" not in path:
            raise FileNotFoundError(
                f"Checkpoint {path!r} does not exist; MODEL.WEIGHTS must be a released FrozenSeg "
                "checkpoint or one written by train_net.py (model_final.pth)."
            )
        return super().load(path, checkpointables=checkpointables)

    def _load_file(self, f: str) -> dict[str, Any]:
        obj = torch.load(f, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            return obj
        return {"model": obj}  # a bare state dict (e.g. a released file)

    def _load_model(self, checkpoint: dict[str, Any]):
        from ..checkpoint import load_checkpoint

        self.last_load_report = load_checkpoint(self.model, checkpoint.pop("model"))
        return None  # incompatibilities were reported by load_checkpoint


class GradScalerCheckpointable:
    """Wraps a ``torch.amp.GradScaler`` so that a checkpoint saved without AMP (empty scaler
    state) loads into a run with AMP and vice versa."""

    def __init__(self, scaler):
        self.scaler = scaler

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is None or not self.scaler.is_enabled() or not state:
            return
        self.scaler.load_state_dict(state)


def checkpoint_has_frozen_weights(path: str) -> bool:
    """True when the checkpoint at ``path`` holds both the frozen CLIP and SAM weights, so the
    model need not load them from ``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` /
    ``MODEL.SAM_CHECKPOINT`` first. Missing files count as False."""
    from ..checkpoint import FROZEN_PREFIXES

    if not path or not os.path.isfile(path):
        return False
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - e.g. a legacy (non-zip) file that cannot be mmapped
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    keys = [k.removeprefix("module.") for k in obj] if isinstance(obj, dict) else []
    return all(any(k.startswith(prefix) for k in keys) for prefix in FROZEN_PREFIXES)
