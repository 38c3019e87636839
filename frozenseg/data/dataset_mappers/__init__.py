"""Dataset mappers: one dataset dict in, one model input dict out (training augmentation and the
test-time resize; see :mod:`.common` for the output format). Not here: reading whole datasets
(``data.loaders``) or batching (``data.build``).
"""

from __future__ import annotations

from .common import read_image, read_label_map, read_panoptic_ids, shortest_edge_size
from .lsj import COCOInstanceLSJDatasetMapper, COCOPanopticLSJDatasetMapper, build_lsj_transform
from .maskformer import (
    MaskFormerInstanceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    category_area_crop_box,
)
from .test_mapper import TestDatasetMapper

__all__ = [
    "COCOPanopticLSJDatasetMapper",
    "COCOInstanceLSJDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerInstanceDatasetMapper",
    "TestDatasetMapper",
    "MAPPERS",
    "build_dataset_mapper",
    "build_lsj_transform",
    "category_area_crop_box",
    "read_image",
    "read_label_map",
    "read_panoptic_ids",
    "shortest_edge_size",
]

#: INPUT.DATASET_MAPPER_NAME -> training mapper class
MAPPERS = {
    "coco_panoptic_lsj": COCOPanopticLSJDatasetMapper,
    "coco_instance_lsj": COCOInstanceLSJDatasetMapper,
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
    "mask_former_instance": MaskFormerInstanceDatasetMapper,
}


def build_dataset_mapper(cfg, is_train: bool = True):
    """The training mapper named by ``INPUT.DATASET_MAPPER_NAME``, or the test mapper."""
    if not is_train:
        return TestDatasetMapper.from_config(cfg)
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in MAPPERS:
        raise KeyError(f"Unknown INPUT.DATASET_MAPPER_NAME {name!r}; known: {sorted(MAPPERS)}.")
    return MAPPERS[name].from_config(cfg, True)
