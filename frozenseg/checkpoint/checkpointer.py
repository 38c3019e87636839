"""Checkpointing for training: fvcore's ``Checkpointer`` adapted to this package's models.

Training checkpoints are ``OUTPUT_DIR/model_{iter:07d}.pth`` and ``model_final.pth`` with a
``last_checkpoint`` file naming the latest one. Each holds ``{"model": full state dict,
"optimizer", "scheduler", "scaler", "iteration", "seed", "data_state"}`` (fvcore's layout plus
the seed, data position and metric windows needed for an exact resume). Files are written
atomically (a temporary file renamed into place), so a job killed while saving leaves the
previous checkpoint intact; on resume each candidate is loaded before it is trusted, so a torn
or missing newest file (a copy cut short, a disk that filled up, a ``last_checkpoint`` naming a
deleted file) is reported by name and the newest intact checkpoint is used instead.

Model weights are loaded with :func:`frozenseg.load_checkpoint`, so ``MODEL.WEIGHTS`` may be a
released checkpoint (frozen parts optional) or one of ours, given as a path, an URL or a released
name (:func:`frozenseg.checkpoint.zoo.resolve_weights`); files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import torch
from fvcore.common.checkpoint import Checkpointer

from .loading import load_checkpoint, read_checkpoint_file, require_checkpoint_file
from .zoo import resolve_weights
from ..utils.errors import CheckpointError
from ..utils.file_io import atomic_write

__all__ = ["FrozenSegCheckpointer", "checkpoint_has_frozen_weights", "GradScalerCheckpointable"]

logger = logging.getLogger(__name__)

#: Files a periodic checkpointer writes: ``<prefix>_<7-digit iteration>.pth``, ``<prefix>_final.pth``.
_CHECKPOINT_NAME = re.compile(r"^.+_(\d{7}|final)\.pth$")
#: ``(path, size, mtime_ns) -> problem or None``: each version of a file is loaded once per
#: process to verify it, however often the resume candidates are looked at.
_VERIFIED: dict[tuple[str, int, int], str | None] = {}
#: Resume warnings already logged (the trainer looks at the candidates several times).
_REPORTED: set[tuple[str, str]] = set()


def _checkpoint_problem(path: str) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when it loads."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        return f"{name} does not exist"
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        try:
            obj = read_checkpoint_file(path, mmap=True)
            _VERIFIED[key] = None if isinstance(obj, dict) else f"{name} holds no state dict"
        except CheckpointError:
            _VERIFIED[key] = f"{name} is truncated or unreadable"
    return _VERIFIED[key]


class FrozenSegCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` whose model loading understands released FrozenSeg files and
    whose resume skips broken checkpoints (see the module doc)."""

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
        try:
            with atomic_write(save_file) as f:
                torch.save(data, f)
            with atomic_write(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
                f.write(basename)
        except OSError as e:  # e.g. a full disk: the atomic writes left the previous files whole
            previous = self._newest_intact()
            raise CheckpointError(
                f"Could not write checkpoint {save_file!r} ({e.strerror or e}); free space in or fix "
                f"{self.save_dir!r}, then continue with --resume"
                + (f" (from {os.path.basename(previous)}, intact)." if previous else ".")
            ) from None

    def _newest_intact(self) -> str:
        """The newest intact checkpoint of ``save_dir`` ("" when none)."""
        try:
            return self.get_checkpoint_file()
        except CheckpointError:
            return ""

    def _resume_candidates(self) -> tuple[str | None, list[str]]:
        """``(file named by last_checkpoint or None, every checkpoint file, newest first)``."""
        named = None
        tag = os.path.join(self.save_dir, "last_checkpoint")
        if os.path.isfile(tag):
            with open(tag, encoding="utf-8") as f:
                named = os.path.join(self.save_dir, f.read().strip())
        found = [os.path.join(self.save_dir, n) for n in os.listdir(self.save_dir)
                 if _CHECKPOINT_NAME.match(n)] if os.path.isdir(self.save_dir) else []
        found.sort(key=lambda p: (os.path.getmtime(p), os.path.basename(p)), reverse=True)
        return named, [p for p in found if p != named]

    def get_checkpoint_file(self) -> str:
        """The newest intact checkpoint of ``save_dir`` ("" when it has none).

        The file named by ``last_checkpoint`` comes first, then the other checkpoint files,
        newest first; each is loaded (memory-mapped) before it is trusted. Skipped files are
        logged once, with the file resumed from. Raises ``CheckpointError`` naming the broken
        files when there are checkpoints but none is intact (rather than silently starting over).
        """
        if not self.save_dir:
            return ""
        named, others = self._resume_candidates()
        problems = []
        for path in ([named] if named else []) + others:
            problem = _checkpoint_problem(path)
            if problem is None:
                message = f"{'; '.join(problems)}; resuming from {os.path.basename(path)}."
                if problems and (self.save_dir, message) not in _REPORTED:
                    _REPORTED.add((self.save_dir, message))
                    self.logger.warning("%s", message)
                return path
            if not os.path.isfile(path):  # only last_checkpoint can name a file that is not there
                problem = f"last_checkpoint names {os.path.basename(path)}, which does not exist"
            problems.append(problem)
        if not problems:
            return ""
        raise CheckpointError(
            f"No intact checkpoint to resume from in {self.save_dir!r} ({'; '.join(problems)}); remove "
            "the broken files and last_checkpoint to start over, or run without --resume."
        )

    def has_checkpoint(self) -> bool:
        """True when ``save_dir`` has an intact checkpoint to resume from."""
        return bool(self.get_checkpoint_file())

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """fvcore's ``load`` with one-sentence errors for a missing or unreadable file; ``path`` may
        also be an URL or a released weights name (fetched into the cache by ``resolve_weights``)."""
        if path and not os.path.isfile(path):
            path = resolve_weights(path, config_key="MODEL.WEIGHTS")
        if path:
            require_checkpoint_file(path)
        return super().load(path, checkpointables=checkpointables)

    def _load_file(self, f: str) -> dict[str, Any]:
        obj = read_checkpoint_file(f)
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            return obj
        return {"model": obj}  # a bare state dict (e.g. a released file)

    def _load_model(self, checkpoint: dict[str, Any]):
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


def checkpoint_has_frozen_weights(path: str, frozen_parts: Mapping[str, str]) -> bool:
    """True when the checkpoint at ``path`` holds every frozen part of a model, given as its
    ``frozen_parts`` (``{state-dict prefix: config key}``; FrozenSeg: the CLIP and SAM weights,
    OVSeg: its CLIP), so the model need not load them from their own config keys first. Missing
    files count as False; an unreadable file raises ``CheckpointError`` naming it."""
    if not path or not os.path.isfile(path):
        return False
    obj = read_checkpoint_file(path, mmap=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    keys = [k.removeprefix("module.") for k in obj] if isinstance(obj, dict) else []
    return all(any(k.startswith(prefix) for k in keys) for prefix in frozen_parts)
