"""Data: dataset and metadata catalogs, the built-in registrations, vocabularies (parsing,
validation, the released class strings), dataset loaders, mappers, data loaders, the SAM-mask
cache format, dataset preparation (:mod:`.prepare`), the synthetic datasets (:mod:`.synthetic`,
imported only when asked for) and the user's own datasets registered from description files
(:mod:`.custom`).

Not here: anything that needs a model (text embeddings live in ``modeling.backbone``) or the
evaluation of predictions (``evaluation``).

Importing this package registers every built-in dataset (see :mod:`frozenseg.data.builtin`).
"""

from . import builtin  # noqa: F401  (registers the built-in datasets)
from .builtin import (
    apply_vocabulary_overrides,
    dataset_vocabulary,
    datasets_root,
    register_all_builtin,
    set_vocabulary_file,
    training_vocabulary,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .custom import DatasetDescriptionError, register_custom_datasets, register_dataset_description
from .loaders import DatasetNotFoundError
from .vocabulary import (
    VocabularyError,
    parse_class_names,
    read_vocabulary_file,
    seen_class_mask,
    split_synonyms,
    validate_vocabulary,
    write_vocabulary_file,
)

__all__ = [
    "DatasetCatalog",
    "MetadataCatalog",
    "Metadata",
    "DatasetNotFoundError",
    "DatasetDescriptionError",
    "register_dataset_description",
    "register_custom_datasets",
    "VocabularyError",
    "read_vocabulary_file",
    "write_vocabulary_file",
    "validate_vocabulary",
    "split_synonyms",
    "dataset_vocabulary",
    "training_vocabulary",
    "parse_class_names",
    "seen_class_mask",
    "set_vocabulary_file",
    "apply_vocabulary_overrides",
    "register_all_builtin",
    "datasets_root",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "get_detection_dataset_dicts",
    "TrainingStream",
]

# imported on first use: the loaders pull in torch
_LAZY = {
    "build_detection_train_loader": "build",
    "build_detection_test_loader": "build",
    "get_detection_dataset_dicts": "build",
    "TrainingStream": "build",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'frozenseg.data' has no attribute {name!r}")
