"""Every model weight file read or written: released and project checkpoints loaded into a model
(:mod:`.loading`: ``load_checkpoint``, safe reading with one-sentence errors) and the training
checkpointer with exact resume (:mod:`.checkpointer`), and released weights by name (:mod:`.zoo`:
the table of released files, their download into a local cache and verification, and
``resolve_weights``, which turns a name, a path or an URL into a local file). The frozen encoders'
own weight files are read by their wrappers (``modeling.backbone.clip_weights``,
``modeling.sam.checkpoint``, OVSeg's ``clip_adapter.clip_model``) through
:func:`read_checkpoint_file`, after the entry points have resolved their keys
(:func:`resolve_frozen_weights`)."""

from .checkpointer import FrozenSegCheckpointer, GradScalerCheckpointable, checkpoint_has_frozen_weights
from .loading import (
    EXPECTED_CHECKPOINT,
    LoadReport,
    load_checkpoint,
    read_checkpoint_file,
    read_state_dict,
    require_checkpoint_file,
)
from .zoo import RELEASED_WEIGHTS, resolve_frozen_weights, resolve_weights

__all__ = [
    "EXPECTED_CHECKPOINT",
    "FrozenSegCheckpointer",
    "GradScalerCheckpointable",
    "LoadReport",
    "RELEASED_WEIGHTS",
    "checkpoint_has_frozen_weights",
    "load_checkpoint",
    "read_checkpoint_file",
    "read_state_dict",
    "require_checkpoint_file",
    "resolve_frozen_weights",
    "resolve_weights",
]
