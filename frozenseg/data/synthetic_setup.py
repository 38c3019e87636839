"""Generate the synthetic "shapes" dataset when a config uses it and its files are absent (the
tiny training and evaluation runs work on a fresh clone)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..utils import comm

__all__ = ["ensure_synthetic_datasets"]

logger = logging.getLogger(__name__)


def ensure_synthetic_datasets(cfg) -> list[str]:
    """Generate the synthetic "shapes" dataset when a ``synthetic_shapes_*`` dataset of the config
    is registered but its files are absent. Returns the folders written.

    Only rank 0 writes (seed 0, ``frozenseg.data.synthetic.SHAPES_NUM_TRAIN`` /
    ``SHAPES_NUM_VAL`` images); other processes wait for it. In multi-machine jobs the dataset root
    must be shared or the data generated beforehand. The generators are imported only then.
    """
    from .catalog import MetadataCatalog

    names = [n for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) if n.startswith("synthetic_shapes_")]
    missing = []
    for name in names:
        meta = MetadataCatalog.get(name)
        probe = meta.get("panoptic_json") or meta.get("sem_seg_root") or meta.get("image_root")
        if probe and not os.path.exists(probe):
            missing.append(probe)
    written: list[str] = []
    if missing and comm.is_main_process():
        from . import synthetic

        root = _shapes_root(MetadataCatalog.get(names[0]))
        logger.info(
            "The synthetic shapes dataset is missing (%s): generating it under %s "
            "(%d train / %d val images, seed 0) ...", missing[0], root, synthetic.SHAPES_NUM_TRAIN,
            synthetic.SHAPES_NUM_VAL,
        )
        written.append(synthetic.make_shapes(root, 0, synthetic.SHAPES_NUM_TRAIN, synthetic.SHAPES_NUM_VAL))
    if missing:
        comm.synchronize()
    return written


def _shapes_root(meta) -> str:
    """The datasets root of a registered synthetic_shapes dataset (parent of synthetic_shapes/)."""
    p = Path(meta.get("image_root"))
    for parent in p.parents:
        if parent.name == "synthetic_shapes":
            return str(parent.parent)
    raise ValueError(f"Cannot find the datasets root of {meta.name} from {p}.")
