"""Setting up a run: the one place that turns a config file and overrides into a checked config,
and a config into a ready model.

Every entry point (``train_net.py``, the predictor, the demos, the benchmark, the GPU report, the
tools) goes through :func:`load_config` and, for inference, :func:`build_inference_model`::

    cfg = load_config("configs/coco/frozenseg/convnext_large_eval_ade20k.yaml",
                      ["MODEL.WEIGHTS", "frozenseg_convnext_large.pth"], device="cpu")
    model = build_inference_model(cfg)      # weights loaded, eval mode, int8 when MODEL.INT8_CPU

The weights keys may name released weights (``MODEL.WEIGHTS frozenseg_convnext_large``,
``MODEL.SAM_CHECKPOINT sam_vit_b``): :func:`build_inference_model` fetches them into the cache
(:mod:`frozenseg.checkpoint.zoo`), and :func:`released_model_config` gives the config file of a
released model's name (the ``--model`` flag of the command lines).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import torch

from ..checkpoint import checkpoint_has_frozen_weights, load_checkpoint, read_state_dict
from ..checkpoint.zoo import model_config_file, resolve_frozen_weights, resolve_weights
from ..config import CfgNode, get_cfg
from ..config.checks import check_config_values
from ..modeling.build import build_model, meta_arch_class
from ..modeling.contract import SegmentationModel
from ..modeling.precision import frozen_encoders_dtype
from ..modeling.quantization import check_int8_cpu, quantize_frozen_encoders

__all__ = ["load_config", "check_config", "build_inference_model", "released_model_config"]

logger = logging.getLogger(__name__)


def load_config(
    config_file: str = "",
    opts: Sequence[str] = (),
    *,
    defaults: Sequence[str] = (),
    device: str | None = None,
    threads: int = 0,
    freeze: bool = False,
    register_datasets: Sequence[str] = (),
) -> CfgNode:
    """The config of a run: the defaults of the model ``config_file`` selects, the file, then
    ``defaults`` (``KEY VALUE`` pairs an entry point applies before the user's), then ``opts``
    (the user's ``KEY VALUE`` overrides), then ``device`` (MODEL.DEVICE), ``threads``
    (MODEL.CPU_THREADS, when non-zero) and ``register_datasets`` (description files added to
    DATASETS.REGISTER, ``--register-dataset``); checked (:func:`check_config`) and optionally
    frozen. The datasets of DATASETS.REGISTER are registered
    (:func:`frozenseg.data.custom.register_custom_datasets`).

    Errors in the file or the overrides are :class:`~frozenseg.utils.errors.UserInputError`
    sentences (missing file, unknown key with a suggestion, wrong type, unknown model, a dataset
    description that is missing or malformed).
    """
    from ..data.custom import register_custom_datasets

    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list([*defaults, *opts])
    if device is not None:
        cfg.MODEL.DEVICE = device
    if threads:
        cfg.MODEL.CPU_THREADS = threads
    if register_datasets:
        cfg.DATASETS.REGISTER = tuple(dict.fromkeys([*cfg.DATASETS.REGISTER, *register_datasets]))
    check_config(cfg)
    register_custom_datasets(cfg.DATASETS.REGISTER)
    if freeze:
        cfg.freeze()
    return cfg


def released_model_config(model: str, config_file: str = "") -> tuple[str, list[str]]:
    """``(config file, defaults)`` for the ``--model NAME`` flag of the command lines: the config
    file the released weights ``model`` belong with (unless ``config_file`` is given) and the
    ``defaults`` pair ``MODEL.WEIGHTS NAME`` for :func:`load_config` (the user's overrides still
    win). ``model`` "" returns ``(config_file, [])``. An unknown name, or a name of SAM or CLIP
    weights, is an :class:`~frozenseg.checkpoint.zoo.UnknownWeightsError` naming the choices."""
    if not model:
        return config_file, []
    chosen = model_config_file(model)  # checks the name even when --config-file is given
    return config_file or chosen, ["MODEL.WEIGHTS", model]


def check_config(cfg: CfgNode) -> None:
    """Refuse, in one sentence, values out of range (:func:`~frozenseg.config.checks.
    check_config_values`, one table for every key) and settings that cannot work together (an
    unknown model, a precision the device cannot run); the dataset options are checked when
    datasets are used (:func:`frozenseg.data.builtin.check_dataset_config`)."""
    check_config_values(cfg)
    meta_arch_class(cfg)
    if str(cfg.MODEL.DEVICE) != "meta":
        frozen_encoders_dtype(cfg)


def build_inference_model(cfg: CfgNode, weights: str | None = None) -> SegmentationModel:
    """The model of ``cfg`` ready for inference: built on ``MODEL.DEVICE`` (seeded with ``SEED``
    when it is >= 0), ``weights`` (default ``MODEL.WEIGHTS``) loaded
    (:func:`frozenseg.load_checkpoint`; the frozen parts come from the checkpoint when it holds
    them, else from their own config keys), eval mode, and its frozen encoders quantised when
    ``MODEL.INT8_CPU`` is on. The weights, and the frozen parts' keys, may be paths, URLs or
    released names (:func:`frozenseg.checkpoint.zoo.resolve_weights`: fetched into the cache).

    A missing, unreadable or unobtainable weights file fails before anything is built."""
    if cfg.MODEL.INT8_CPU:
        check_int8_cpu(cfg.MODEL.DEVICE, training=False)
    if cfg.SEED >= 0:
        torch.manual_seed(cfg.SEED)
    t0 = time.perf_counter()
    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    weights = resolve_weights(weights, config_key="MODEL.WEIGHTS") if weights else ""
    weights = os.path.expanduser(weights) if weights else ""
    state = read_state_dict(weights) if weights else None
    frozen_parts = meta_arch_class(cfg).frozen_parts
    frozen_in_checkpoint = checkpoint_has_frozen_weights(weights, frozen_parts)
    build_cfg = cfg if frozen_in_checkpoint else resolve_frozen_weights(cfg, frozen_parts)
    model = build_model(build_cfg, load_frozen_weights=not frozen_in_checkpoint)
    if state is not None:
        load_checkpoint(model, state)
    else:
        logger.warning(
            "MODEL.WEIGHTS is empty: the trained parts have random weights and the results are "
            "meaningless. Pass MODEL.WEIGHTS /path/to/the/model's/checkpoint.pth."
        )
    model.eval()
    if cfg.MODEL.INT8_CPU:
        quantize_frozen_encoders(model)
    logger.info("Model ready on %s in %.1f s", cfg.MODEL.DEVICE, time.perf_counter() - t0)
    return model
