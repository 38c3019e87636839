"""Every model weight file read or written: released and project checkpoints loaded into a model
(:mod:`.loading`: ``load_checkpoint``, safe reading with one-sentence errors) and the training
checkpointer with exact resume (:mod:`.checkpointer`). The frozen encoders' own weight files are
read by their wrappers (``modeling.backbone.clip_weights``, ``modeling.sam.checkpoint``, OVSeg's
``clip_adapter.clip_model``) through :func:`read_checkpoint_file`."""

from .checkpointer import FrozenSegCheckpointer, GradScalerCheckpointable, checkpoint_has_frozen_weights
from .loading import (
    EXPECTED_CHECKPOINT,
    LoadReport,
    load_checkpoint,
    read_checkpoint_file,
    read_state_dict,
    require_checkpoint_file,
)

__all__ = [
    "EXPECTED_CHECKPOINT",
    "FrozenSegCheckpointer",
    "GradScalerCheckpointable",
    "LoadReport",
    "checkpoint_has_frozen_weights",
    "load_checkpoint",
    "read_checkpoint_file",
    "read_state_dict",
    "require_checkpoint_file",
]
