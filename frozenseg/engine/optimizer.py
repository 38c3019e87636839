"""Optimiser construction with Mask2Former's parameter groups, and gradient clipping.

Only trainable parameters (``requires_grad``) enter the optimiser, so the frozen CLIP and SAM
never do. Per parameter (Mask2Former's ``build_optimizer``):

* learning rate ``SOLVER.BASE_LR``, times ``SOLVER.BACKBONE_MULTIPLIER`` when the owning
  module's name contains ``backbone``;
* weight decay ``SOLVER.WEIGHT_DECAY``; ``SOLVER.WEIGHT_DECAY_NORM`` for parameters of
  normalisation layers (BatchNorm, GroupNorm, InstanceNorm, LayerNorm, LocalResponseNorm);
  ``SOLVER.WEIGHT_DECAY_EMBED`` for embeddings (``nn.Embedding`` weights — the decoder's
  ``query_feat``/``query_embed``/``level_embed`` and ``void_embedding`` — and the pixel
  decoder's ``level_embed`` parameters, plus ``pos_embed``-style tables);
  ``SOLVER.WEIGHT_DECAY_BIAS`` for biases when it is not ``None``.

Parameters with identical hyper-parameters are merged into one group (Detectron2's
``reduce_param_groups``), in a deterministic order.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["get_param_groups", "build_optimizer", "clip_gradients", "NORM_MODULE_TYPES", "EMBED_PARAM_NAMES"]

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES: tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LayerNorm, nn.LocalResponseNorm,
)
#: Parameter names (last component) that are embeddings even when not held by an nn.Embedding.
EMBED_PARAM_NAMES = (
    "level_embed", "query_feat", "query_embed", "pos_embed", "absolute_pos_embed",
    "relative_position_bias_table", "rel_pos_h", "rel_pos_w",
)


def _is_norm(module: nn.Module) -> bool:
    # also catch custom norms (e.g. a LayerNorm2d) by their class name
    return isinstance(module, NORM_MODULE_TYPES) or "norm" in type(module).__name__.lower()


def get_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float | None = None,
    weight_decay_embed: float | None = None,
    weight_decay_bias: float | None = None,
    backbone_multiplier: float = 1.0,
) -> list[dict[str, Any]]:
    """Parameter groups of the trainable parameters of ``model`` (see the module doc).

    Each group has ``params``, ``lr``, ``weight_decay`` and ``param_names`` (for logs/tests).
    """
    memo: set[int] = set()
    per_param: list[tuple[str, nn.Parameter, float, float]] = []
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in memo:
                continue
            memo.add(id(p))
            full = f"{module_name}.{pname}" if module_name else pname
            lr = base_lr
            wd = weight_decay
            if "backbone" in module_name:
                lr = lr * backbone_multiplier
            if weight_decay_bias is not None and pname == "bias":
                wd = weight_decay_bias
            if weight_decay_norm is not None and _is_norm(module):
                wd = weight_decay_norm
            if weight_decay_embed is not None and (isinstance(module, nn.Embedding) or pname in EMBED_PARAM_NAMES):
                wd = weight_decay_embed
            per_param.append((full, p, lr, wd))
    groups: "OrderedDict[tuple[float, float], dict[str, Any]]" = OrderedDict()
    for name, p, lr, wd in per_param:
        g = groups.setdefault((lr, wd), {"params": [], "param_names": [], "lr": lr, "weight_decay": wd})
        g["params"].append(p)
        g["param_names"].append(name)
    return list(groups.values())


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD (``SOLVER.OPTIMIZER``) over the trainable parameters of ``model``."""
    s = cfg.SOLVER
    groups = get_param_groups(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_embed=s.WEIGHT_DECAY_EMBED,
        weight_decay_bias=s.WEIGHT_DECAY_BIAS,
        backbone_multiplier=s.BACKBONE_MULTIPLIER,
    )
    if not groups:
        raise ValueError("The model has no trainable parameters: nothing to optimise.")
    n_params = sum(p.numel() for g in groups for p in g["params"])
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    logger.info(
        "Optimiser %s over %d trainable tensors (%.2fM parameters; %.2fM frozen parameters excluded) "
        "in %d groups: %s",
        s.OPTIMIZER, sum(len(g["params"]) for g in groups), n_params / 1e6, n_frozen / 1e6, len(groups),
        ", ".join(f"(lr={g['lr']:.3g}, wd={g['weight_decay']:.3g}: {len(g['params'])})" for g in groups),
    )
    name = s.OPTIMIZER.upper()
    if name == "ADAMW":
        return torch.optim.AdamW(groups, lr=s.BASE_LR)
    if name == "SGD":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    raise ValueError(f"Unknown SOLVER.OPTIMIZER {s.OPTIMIZER!r}; use 'ADAMW' or 'SGD'.")


def clip_gradients(cfg, params: Iterable[nn.Parameter]) -> float | None:
    """Clip gradients as ``SOLVER.CLIP_GRADIENTS`` says; returns the total norm for "full_model".

    * ``full_model``: one L2 (``NORM_TYPE``) norm over every trainable parameter, clipped to
      ``CLIP_VALUE`` (Mask2Former);
    * ``norm``: the same, per parameter tensor (Detectron2);
    * ``value``: element-wise clamp to ``[-CLIP_VALUE, CLIP_VALUE]``.
    """
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return None
    params = [p for p in params if p.grad is not None]
    if not params:
        return None
    kind = c.CLIP_TYPE
    if kind == "full_model":
        return float(torch.nn.utils.clip_grad_norm_(params, c.CLIP_VALUE, c.NORM_TYPE))
    if kind == "norm":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], c.CLIP_VALUE, c.NORM_TYPE)
        return None
    if kind == "value":
        torch.nn.utils.clip_grad_value_(params, c.CLIP_VALUE)
        return None
    raise ValueError(f"Unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE {kind!r}; use 'full_model', 'norm' or 'value'.")
