"""A broken ground-truth file is named: a truncated or foreign label map, a panoptic PNG or a
label map of another size than its image stop the mapper (training) and the evaluator with one
sentence naming the file and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from frozenseg.data.dataset_mappers import MaskFormerSemanticDatasetMapper
from frozenseg.data.dataset_mappers.lsj import COCOPanopticLSJDatasetMapper
from frozenseg.evaluation.utils import read_label_image
from frozenseg.utils.errors import AnnotationError, is_user_error


def _files(tmp_path, label_size=(48, 64)):
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    label = tmp_path / "lab.png"
    Image.fromarray(np.ones(label_size, np.uint8)).save(label)
    return image, label


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_semantic_mapper_names_a_truncated_or_resized_label_map(tmp_path):
    mapper = MaskFormerSemanticDatasetMapper(True, min_size_train=(48,), max_size_train=200, crop_enabled=False,
                                             size_divisibility=-1, ignore_label=255)
    image, label = _files(tmp_path)
    assert mapper({"file_name": str(image), "sem_seg_file_name": str(label)})["sem_seg"].shape == (48, 64)
    _files(tmp_path, label_size=(24, 32))
    with pytest.raises(AnnotationError, match=r"^Annotation '.*lab.png' is 24x32 pixels but its image is 48x64; "
                                              r"re-create the annotation at the image's size\.$"):
        mapper({"file_name": str(image), "sem_seg_file_name": str(label)})
    _files(tmp_path)
    _truncate(label)
    with pytest.raises(AnnotationError, match=r"^Annotation '.*lab.png' cannot be read \(.*\); re-create it"):
        mapper({"file_name": str(image), "sem_seg_file_name": str(label)})
    with pytest.raises(AnnotationError) as info:
        read_label_image(str(label))  # the evaluators' reader
    assert str(label) in str(info.value) and is_user_error(info.value)


def test_panoptic_mapper_names_a_broken_panoptic_png(tmp_path):
    mapper = COCOPanopticLSJDatasetMapper(True, image_size=64, min_scale=0.5, max_scale=1.0)
    image, label = _files(tmp_path)
    label.write_bytes(b"not a png at all")
    record = {"file_name": str(image), "pan_seg_file_name": str(label), "segments_info": []}
    with pytest.raises(AnnotationError, match=r"^Annotation '.*lab.png' cannot be read"):
        mapper(record)


def test_an_error_from_a_loader_worker_is_still_one_sentence(tmp_path):
    """Raised in a DataLoader worker, the error arrives with the worker's traceback in its
    message; the command lines print its last line, the sentence."""
    import torch

    from frozenseg.utils.errors import user_error_sentence

    mapper = MaskFormerSemanticDatasetMapper(True, min_size_train=(48,), max_size_train=200, crop_enabled=False)
    image, label = _files(tmp_path)
    _truncate(label)
    loader = torch.utils.data.DataLoader([{"file_name": str(image), "sem_seg_file_name": str(label)}],
                                         batch_size=1, num_workers=1, collate_fn=lambda b: [mapper(x) for x in b])
    with pytest.raises(AnnotationError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)
    sentence = user_error_sentence(info.value)
    assert sentence.startswith(f"Annotation {str(label)!r} cannot be read (") and "\n" not in sentence
