"""The allowed values of config keys, in one table, checked when a run's config is set up
(:func:`frozenseg.engine.setup.load_config`, used by every entry point).

Types are checked on merge (a key's type is its default's); this table adds the ranges and
choices a type cannot say. A key a config does not hold (another model's) is skipped, so models
may add rows for their own keys (:data:`VALUE_RULES` is a plain dict).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..utils.errors import ConfigValueError

__all__ = ["ValueRule", "VALUE_RULES", "check_config_values"]


@dataclass(frozen=True)
class ValueRule:
    """``accepts(value) -> bool`` and the words that say what is accepted ("a positive integer")."""

    accepts: Callable[[Any], bool]
    expected: str


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


POSITIVE_INT = ValueRule(lambda x: isinstance(x, int) and not isinstance(x, bool) and x > 0, "a positive integer")
NON_NEGATIVE_INT = ValueRule(lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
                             "an integer of at least 0")
POSITIVE_NUMBER = ValueRule(lambda x: _number(x) and x > 0, "a positive finite number")
NON_NEGATIVE_NUMBER = ValueRule(lambda x: _number(x) and x >= 0, "a finite number of at least 0")
PROBABILITY = ValueRule(lambda x: _number(x) and 0 <= x <= 1, "a number from 0 to 1")
POSITIVE_SIZES = ValueRule(lambda xs: len(xs) > 0 and all(isinstance(x, int) and x > 0 for x in xs),
                           "a non-empty list of positive integers such as (800,)")
DESCRIPTION_FILES = ValueRule(
    lambda xs: all(isinstance(x, str) and x.strip().lower().endswith((".yaml", ".yml", ".json")) for x in xs),
    "a list of dataset description files (.yaml, .yml or .json) such as ('my_data.yaml',)")
RUN_DEVICE = ValueRule(lambda x: isinstance(x, str) and re.fullmatch(r"cpu|cuda(:\d+)?", x) is not None,
                       '"cpu", "cuda" or "cuda:N"')

#: Config key -> the rule its value must follow.
VALUE_RULES: dict[str, ValueRule] = {
    "MODEL.DEVICE": RUN_DEVICE,
    "MODEL.CPU_THREADS": NON_NEGATIVE_INT,
    "INPUT.MIN_SIZE_TRAIN": POSITIVE_SIZES,
    "INPUT.MAX_SIZE_TRAIN": POSITIVE_INT,
    "INPUT.MIN_SIZE_TEST": POSITIVE_INT,
    "INPUT.MAX_SIZE_TEST": POSITIVE_INT,
    "INPUT.IMAGE_SIZE": POSITIVE_INT,
    "INPUT.MIN_SCALE": POSITIVE_NUMBER,
    "INPUT.MAX_SCALE": POSITIVE_NUMBER,
    "DATASETS.REGISTER": DESCRIPTION_FILES,
    "DATALOADER.NUM_WORKERS": NON_NEGATIVE_INT,
    "SOLVER.MAX_ITER": NON_NEGATIVE_INT,
    "SOLVER.BASE_LR": POSITIVE_NUMBER,
    "SOLVER.IMS_PER_BATCH": POSITIVE_INT,
    "SOLVER.GRAD_ACCUM_STEPS": POSITIVE_INT,
    "SOLVER.CHECKPOINT_PERIOD": POSITIVE_INT,
    "SOLVER.WARMUP_ITERS": NON_NEGATIVE_INT,
    "SOLVER.WEIGHT_DECAY": NON_NEGATIVE_NUMBER,
    "TEST.EVAL_PERIOD": NON_NEGATIVE_INT,
    "TEST.IMS_PER_BATCH": POSITIVE_INT,
    "TEST.DETECTIONS_PER_IMAGE": POSITIVE_INT,
    "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD": PROBABILITY,
    "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD": PROBABILITY,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": POSITIVE_INT,
}


def _lookup(cfg, key: str) -> tuple[bool, Any]:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_config_values(cfg) -> None:
    """Raise :class:`ConfigValueError` (one sentence: the key, its value, what it accepts) for the
    first key of :data:`VALUE_RULES` whose value the config holds and the rule refuses."""
    for key, rule in VALUE_RULES.items():
        present, value = _lookup(cfg, key)
        if present and not rule.accepts(value):
            raise ConfigValueError(f"{key} must be {rule.expected}; got {value!r}.")
